"""Benchmarks of the study runner (``make bench``; ``BENCH_QUICK=1 make bench`` for a small run).

Not part of the package: nothing here is imported by ``precision``. `benchmarks.bench` runs,
side by side in one run, one module a part:

1. `benchmarks.versus_baseline`: the softmax-family study against a naive baseline
   (`benchmarks.baseline`: mpmath at a fixed 256 bits for every row, nothing shared, nothing
   cached), and checks both give the same errors;
2. `benchmarks.truth_rates`: ground-truth throughput per problem and size for the arb and mpmath
   engines against one plain 256-bit mpmath evaluation, and the certified rates of issue 14;
3. `benchmarks.scaling`: rows per second of a scalar (exp) study at growing sizes, and peak
   memory (ru_maxrss of a subprocess) at about a million rows;
4. `benchmarks.scaling`: the speed-up of 2 workers over 1 with the process and Dask executors;
5. `benchmarks.versus_script`: the study against the per-row script a user would write
   (`benchmarks.script`, issue 13),

and writes ``results/bench/benchmarks.csv`` (one measurement a line) and ``benchmarks.md``
(`benchmarks.results`).
"""
