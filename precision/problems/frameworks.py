"""Deep-learning library kernels as variants of the existing problems: PyTorch, JAX, TensorFlow.

A practitioner calls ``torch.softmax`` or ``tf.nn.log_softmax``, not the textbook formula; these
variants put the library kernels next to the textbook variants of the same problem, on the same
inputs and the same ground truth. Nothing here copies a problem: each kernel is a small
function ``(x: numpy array of the format) -> numpy array`` that converts the input to the
library's tensor *exactly* (bit for bit), calls the library routine, and converts the result
back exactly, keeping the dtype the library returned (so the row's ``compute_dtype`` is what
the library really computed in).

- The softmax family's kernels (softmax, logsumexp, log_softmax, cross-entropy) are batch
  kernels (`BATCHED`): the library routine is called once on the whole batch along the last axis
  (``dim=-1``, ``axis=-1``), as a training step calls it. torch's rows come out as they do alone,
  bit for bit; JAX's and TensorFlow's float32 and float64 rows can differ from their one-row calls
  in the last bits, because the library reduces a batch in another order (measured:
  tests/problems/test_frameworks.py, ``BATCH_DEPENDENT``), and the rows measure the batch as the
  library computed it. torch's cross-entropy is taken per row (``reduction="none"``): a loss that is
  exactly 0 comes out as -0 (the mean over one row gave +0). The other problems' kernels (linear
  algebra) take one input at a time.

- A library is used only where it is installed (``importlib.util.find_spec``, no import) and is
  imported on the first call, so ``import precision`` stays fast. A spec naming a variant of a
  library that is not installed fails with a one-line error naming the extra to install
  (`unavailable_variant`).
- torch also solves the linear-algebra problems (``torch.linalg.solve`` for
  ``linear_system``, ``torch.linalg.lstsq`` for ``least_squares``), in float32 and float64 only.
- A dtype a library refuses (torch's CPU float8 softmax, TensorFlow's float8 kernels) raises
  `precision.problems.base.Unsupported`: the row's outcome is ``unsupported``, never a crash and
  never a silent upcast.
- JAX runs with 64-bit types enabled for the call only (``jax.enable_x64``, a scoped context
  manager): without it JAX silently computes float64 input in float32.
- Every library is pinned to the CPU (the row's ``device``); ``torch_cuda`` runs on the first
  CUDA device and raises `Unsupported` where there is none.
- The accumulator column records what each library documents for its reductions: PyTorch's
  CPU kernels accumulate float16/bfloat16 in float32 (``at::opmath_type``); JAX's reductions
  upcast float16/bfloat16 to float32 (``jax.numpy`` reductions' ``upcast_f16_for_computation``)
  but not float8; TensorFlow's Eigen reductions of half and bfloat16 accumulate in float32.
  tests/problems/test_frameworks.py checks each claim with a probe (a softmax of many equal logits,
  which a format accumulator visibly gets wrong).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from precision.core.formats import Format
from precision.problems import attention, cross_entropy, log_softmax, logsumexp, norms, softmax
from precision.problems.base import Unsupported, Variant

# ---------------------------------------------------------------- the libraries


@dataclass(frozen=True)
class Library:
    """An optional library: its import name, its distributions and the extra that installs it."""

    name: str
    module: str
    distributions: tuple[str, ...]
    extra: str
    label: str

    def installed(self) -> bool:
        """Whether the library can be imported (found on the path; nothing is imported)."""
        return importlib.util.find_spec(self.module) is not None

    @property
    def distribution(self) -> str:
        """The installed distribution's name (its version goes into the rows):
        TensorFlow's CPU build is the distribution ``tensorflow-cpu``."""
        from importlib import metadata

        for name in self.distributions:
            try:
                metadata.version(name)
                return name
            except metadata.PackageNotFoundError:
                continue
        return self.distributions[0]


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library("torch", "torch", ("torch",), "torch", "PyTorch"),
        Library("jax", "jax", ("jax",), "jax", "JAX"),
        Library("tensorflow", "tensorflow", ("tensorflow", "tensorflow-cpu"), "tensorflow", "TF"),
    )
}


@functools.cache
def _module(name: str):
    """Import a library on first use (TensorFlow's C++ start-up log is kept to warnings)."""
    if name != "tensorflow":
        return importlib.import_module(name)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow 2.21 writes its oneDNN notice to fd 2 before absl logging is initialised,
    # ignoring TF_CPP_MIN_LOG_LEVEL; only the CLI prints, so the import runs with fd 2 on
    # /dev/null (an import error is still raised, as an exception).
    with _silenced_stderr_fd():
        return importlib.import_module(name)


@contextlib.contextmanager
def _silenced_stderr_fd():
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ---------------------------------------------------------------- PyTorch

_TORCH_VIEWS = {
    np.dtype(ml_dtypes.bfloat16): ("int16", "bfloat16"),
    np.dtype(ml_dtypes.float8_e4m3fn): ("uint8", "float8_e4m3fn"),
    np.dtype(ml_dtypes.float8_e5m2): ("uint8", "float8_e5m2"),
}


def to_torch(x: np.ndarray, device: str = "cpu"):
    """The numpy array as a torch tensor with the same bits: ml_dtypes' bfloat16 and float8
    are reinterpreted through an integer view (torch.from_numpy does not know them)."""
    torch = _module("torch")
    x = np.ascontiguousarray(x)
    if x.dtype in _TORCH_VIEWS:
        integer, torch_dtype = _TORCH_VIEWS[x.dtype]
        tensor = torch.from_numpy(x.view(integer)).view(getattr(torch, torch_dtype))
    else:
        tensor = torch.from_numpy(x)
    return tensor.to(device)


def from_torch(tensor) -> np.ndarray:
    """A torch tensor as a numpy array of the same dtype and bits (bfloat16 and float8 through
    an integer view: exact, unlike a detour through float32 and a second rounding)."""
    torch = _module("torch")
    tensor = tensor.detach().cpu().reshape(-1) if tensor.dim() == 0 else tensor.detach().cpu()
    for numpy_dtype, (integer, torch_dtype) in _TORCH_VIEWS.items():
        if tensor.dtype == getattr(torch, torch_dtype):
            return tensor.view(getattr(torch, integer)).numpy().view(numpy_dtype)
    return tensor.numpy()


def _torch_call(
    routine: str, call: Callable, x: np.ndarray, device: str, **params: float
) -> np.ndarray:
    """Run ``call`` on torch tensors of ``x`` (with a family's ``params``, `GRIDS`); a dtype or
    device torch refuses is Unsupported."""
    torch = _module("torch")
    if device == "cuda" and not torch.cuda.is_available():
        raise Unsupported(f"{routine}: no CUDA device")
    try:
        return from_torch(call(torch, to_torch(x, device), **params))
    except (NotImplementedError, RuntimeError, TypeError) as error:
        text = _first_line(error)
        refusals = ("not implemented for", "supported", "handle types other than")
        if any(refusal in text.lower() for refusal in refusals):
            raise Unsupported(f"{routine}: {text}") from None
        raise


def _cross_entropy_torch(torch, xt):
    """F.cross_entropy of one input ``(2, n)`` or a batch ``(batch, 2, n)``, one loss per row
    (``reduction="none"``, shape ``(..., 1)``): with the class index of a one-hot target (how
    it is called in training), else with the probabilities (soft targets, torch >= 1.10).
    Rows of both kinds in one batch are computed in two calls and put back in place."""
    x, t = xt[..., 0, :], xt[..., 1, :]
    shape = (*x.shape[:-1], 1)
    x, t = x.reshape(-1, x.shape[-1]), t.reshape(-1, t.shape[-1])
    one_hot = ((t == 0) | (t == 1)).all(dim=-1) & ((t == 1).sum(dim=-1) == 1)
    cross_entropy = torch.nn.functional.cross_entropy

    def loss(rows):
        if bool(one_hot[rows].all()):
            # argmax of the exact float32 copy: torch has no argmax for float8 (its
            # log_softmax then refuses the logits, which is the outcome to record).
            target = torch.argmax(t[rows].float(), dim=-1)
            return cross_entropy(x[rows], target, reduction="none")
        return cross_entropy(x[rows], t[rows], reduction="none")

    if bool(one_hot.all()) or not bool(one_hot.any()):
        return loss(slice(None)).reshape(shape)
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    out[one_hot] = loss(one_hot)
    out[~one_hot] = loss(~one_hot)
    return out.reshape(shape)


def _lstsq_torch(torch, xy):
    """torch.linalg.lstsq of the packed [X | y] (LAPACK gelsy on the CPU)."""
    return torch.linalg.lstsq(xy[:, :-1], xy[:, -1:]).solution[:, 0]


TORCH_KERNELS: dict[str, tuple[str, Callable]] = {
    "softmax": ("torch.softmax", lambda torch, t: torch.softmax(t, dim=-1)),
    "logsumexp": (
        "torch.logsumexp",
        lambda torch, t: torch.logsumexp(t, dim=-1, keepdim=True),
    ),
    "log_softmax": (
        "torch.nn.functional.log_softmax",
        lambda torch, t: torch.nn.functional.log_softmax(t, dim=-1),
    ),
    "cross_entropy": ("torch.nn.functional.cross_entropy", _cross_entropy_torch),
    "summation": ("torch.sum", lambda torch, t: torch.sum(t, dim=-1, keepdim=True)),
    "variance": (
        "torch.var",
        lambda torch, t: torch.var(t, dim=-1, correction=0, keepdim=True),
    ),
    # Packed inputs [A | b] and [X | y] (precision.problems.linear_systems, least_squares).
    "linear_system": (
        "torch.linalg.solve",
        lambda torch, t: torch.linalg.solve(t[:, :-1], t[:, -1]),
    ),
    "least_squares": ("torch.linalg.lstsq", lambda torch, t: _lstsq_torch(torch, t)),
    "least_squares_residual": ("torch.linalg.lstsq", lambda torch, t: _lstsq_torch(torch, t)),
    **norms.TORCH_KERNELS,  # layer_norm, rms_norm
    **attention.TORCH_KERNELS,  # scaled_dot_product_attention, math backend
    # Elementwise activations (precision.problems.activations): GELU, exact (erf) or the tanh
    # approximation (`GRIDS`), and SiLU.
    "gelu": (
        "torch.nn.functional.gelu",
        lambda torch, t, approximate: torch.nn.functional.gelu(
            t, approximate="tanh" if approximate else "none"
        ),
    ),
    "silu": ("torch.nn.functional.silu", lambda torch, t: torch.nn.functional.silu(t)),
}


# ---------------------------------------------------------------- JAX


def _jax_call(routine: str, call: Callable, x: np.ndarray, **params: float) -> np.ndarray:
    """Run ``call`` on a JAX array of ``x`` on the CPU, with 64-bit types enabled for this call
    only (else float64 input silently becomes float32)."""
    jax = _module("jax")
    with jax.enable_x64(True):
        array = jax.device_put(np.ascontiguousarray(x), jax.devices("cpu")[0])
        if array.dtype != x.dtype:  # never measure a silent conversion
            raise Unsupported(f"{routine}: JAX stored {x.dtype} input as {array.dtype}")
        try:
            return np.atleast_1d(np.asarray(call(jax, array, **params)))
        except (TypeError, NotImplementedError) as error:
            raise Unsupported(f"{routine}: {_first_line(error)}") from None


JAX_KERNELS: dict[str, tuple[str, Callable]] = {
    "softmax": ("jax.nn.softmax", lambda jax, a: jax.nn.softmax(a, axis=-1)),
    "logsumexp": (
        "jax.nn.logsumexp",
        lambda jax, a: jax.nn.logsumexp(a, axis=-1, keepdims=True),
    ),
    "log_softmax": ("jax.nn.log_softmax", lambda jax, a: jax.nn.log_softmax(a, axis=-1)),
    "summation": ("jax.numpy.sum", lambda jax, a: jax.numpy.sum(a, axis=-1, keepdims=True)),
    "variance": ("jax.numpy.var", lambda jax, a: jax.numpy.var(a, axis=-1, keepdims=True)),
    **attention.JAX_KERNELS,  # dot_product_attention
    "gelu": (
        "jax.nn.gelu",
        lambda jax, a, approximate: jax.nn.gelu(a, approximate=bool(approximate)),
    ),
    "silu": ("jax.nn.silu", lambda jax, a: jax.nn.silu(a)),
}


# ---------------------------------------------------------------- TensorFlow


def _tf_call(routine: str, call: Callable, x: np.ndarray, **params: float) -> np.ndarray:
    """Run ``call`` on a TensorFlow constant of ``x`` on the CPU; a dtype TensorFlow refuses
    (float8 softmax) is Unsupported."""
    tf = _module("tensorflow")
    try:
        with tf.device("/CPU:0"):
            result = call(tf, tf.constant(np.ascontiguousarray(x)), **params)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, TypeError) as error:
        raise Unsupported(f"{routine}: {_first_line(error)}") from None
    return np.atleast_1d(np.asarray(result.numpy()))


TF_KERNELS: dict[str, tuple[str, Callable]] = {
    "softmax": ("tf.nn.softmax", lambda tf, a: tf.nn.softmax(a, axis=-1)),
    "logsumexp": (
        "tf.math.reduce_logsumexp",
        lambda tf, a: tf.math.reduce_logsumexp(a, axis=-1, keepdims=True),
    ),
    "log_softmax": ("tf.nn.log_softmax", lambda tf, a: tf.nn.log_softmax(a, axis=-1)),
    "cross_entropy": (
        "tf.nn.softmax_cross_entropy_with_logits",
        lambda tf, a: tf.nn.softmax_cross_entropy_with_logits(
            labels=a[..., 1, :], logits=a[..., 0, :]
        )[..., tf.newaxis],
    ),
    "summation": (
        "tf.math.reduce_sum",
        lambda tf, a: tf.math.reduce_sum(a, axis=-1, keepdims=True),
    ),
    "variance": (
        "tf.math.reduce_variance",
        lambda tf, a: tf.math.reduce_variance(a, axis=-1, keepdims=True),
    ),
    "gelu": (
        "tf.nn.gelu",
        lambda tf, a, approximate: tf.nn.gelu(a, approximate=bool(approximate)),
    ),
    "silu": ("tf.nn.silu", lambda tf, a: tf.nn.silu(a)),
}


# ---------------------------------------------------------------- bounds and accumulators

BATCHED = frozenset(
    {
        "softmax",
        "logsumexp",
        "log_softmax",
        "cross_entropy",
        "summation",
        "variance",
        "layer_norm",
        "rms_norm",
        "attention",
        "gelu",
        "silu",
    }
)
"""Problems whose library kernels take a batch along the last axis (`Variant.batched`); their
bounds (`BOUNDS`) take a batch too."""

# The textbook bound of the algorithm each kernel implements: all three libraries compute the
# softmax family in the shifted form (x - max x). It assumes numpy's exp/log kernel accuracy
# (`base.kernel_error`); a library kernel less accurate than that shows as a bound violation
# in the study, which is a finding about the library, reported as such. Each takes one input
# (a float) or a batch (a (batch,) array) along the last axis.
BOUNDS: dict[str, Callable[[np.ndarray, Format], float | np.ndarray]] = {
    "softmax": softmax.shifted_bound,
    "logsumexp": logsumexp.shifted_bound,
    "log_softmax": log_softmax.shifted_bound,
    "cross_entropy": cross_entropy.from_logits_bound,
    "attention": functools.partial(attention.two_pass_bound, float32_stats=1),
}


GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "gelu": {"approximate": (0.0, 1.0)},
}
"""Parameters of a problem's library kernels, with their default values (a family per
library, `precision.problems.base.Variant.grid`): GELU's ``approximate`` is 0 for the exact
(erf) GELU and 1 for the tanh approximation each library offers (torch ``approximate="tanh"``,
JAX and TensorFlow ``approximate=True``), the ``approximate`` column of the rows. TensorFlow
2.21's float64 tanh GELU uses the coefficient 0.044715 rounded to float32 (measured and asserted
in tests/problems/test_frameworks.py), so its float64 rows carry that difference too."""


def wide_for_half(fmt: Format) -> str:
    """float32 for float16 and bfloat16 (the library upcasts its reductions), else the format."""
    return "float32" if fmt.name in ("float16", "bfloat16") else fmt.name


# ---------------------------------------------------------------- variants


@dataclass(frozen=True)
class Kernel:
    """One library routine for one problem, before it becomes a `Variant`."""

    variant: str
    library: str
    routine: str
    compute: Callable[[np.ndarray], np.ndarray]
    device: str = "cpu"


def kernels(problem: str) -> list[Kernel]:
    """Every library kernel known for ``problem``, installed or not."""
    out = []
    if problem in TORCH_KERNELS:
        routine, call = TORCH_KERNELS[problem]
        for variant, device in (("torch", "cpu"), ("torch_cuda", "cuda")):
            compute = functools.partial(_torch_call, routine, call, device=device)
            out.append(Kernel(variant, "torch", routine, compute, device))
    if problem in JAX_KERNELS:
        routine, call = JAX_KERNELS[problem]
        out.append(Kernel("jax", "jax", routine, functools.partial(_jax_call, routine, call)))
    if problem in TF_KERNELS:
        routine, call = TF_KERNELS[problem]
        compute = functools.partial(_tf_call, routine, call)
        out.append(Kernel("tensorflow", "tensorflow", routine, compute))
    return out


def library_variants(problem: str) -> dict[str, Variant]:
    """The variants of ``problem`` whose library is installed (none imported yet)."""
    out = {}
    for kernel in kernels(problem):
        library = LIBRARIES[kernel.library]
        if not library.installed():
            continue
        out[kernel.variant] = Variant(
            kernel.variant,
            kernel.compute,
            BOUNDS.get(problem),
            wide_for_half,
            library.distribution,
            description=f"{kernel.routine} ({library.label}, {kernel.device})",
            device=kernel.device,
            grid=GRIDS.get(problem, {}),
            batched=problem in BATCHED,
        )
    return out


def unavailable_variant(problem: str, variant: str) -> str | None:
    """Why a library variant of ``problem`` cannot run here, in one line; None when it can
    (or when ``variant`` is no library variant)."""
    for kernel in kernels(problem):
        if kernel.variant != variant:
            continue
        library = LIBRARIES[kernel.library]
        if not library.installed():
            return (
                f"variant {variant!r} calls {kernel.routine}, but {library.label} is not "
                f"installed: pip install -e '.[{library.extra}]'"
            )
        if kernel.device == "cuda" and not _module("torch").cuda.is_available():
            return f"variant {variant!r} needs a CUDA device; torch finds none here"
    return None
