"""Tests of the ``precision`` command: list, help, bad input, and a tiny end-to-end run.

The CLI runs in-process through `precision.cli.main` (fast, output captured by capsys) and
once through a subprocess (``python -m precision``), which is how a user meets it. Bad input
exits 2 with one line on stderr and never touches earlier results.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_specs import TINY

from precision import store
from precision.cli import main, run_captured
from precision.core.formats import FORMATS
from precision.problems import PROBLEMS
from precision.run.spec import parse_spec
from precision.run.study import run

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"


FINAL_LINE = re.compile(r"^tiny: (\d+) rows in (\d+\.\d) s with \w+ \(.*\); (\d+) files in (.+)$")


def tiny_spec(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY)
    return path


call = run_captured  # the CLI in-process: (exit status, stdout, stderr)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory) -> tuple[Path, int, str, str]:
    """One tiny run with plots (the slow part is matplotlib), shared by the output tests."""
    folder = tmp_path_factory.mktemp("plotted")
    out = folder / "out"
    code, stdout, stderr = call(["run", str(tiny_spec(folder)), "--out", str(out), "--no-progress"])
    return out, code, stdout, stderr


@pytest.fixture(scope="module")
def unplotted_run(tmp_path_factory) -> tuple[Path, int, str, str]:
    """One tiny run without plots (default executor), shared read-only by the tests of its
    output and of a rerun: (output folder, exit status, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("unplotted")
    out = folder / "out"
    argv = ["run", str(tiny_spec(folder)), "--out", str(out), "--no-progress", "--no-plots"]
    code, stdout, stderr = call(argv)
    return out, code, stdout, stderr


# ------------------------------------------------------------------ list and help


def test_list_shows_everything(capsys):
    assert main(["list", "--studies-dir", str(STUDIES)]) == 0
    out = capsys.readouterr().out
    for name, problem in PROBLEMS.items():
        assert name in out
        for variant in problem.variants:
            assert variant in out
    for fmt in FORMATS:
        assert fmt in out
    assert "softmax.toml" in out
    assert "invalid" not in out  # the shipped studies are valid


def test_list_default_studies_folder(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["list"]) == 0
    assert "studies/softmax.toml" in capsys.readouterr().out


def test_list_flags_an_invalid_study(capsys, tmp_path: Path):
    (tmp_path / "broken.toml").write_text('name = "x"\nseeds = 1\n')
    assert main(["list", "--studies-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "broken.toml" in line]
    assert "invalid" in line and "did you mean 'seed'" in line


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["run", "--help"]])
def test_help(capsys, argv: list[str]):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: precision")
    if argv[0] == "run":
        for option in ("--quick", "--out", "--no-plots", "--no-progress"):
            assert option in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("precision ")


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: precision" in capsys.readouterr().out


# ------------------------------------------------------------------ bad input


def test_missing_study_file(capsys, tmp_path: Path):
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("precision: error: ") and str(missing) in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_spec_leaves_results_untouched(capsys, tmp_path: Path, unplotted_run):
    # Earlier results of the tiny spec: a copy of the shared run's (this test writes here).
    out = tmp_path / "out"
    shutil.copytree(unplotted_run[0], out)
    spec = tiny_spec(tmp_path)
    before = snapshot(out)
    assert set(before) == {"errors.parquet", "summary.csv", "summary.md", "meta.json"}
    capsys.readouterr()

    spec.write_text(TINY.replace("samples_per_cell = 1", "samples_per_cell = 0"))
    assert main(["run", str(spec), "--out", str(out), "--no-progress", "--no-plots"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"precision: error: {spec}: grid.samples_per_cell: ")
    assert snapshot(out) == before  # same names (no temporary files), same bytes


def test_bad_spec_through_subprocess(tmp_path: Path):
    """As a user runs it: exit 2, one line on stderr, no traceback."""
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.replace('"softmax", "logsumexp"', '"softmx"'))
    result = subprocess.run(
        [sys.executable, "-m", "precision", "run", str(spec), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line == (
        f"precision: error: {spec}: problems: unknown name 'softmx' (did you mean 'softmax'?)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv", [["run"], ["frobnicate"], ["run", "s.toml", "--workers", "0"], ["list", "--bogus"]]
)
def test_usage_error_is_one_line_and_exits_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("precision") and "--help" in err[0], err


# ------------------------------------------------------------------ a tiny run

FIGURES = [
    f"{kind}_{p}.png" for kind in ("heatmap", "distributions") for p in ("softmax", "logsumexp")
]
"""The figures of the tiny run: a heatmap and the error distributions of each problem."""


def test_tiny_run_writes_results(plotted_run):
    out, code, stdout, stderr = plotted_run
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "input/s" not in stderr and "it/s" not in stderr  # --no-progress: no bar
    names = {p.name for p in out.iterdir()}
    assert names == {"errors.parquet", "summary.csv", "summary.md", "meta.json", *FIGURES}
    for png in FIGURES:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_parquet(out / "errors.parquet")
    assert len(table) > 0
    assert set(table["problem"]) == {"softmax", "logsumexp"}
    assert set(table["format"]) == {"float16", "float64"}
    summary = pd.read_csv(out / "summary.csv")
    assert {"problem", "variant", "format", "median_err_over_u"} <= set(summary.columns)
    assert (out / "summary.md").read_text().startswith("# Study `tiny`")


def test_tiny_run_final_line(plotted_run):
    out, code, stdout, _ = plotted_run
    assert code == 0
    last = stdout.strip().splitlines()[-1]
    match = FINAL_LINE.match(last)
    assert match, last
    rows, _, files, folder = match.groups()
    assert int(rows) == len(pd.read_parquet(out / "errors.parquet"))
    assert int(files) == 4 + len(FIGURES)
    assert folder == str(out)


def test_tiny_run_meta(plotted_run):
    out, *_ = plotted_run
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 3
    assert meta["study"] == "tiny"
    assert meta["spec"]["problems"] == ["softmax", "logsumexp"]
    assert meta["spec"]["grid"]["sizes"] == [10]
    assert "git_commit" in meta
    assert meta["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"])
    assert isinstance(meta["flush_to_zero"], bool)
    assert {"python", "precision", "numpy", "mpmath"} <= set(meta["versions"])
    assert meta["timing"]["seconds"] > 0
    assert meta["spec_file"].endswith("tiny.toml")


def test_tiny_run_without_plots(unplotted_run):
    out, code, stdout, stderr = unplotted_run
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {
        "errors.parquet",
        "summary.csv",
        "summary.md",
        "meta.json",
    }
    match = FINAL_LINE.match(stdout.strip().splitlines()[-1])
    assert match and int(match.group(3)) == 4
    assert int(match.group(1)) == len(pd.read_parquet(out / "errors.parquet"))


def test_rerun_is_byte_identical_on_disk(tmp_path: Path, unplotted_run):
    """The table on disk does not depend on the run (timings live only in meta.json): a second
    run of the same spec text (here from another folder) writes the shared run's bytes."""
    first, code, _, stderr = unplotted_run
    assert code == 0, stderr
    again = tmp_path / "again"
    argv = ["run", str(tiny_spec(tmp_path)), "--out", str(again), "--no-progress", "--no-plots"]
    assert call(argv)[0] == 0
    for name in ("errors.parquet", "summary.csv", "summary.md"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


# ------------------------------------------------------------------ determinism


def test_study_run_is_deterministic():
    spec = parse_spec(
        {
            "name": "tiny",
            "seed": 3,
            "formats": ["float16", "float64"],
            "problems": ["softmax", "logsumexp"],
            "grid": {
                "log10_cond": [0, 2],
                "log10_magnitude": [0, 2],
                "sizes": [10],
                "samples_per_cell": 1,
            },
        }
    )
    first, second = run(spec), run(spec)
    assert len(first) > 0
    assert first.attrs["timing"] != {} and "timing" in second.attrs
    assert store.table_bytes(first) == store.table_bytes(second)


def test_problem_rows_do_not_depend_on_other_problems():
    """Each cell draws from its own generator: adding or reordering problems changes nothing
    in the rows of the others."""
    grid = {"log10_cond": [0, 2], "log10_magnitude": [0, 2], "sizes": [10], "samples_per_cell": 1}
    base = {"name": "tiny", "seed": 3, "formats": ["float16"], "grid": grid}
    alone = run(parse_spec(base | {"problems": ["softmax"]}))
    together = run(parse_spec(base | {"problems": ["logsumexp", "softmax"]}))
    together = together[together["problem"] == "softmax"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together)


# ------------------------------------------------------------------ size estimate


def test_dry_run_prints_the_estimate_and_writes_nothing(tmp_path: Path):
    spec = tiny_spec(tmp_path)
    code, out, err = call(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"])
    assert (code, err) == (0, "")
    line = re.fullmatch(
        r"tiny: about 56 rows, .* of memory and \d+ s on \d workers? in 8 chunks "
        r"\(limits: .* and 24 h\); nothing was run\n",
        out,
    )
    assert line, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_a_spec_too_large_for_the_machine_runs_only_with_force(tmp_path: Path):
    """One cell of five 1,000 x 1,000 linear systems: refused in one line (naming the
    estimate and --force) before anything is written; --force lets it past the check."""
    big = TINY.replace('["softmax", "logsumexp"]', '["linear_system"]').replace("[10]", "[1000]")
    big = big.replace("[0, 2]", "[0, 1]").replace("samples_per_cell = 1", "samples_per_cell = 5")
    spec = tmp_path / "tiny.toml"
    spec.write_text(big)
    argv = ["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]
    code, out, err = call(argv[:-1])
    assert (code, out) == (2, "")
    assert re.fullmatch(
        r"precision: error: tiny is too large to run here: about 50 rows, .* "
        r"days on 1 worker \(limits: .*\); .*or use --force to insist\n",
        err,
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]
    code, out, err = call([*argv, "--force"])
    assert (code, err) == (0, "") and "about 50 rows" in out


def test_eval_of_a_matrix_near_the_float64_limit_is_measured_not_an_internal_error():
    """Entries of 1e308 made the scaled midpoints' power of two overflow (2.0**1024)."""
    code, stdout, stderr = run_captured(
        ["eval", "linear_system", "[[1e308,1e308,1],[1e308,-1e308,2]]", "--format", "float64"]
    )
    assert code == 0, stderr
    assert "float64: exact" in stdout and "internal error" not in stderr


def test_run_study_refuses_what_the_machine_cannot_hold_as_the_cli_does():
    from precision import run_study
    from precision.run.estimate import TooLarge

    raw = tomllib_loads(TINY)
    # About 56,000 rows of n = 100,000: hundreds of GiB by the estimate, refused at once.
    raw["grid"] |= {"sizes": [100_000], "samples_per_cell": 1000}
    with pytest.raises(TooLarge, match="too large to run here.*--force"):
        run_study(raw)


def tomllib_loads(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


# ------------------------------------------------------------------ several studies in one run


def named_spec(folder: Path, name: str, *, extra: str = "") -> Path:
    """The tiny spec under another name (its own results folder, results/<name>)."""
    path = folder / f"{name}.toml"
    path.write_text(extra + TINY.replace('name = "tiny"', f'name = "{name}"'))
    return path


@pytest.mark.parametrize("executor", ["process", "serial"])
def test_several_studies_write_what_each_writes_alone(tmp_path, monkeypatch, executor):
    """Two studies in one run (one pool of workers; the first one's figures drawn while the
    second computes) write, file for file and byte for byte, what each writes run on its own,
    and print their lines in order; meta.json differs only in its timings."""
    monkeypatch.chdir(tmp_path)
    specs = [named_spec(tmp_path, "first"), named_spec(tmp_path, "second")]
    flags = ["--no-progress", "--executor", executor, "--workers", "2"]
    code, stdout, stderr = call(["run", *map(str, specs), *flags])
    assert code == 0, stderr
    names = [line.split(":")[0] for line in stdout.splitlines()]
    assert names == ["first", "second"]
    for spec in specs:
        alone = tmp_path / "alone" / spec.stem
        code, _, stderr = call(["run", str(spec), "--out", str(alone), *flags])
        assert code == 0, stderr
        together = snapshot(tmp_path / "results" / spec.stem)
        assert together.keys() == snapshot(alone).keys()
        assert any(name.endswith(".png") for name in together)
        for name, data in snapshot(alone).items():
            if name == "meta.json":
                ours, theirs = json.loads(together[name]), json.loads(data)
                for meta in (ours, theirs):
                    meta.pop("timing", None)
                    meta.pop("created", None)
                assert ours == theirs
            else:
                assert together[name] == data, name


@pytest.mark.parametrize(
    "problem",
    ["--out", "same name", "plugins", "bad spec"],
)
def test_several_studies_refuse_bad_input_before_running_any(tmp_path, monkeypatch, problem):
    """Bad input anywhere among several studies: one line, exit 2, nothing run, and the
    results already in results/<name> untouched."""
    monkeypatch.chdir(tmp_path)
    first = named_spec(tmp_path, "first")
    earlier = tmp_path / "results" / "first"
    earlier.mkdir(parents=True)
    (earlier / "meta.json").write_text("{}")
    second = {
        "--out": named_spec(tmp_path, "second"),
        "same name": named_spec(tmp_path / "results", "first"),
        "plugins": named_spec(tmp_path, "second", extra='plugins = ["my_kernels"]\n'),
        "bad spec": tmp_path / "missing.toml",
    }[problem]
    (tmp_path / "my_kernels.py").write_text("")  # importable: refused for running with others
    argv = ["run", str(first), str(second), "--no-progress", "--no-plots"]
    if problem == "--out":
        argv += ["--out", str(tmp_path / "out")]
    code, stdout, stderr = call(argv)
    assert code == 2
    assert stdout == "" and len(stderr.strip().splitlines()) == 1, stderr
    assert snapshot(earlier) == {"meta.json": b"{}"}
    assert not (tmp_path / "results" / "second").exists()


def test_several_studies_interrupted_keep_the_studies_already_computed(tmp_path, monkeypatch):
    """Ctrl-C while the second of two studies computes: exit 130 with one line, and the first
    study, computed before it, still gets its files and its line."""
    import precision.cli.running as cli

    monkeypatch.chdir(tmp_path)
    specs = [named_spec(tmp_path, "first"), named_spec(tmp_path, "second")]
    compute, calls = cli._compute, []

    def interrupted_second(*args, **kwargs):
        calls.append(args[1].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return compute(*args, **kwargs)

    monkeypatch.setattr(cli, "_compute", interrupted_second)
    code, stdout, stderr = call(["run", *map(str, specs), "--no-progress", "--workers", "2"])
    assert code == 130
    assert calls == ["first", "second"]
    assert [line.split(":")[0] for line in stdout.splitlines()] == ["first"]
    assert stderr.strip() == "precision: interrupted"
    assert (tmp_path / "results" / "first" / "errors.parquet").is_file()
    assert not (tmp_path / "results" / "second").exists()
