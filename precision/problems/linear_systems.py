"""Linear systems A x = b: the tutorial's inv(A) @ b against LU with partial pivoting.

Input: one float array [A | b] of shape (n, n + 1), rounded to the format as a whole. The
exact output is the solution x of the rounded system; the condition number is
kappa_2(A) = sigma_max / sigma_min of the rounded A, and the magnitude ||A||_2. The normwise
relative forward error of a backward stable solver is about kappa_2(A) u (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., thm 7.2: forward error <= cond * eta for the
Rigal-Gaches backward error eta, and cond <= 2 kappa here since ||b|| <= ||A|| ||x||); each row
also carries eta itself, computed exactly (`precision.problems.linalg.rigal_gaches`).

Variants in the format (`precision.problems.linalg`): ``lu_solve`` and ``inv_matmul`` (the
inverse by LU, then a product with pairwise in-format sums). Library variants, as they are:
``numpy_solve`` and ``numpy_inv`` compute in float64 whatever the input (numpy.linalg does so
for float32 and bfloat16 too, silently) and return the float64 result, so the row's
compute_dtype shows it; float16 is "unsupported" (numpy raises TypeError);
``scipy_solve`` runs whatever scipy does and its rows say so (float16 in, float32 out;
bfloat16 in, float64 out: the row's compute_dtype).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.linalg

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems import linalg
from precision.problems.base import Problem, Unsupported, Variant


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A and b from the packed input [A | b]."""
    return x[:, :-1], x[:, -1]


def linear_system_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """The exact solution of the rounded system at the working precision of ``ctx``, and
    kappa_2(A) = sigma_max / sigma_min to the accuracy a condition number needs
    (`linalg.spectral_condition`); both certified by the engine. A rounded A that is exactly
    singular raises ZeroDivisionError (the engine's UndefinedResult: no unique solution)."""
    rows = linalg.exact_matrix(x, ctx)
    a, b = [r[:-1] for r in rows], [r[-1] for r in rows]
    kappa, _, sigma_min = linalg.spectral_extremes(a, ctx)
    x = ctx.solve(a, b, smallest_singular_value=sigma_min)
    return np.array(x, dtype=object), kappa


def lu_solve(x: np.ndarray) -> np.ndarray:
    """LU with partial pivoting and two triangular solves, in the format."""
    a, b = split(x)
    return linalg.lu_solve(a, b)


def inv_matmul(x: np.ndarray) -> np.ndarray:
    """The tutorial's ``inv(A) @ b``: A^-1 by LU in the format, then the product with
    pairwise in-format sums. Not backward stable: its residual is about kappa times LU's
    (Higham sec. 14.1), its forward error is still about kappa u."""
    a, b = split(x)
    return linalg.matmul(linalg.inverse(a), b)


def in_numpy_linalg_precision(x: np.ndarray) -> np.ndarray:
    """The input as numpy.linalg computes with it: float64.

    numpy.linalg (2.4) computes every real dtype in float64 (``_commonType`` returns double and
    the gufuncs run with signature ``dd->d``), then casts the result back to float32 for a
    float32 input, returns float64 for bfloat16, and raises TypeError for float16. The numpy
    variants therefore upcast explicitly and return the float64 result, so that the row's
    compute_dtype says where the work was done; float16 is refused as numpy refuses it.
    """
    if x.dtype.name == "float16":
        raise Unsupported("numpy.linalg raises TypeError on float16")
    return x.astype(np.float64)


def nan_when_singular(solver):
    """``solver`` returning NaNs (outcome "nan") where numpy or scipy raise ``LinAlgError``
    (an exactly singular matrix after rounding to the format, or an SVD that does not
    converge): the library's failure becomes the row's outcome, not a crash."""

    @functools.wraps(solver)
    def solve(x: np.ndarray) -> np.ndarray:
        try:
            return solver(x)
        except np.linalg.LinAlgError:
            return np.full(x.shape[1] - 1, np.nan)

    return solve


@nan_when_singular
def numpy_solve(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.solve`` (LAPACK dgesv, in float64 for every input dtype)."""
    a, b = split(in_numpy_linalg_precision(x))
    return np.linalg.solve(a, b)


@nan_when_singular
def numpy_inv(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.inv(A) @ b`` as the tutorial writes it (float64 for every input dtype)."""
    a, b = split(in_numpy_linalg_precision(x))
    return np.linalg.inv(a) @ b


@nan_when_singular
def scipy_solve(x: np.ndarray) -> np.ndarray:
    """``scipy.linalg.solve`` as is: it returns float32 for float16 and float64 for bfloat16
    (it computed in that precision); the row's compute_dtype records it."""
    a, b = split(x)
    with warnings.catch_warnings():
        # scipy warns on an ill-conditioned matrix; ill-conditioning is what is measured here.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.solve(a, b)


def scipy_accumulator(fmt: Format) -> str:
    """What scipy.linalg computes in: float16 -> float32, bfloat16 (and float8) -> float64."""
    return {"float16": "float32", "float32": "float32"}.get(fmt.name, "float64")


def magnitude(x: np.ndarray) -> float:
    """||A||_2 of the rounded A (float64)."""
    return linalg.spectral_norm(split(x)[0])


def propose_systems(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Packed [A | b], shape (size, n, n + 1): A randsvd with ||A||_2 = magnitude and
    kappa_2(A) = cond, b = A x for a random unit x (so ||b|| <= ||A||, and the solution has
    norm 1: every intermediate of a stable solver stays near the magnitude)."""
    a = linalg.randsvd(rng, m=n, n=n, cond=np.full(size, cond), norm=np.full(size, magnitude))
    x = linalg.random_unit_vectors(rng, size, n)
    b = np.einsum("sij,sj->si", a, x)
    return np.concatenate([a, b[:, :, None]], axis=2)


def backward_error(x: np.ndarray, y: np.ndarray) -> float:
    """Rigal-Gaches normwise backward error of the computed solution y (exact)."""
    a, b = split(x)
    return linalg.rigal_gaches(a, b, y)


def check_system(x: np.ndarray) -> None:
    """ValueError unless x is a packed system [A | b] of shape (n, n + 1)."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[1] != shape[0] + 1:
        raise ValueError(f"needs [A | b] of shape (n, n + 1), got {' x '.join(map(str, shape))}")


def float64_accumulator(fmt: Format) -> str:
    """numpy.linalg computes in float64 for every input dtype."""
    return "float64"


LINEAR_SYSTEM = Problem(
    name="linear_system",
    description="A x = b: LU with partial pivoting and inv(A) @ b in the format; numpy, scipy",
    reference=linear_system_reference,
    magnitude=magnitude,
    magnitude_name="||A||_2",
    propose=propose_systems,
    estimate=lambda X: linalg.spectral_estimates(X[:, :, :-1]),
    variants={
        "lu_solve": Variant("lu_solve", lu_solve),
        "inv_matmul": Variant("inv_matmul", inv_matmul),
        "numpy_solve": Variant("numpy_solve", numpy_solve, accumulator=float64_accumulator),
        "numpy_inv": Variant("numpy_inv", numpy_inv, accumulator=float64_accumulator),
        "scipy_solve": Variant(
            "scipy_solve", scipy_solve, accumulator=scipy_accumulator, library="scipy"
        ),
    },
    input_shape=lambda n: (n, n + 1),
    check_input=check_system,
    backward_error=backward_error,
)
