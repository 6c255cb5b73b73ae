"""The tutorial's numerical claims, each checked against a measurement.

`CLAIMS` lists every claim in the order of the report. Claims about a study read that study's stored
rows (``errors.parquet``, passed in as tables by problem name: `precision.report.claims.softmax`,
`precision.report.claims.accumulation`, `precision.report.claims.conditioning`); micro-claims that
no study table holds (``(0.1 + 0.2) + 0.3``, ``1.0 - 0.9999999999999999``, the exp thresholds,
softmax of [1000, 1000, 1000]) read the tables `precision.report.claims.micro.measure` returned,
which ``precision report`` measures before building the report and hands in (``micro``). Each
returns a `Finding` (`precision.report.claims.base`): a verdict, the measured values in words, and
the evidence table the words were formatted from, which the store writes beside the report so that
every number can be traced. Nothing here prints, writes or measures.
"""

from __future__ import annotations

import pandas as pd

from precision.report.claims import (
    accumulation,
    activations,
    adam,
    attention,
    calculus,
    conditioning,
    gemm,
    loss_scaling,
    micro,
    norms,
    quantisation,
    softmax,
)
from precision.report.claims.base import (
    BATCHNORMS,
    CRITICAL_POINTS,
    FAILS,
    HOLDS,
    NOT_MEASURED,
    QUADRATICS,
    QUALIFIED,
    SOFTMAX_FAMILY,
    Claim,
    Finding,
    Tables,
    check,
    number,
)
from precision.report.claims.conditioning import condition_slopes
from precision.report.claims.micro import (
    associativity,
    constant_feature_batchnorm,
    exp_thresholds,
    one_minus_example,
    softmax_extremes,
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "exp-thresholds",
        "Where exp overflows and underflows",
        "exp(x) overflows to inf once x passes ln(max) of the format (about 11.09 in float16, "
        "88.72 in float32, 709.78 in float64) and underflows to 0 below ln of the smallest "
        "subnormal.",
        None,
        (),
        micro.exp_thresholds_finding,
    ),
    Claim(
        "naive-softmax-extremes",
        "Naive softmax on [1000, 1000, 1000] and [-1000, -1000, -1000]",
        "The naive softmax exp(x) / sum(exp(x)) returns nan on [1000, 1000, 1000] (inf / inf) "
        "and on [-1000, -1000, -1000] (0 / 0); subtracting the maximum first gives [1/3, 1/3, "
        "1/3].",
        None,
        (),
        micro.softmax_extremes_finding,
    ),
    Claim(
        "naive-overflow",
        "The naive forms fail where the exponentials overflow",
        "The naive softmax and log-sum-exp overflow as soon as sum(exp(x)) does, i.e. when "
        "log-sum-exp(x) exceeds ln(max) of the format.",
        "softmax",
        SOFTMAX_FAMILY,
        softmax.naive_overflow_finding,
    ),
    Claim(
        "stable-forms",
        "Shifted softmax, log-sum-exp and log_softmax are stable",
        "Subtracting the maximum (softmax, log-sum-exp with a + log(sum exp(x - a)), "
        "log_softmax as x - a - log(sum exp(x - a))) removes overflow and keeps the error "
        "within the first-order bounds.",
        "softmax",
        SOFTMAX_FAMILY,
        softmax.stable_forms_finding,
    ),
    Claim(
        "cross-entropy-logits",
        "Cross-entropy from logits versus from probabilities",
        "Compute the cross-entropy from the logits (through log_softmax), not as -log of "
        "probabilities: a probability that underflows to 0 makes the loss infinite.",
        "softmax",
        ("cross_entropy",),
        softmax.cross_entropy_finding,
    ),
    Claim(
        "library-kernels",
        "The frameworks' own kernels",
        "Use the framework's fused kernels (PyTorch F.log_softmax and F.cross_entropy, "
        "TensorFlow tf.nn.log_softmax, JAX jax.nn.log_softmax): they are computed stably.",
        "frameworks",
        (*SOFTMAX_FAMILY, "cross_entropy"),
        softmax.library_finding,
    ),
    Claim(
        "one-minus",
        "1.0 - 0.9999999999999999",
        "1.0 - 0.9999999999999999 may print 0.0: catastrophic cancellation.",
        None,
        (),
        micro.one_minus_finding,
    ),
    Claim(
        "cancellation",
        "Catastrophic cancellation",
        "Subtracting nearly equal numbers loses significant digits.",
        "summation",
        ("cancellation",),
        accumulation.cancellation_finding,
    ),
    Claim(
        "associativity",
        "(0.1 + 0.2) + 0.3 versus 0.1 + (0.2 + 0.3)",
        "Floating-point addition is not associative: (0.1 + 0.2) + 0.3 and 0.1 + (0.2 + 0.3) "
        "give different results.",
        None,
        (),
        micro.associativity_finding,
    ),
    Claim(
        "summation-order",
        "How the sum is computed matters",
        "Recursive summation accumulates rounding errors that pairwise and compensated "
        "(Kahan) summation avoid.",
        "summation",
        ("summation",),
        accumulation.summation_finding,
    ),
    Claim(
        "fp8-gemm-accumulator",
        "A 14-bit accumulator gives nearly 2% error at K = 4096",
        "FP8 GEMM on H800 GPUs keeps around 14 bits in its accumulator, which gives a maximum "
        "relative error of nearly 2% at K = 4096 (DeepSeek-V3 technical report, sec. 3.3.2).",
        "dot",
        ("dot",),
        gemm.accumulator_figure_finding,
    ),
    Claim(
        "fp8-gemm-promotion",
        "Promotion to float32 every 128 products",
        "Promoting the limited accumulator's partial sum to a float32 accumulator every "
        "N_C = 128 products removes most of its error (DeepSeek-V3 technical report, sec. "
        "3.3.2).",
        "dot",
        ("dot",),
        gemm.promotion_finding,
    ),
    Claim(
        "float16-adam",
        "Adam's update in float16 with eps = 1e-8",
        "With eps = 1e-8, Adam's update computed in float16 breaks for small gradients: eps "
        "rounds to 0 and the gradient's share of the second moment underflows, leaving 0 / 0 or "
        "m / 0. Keeping the state in float32 and rounding the update to float16 avoids it, and "
        "bfloat16, which keeps eps, does not break (issue 17).",
        "adam",
        ("adam_update",),
        adam.float16_adam_finding,
    ),
    Claim(
        "float16-rmsnorm-overflow",
        "RMSNorm in float16 overflows from |x| = 256",
        "Computed in float16, RMSNorm's sum of squares overflows once one element reaches "
        "|x| = 256 (256^2 > 65504); float32 statistics or pre-scaling by a power of two near "
        "max|x| avoid it.",
        "norms",
        ("rms_norm",),
        norms.float16_rms_overflow_finding,
    ),
    Claim(
        "gelu-approximation",
        "When GELU's approximation, not the format, sets the error",
        "GELU's tanh approximation (about 4.7e-4 from exact GELU on [-10, 10]) is hidden by "
        "bfloat16's rounding but dominates float32's; x sigmoid(1.702 x) (about 2e-2) dominates "
        "in bfloat16, float16 and float32 (Hendrycks & Gimpel 2016; issue 17).",
        "activations",
        ("gelu",),
        activations.gelu_approximation_finding,
    ),
    Claim(
        "attention-float32-statistics",
        "Attention in float16 and bfloat16 needs float32 statistics",
        "With the running maximum, exponentials, normaliser and output accumulator in float32, "
        "attention's float16 or bfloat16 output is within about one rounding error at every "
        "sequence length, whether two-pass, online (Milakov & Gimelshein 2018) or blockwise "
        "(FlashAttention); with them in the format the error grows with the sequence length "
        "(issue 17).",
        "attention",
        ("attention",),
        attention.float32_statistics_finding,
    ),
    Claim(
        "float16-loss-scaling",
        "Loss scaling keeps float16's small gradients",
        "Without a loss scale, float16 loses every weight gradient whose upstream gradients lie "
        "below half its smallest subnormal (2^-25); GradScaler's dynamic scale recovers them, a "
        "static 2^24 overflows once max|dy| reaches 65520 / 2^24, and bfloat16 needs no scale "
        "(Micikevicius et al. 2018; issue 17).",
        "loss_scaling",
        ("loss_scaling",),
        loss_scaling.float16_loss_scaling_finding,
    ),
    Claim(
        "mx-round-up",
        "The round-up MX scale rule",
        "Under the OCP MX v1.0 scale rule a block's largest value can saturate; choosing the "
        "scale so that it cannot (Mishra et al., 2025) does not lose accuracy.",
        "block_formats",
        ("softmax", "logsumexp", "dot"),
        quantisation.round_up_finding,
    ),
    Claim(
        "quantisation-dominates",
        "Quantisation, not arithmetic, sets the error",
        "With inputs quantised to 8, 6 or 4 bits, the error of the quantised input exceeds the "
        "error the kernel then adds in bfloat16 or float32.",
        "block_formats",
        ("softmax", "logsumexp", "dot"),
        quantisation.dominates_finding,
    ),
    Claim(
        "variance-textbook",
        "The one-pass variance formula",
        "The one-pass formula E[x^2] - E[x]^2 can lose all accuracy when the mean is large "
        "compared with the spread; two-pass and Welford's algorithm do not.",
        "variance",
        ("variance",),
        accumulation.variance_finding,
    ),
    Claim(
        "batchnorm-eps",
        "Batch normalisation's eps",
        "Batch normalisation divides by sqrt(var + eps); eps (e.g. 1e-5) prevents a division "
        "by zero when a feature's variance is zero.",
        "variance",
        BATCHNORMS,
        accumulation.batchnorm_finding,
    ),
    Claim(
        "normal-equations",
        "Normal equations versus QR versus lstsq on ill-conditioned X",
        "The normal equations X^T X beta = X^T y square the condition number (error growing "
        "like kappa^2 u); QR and lstsq (SVD) keep it at kappa u.",
        "least_squares",
        ("least_squares",),
        conditioning.slope_finding(
            ("least_squares",),
            {"normal": (1.5, 2.5), "qr": (0.5, 1.5), "lstsq": (0.5, 1.5), "svd": (0.5, 1.5)},
        ),
    ),
    Claim(
        "conditioning",
        "The condition number bounds the attainable accuracy",
        "A well-conditioned problem solved by a backward-stable method has a forward error of "
        "about kappa u: each factor of ten in the condition number costs a digit.",
        "linear_systems",
        ("linear_system",),
        conditioning.slope_finding(
            ("linear_system",), {"solve": (0.5, 1.5), "lu": (0.5, 1.5), "qr": (0.5, 1.5)}
        ),
    ),
    Claim(
        "finite-difference-step",
        "The step of a finite difference",
        "A forward difference is most accurate for a step near sqrt(u) (2 sqrt(u) for exp), a "
        "central difference near u^(1/3): smaller steps lose to rounding, larger ones to "
        "truncation.",
        "derivatives",
        calculus.FINITE_DIFFERENCES,
        calculus.step_finding,
    ),
    Claim(
        "learning-rate",
        "The learning rate and the conditioning of gradient descent",
        "Gradient descent converges only for a learning rate below 2 / lambda_max, and the "
        "number of iterations it needs grows with the condition number kappa(H).",
        "descent",
        QUADRATICS,
        conditioning.descent_finding,
    ),
    Claim(
        "newton",
        "Newton's method",
        "Newton's method converges in a few iterations whatever the conditioning, where "
        "gradient descent needs a number growing with kappa.",
        "optimisation",
        QUADRATICS,
        conditioning.newton_finding,
    ),
    Claim(
        "saddle-points",
        "Classifying critical points",
        "The signs of the Hessian's eigenvalues classify a critical point as a minimum, a "
        "maximum or a saddle point (reliably while the smallest |eigenvalue| / ||H|| is well "
        "above u).",
        "optimisation",
        CRITICAL_POINTS,
        conditioning.critical_finding,
    ),
)
"""Every claim, in the order of the report."""


def tables_for(claim: Claim, studies: dict[str, Tables]) -> Tables:
    """The tables a claim reads: those of its own study where it was run, else the first
    study holding each problem (a problem may appear in several studies)."""
    if claim.study in studies:
        return studies[claim.study]
    merged: Tables = {}
    for tables in studies.values():
        for problem, rows in tables.items():
            merged.setdefault(problem, rows)
    return merged


def measure_claims(
    studies: dict[str, Tables], micro: Tables | None = None
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Check every claim against the stored tables and the handed-in micro measurements.

    Parameters
    ----------
    studies : dict
        Study name -> (problem name -> that study's rows of the problem).
    micro : dict, optional
        `precision.report.claims.micro.measure`'s tables; without them the claims that need them
        are ``not measured``. Nothing here measures.

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per claim (id, title, statement, the study that measures it, the problems
        read and the studies they were read from, verdict, measured values in words) and
        each claim's evidence table by claim id.
    """
    rows, evidence = [], {}
    for claim in CLAIMS:
        tables = tables_for(claim, studies)
        finding = check(claim, {**tables, **(micro or {})})
        read = claim.problems(tables) if claim.keywords else []
        sources = [
            name for name, held in studies.items() if any(held.get(p) is tables[p] for p in read)
        ]
        rows.append(
            {
                "id": claim.id,
                "title": claim.title,
                "statement": claim.statement,
                "study": claim.study or "",
                "problems": ", ".join(read),
                "read_from": ", ".join(sources),
                "verdict": finding.verdict,
                "measured": finding.measured,
            }
        )
        evidence[claim.id] = finding.evidence
    return pd.DataFrame(rows), evidence


__all__ = [
    "BATCHNORMS",
    "CLAIMS",
    "CRITICAL_POINTS",
    "FAILS",
    "HOLDS",
    "NOT_MEASURED",
    "QUADRATICS",
    "QUALIFIED",
    "SOFTMAX_FAMILY",
    "Claim",
    "Finding",
    "Tables",
    "associativity",
    "check",
    "condition_slopes",
    "constant_feature_batchnorm",
    "exp_thresholds",
    "measure_claims",
    "number",
    "one_minus_example",
    "softmax_extremes",
    "tables_for",
]
