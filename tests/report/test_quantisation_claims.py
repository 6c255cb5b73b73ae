"""The quantised-input claims on hand-made rows: the verdicts follow quant_error and rel_error,
and flip when the stored values do."""

from __future__ import annotations

import itertools

import pandas as pd

from precision.report.claims import CLAIMS, quantisation
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, check


def rows(quant_of, kernel_error=1e-6) -> dict[str, pd.DataFrame]:
    """softmax rows for two MX schemes under both rules and NVFP4, in bfloat16 and float32,
    plus plain rows; ``quant_of(scheme, rule)`` is the largest quantisation error (the other
    inputs get half)."""
    out = []
    members = [("mxfp8_e4m3", 32, r) for r in ("ocp", "round_up")]
    members += [("mxfp4_e2m1", 32, r) for r in ("ocp", "round_up")] + [("nvfp4", 16, None)]
    for (scheme, block, rule), fmt, k in itertools.product(
        members, ("bfloat16", "float32"), range(3)
    ):
        largest = quant_of(scheme, rule)
        out.append(
            {"problem": "softmax", "variant": "shifted", "format": fmt, "quantised": scheme,
             "block_size": float(block), "scale_rule": rule,
             "quant_error": largest if k == 0 else largest / 2, "rel_error": kernel_error,
             "outcome": "ok", "certified": True}
        )  # fmt: skip
    for fmt in ("bfloat16", "float32"):
        out.append(
            {"problem": "softmax", "variant": "shifted", "format": fmt, "quantised": None,
             "block_size": float("nan"), "scale_rule": None, "quant_error": 1e-3,
             "rel_error": kernel_error, "outcome": "ok", "certified": True}
        )  # fmt: skip
    return {"softmax": pd.DataFrame(out)}


def saturating(scheme, rule):
    return {"ocp": 0.12, "round_up": 0.06, None: 0.09}[rule]


def test_round_up_holds_when_its_largest_error_is_no_larger():
    finding = quantisation.round_up_finding(rows(saturating))
    assert finding.verdict == HOLDS
    assert "mxfp8_e4m3: ocp 0.12, round_up 0.06" in finding.measured
    assert set(finding.evidence["quantised"]) == {"mxfp8_e4m3", "mxfp4_e2m1"}  # NVFP4: no rule

    def worse(scheme, rule):
        return 0.2 if (scheme, rule) == ("mxfp4_e2m1", "round_up") else saturating(scheme, rule)

    finding = quantisation.round_up_finding(rows(worse))
    assert finding.verdict != HOLDS and "mxfp4_e2m1" in finding.measured.split("Criterion")[0]


def test_quantisation_dominates_until_the_kernel_error_is_larger():
    assert quantisation.dominates_finding(rows(saturating)).verdict == HOLDS
    assert quantisation.dominates_finding(rows(saturating, kernel_error=0.5)).verdict == FAILS


def test_failed_and_plain_rows_count_for_nothing():
    tables = rows(saturating)
    softmax = tables["softmax"]
    softmax.loc[softmax["quantised"].isna(), "quant_error"] = 10.0  # plain rows: ignored
    assert quantisation.round_up_finding(tables).verdict == HOLDS
    softmax["outcome"] = "nan"
    assert quantisation.dominates_finding(tables).verdict == NOT_MEASURED


def test_without_the_study_the_claims_are_not_measured():
    claims = {c.id: c for c in CLAIMS}
    for claim_id in ("mx-round-up", "quantisation-dominates"):
        assert check(claims[claim_id], {}).verdict == NOT_MEASURED
