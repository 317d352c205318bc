"""Bump hunts (diffana.infer.bump_hunt) on sliding windows of one spectrum.

Every number of the vmapped scan is checked against an independent computation on
single windows: the fits against ``infer.fit``/``fixed_poi_fit``, the yield error
against the curvature of the profiled −2 ln L by finite differences, the limits
against a brentq root of the profiled q̃, the whole-spectrum toys' window data
against the windows' own data.
"""

import jax
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.infer import bump_hunt as bh
from diffana.model.parametric import sliding_windows
from diffana.shapes import Gaussian

BINS = 24
SIGMA = 0.02  # signal resolution, GeV


def _signal_at(mass, lower, upper):
    return Gaussian(mass, SIGMA + 0.0 * mass, lower, upper)


@pytest.fixture(scope="module")
def scan():
    """A falling spectrum (1–2 GeV, 10 MeV bins) with 150 signal events at 1.5 GeV;
    five windows of 24 bins, one on the peak."""
    edges = np.linspace(1.0, 2.0, 101)
    centres = 0.5 * (edges[1:] + edges[:-1])
    background = 80.0 * np.exp(-(centres - 1.0) / 0.8)
    signal = 150.0 * np.diff(norm.cdf(edges, 1.5, SIGMA))
    counts = np.random.default_rng(7).poisson(background + signal).astype(float)
    masses = np.array([1.2, 1.35, 1.5, 1.65, 1.8])
    windows = sliding_windows(edges, counts, masses, BINS, _signal_at, background_degree=2)
    result = bh.bump_hunt(windows.data, windows.models, cl=0.90)
    return {"edges": edges, "counts": counts, "background": background, "masses": masses,
            "windows": windows, "result": result}


def _window(scan, i):
    windows = scan["windows"]
    return jax.tree_util.tree_map(lambda leaf: leaf[i], windows.models), windows.data[i]


def test_fits_equal_single_window_fits(scan):
    fits = scan["result"].fits
    assert bool(np.all(fits.converged))
    for i in range(len(scan["masses"])):
        model, data = _window(scan, i)
        free = infer.fit(data, model)
        null = infer.fixed_poi_fit(0.0, data, model)
        np.testing.assert_allclose(float(fits.signal_yield[i]), float(free.bestfit[0]), rtol=1e-8, atol=1e-8)
        excess = float(null.twice_nll - free.twice_nll)
        expected = np.sign(float(free.bestfit[0])) * np.sqrt(max(excess, 0.0))
        np.testing.assert_allclose(float(fits.local_significance[i]), expected, atol=1e-7)


def test_peak_is_found(scan):
    fits = scan["result"].fits
    on_peak = int(np.argmin(np.abs(scan["masses"] - 1.5)))
    assert int(np.argmax(fits.local_significance)) == on_peak
    assert float(fits.local_significance[on_peak]) > 3.0
    assert abs(float(fits.signal_yield[on_peak]) - 150.0) < 3 * float(fits.yield_error[on_peak])


def test_yield_error_is_the_profile_curvature(scan):
    """σ(ŝ)² = 2 / (d² profiled deviance / ds²) at ŝ, by central differences."""
    fits = scan["result"].fits
    i = 2
    model, data = _window(scan, i)
    s_hat = float(fits.signal_yield[i])
    step = 0.05 * float(fits.yield_error[i])
    profile = [float(infer.fixed_poi_fit(s_hat + k * step, data, model).twice_nll) for k in (-1, 0, 1)]
    curvature = (profile[0] - 2 * profile[1] + profile[2]) / step**2
    np.testing.assert_allclose(float(fits.yield_error[i]), np.sqrt(2.0 / curvature), rtol=1e-4)


def test_limits_are_roots_of_the_profiled_qtilde(scan):
    result = scan["result"]
    z2 = norm.ppf(0.90) ** 2
    assert bool(np.all(result.limits.converged))
    for i in (0, 2, 4):
        model, data = _window(scan, i)
        s_hat = float(result.fits.signal_yield[i])
        reference = float(infer.fixed_poi_fit(max(s_hat, 0.0), data, model).twice_nll)

        def qtilde(s):
            return float(infer.fixed_poi_fit(s, data, model).twice_nll) - reference - z2

        root = brentq(qtilde, max(s_hat, 0.0), max(s_hat, 0.0) + 20 * float(result.fits.yield_error[i]), xtol=1e-10)
        np.testing.assert_allclose(float(result.limits.limit[i]), root, rtol=1e-7)


def test_window_data_cuts_the_spectrum_as_the_windows_do(scan):
    windows = scan["windows"]
    rebuilt = bh.window_data(scan["counts"], windows.first_bin, BINS, windows.models.config.auxdata)
    np.testing.assert_array_equal(np.asarray(rebuilt), np.asarray(windows.data))


def test_global_significance_from_whole_spectrum_toys(scan):
    windows = scan["windows"]
    result = bh.global_significance(windows.data, windows.models, windows.first_bin, scan["background"], key=3,
                                    n_toys=40, observed=scan["result"].fits)
    observed_max = float(np.max(scan["result"].fits.local_significance))
    np.testing.assert_allclose(float(result.max_local_significance), observed_max)
    assert result.toy_max_significance.shape == (40,)
    assert int(result.n_failed_fits) == 0
    # The observed 4.6σ local excess is beyond every background-only toy of five windows.
    assert float(result.p_global) <= 0.05
    # Gross–Vitells: at least the local p-value, and small at 4.6σ.
    p_local = float(norm.sf(observed_max))
    assert p_local <= float(result.p_gross_vitells) < 1e-3
    # The toys' largest local significance is that of five nearly independent windows.
    assert 0.3 < float(np.median(result.toy_max_significance)) < 2.0


def test_fit_bias_bootstrap_pulls(scan):
    windows = scan["windows"]
    bias = bh.fit_bias(windows.data[:2], jax.tree_util.tree_map(lambda x: x[:2], windows.models),
                       injected_yield=40.0, key=5, n_toys=300)
    assert bool(np.all(bias.converged_fraction == 1.0))
    # Pulls of a well-behaved fit: mean 0 and width 1 within their statistical errors.
    assert np.all(np.abs(np.asarray(bias.mean_pull)) < 4 * np.asarray(bias.mean_pull_error))
    assert np.all(np.abs(np.asarray(bias.pull_width) - 1.0) < 0.15)


def test_bad_input(scan):
    windows = scan["windows"]
    single, data = _window(scan, 0)
    with pytest.raises(ValueError, match="single model"):
        bh.fit_windows(data, single)
    with pytest.raises(ValueError, match="one row per window"):
        bh.fit_windows(windows.data[:2], windows.models)
    negative = np.asarray(windows.data).copy()
    negative[3, 5] = -1.0
    with pytest.raises(ValueError, match="window 3 contain negative counts"):
        bh.fit_windows(negative, windows.models)
    with pytest.raises(ValueError, match="cl must be between 0 and 1"):
        bh.bump_hunt(windows.data, windows.models, cl=90)
    with pytest.raises(ValueError, match="n_toys must be at least 2"):
        bh.fit_bias(windows.data, windows.models, injected_yield=1.0, key=0, n_toys=1)
    with pytest.raises(ValueError, match="first_bin"):
        bh.global_significance(windows.data, windows.models, windows.first_bin[:2], scan["background"], key=0)
    with pytest.raises(ValueError, match="background_spectrum"):
        bh.global_significance(windows.data, windows.models, windows.first_bin, scan["background"][:10], key=0)
