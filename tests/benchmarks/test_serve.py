"""benchmarks/serve.py's arithmetic (its figures go into the README): no timing is asserted here."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.serve import percentile


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0, 10.0], [5.0, 7.0], [3.0] * 3, [0.1 * k for k in range(40)]])
def test_a_percentile_lies_within_the_samples(values):
    for q in (50, 95, 99):
        assert min(values) <= percentile(values, q) <= max(values)
    assert percentile(values, 50) == pytest.approx(statistics.median(values))


def test_one_sample_is_every_percentile():
    assert percentile([4.2], 95) == 4.2
