"""The 95% intervals of `notes-rag eval` against known values."""

from __future__ import annotations

import pytest

from notes_rag.eval.intervals import bootstrap_mean, mean_metric, metric, wilson


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (43, 100, 0.3373, 0.5278),
        (1, 43, 0.0041, 0.1206),  # one dev item in 43
    ],
)
def test_wilson_known_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-4)


def test_wilson_edge_cases():
    assert wilson(0, 0) is None
    lo, hi = wilson(3, 7)
    assert 0 < lo < 3 / 7 < hi < 1
    # wider with fewer items, narrower with more, at the same share
    assert wilson(30, 70)[1] - wilson(30, 70)[0] < hi - lo
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_bootstrap_mean_is_reproducible_and_brackets_the_mean():
    values = [1.0, 0.5, 0.0, 1.0, 1 / 3, 1.0, 0.0, 0.25]
    lo, hi = bootstrap_mean(values)
    mean = sum(values) / len(values)
    assert lo < mean < hi and 0.0 <= lo and hi <= 1.0
    assert bootstrap_mean(values) == (lo, hi)  # fixed seed
    assert bootstrap_mean([]) is None
    assert bootstrap_mean([1.0] * 5) == (1.0, 1.0)


def test_metric_keys():
    assert metric("key_fact_recall", 5, 10) == {
        "key_fact_recall": 0.5,
        "key_fact_recall_ci": [0.2366, 0.7634],
        "key_fact_recall_counts": [5, 10],
    }
    assert metric("x", 0, 0) == {"x": None, "x_ci": None, "x_counts": [0, 0]}
    m = mean_metric("mrr@10", [1.0, 0.5, 0.0])
    assert m["mrr@10"] == 0.5 and m["mrr@10_counts"] == [1.5, 3] and len(m["mrr@10_ci"]) == 2
