"""Optimisers of a quadratic [H | b], each computing in the format of its input, iteration-capped.

Gradient descent theta <- theta - alpha g, g = H theta - b, from theta_0 = 0, with four ways
of applying the update (Higham 2002, sec. 4.3 for compensation; Gupta et al., "Deep learning
with limited numerical precision", ICML 2015, for stochastic rounding; Micikevicius et al.,
"Mixed precision training", ICLR 2018, for float32 master weights):

* ``plain``: theta + fl(-alpha g) rounded to nearest in the format. Once |alpha g_i| is below
  half an ulp of theta_i the update is lost and theta stops moving (stagnation): the error floor
  is about u |theta| / (alpha lambda_min) = kappa u |theta| / alpha (lambda_max = 1);
* ``master32``: float32 master weights (the wider of float32 and the format): the gradient is
  computed in the format from theta rounded to it, the update is applied in float32; the row's
  output is the float32 master copy (compute_dtype says so);
* ``kahan``: Kahan-compensated update: the part of the update lost to rounding is carried in a
  compensation term c and added back at the next step;
* ``stochastic``: theta + d rounded stochastically (up with probability equal to the fraction of
  the gap), so that lost updates are kept in expectation. Exact: the rounding error e of
  s = fl(theta + d) is obtained by TwoSum (exact in any binary format with round to nearest;
  numpy's float16/bfloat16 operations are correctly rounded), and s moves one ulp towards e with
  probability |e| / ulp. The random stream is seeded from a hash of the input's bytes and the
  variant's name with its learning rate (``gd_stochastic_lr0.1``): the same input gives the
  same row on any executor.

They are the variant families ``gd``, ``gd_master32``, ``gd_kahan`` and ``gd_stochastic``, each
with the learning rate as its parameter ``lr`` (`GD_RULES`: plain descent at LEARNING_RATES by
default, the remedies at REMEDY_RATE).

Stopping test (in float64, on the in-format values: it decides when to stop, it is not part of
the arithmetic): ||g||_inf <= TOLERANCE_IN_U * u * (||H||_inf ||theta||_inf + ||b||_inf),
a normwise backward error of a few u, which a backward-stable solver attains. A deterministic
iteration whose whole state stops changing is at a fixed point of its in-format map and is
stopped there (it would never change again); both a stall and the iteration cap count as
not converged (outcome ``no_convergence``; the error floor stays in rel_error).

Newton's method (theta <- theta - H^-1 g, with an in-format LU solve with partial pivoting:
on a quadratic, one step, then fixed-precision iterative refinement) and BFGS (in-format, with
the exact line search of a quadratic; and scipy's, which runs in float64 whatever the format:
its rows say compute_dtype float64) use the same test.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from precision.core.formats import Format, get_format
from precision.problems.base import Computed

GD_MAX_ITER = 20_000
NEWTON_MAX_ITER = 20
BFGS_MAX_ITER_PER_N = 10
"""Iteration caps: gradient descent needs about kappa ln(1/tol) / (alpha lambda_max) steps
(20,000 covers kappa = 1e3 at alpha = 1 down to float32's floor); Newton refines in a few;
BFGS with exact line searches ends in n steps in exact arithmetic."""

TOLERANCE_IN_U = 4.0
"""The stopping test's normwise backward error, in units of u (see the module docstring): a
few roundings, which a backward-stable solution attains (the computed gradient itself carries
about u (|H| |theta| + |b|): np.dot rounds once, the subtraction once)."""


# ---------------------------------------------------------------- in-format building blocks


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    return x[:, :n], x[:, n]


def gradient(H: np.ndarray, theta: np.ndarray, b: np.ndarray) -> np.ndarray:
    """H theta - b; ``np.dot`` keeps float16/bfloat16 and accumulates them in float32."""
    return np.dot(H, theta) - b


def dot_accumulator(fmt: Format) -> str:
    """The accumulator of ``np.dot``: float32 for float16 and bfloat16, else the format."""
    return "float32" if fmt.p < 24 else fmt.name


def finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(a.astype(np.float64)).all()) for a in arrays)


def seeded_rng(x: np.ndarray, name: str) -> np.random.Generator:
    """A generator seeded from the input's bytes and a variant name (sha256): reproducible
    on any executor, independent of the order rows are made in."""
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + name.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a + b) and the exact error e = a + b - s, in the format (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def stochastic_round_sum(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """a + b rounded stochastically to the format of a: to the neighbour on the side of the
    rounding error with probability |e| / gap (so E[result] = a + b exactly)."""
    s, e = two_sum(a, b)
    toward = np.nextafter(s, np.where(e > 0, np.inf, -np.inf).astype(s.dtype))
    gap = np.abs(toward.astype(np.float64) - s.astype(np.float64))
    # Divided only where there is a gap (0 / 0 and x / NaN never happen, so no IEEE flag is
    # raised there; an errstate around it cost more than the division).
    p = np.zeros_like(gap)
    np.divide(np.abs(e.astype(np.float64)), gap, out=p, where=gap > 0)
    return np.where(rng.random(s.shape) < p, toward, s)


# ---------------------------------------------------------------- the iteration


class Breakdown(Exception):
    """A step that cannot be taken (BFGS: a non-positive curvature); the iteration stops."""


class StoppingTest:
    """||g||_inf <= TOLERANCE_IN_U * u * (||H||_inf ||theta||_inf + ||b||_inf), with the
    norms of H and b taken once (float64 norms of the in-format values)."""

    def __init__(self, H: np.ndarray, b: np.ndarray):
        self.h_norm = float(np.abs(H.astype(np.float64)).sum(axis=1).max())
        self.b_norm = float(np.abs(b.astype(np.float64)).max())
        self.tol = TOLERANCE_IN_U * get_format(b.dtype).u

    def __call__(self, g64: np.ndarray, theta: np.ndarray) -> bool:
        """The test on the gradient in float64 (``g64``) at the in-format iterate ``theta``.
        |x| and max are exact in every format, as is the conversion of the largest |theta_i|
        to a Python float: the same numbers as converting every element first."""
        scale = self.h_norm * float(np.abs(theta).max()) + self.b_norm
        return float(np.abs(g64).max()) <= self.tol * scale


def iterate(x: np.ndarray, step: Callable, state: tuple, *, cap: int, deterministic: bool):
    """Run ``state = step(state, g)`` (g the in-format gradient at ``state[0]``) and return
    `Computed` with the output ``state[-1]``.

    The iteration stops at a non-finite gradient, at ``cap`` iterations, at a fixed point of a
    deterministic map, or a 2-cycle of it (its whole state equal to the one one or two steps
    before: it would only repeat itself), or at a
    `Breakdown`. The stopping test only marks convergence: a gradient test is loose in the
    forward error (theta - theta* = H^-1 g can be kappa times larger), so once it holds, at
    iteration k, the iteration goes on while ||g||_2 still reaches new lows and stops after
    max(k, PATIENCE) iterations without one: the output shows the attainable accuracy (the
    error floor), not just the tolerance. (For gradient descent with alpha < 2 / lambda_max,
    ||g||_2 decreases at every exact step, so no new low means rounding errors dominate.)
    ``iterations`` is k, the iterations to reach the tolerance, when it was reached
    (converged), else the iterations run (not converged).
    """
    H, b = split(x)
    test = StoppingTest(H, b)
    reached, best, best_at, k, norm = None, np.inf, 0, 0, np.inf
    previous = None
    while k < cap:
        g = gradient(H, state[0], b)
        g64 = g.astype(np.float64)  # exact for every format; converted once per iteration
        norm = _norm2(g64)
        if norm == np.inf:
            break
        if norm < best:
            best, best_at = norm, k
        if reached is None and test(g64, state[0]):
            reached = k
        if reached is not None and k - best_at > max(reached, PATIENCE):
            break
        try:
            new = step(state, g)
        except Breakdown:
            break
        if deterministic and (_same(state, new) or _same(previous, new)):
            break
        previous, state, k = state, new, k + 1
    # A run that met the test and then blew up (a learning rate past 2 / lambda_max: the
    # top eigencomponent grows from rounding noise) ends far above its best: not converged.
    converged = reached is not None and norm <= DIVERGENCE * best
    return Computed(state[-1], iterations=reached if converged else k, converged=converged)


def _norm2(g64: np.ndarray) -> float:
    """||g||_2 of a float64 vector as ``np.linalg.norm`` computes it, sqrt(g . g) (its own
    ``x.dot(x)``, then a correctly rounded square root: the same value), or inf where g is not
    finite or g . g overflows (a NaN or infinite g makes g . g NaN or inf): the iteration's
    stopping signal, without checking finiteness and calling ``norm`` apart each step."""
    squares = float(g64.dot(g64))
    return math.sqrt(squares) if squares < math.inf else math.inf


def _same(a: tuple | None, b: tuple) -> bool:
    """Whether two states are equal element by element (None: no state yet): what
    ``np.array_equal`` decides for arrays of one shape (``==``: a NaN differs from
    everything, -0 equals +0), without its checks and conversions (the shapes of a state
    never change)."""
    if a is None:
        return False
    if len(b) == 1:  # most rules carry theta alone
        return bool((a[0] == b[0]).all())
    return all(bool((x == y).all()) for x, y in zip(a, b, strict=True))


DIVERGENCE = 1e3
"""A final ||g||_2 this many times above the best one marks a diverging run."""

PATIENCE = 50
"""Iterations without a new low of ||g||_2 after which a converged iteration stops (at least
as many as it took to converge)."""


class Rule(NamedTuple):
    """An update rule: ``step(state, g) -> state``, the initial state, and whether the map is
    deterministic (a fixed point of it is final)."""

    step: Callable
    state: tuple
    deterministic: bool = True


def plain_rule(x: np.ndarray, lr: float) -> Rule:
    """theta <- theta - fl(alpha g), rounded to nearest (alpha rounded to the format)."""
    alpha = x.dtype.type(lr)
    theta = np.zeros(x.shape[0], dtype=x.dtype)
    return Rule(lambda s, g: (s[0] - alpha * g,), (theta,))


def master32_rule(x: np.ndarray, lr: float) -> Rule:
    """Float32 master weights W; theta = W rounded to the format; W <- W - alpha g (float32)."""
    wide = np.promote_types(x.dtype, np.float32)
    alpha = wide.type(lr)

    def step(state, g):
        master = state[1] - alpha * g.astype(wide)
        return master.astype(x.dtype), master

    master = np.zeros(x.shape[0], dtype=wide)
    return Rule(step, (master.astype(x.dtype), master))


def kahan_rule(x: np.ndarray, lr: float) -> Rule:
    """Compensated update: y = -alpha g - c; t = theta + y; c = (t - theta) - y; theta = t."""
    alpha = x.dtype.type(lr)

    def step(state, g):
        theta, c = state[0], state[1]
        y = -(alpha * g) - c
        t = theta + y
        return t, (t - theta) - y, t

    zero = np.zeros(x.shape[0], dtype=x.dtype)
    return Rule(step, (zero, zero.copy(), zero))


def stochastic_rule(x: np.ndarray, lr: float, name: str) -> Rule:
    """theta <- SR(theta - fl(alpha g)) (`stochastic_round_sum`), seeded from the input."""
    alpha, rng = x.dtype.type(lr), seeded_rng(x, name)
    theta = np.zeros(x.shape[0], dtype=x.dtype)
    step = lambda s, g: (stochastic_round_sum(s[0], -(alpha * g), rng),)  # noqa: E731
    return Rule(step, (theta,), deterministic=False)


def descend(x: np.ndarray, rule: Rule) -> Computed:
    """Gradient descent with an update rule, capped at GD_MAX_ITER (see `iterate`)."""
    return iterate(x, rule.step, rule.state, cap=GD_MAX_ITER, deterministic=rule.deterministic)


def trajectory(x: np.ndarray, rule: Rule, *, iterations: int) -> np.ndarray:
    """The iterates theta_0 .. theta_K of an update rule (K = ``iterations``; the outputs,
    ``state[-1]``, as float64 rows), for convergence curves. Stops early at a non-finite
    gradient (the remaining rows are NaN)."""
    H, b = split(x)
    state = rule.state
    out = np.full((iterations + 1, x.shape[0]), np.nan)
    out[0] = state[-1].astype(np.float64)
    for k in range(1, iterations + 1):
        g = gradient(H, state[0], b)
        if not finite(g):
            break
        state = rule.step(state, g)
        out[k] = state[-1].astype(np.float64)
    return out


# ---------------------------------------------------------------- Newton and BFGS


def lu_solve(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A^-1 r by Gaussian elimination with partial pivoting, every operation in the format
    (row updates are elementwise; the back substitution's dot products accumulate as
    ``np.dot`` does). A zero pivot gives inf/NaN, which the caller reports."""
    A, r, n = A.copy(), r.copy(), r.size
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]], r[[k, p]] = A[[p, k]], r[[p, k]]
        with np.errstate(divide="ignore", invalid="ignore"):
            factors = A[k + 1 :, k] / A[k, k]
        A[k + 1 :, k:] -= np.multiply.outer(factors, A[k, k:])
        r[k + 1 :] -= factors * r[k]
    out = np.zeros(n, dtype=r.dtype)
    for i in reversed(range(n)):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = (r[i] - np.dot(A[i, i + 1 :], out[i + 1 :])) / A[i, i]
    return out


def newton(x: np.ndarray) -> Computed:
    """theta <- theta - H^-1 (H theta - b) with `lu_solve` (iterative refinement from 0)."""
    H, _ = split(x)
    theta = np.zeros(x.shape[0], dtype=x.dtype)
    return iterate(
        x, lambda s, g: (s[0] - lu_solve(H, g),), (theta,), cap=NEWTON_MAX_ITER, deterministic=True
    )


def bfgs(x: np.ndarray) -> Computed:
    """BFGS in the format with the exact line search of a quadratic,
    alpha = -(g.p) / (p.H p), and the inverse-Hessian update
    B <- (I - rho s y^T) B (I - rho y s^T) + rho s s^T, rho = 1 / (y.s) (Nocedal & Wright
    2006, eq. 6.17). A non-positive curvature p.H p, or a y.s so small that rho overflows, ends the
    iteration (`Breakdown`)."""
    H, b = split(x)
    n, one = b.size, x.dtype.type(1)
    max_value = get_format(x.dtype).max

    def step(state, g):
        theta, B = state[0], state[1]
        p = -np.dot(B, g)
        curvature = np.dot(p, np.dot(H, p))
        if not curvature > 0:
            raise Breakdown
        s = (-np.dot(g, p) / curvature) * p
        y = gradient(H, theta + s, b) - g
        ys = np.dot(y, s)
        if not float(ys) * max_value > 1:  # rho = 1 / ys would overflow (or ys <= 0)
            raise Breakdown
        rho = one / ys
        left = np.eye(n, dtype=x.dtype) - rho * np.multiply.outer(s, y)
        theta = theta + s
        return theta, np.dot(np.dot(left, B), left.T) + rho * np.multiply.outer(s, s), theta

    theta = np.zeros(n, dtype=x.dtype)
    start = (theta, np.eye(n, dtype=x.dtype), theta)
    return iterate(x, step, start, cap=BFGS_MAX_ITER_PER_N * n, deterministic=True)


def scipy_bfgs(x: np.ndarray) -> Computed:
    """``scipy.optimize.minimize(method="BFGS")`` on the input taken exactly to float64: scipy
    computes in float64 whatever the format (the row's compute_dtype is float64). Its gtol (on
    ||g||_inf) is TOLERANCE_IN_U * u_64 * 2 ||b||_inf, at most the in-format test's scale at the
    solution (||H|| ||theta*|| >= ||b||). scipy's Wolfe line search compares values of f, which
    stop resolving progress long before that (status 2, "precision loss"): such a row is
    ``no_convergence`` with the accuracy it reached."""
    from scipy.optimize import minimize

    H, b = (part.astype(np.float64) for part in split(x))
    gtol = TOLERANCE_IN_U * 2.0**-53 * 2.0 * float(np.abs(b).max())
    result = minimize(
        lambda t: 0.5 * t @ H @ t - b @ t,
        np.zeros(b.size),
        jac=lambda t: H @ t - b,
        method="BFGS",
        options={"gtol": gtol, "maxiter": BFGS_MAX_ITER_PER_N * 20 * b.size},
    )
    return Computed(result.x, iterations=int(result.nit), converged=bool(result.success))


# ---------------------------------------------------------------- the variants


LEARNING_RATES = (0.1, 1.0, 1.9, 2.1)
"""alpha lambda_max of the plain variants: slow, 1, near and past the stability limit 2."""

REMEDY_RATE = 0.1
"""The learning rate at which the remedies are compared with the plain update: small enough
that float16 stagnates (the lost update alpha g < ulp(theta) / 2 sets the floor)."""


class GdRule(NamedTuple):
    """A gradient-descent family as it is built: its update rule ``rule(x, lr)``, default
    learning rates and description."""

    rule: Callable[[np.ndarray, float], Rule]
    rates: tuple[float, ...]
    description: str


def stochastic_gd_rule(x: np.ndarray, lr: float) -> Rule:
    """`stochastic_rule` with its stream seeded by the input and the name the variant had when
    the learning rate was part of it (``gd_stochastic_lr0.1``), so that its rows do not
    change."""
    return stochastic_rule(x, lr, f"gd_stochastic_lr{lr:g}")


GD_RULES: dict[str, GdRule] = {
    "gd": GdRule(plain_rule, LEARNING_RATES, "gradient descent, alpha = lr / lambda_max"),
    "gd_master32": GdRule(
        master32_rule,
        (REMEDY_RATE,),
        "gradient descent, float32 master weights, in-format gradients",
    ),
    "gd_kahan": GdRule(kahan_rule, (REMEDY_RATE,), "gradient descent, Kahan-compensated update"),
    "gd_stochastic": GdRule(
        stochastic_gd_rule,
        (REMEDY_RATE,),
        "gradient descent, update rounded stochastically (seeded by the input)",
    ),
}
"""The gradient-descent families by name: the update rule ``rule(x, lr)`` its variant runs
(`descend`) and its convergence curve replays (`trajectory`), and its default learning rates
(parameter ``lr``: alpha lambda_max)."""


def gd_kernel(x: np.ndarray, *, family: str, lr: float) -> Computed:
    """Gradient descent of ``family`` at learning rate ``lr`` on one input."""
    return descend(x, GD_RULES[family].rule(x, lr))


def _gd_variants() -> dict[str, dict]:
    return {
        name: {
            "kernel": functools.partial(gd_kernel, family=name),
            "accumulator": dot_accumulator,
            "description": gd.description,
            "compute_mode": "stochastic" if name == "gd_stochastic" else "native",
            "grid": {"lr": gd.rates},
        }
        for name, gd in GD_RULES.items()
    }


OPTIMISERS: dict[str, dict] = {
    **_gd_variants(),
    "newton": {
        "kernel": newton,
        "accumulator": dot_accumulator,
        "description": "Newton / iterative refinement with an in-format LU solve",
    },
    "bfgs": {
        "kernel": bfgs,
        "accumulator": dot_accumulator,
        "description": "BFGS in the format, exact line search",
    },
    "scipy_bfgs": {
        "kernel": scipy_bfgs,
        "accumulator": lambda fmt: "float64",
        "library": "scipy",
        "description": "scipy.optimize.minimize BFGS (computes in float64)",
    },
}
"""Keyword arguments of `precision.problems.base.Variant` by variant name."""
