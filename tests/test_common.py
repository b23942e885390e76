"""The shared pieces every process uses: one backoff, one IoU, one secret resolver."""

from __future__ import annotations

import itertools

import pytest

from alpr_common.backoff import Backoff
from alpr_common.geometry import iou
from alpr_common.secrets import SecretError, secret_from_env


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Backoff(), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (Backoff(first=0.5, cap=10.0), [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]),
        (Backoff(first=1.0, cap=1.0), [1.0] * 8),
        (Backoff(first=0.1, cap=1.0, factor=3.0), [0.1, 0.3, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_backoff_delays_and_retry_agree(policy: Backoff, expected: list[float]) -> None:
    assert list(itertools.islice(policy.delays(), 8)) == pytest.approx(expected)
    retry = policy.retry()
    assert [retry.fail() for _ in range(8)] == pytest.approx(expected)
    retry.reset()
    assert retry.current == policy.first


@pytest.mark.parametrize(
    ("first", "cap", "factor"), [(-0.5, 1.0, 2.0), (-1.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1, 2, 0.5)]
)
def test_backoff_refuses_nonsense(first: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(first, cap, factor)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching corners
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # contained
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty union
    ],
)
def test_iou(a: tuple[float, ...], b: tuple[float, ...], expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_the_server_box_and_the_tracker_agree_with_the_one_iou() -> None:
    import numpy as np

    from edge_client.tracking.matching import iou_matrix
    from ensemble.contracts import Box

    a, b = (0.0, 0.0, 10.0, 10.0), (5.0, 2.0, 15.0, 12.0)
    assert Box(*a).iou(Box(*b)) == pytest.approx(iou(a, b))
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == pytest.approx(iou(a, b))


@pytest.mark.parametrize(
    ("var", "env", "required", "expected"),
    [
        (None, {}, True, None),  # nothing configured
        ("", {}, True, None),
        ("PW", {"PW": "s3cret"}, True, "s3cret"),
        ("PW", {}, False, None),
        ("PW", {"PW": ""}, False, None),
        ("PW", {}, True, SecretError),
        ("PW", {"PW": ""}, True, SecretError),
    ],
)
def test_secret_from_env(
    var: str | None, env: dict[str, str], required: bool, expected: object
) -> None:
    if expected is SecretError:
        with pytest.raises(SecretError, match="Redis password environment variable PW"):
            secret_from_env(var, "Redis password", required=required, environ=env)
    else:
        assert secret_from_env(var, "Redis password", required=required, environ=env) == expected
