"""The one schema: every column has a dtype, every outcome the code can produce is in the
vocabulary, and evaluate, the runner and the summaries read the same definitions."""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from precision.core import metrics, schema
from precision.report import summary
from precision.run import study
from precision.run.evaluate import evaluate

evaluate_module = importlib.import_module(
    "precision.run.evaluate"
)  # precision.run.evaluate: the function


def test_every_column_has_a_dtype_and_a_description():
    assert list(schema.DTYPES) == list(schema.COLUMNS)
    assert all(isinstance(text, str) and text for text in schema.COLUMNS.values())
    assert study.COLUMNS is schema.COLUMNS and study.DTYPES is schema.DTYPES


def test_the_vocabulary_covers_every_outcome():
    assert set(metrics.OUTCOMES) <= set(schema.OUTCOMES)
    assert set(schema.FAILURES) <= set(schema.OUTCOMES)
    assert set(schema.NOTHING_COMPUTED) <= set(schema.FAILURES)
    assert summary.FAILURES is schema.FAILURES
    # The outcome column's description names every outcome a study row can have.
    study_outcomes = set(schema.OUTCOMES) - {"input_nan", "input_inf"}
    assert all(name in schema.COLUMNS["outcome"] for name in study_outcomes)


def test_evaluate_shares_the_study_columns_and_engine():
    for name in evaluate_module.SHARED:
        assert evaluate_module.COLUMNS[name] == schema.COLUMNS[name]
    default = inspect.signature(evaluate).parameters["engine"].default
    assert default == schema.DEFAULT_ENGINE
    table = evaluate("logsumexp", np.array([1.0, 2.0, 3.0]), formats=["float32"])
    assert set(table["outcome"]) <= set(schema.OUTCOMES)
    by_engine = evaluate("logsumexp", [1.0, 2.0, 3.0], formats=["float32"], engine="mpmath")
    assert list(by_engine["rel_error"]) == list(table["rel_error"])  # certified: the same
