"""Known-answer tests for the isolation-forest joint anomaly detector (seeded data)."""

from __future__ import annotations

import json

import numpy as np

from analysis.core.multivariate import detect_multivariate

NAMES = ["rps", "cpu", "disk"]


def _rows(seed: int, n: int, rho: float = 0.97) -> np.ndarray:
    """rps and cpu strongly correlated, disk independent; all in their own units."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)
    w = rng.normal(size=n)
    return np.column_stack([100 + 20 * x, 0.5 + 0.1 * y, 3 + w])


def test_broken_correlation_is_flagged_and_attributed() -> None:
    base, ev = _rows(1, 300), _rows(2, 100)
    # rps +1.5 sigma while cpu -1.5 sigma: each well inside its own marginal range.
    ev[50:60, 0] = 100 + 20 * 1.5
    ev[50:60, 1] = 0.5 - 0.1 * 1.5
    assert base[:, 0].min() < ev[50, 0] < base[:, 0].max()
    assert base[:, 1].min() < ev[50, 1] < base[:, 1].max()
    res = detect_multivariate(base, ev, NAMES)
    assert not res.insufficient
    assert res.anomalous[50:60].all()
    assert res.anomalous[:50].sum() + res.anomalous[60:].sum() <= 3
    top = sorted(res.contributions, key=res.contributions.get, reverse=True)
    assert set(top[:2]) == {"rps", "cpu"}
    assert res.contributions["disk"] < 0.15
    assert abs(sum(res.contributions.values()) - 1.0) < 1e-9


def test_healthy_evaluation_stays_near_contamination() -> None:
    shares = [
        detect_multivariate(_rows(s, 300), _rows(s + 100, 200), NAMES).share_anomalous
        for s in range(2)
    ]
    assert np.mean(shares) <= 0.03


def test_nan_cells_are_imputed_and_constant_columns_are_fine() -> None:
    base, ev = _rows(3, 200), _rows(4, 50)
    base[:, 2] = 7.0  # a constant metric
    ev[:, 2] = 7.0
    base[::10, 0] = np.nan
    ev[5] = np.nan  # a whole missing row looks ordinary
    ev[20, 2] = 70.0  # the constant metric jumps
    res = detect_multivariate(base, ev, NAMES)
    assert np.isfinite(res.scores).all()
    assert not res.anomalous[5] and res.anomalous[20]
    assert max(res.contributions, key=res.contributions.get) == "disk"
    assert json.dumps(res.to_dict(), allow_nan=False)


def test_insufficient_inputs() -> None:
    small = detect_multivariate(_rows(0, 9), _rows(1, 5), NAMES)
    assert small.insufficient and small.scores.shape == (5,) and not small.anomalous.any()
    none = detect_multivariate(np.empty((50, 0)), np.empty((5, 0)), [])
    assert none.insufficient and "no metrics" in none.reason
