"""Tests of precision.run.pool: a map over spawned worker processes (the report's figures), in
order, with a worker's exception raised in the parent."""

from __future__ import annotations

import os

import pytest

from precision.run.pool import parallel_map


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_results_come_back_in_order_from_other_processes():
    answers = parallel_map(_pid_and_square, range(6), workers=2)
    assert [square for _, square in answers] == [x * x for x in range(6)]
    assert os.getpid() not in {pid for pid, _ in answers}


def test_one_worker_or_one_item_runs_here():
    assert {pid for pid, _ in parallel_map(_pid_and_square, range(3), workers=1)} == {os.getpid()}
    assert parallel_map(_pid_and_square, [4], workers=2) == [(os.getpid(), 16)]
    assert parallel_map(_pid_and_square, [], workers=2) == []


def test_a_worker_exception_is_raised_here():
    with pytest.raises(ValueError, match="three"):
        parallel_map(_fails_on_three, range(5), workers=2)
