"""Inputs aimed at a cell of the (condition number, magnitude) grid, and dataset inputs.

A cell is a pair of decades [10**c, 10**(c+1)) x [10**m, 10**(m+1)). For each sample the
generator draws a target point log-uniformly inside the cell, asks the problem for a batch of
candidates aimed at it, estimates their condition number and magnitude in float64, and keeps
the candidate nearest the target among those inside the cell. A cell that no candidate reaches
(softmax's condition number cannot exceed 2 max|x|, for instance) yields nothing: it stays empty
in the tables and heatmaps rather than being filled with inputs from elsewhere.

Two optional attributes of a problem's ``estimate`` save work without changing what is drawn
(`precision.problems.logits.estimate_with` sets both; they sit on the function so that a
problem, built-in or a user's, carries them without the sampler knowing it by name):

``estimate.reachable(n, cond_decade, mag_decade) -> bool``
    False only where it is proven that no input of size n can have an estimate in the cell
    (a bound on the condition number the estimate returns, float64 rounding included).
    `sample_cell` then returns the cell's Nones without proposing anything.
``estimate.magnitude(X) -> (batch,)``
    The estimate's magnitude alone (``estimate(X)[1]``), for an estimate whose rows are
    independent (``estimate(X[rows])`` equals ``estimate(X)`` at ``rows``, bit for bit): the
    condition number is then estimated only for the candidates in the magnitude decade.
"""

from __future__ import annotations

import zlib

import numpy as np

from precision.problems.base import Problem

CANDIDATES_PER_SAMPLE = 128


def cell_rng(seed: int, problem: str, n: int, cond_decade: int, mag_decade: int):
    """The generator of one chunk (problem, size, cell): seeded from the study seed and the
    chunk's coordinates only, so results do not depend on the order chunks run in."""
    key = (zlib.crc32(problem.encode()), n, cond_decade + 10_000, mag_decade + 10_000)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def sample_in_cell(
    problem: Problem,
    rng: np.random.Generator,
    *,
    n: int,
    cond_decade: int,
    mag_decade: int,
    candidates: int = CANDIDATES_PER_SAMPLE,
) -> np.ndarray | None:
    """One float64 input whose estimated condition number and magnitude fall in the cell.

    Returns None when no candidate lands in the cell.
    """
    log_cond = rng.uniform(cond_decade, cond_decade + 1)
    log_mag = rng.uniform(mag_decade, mag_decade + 1)
    X = problem.propose(rng, n=n, magnitude=10.0**log_mag, cond=10.0**log_cond, size=candidates)
    lc, lm, inside = _landing(problem, X, cond_decade, mag_decade)
    if not inside.any():
        return None
    distance = np.where(inside, (lc - log_cond) ** 2 + (lm - log_mag) ** 2, np.inf)
    return X[int(np.argmin(distance))]


def sample_cell(
    problem: Problem,
    rng: np.random.Generator,
    *,
    n: int,
    cond_decade: int,
    mag_decade: int,
    samples: int,
    candidates: int = CANDIDATES_PER_SAMPLE,
) -> list[np.ndarray | None]:
    """``samples`` float64 inputs of one cell, as `sample_in_cell` picks each (None for a
    sample no candidate reaches).

    For a batched problem (``Problem.batched``: its ``propose`` takes one target per
    candidate) every sample's targets are drawn first and all their candidates are proposed
    and estimated in one call; other problems propose each sample's candidates in turn. The
    two draw different (equally distributed) inputs from the same generator. So a batched
    problem's samples depend on how many are drawn: raising ``samples`` redraws every input
    of the cell (sample 0 included), where another problem's first samples stay as they were.

    A cell that is not `reachable` gives ``samples`` Nones without drawing from ``rng`` (which
    must then be the cell's own generator, `cell_rng`, as the study's is: other cells' inputs
    do not depend on it).
    """
    if not reachable(problem, n, cond_decade, mag_decade):
        return [None] * samples
    if not problem.batched:
        return [
            sample_in_cell(
                problem,
                rng,
                n=n,
                cond_decade=cond_decade,
                mag_decade=mag_decade,
                candidates=candidates,
            )
            for _ in range(samples)
        ]
    log_cond = rng.uniform(cond_decade, cond_decade + 1, size=samples)
    log_mag = rng.uniform(mag_decade, mag_decade + 1, size=samples)
    return _nearest_in_cell(problem, rng, n, cond_decade, mag_decade, log_cond, log_mag, candidates)


def _nearest_in_cell(
    problem, rng, n, cond_decade, mag_decade, log_cond, log_mag, candidates
) -> list[np.ndarray | None]:
    """For each target (log_cond[s], log_mag[s]), the nearest of its ``candidates`` proposals
    inside the cell (None if none is inside), all proposed and estimated in one call."""
    samples = len(log_cond)
    if samples == 0:
        return []
    X = problem.propose(
        rng,
        n=n,
        magnitude=np.repeat(10.0**log_mag, candidates),
        cond=np.repeat(10.0**log_cond, candidates),
        size=samples * candidates,
    )
    lc, lm, inside = _landing(problem, X, cond_decade, mag_decade)
    lc, lm = lc.reshape(samples, candidates), lm.reshape(samples, candidates)
    inside = inside.reshape(samples, candidates)
    distance = np.where(
        inside, (lc - log_cond[:, None]) ** 2 + (lm - log_mag[:, None]) ** 2, np.inf
    )
    best = np.argmin(distance, axis=1)
    X = X.reshape(samples, candidates, *X.shape[1:])
    return [X[s, best[s]] if inside[s].any() else None for s in range(samples)]


def reachable(problem: Problem, n: int, cond_decade: int, mag_decade: int) -> bool:
    """False where the problem's estimate proves the cell empty (``estimate.reachable``, module
    docstring); True otherwise, and for problems without such a bound."""
    check = getattr(problem.estimate, "reachable", None)
    return True if check is None else bool(check(n, cond_decade, mag_decade))


def _landing(problem, X, cond_decade, mag_decade):
    """log10 of the estimated condition numbers and magnitudes of the candidates ``X``, and
    which of them lie in the cell. With ``estimate.magnitude`` (module docstring) only the
    candidates in the magnitude decade have their condition number estimated; the others'
    stays NaN (they are not inside either way)."""
    magnitude = getattr(problem.estimate, "magnitude", None)
    with np.errstate(all="ignore"):
        if magnitude is None:
            cond, mag = problem.estimate(X)
            lc, lm = np.log10(cond), np.log10(mag)
        else:
            lm = np.log10(_blockwise(magnitude, X, np.arange(len(X))))
            rows = np.flatnonzero(np.floor(lm) == mag_decade)
            lc = np.full(len(X), np.nan)
            if len(rows):
                lc[rows] = np.log10(_blockwise(lambda Z: problem.estimate(Z)[0], X, rows))
    inside = (np.floor(lc) == cond_decade) & (np.floor(lm) == mag_decade)
    return lc, lm, inside


BLOCK_ELEMENTS = 2**16
"""Input elements per block of candidates whose estimates are formed together, where the
estimate's rows are independent (``estimate.magnitude``, module docstring): a cost decision
only, as the values are those of one call on all of them. A block's temporaries (256 KiB
each) stay in the CPU's cache across the estimate's dozen passes; at n = 1000 the softmax
family's estimates ran about twice as fast in blocks of 32 rows as on 120 rows at once."""


def _row_blocks(rows: int, row_elements: int) -> list[slice]:
    """Consecutive slices of ``rows`` rows of ``row_elements`` each, BLOCK_ELEMENTS elements or
    fewer per slice (at least one row; one empty slice for no rows)."""
    step = max(1, BLOCK_ELEMENTS // max(1, row_elements))
    return [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def _blockwise(function, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``function(X[rows])`` for a ``function`` of independent rows and increasing ``rows``,
    formed block by block (`BLOCK_ELEMENTS`): one block of ``X[rows]`` gathered at a time, or
    none where ``rows`` are all the rows (slices of ``X`` are views)."""
    every = len(rows) == len(X)  # increasing and distinct: then rows is arange(len(X))
    blocks = _row_blocks(len(rows), X[0].size if len(X) else 1)
    if len(blocks) == 1:
        return function(X if every else X[rows])
    return np.concatenate([function(X[b] if every else X[rows[b]]) for b in blocks])


def dataset_rows(data: np.ndarray, *, rows: int, seed: int) -> np.ndarray:
    """``rows`` rows of a data matrix, chosen without replacement by the seed (all if fewer)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(b"dataset"),)))
    count = min(rows, data.shape[0])
    return data[np.sort(rng.choice(data.shape[0], size=count, replace=False))]
