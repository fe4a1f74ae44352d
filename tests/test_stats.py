"""The leaderboard's statistics against hand computations and scipy."""
import math

import numpy as np
import pytest
from scipy import stats

from distill.leaderboard.stats import detectable_gain, holm, paired_ci


def test_holm_against_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, None]
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max with 0.06 = 0.06)
    adj = holm(p)
    assert adj[3] == pytest.approx(0.02) and adj[0] == pytest.approx(0.03)
    assert adj[2] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06) and adj[4] is None
    assert holm([0.6, 0.7]) == [1.0, 1.0]          # capped at 1


def test_confidence_interval_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(50, 2, 5), rng.normal(49, 2, 5)
    lo, hi = paired_ci(list(a - b))
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize("n,sd,alpha", [(3, 1.0, 0.05), (5, 0.7, 0.05), (10, 2.0, 0.01), (3, 1.0, 0.05 / 12)])
def test_detectable_gain_has_80_percent_power_by_a_direct_noncentral_t_computation(n, sd, alpha):
    delta = detectable_gain(sd, n, alpha)
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = delta / (sd / math.sqrt(n))
    power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    if math.isfinite(power):                       # scipy's nct is nan far in the tail (df 2, tiny alpha)
        assert power == pytest.approx(0.8, abs=1e-6)
    # and a Monte Carlo check that the power is real: simulated paired differences at that gain
    rng = np.random.default_rng(1)
    d = rng.normal(delta, sd, size=(20000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    assert abs((np.abs(t) > crit).mean() - 0.8) < 0.015
    assert detectable_gain(sd, 1) is None and detectable_gain(0.0, n) is None    # no spread: no power computation
