"""Certified ground truth: the exact references of a problem on the input as a format received
it (mpmath or Arb balls), the vectorised certification of Arb balls, and the re-derivation of
cached records. Above the problems, whose references it evaluates; below the runner."""
