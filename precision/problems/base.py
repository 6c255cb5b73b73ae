"""What a problem is: an exact reference, a condition number, and variants computed in a format.

A problem module defines small functions (the variants, each computing in the dtype of its
input) next to the exact reference they approximate, and bundles them in a `Problem`. Nothing
registers itself on import: `precision.problems.PROBLEMS` lists the problems explicitly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from precision.core.formats import Format


def same_as_format(fmt: Format) -> str:
    """Reductions accumulate in the format itself."""
    return fmt.name


def numpy_sum_accumulator(fmt: Format) -> str:
    """The accumulator of ``np.sum`` over a contiguous 1-D array.

    numpy sums float16 pairwise in a float32 accumulator and rounds once at the end; ml_dtypes'
    bfloat16 reductions accumulate in bfloat16 (../shared/NUMERICS.md).
    """
    return "float32" if fmt.name == "float16" else fmt.name


class Unsupported(Exception):
    """Raised by a variant that cannot compute in the format it was given (a library refuses
    the dtype: ``numpy.linalg`` and float16, torch's CPU linalg and bfloat16). The row's outcome
    is then ``unsupported`` with the reason, never a silent upcast."""


@dataclass(frozen=True)
class Computed:
    """What a variant may return instead of a bare array: its result and what it knows about
    how it got there.

    Attributes
    ----------
    y : numpy.ndarray
        The result, in the dtype the variant computed in.
    iterations : int or None
        Iterations an iterative method ran (None: a direct method).
    converged : bool
        False when an iterative method stopped at its iteration cap without meeting its
        stopping test; the row's outcome is then ``no_convergence`` (unless it overflowed).
    """

    y: np.ndarray
    iterations: int | None = None
    converged: bool = True


@dataclass(frozen=True)
class Variant:
    """One way of computing a problem's output.

    Attributes
    ----------
    name : str
        Short name, unique within the problem (``"naive"``, ``"shifted"``, ``"scipy"``).
    kernel : callable
        Computes from in-format inputs with operations that keep their dtype (unless `library`
        code upcasts, which the row then records). With ``batched=True`` it is a batch
        kernel, as deep-learning code calls kernels: ``kernel(X) -> Y`` with ``X`` of shape
        ``(batch, *input_shape)`` and ``Y`` of shape ``(batch, ...)``, every row computed
        independently of the others (a tested contract: row i of the batched call equals the
        call on row i alone, bit for bit), or a `Computed` whose ``iterations`` and
        ``converged`` are arrays over the batch. With ``batched=False`` it takes one input
        (``kernel(x) -> y``): the runner loops over rows, for methods that cannot be
        vectorised (data-dependent stopping, a library that takes one vector).
    bound : callable or None
        The known first-order bound on the normwise relative error (same units as
        ``rel_error``), NaN where its assumptions fail (e.g. an intermediate underflows);
        None where the literature gives no bound. ``bound(X, fmt) -> (batch,)`` float array
        for a batched variant, ``bound(x, fmt) -> float`` for one input otherwise.
    accumulator : callable
        ``accumulator(fmt) -> str``: the precision its reductions accumulate in. A family
        whose accumulator depends on some of its parameters takes those as keywords,
        ``accumulator(fmt, float32_stats=...)``, and each member binds its values
        (`with_params`).
    library : str
        ``"numpy"`` for code written here, else the library whose routine is called (its
        installed version goes into the row).
    compute_mode : str
        ``"native"``: the operations run as numpy/ml_dtypes (or the library) execute them;
        ``"emulated"``: every operation is rounded to the format (`precision.core.emulate`);
        ``"stochastic"``: emulated with stochastic rounding.
    device : str
        Where the library computed (``"cpu"``, ``"cuda"``).
    grid : mapping of str to tuple of float
        For a *family* of variants (one method, several parameter values): its parameters and
        their default values, e.g. ``{"h": (2**-1, ..., 2**-40)}``. ``kernel(X, **params)``
        and ``bound(X, fmt, **params)`` then take the parameters as keywords, and a study runs
        the cartesian product of the grids (`expand`; a spec may give other values). Empty
        for a variant without parameters.
    params : mapping of str to float
        The parameter values a variant bound from a family runs with (``{"h": 2**-12}``,
        ``{"lr": 0.1}``, ``{"seed": 3}``; `with_params`). Each is a numeric column of the
        table (`precision.core.schema.PARAMETERS`) and ``name`` stays the family's name: a
        parameter is never a suffix in a name.
    batched : bool
        Whether ``kernel`` (and ``bound``) take a batch; see ``kernel``.
    """

    name: str
    kernel: Callable[[np.ndarray], np.ndarray | Computed]
    bound: Callable[[np.ndarray, Format], float | np.ndarray] | None = None
    accumulator: Callable[[Format], str] = same_as_format
    library: str = "numpy"
    description: str = ""
    compute_mode: str = "native"
    device: str = "cpu"
    grid: Mapping[str, tuple[float, ...]] = field(default_factory=dict, hash=False)
    params: Mapping[str, float] = field(default_factory=dict, hash=False)
    batched: bool = False

    def __post_init__(self):
        # Frozen: grid and params are copied (through object.__setattr__, at construction) so
        # that a caller's dict changed later does not change the variant.
        grid = {k: tuple(float(v) for v in values) for k, values in self.grid.items()}
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "params", {k: float(v) for k, v in self.params.items()})
        if any(not values for values in grid.values()):
            raise ValueError(f"variant {self.name}: every parameter of its grid needs a value")

    @property
    def is_family(self) -> bool:
        """Whether the variant still takes parameters (``grid`` not empty): only its bound
        members (`with_params`, `expand`) can run."""
        return bool(self.grid)

    def with_params(self, **params: float) -> Variant:
        """The member of this family that runs with ``params`` (one value per parameter of
        ``grid``; values outside the default grid are allowed): same name, the values in
        ``params``, kernel and bound with the values bound.

        Raises
        ------
        ValueError
            ``params`` does not name exactly the family's parameters.
        """
        if set(params) != set(self.grid):
            raise ValueError(
                f"variant {self.name} takes parameters {sorted(self.grid)}, got {sorted(params)}"
            )
        values = {key: float(params[key]) for key in self.grid}  # the grid's order
        bound = None if self.bound is None else functools.partial(_bound_with, self.bound, values)
        accumulator = self.accumulator
        if keywords := _keywords_of(accumulator, values):
            accumulator = functools.partial(accumulator, **keywords)
        return dataclasses.replace(
            self,
            kernel=functools.partial(self.kernel, **values),
            bound=bound,
            accumulator=accumulator,
            grid={},
            params=values,
        )

    def expand(self, grid: Mapping[str, tuple[float, ...]] | None = None) -> tuple[Variant, ...]:
        """The members a study runs: the cartesian product of the family's parameter values
        (``grid`` replaces the default values of the parameters it names), the first parameter
        varying slowest; ``(self,)`` for a variant without parameters."""
        if not self.grid:
            return (self,)
        values = {key: tuple((grid or {}).get(key, default)) for key, default in self.grid.items()}
        return tuple(
            self.with_params(**dict(zip(values, point, strict=True)))
            for point in itertools.product(*values.values())
        )

    def compute(self, x: np.ndarray) -> np.ndarray | Computed:
        """The result for one input ``x`` (of shape ``input_shape``), flattened: a batched
        kernel is called on a batch of one row. Iterations and convergence of a `Computed`
        come back as scalars."""
        if not self.batched:
            return self.kernel(x)
        result = self.kernel(np.asarray(x)[np.newaxis])
        if isinstance(result, Computed):
            return Computed(
                _only_row(result.y, self.name),
                None if result.iterations is None else int(np.ravel(result.iterations)[0]),
                bool(np.ravel(result.converged)[0]),
            )
        return _only_row(result, self.name)

    def bound_of(self, x: np.ndarray, fmt: Format) -> float:
        """The bound for one input ``x`` (NaN where none applies)."""
        if self.bound is None:
            return float("nan")
        if not self.batched:
            return float(self.bound(x, fmt))
        return float(np.ravel(self.bound(np.asarray(x)[np.newaxis], fmt))[0])


def _keywords_of(function: Callable, params: Mapping[str, float]) -> dict[str, float]:
    """The entries of ``params`` that ``function`` takes as keywords."""
    parameters = inspect.signature(function).parameters
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {k: v for k, v in params.items() if k in parameters and parameters[k].kind in keyword}


def _bound_with(bound: Callable, params: Mapping[str, float], x, fmt: Format):
    """``bound(x, fmt, **params)``: a family's bound for one member (a named function, not a
    lambda, so that bound members stay comparable and picklable)."""
    return bound(x, fmt, **params)


class KernelShapeError(ValueError):
    """A batch kernel returned an array without the batch axis first."""


def _only_row(y, name: str) -> np.ndarray:
    """The only row of a batch kernel's result for a batch of one, flattened."""
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != 1:
        raise KernelShapeError(
            f"kernel {name} returned shape {y.shape} for a batch of 1 input: a batch kernel "
            "returns (batch, ...)"
        )
    return y[0].reshape(-1)


@dataclass(frozen=True)
class Problem:
    """A computational problem with its exact reference and its variants.

    Attributes
    ----------
    name : str
    description : str
    reference : callable
        ``reference(x, ctx=MPMATH) -> (y, cond)``: the exact output (object array of ``ctx``
        numbers) and the relative condition number (one ``ctx`` number) for the input ``x`` as
        the algorithm receives it (a float array; `precision.core.numbers.MPMATH` also takes an
        object array of mpf). Written once against the `precision.core.numbers.NumberSystem`
        interface and evaluated at the caller's working precision (``ctx.workprec``), so the
        same formula runs in mpmath and in Arb balls; decisions (the argmax) are taken from
        the input floats, never by comparing balls. Output and condition number are computed
        together because the condition number reuses the reference's intermediate values.
    magnitude : callable
        ``magnitude(x) -> float``: the input magnitude the heatmaps bin (e.g. max |x_i|).
    magnitude_name : str
        What ``magnitude`` measures, as axes, tables and claims name it (``"max|x|"``,
        ``"||A||_2"``, ``"logit spread"``).
    propose : callable
        ``propose(rng, n=, magnitude=, cond=, size=) -> (size, *shape) float64`` candidates aimed
        at a target magnitude and condition number. A problem that is not ``batched`` may
        return fewer (at least one) where more would only repeat rows: a row's copies are
        equally near the target, so they never change the input the sampler picks.
    estimate : callable
        ``estimate(X) -> (cond, magnitude)``: fast float64 estimates for a batch of candidates,
        used only to pick candidates; rows carry the values measured in high precision.
    variants : mapping of name to Variant
    input_shape : callable
        ``input_shape(n) -> tuple``: the shape of one input of size n.
    extras : callable
        ``extras(x) -> dict``: further per-input columns (float64), e.g. ``x_max``.
    from_logits : callable or None
        Maps one row of a logit data set (e.g. MNIST pre-softmax activations) to an input of
        this problem; None when the problem does not take logits.
    takes_sizes : bool
        False for problems whose inputs have a fixed size (the study's sizes do not apply).
    batched : bool
        Whether ``propose``, ``magnitude`` and ``extras`` work on batches: ``propose`` then
        takes one target per candidate (``magnitude`` and ``cond`` as arrays of shape
        ``(size,)``, or floats), and ``magnitude(X)`` / ``extras(X)`` take ``(batch,
        *input_shape)`` inputs and return a ``(batch,)`` array / a dict of them. Otherwise
        the runner calls them one input (one target) at a time.
    backward_error : callable or None
        ``backward_error(x, y) -> float``: the normwise backward error of a computed result
        ``y`` for input ``x`` (e.g. Rigal-Gaches for a linear system), evaluated accurately
        (not in the result's format); None for problems without one.
    check_input : callable or None
        ``check_input(x)`` raises ValueError with a one-line reason when a user's input ``x``
        (of the rank ``input_shape`` gives) is not one of this problem (e.g. `square_matrix`),
        before its shape is compared with ``input_shape``; None: the shape check alone.
    reference_params : tuple of str
        Variant parameters the exact result depends on (Adam's ``eps``): every variant is a
        family declaring them, the reference takes them as keywords, and a row's ground truth
        is that of the problem bound to its variant's values (`for_variant`). Empty for most
        problems, whose truth depends on the input alone.
    params : mapping of str to float
        The values of ``reference_params`` a bound problem evaluates its reference with
        (`with_params`; `evaluate_reference` passes them); empty until bound.
    reference_reads_format : bool
        The exact result depends on the format of the input array, not only on its values
        (batchnorm_finfo_eps: eps = finfo(format).eps). Its ground truth is then never shared
        between formats whose rounded inputs happen to be equal (`precision.run.truths`).
    """

    name: str
    description: str
    reference: Callable[..., tuple[np.ndarray, object]]
    magnitude: Callable[[np.ndarray], float]
    propose: Callable[..., np.ndarray]
    estimate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    variants: Mapping[str, Variant]
    input_shape: Callable[[int], tuple[int, ...]] = lambda n: (n,)
    extras: Callable[[np.ndarray], dict[str, float]] = field(default=lambda x: {})
    from_logits: Callable[[np.ndarray], np.ndarray] | None = None
    takes_sizes: bool = True
    check_input: Callable[[np.ndarray], None] | None = None
    backward_error: Callable[[np.ndarray, np.ndarray], float] | None = None
    batched: bool = False
    magnitude_name: str = "max|x|"
    reference_params: tuple[str, ...] = ()
    params: Mapping[str, float] = field(default_factory=dict, hash=False)
    reference_reads_format: bool = False

    def with_params(self, **params: float) -> Problem:
        """The problem whose reference runs with ``params`` (exactly its `reference_params`).

        Raises
        ------
        ValueError
            ``params`` does not name exactly the reference's parameters.
        """
        if set(params) != set(self.reference_params):
            raise ValueError(
                f"problem {self.name}: its reference takes parameters "
                f"{sorted(self.reference_params)}, got {sorted(params)}"
            )
        values = {key: float(params[key]) for key in self.reference_params}
        return dataclasses.replace(self, params=values)

    def for_variant(self, variant: Variant) -> Problem:
        """The problem a row of ``variant`` (a bound member) is measured against: bound to the
        member's values of `reference_params`; the problem itself when it has none."""
        if not self.reference_params:
            return self
        missing = [k for k in self.reference_params if k not in variant.params]
        if missing:
            raise ValueError(
                f"variant {variant.name} of {self.name} does not bind {missing}, which the "
                "exact result depends on"
            )
        return self.with_params(**{k: variant.params[k] for k in self.reference_params})

    def evaluate_reference(self, x: np.ndarray, ctx) -> tuple[np.ndarray, object]:
        """``reference(x, ctx, **params)``: the exact output and condition number at ``ctx``'s
        working precision, with the bound parameter values."""
        if self.reference_params and not self.params:
            raise ValueError(
                f"problem {self.name}: bind {list(self.reference_params)} (with_params) before "
                "evaluating its reference"
            )
        return self.reference(x, ctx, **self.params)


def square_matrix(x: np.ndarray) -> None:
    """`Problem.check_input` for problems of a square matrix: ValueError for any other shape."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"needs a square matrix, got shape {' x '.join(map(str, shape))}")


# Accuracy of numpy's elementary-function kernels, as relative error bounds (one ulp is at most
# 2u relative). numpy's float32 exp and log are SIMD kernels with maximum errors of 2.52 and
# 3.83 ulps (numpy PR #13134, measured against glibc's float64); float64 exp and log are within
# one ulp. float16 and bfloat16 are evaluated in float32 and rounded once, which adds the float32
# kernel error (relative 2**-24 units) to one rounding u. The textbook bounds assume u.
KERNEL_ULPS_FLOAT32 = {"exp": 2.52, "log": 3.83}


def kernel_error(function: str, fmt: Format) -> float:
    """Relative error bound of numpy's ``function`` ("exp" or "log", log1p included) in ``fmt``."""
    float32_error = KERNEL_ULPS_FLOAT32[function] * 2.0**-23
    if fmt.name == "float32":
        return float32_error
    if fmt.name == "float64":
        return 2.0 * fmt.u
    return fmt.u + float32_error


MeasureOne = Callable[[Problem, str, np.ndarray, str], dict]
"""How a worked example measures one variant on one input in one format, as a study does:
``measure(problem, variant, x, format_name) -> {"rel_error", "outcome", "cond", "certified"}``
with ``x`` already in the format's dtype. The runner passes its own
(`precision.run.study.measure_one`): ground truth and measurement sit above the problems."""
