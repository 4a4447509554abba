"""95% intervals for the rates `notes-rag eval` reports, so a difference can be told from noise.

- `wilson(k, n)`: the Wilson score interval of a share k/n. Unlike the normal approximation it
  stays inside [0, 1] and is not zero-width at 0/n or n/n (0/10 still allows up to 0.28): with
  43 dev items, one item moves a rate by 0.023 and the interval says how many such moves are noise.
- `bootstrap_mean(values)`: the percentile bootstrap interval of a mean (MRR is a mean of
  reciprocal ranks, not a share); a fixed seed, so a report is reproducible.
- `metric(name, k, n)`: the report's keys for one share — `name` (the value), `name_ci`
  ([lo, hi]) and `name_counts` ([k, n]); docs/EVAL.md ("JSON report") describes the schema.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n trials; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at k=0 / k=n the bound is exactly 0 / 1; rounding must not put it a hair outside
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def bootstrap_mean(
    values: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """The 2.5th and 97.5th percentiles of the mean of `values` resampled with replacement;
    None for no values."""
    if not values:
        return None
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(samples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _rounded(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]


def metric(name: str, k: int, n: int) -> dict:
    """A share's value (None without items), its Wilson interval and its counts."""
    return {name: k / n if n else None, f"{name}_ci": _rounded(wilson(k, n)), f"{name}_counts": [k, n]}


def mean_metric(name: str, values: list[float]) -> dict:
    """A mean's value (None without values), its bootstrap interval and [sum, n]."""
    total = float(sum(values))
    return {
        name: total / len(values) if values else None,
        f"{name}_ci": _rounded(bootstrap_mean(values)),
        f"{name}_counts": [round(total, 4), len(values)],
    }
