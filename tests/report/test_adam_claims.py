"""The float16 Adam claim on hand-made rows of the adam study: the verdict follows the stored
outcomes, and changes when they do."""

from __future__ import annotations

import itertools

import pandas as pd

from precision.report.claims import adam
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, QUALIFIED

MAGNITUDES = (-6, -4, -3, -1, 0)  # cell_log10_magnitude: the first three are small gradients


def adam_rows(outcome_of, *, inputs=4) -> pd.DataFrame:
    """Rows of an adam study; ``outcome_of(variant, fmt, magnitude, k)`` gives each outcome."""
    rows = []
    for variant, fmt, magnitude, k in itertools.product(
        ("in_format", "float32_state"), ("float16", "bfloat16"), MAGNITUDES, range(inputs)
    ):
        outcome = outcome_of(variant, fmt, magnitude, k)
        rows.append(
            {
                "problem": "adam_update",
                "variant": variant,
                "format": fmt,
                "cell_log10_magnitude": magnitude,
                "n": 64,
                "cond": 2.0,
                "rel_error": 1e-3 if outcome == "ok" else float("nan"),
                "outcome": outcome,
                "certified": True,
            }
        )
    return pd.DataFrame(rows)


def as_issue_states(variant, fmt, magnitude, k):
    """float16 in the format fails on small gradients (nan), the rest is ok."""
    broken = variant == "in_format" and fmt == "float16" and magnitude < -2
    return "nan" if broken else "ok"


def test_holds_when_only_in_format_float16_fails_on_small_gradients():
    finding = adam.float16_adam_finding({"adam_update": adam_rows(as_issue_states)})
    assert finding.verdict == HOLDS
    assert "in_format float16, small gradients: 100% of 12 rows failed" in finding.measured
    assert set(finding.evidence["case"]) == {
        "in_format float16, small gradients",
        "float32_state float16",
        "in_format bfloat16",
    }


def test_a_share_below_half_breaks_the_first_case():
    def rarely(variant, fmt, magnitude, k):  # 5 of the 12 small-gradient rows fail
        small = (MAGNITUDES.index(magnitude) * 4 + k) if magnitude < -2 else 99
        broken = variant == "in_format" and fmt == "float16" and small < 5
        return "overflow" if broken else "ok"

    finding = adam.float16_adam_finding({"adam_update": adam_rows(rarely)})
    assert finding.verdict == QUALIFIED
    assert finding.measured.startswith("True for: float32_state float16, in_format bfloat16.")

    def six(variant, fmt, magnitude, k):  # 6 of 12: exactly half holds
        return (
            rarely(variant, fmt, magnitude, k)
            if k != 1 or magnitude != -3
            else ("nan" if variant == "in_format" and fmt == "float16" else "ok")
        )

    assert adam.float16_adam_finding({"adam_update": adam_rows(six)}).verdict == HOLDS


def test_one_failed_float32_state_or_bfloat16_row_breaks_its_case():
    for target in (("float32_state", "float16"), ("in_format", "bfloat16")):

        def one_more(variant, fmt, magnitude, k, target=target):
            if (variant, fmt) == target and magnitude == 0 and k == 0:
                return "nan"
            return as_issue_states(variant, fmt, magnitude, k)

        finding = adam.float16_adam_finding({"adam_update": adam_rows(one_more)})
        assert finding.verdict == QUALIFIED
        assert f"{target[0]} {target[1]}: 5% of 20 rows failed" in finding.measured


def test_fails_when_every_case_is_reversed_and_not_measured_without_rows():
    def reversed_(variant, fmt, magnitude, k):  # every case the other way round
        return "ok" if (variant, fmt) == ("in_format", "float16") else "nan"

    assert adam.float16_adam_finding({"adam_update": adam_rows(reversed_)}).verdict == FAILS
    assert adam.float16_adam_finding({}).verdict == NOT_MEASURED


def test_only_the_rows_with_eps_1e8_are_read():
    """The statement is about eps = 1e-8: rows of another eps (a grid of the spec) where
    in-format float16 never fails do not dilute it, and without 1e-8 rows it is not measured."""
    default = adam_rows(as_issue_states).assign(eps=1e-8)
    larger = adam_rows(lambda *args: "ok").assign(eps=1e-4)
    both = pd.concat([default, larger], ignore_index=True)
    assert adam.float16_adam_finding({"adam_update": both}).verdict == HOLDS
    alone = adam.float16_adam_finding({"adam_update": larger})
    assert alone.verdict == NOT_MEASURED and "eps = 1e-8" in alone.measured
