"""Window N_eff of the background that passes a cut (the trust indicator per window)."""

import numpy as np
import pytest

from diffana.analyses.zprime_invisible.mc_statistics import selected_window_n_eff


def _brute_force(m2, weight, passed, centres, widths, window_bins):
    out = []
    for c, w in zip(centres, widths):
        inside = passed & (m2 >= c - 0.5 * window_bins * w) & (m2 < c + 0.5 * window_bins * w)
        s, s2 = weight[inside].sum(), (weight[inside] ** 2).sum()
        out.append(s**2 / s2 if s2 > 0 else 0.0)
    return np.array(out)


def test_selected_window_n_eff_equals_the_per_window_kish_sum():
    rng = np.random.default_rng(3)
    m2 = rng.uniform(-5.0, 70.0, 5000)
    weight = rng.exponential(2.0, m2.size)
    passed = rng.uniform(size=m2.size) < 0.3
    centres, widths = np.array([0.0, 10.0, 40.0, 69.0]), np.array([0.5, 0.3, 0.2, 0.1])
    got = selected_window_n_eff(m2, weight, passed, centres, widths, 20)
    np.testing.assert_allclose(got, _brute_force(m2, weight, passed, centres, widths, 20), rtol=1e-10)
    assert np.all(got > 1.0)


def test_selected_window_n_eff_is_zero_where_nothing_passes_and_one_for_a_single_event():
    m2 = np.array([1.0, 1.1, 5.0, 9.0])
    weight = np.array([3.0, 4.0, 7.0, 2.0])
    passed = np.array([False, False, True, True])
    got = selected_window_n_eff(m2, weight, passed, np.array([1.0, 5.0, 9.0]), np.array([0.1, 0.1, 0.1]), 20)
    assert got == pytest.approx([0.0, 1.0, 1.0])
