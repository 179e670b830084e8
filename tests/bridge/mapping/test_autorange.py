"""The auto range never turns a stream's direction around (issue 27, item 1), and still spreads a stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainsound.bridge.mapping.autorange import AutoRange


@pytest.mark.parametrize("seed", range(5))
def test_any_two_values_sound_in_their_order_whenever_they_came(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A noisy loss falling tenfold, a jump, a slow rise: every shape at once.
    xs = np.concatenate([3.0 * 0.1 ** np.linspace(0, 1, 300), np.full(50, 5.0), np.linspace(0.3, 0.6, 150)])
    xs *= np.exp(rng.normal(0.0, 0.2, len(xs)))
    a = AutoRange(start=0.9)
    ps = np.array([a.norm(float(x)) for x in xs])
    order = np.argsort(xs, kind="stable")
    assert np.all(np.diff(ps[order]) >= -1e-12)  # sorted by value, the positions never go down
    assert np.all((ps > 0.0) & (ps < 1.0))


def test_a_loss_falling_tenfold_ends_lower_than_it_started_monotone_by_thirds() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(600)
    loss = 2.0 * 0.1 ** (steps / 599) * np.exp(rng.normal(0.0, 0.25, len(steps)))  # noise as on a small batch
    a = AutoRange(start=0.9)
    ps = [a.norm(float(x)) for x in loss]
    thirds = [float(np.median(ps[i * 200 : (i + 1) * 200])) for i in range(3)]
    assert thirds[0] > thirds[1] > thirds[2], thirds
    assert ps[0] - thirds[2] >= 0.4  # the fall is most of the room below the start


def test_a_monotone_stream_gives_a_monotone_position_that_keeps_moving() -> None:
    a = AutoRange(start=0.9)
    codes = [round(a.norm(3.0 * 0.001 ** (i / 499)) * 127) for i in range(500)]
    assert all(x >= y for x, y in itertools.pairwise(codes))
    assert codes[0] == 114 and codes[-1] <= 5 and len(set(codes)) >= 50
    assert codes[100] > codes[300] > codes[-1]  # still moving late in a three-decade fall


def test_a_stationary_stream_started_mid_range_spreads_over_the_range() -> None:
    rng = np.random.default_rng(3)
    a = AutoRange()
    ps = [a.norm(float(x)) for x in 2.0 * np.exp(rng.normal(0.0, 0.15, 500))]
    lo, hi = np.percentile(ps[100:], [5, 95])
    assert hi - lo >= 0.25, (lo, hi)


def test_linear_fallback_keeps_the_order_of_what_was_covered() -> None:
    a = AutoRange()
    ps = [a.norm(x) for x in (1.0, 2.0, 0.5, -1.0, 0.0, 1.5, 3.0)]
    assert a.log is False
    xs = (1.0, 2.0, 0.5, -1.0, 0.0, 1.5, 3.0)
    for (x1, p1), (x2, p2) in itertools.combinations(zip(xs, ps, strict=True), 2):
        assert (x1 - x2) * (p1 - p2) >= 0, (x1, p1, x2, p2)
