"""Per-request error isolation in ensemble.serving.process (fake services, no Triton)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ensemble.contracts import InputError
from ensemble.serving import Outputs, process


class Doubler:
    """Fake service: X int [B] -> Y = 2X; negative values are bad input; 13 crashes the run."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def items(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        x = inputs["X"]
        if x is None:
            raise InputError("missing input X")
        if (x < 0).any():
            raise InputError(f"X must be >= 0, got {x.tolist()}")
        if (x == 99).any():
            raise KeyError("unexpected")
        return list(x)

    def run(self, items: Sequence[Any]) -> list[Outputs]:
        self.batches.append(len(items))
        if 13 in items:
            raise RuntimeError("poisoned item")
        return [{"Y": np.array([2 * i])} for i in items]


def req(*values: int) -> dict[str, np.ndarray | None]:
    return {"X": np.array(values)}


def test_all_good_requests_run_as_one_batch() -> None:
    svc = Doubler()
    replies = process(svc, [req(1), req(2, 3), req(4)])
    assert svc.batches == [4]
    assert [r.outputs["Y"].ravel().tolist() for r in replies if r.outputs] == [[2], [4, 6], [8]]


def test_bad_request_gets_error_others_succeed() -> None:
    svc = Doubler()
    replies = process(svc, [req(1), req(-1), {"X": None}, req(99), req(5)])
    assert replies[0].outputs is not None and replies[4].outputs is not None
    assert "X must be >= 0" in (replies[1].error or "")
    assert "missing input X" in (replies[2].error or "")
    assert "KeyError" in (replies[3].error or "")
    assert svc.batches == [2]


def test_poisoned_item_fails_only_its_request() -> None:
    svc = Doubler()
    replies = process(svc, [req(1), req(13), req(2, 3)])
    assert replies[0].outputs is not None and replies[0].outputs["Y"].ravel().tolist() == [2]
    assert "poisoned item" in (replies[1].error or "")
    assert replies[2].outputs is not None and replies[2].outputs["Y"].ravel().tolist() == [4, 6]
    assert svc.batches[0] == 4  # batched first, then retried one by one


def test_no_valid_requests_runs_nothing() -> None:
    svc = Doubler()
    replies = process(svc, [req(-5)])
    assert svc.batches == [] and replies[0].error
