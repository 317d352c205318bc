"""The non-negligible-width (Γ = 0.1·M) benchmark: Breit–Wigner ⊗ resolution templates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import config as cfg
from diffana.analyses.zprime_invisible import templates
from diffana.analyses.zprime_invisible import wide_width as ww
from diffana.analyses.zprime_invisible.samples import AnalysisSamples


def test_flat_efficiency_gives_the_truncated_cauchy_cdf():
    s = jnp.linspace(-5.0, 120.0, 2001)
    cdf = np.asarray(ww.efficiency_weighted_cdf(s, 25.0, 2.5, ww.flat_efficiency_curve()))
    assert cdf[0] == 0.0 and cdf[-1] == 1.0
    assert np.all(np.diff(cdf) >= 0.0)
    # inside the range it is the Cauchy CDF renormalised to the truncated mass
    full = lambda x: np.arctan((x - 25.0) / 2.5) / np.pi + 0.5  # noqa: E731
    norm = full(ww.MAX_TRUE_MASS_SQUARED) - full(0.0)
    np.testing.assert_allclose(float(ww.efficiency_weighted_cdf(30.0, 25.0, 2.5, ww.flat_efficiency_curve())),
                               (full(30.0) - full(0.0)) / norm, rtol=1e-14)


def test_template_is_breit_wigner_convolved_with_a_gaussian_resolution():
    """Narrow events at Gauss–Hermite nodes of a Gaussian resolution (weights = the
    quadrature weights) turn the template into the Voigt profile's bin integrals."""
    mass, resolution, relative_width = 4.0, 0.26, 0.1
    gamma = ww.breit_wigner_half_width(mass, relative_width)  # 1.6 GeV²
    nodes, weights = np.polynomial.hermite.hermgauss(120)
    residuals = np.sqrt(2.0) * resolution * nodes
    m2 = mass**2 + residuals
    width = 0.5
    hist = np.asarray(ww.wide_signal_histograms(jnp.array([mass**2]), jnp.array([gamma]), jnp.array([width]),
                                                jnp.asarray(m2)[None], jnp.asarray(weights / np.sqrt(np.pi))[None], 20))[0]
    edges = mass**2 + width * (np.arange(21) - 10)
    # the truncation at 0 and the end point removes (far) tails: renormalise the Voigt the same way
    kept = integrate.quad(lambda s: special.voigt_profile(s - mass**2, resolution, gamma), 0.0,
                          ww.MAX_TRUE_MASS_SQUARED, limit=400)[0]
    voigt = np.array([integrate.quad(lambda s: special.voigt_profile(s - mass**2, resolution, gamma), lo, hi)[0]
                      for lo, hi in zip(edges[:-1], edges[1:])])
    # exact when truncation and convolution commute; they nearly do (resolution ≪ 16 GeV² to the edges)
    np.testing.assert_allclose(hist, voigt / kept, rtol=2e-4, atol=1e-7)
    # the window holds ±3.125 γ of the truncated Cauchy (resolution ≪ γ barely changes it)
    cauchy = lambda x: np.arctan((x - mass**2) / gamma) / np.pi  # noqa: E731
    inside = (cauchy(edges[-1]) - cauchy(edges[0])) / (cauchy(ww.MAX_TRUE_MASS_SQUARED) - cauchy(0.0))
    assert hist.sum() == pytest.approx(inside, abs=2e-3)


def test_vanishing_width_gives_back_the_narrow_histogram():
    rng = np.random.default_rng(5)
    mass, width, n = 2.0, 0.3, 500
    m2 = mass**2 + rng.normal(0.0, 0.3, n)
    w = rng.uniform(0.5, 1.5, n)
    wide = np.asarray(ww.wide_signal_histograms(jnp.array([mass**2]), jnp.array([1e-12]), jnp.array([width]),
                                                jnp.asarray(m2)[None], jnp.asarray(w)[None], 20))[0]
    narrow = np.asarray(templates.window_histogram(mass**2, width, jnp.asarray(m2), jnp.full(n, 90.0), jnp.asarray(w),
                                                   templates.theta_edges(1), 20))
    np.testing.assert_allclose(wide, narrow, atol=1e-9)


def test_template_gradient_in_the_selection_weights_matches_finite_differences():
    rng = np.random.default_rng(1)
    m2 = jnp.asarray(9.0 + rng.normal(0.0, 0.3, (1, 200)))
    base = jnp.asarray(rng.uniform(0.2, 0.8, (1, 200)))

    def loss(selection):
        hist = ww.wide_signal_histograms(jnp.array([9.0]), jnp.array([0.9]), jnp.array([0.3]), m2, selection, 20)
        return jnp.sum(jnp.log(hist + 1.0) * jnp.arange(20.0))

    grad = jax.grad(loss)(base)
    direction = jnp.asarray(rng.normal(size=base.shape))
    eps = 1e-6
    numeric = (loss(base + eps * direction) - loss(base - eps * direction)) / (2 * eps)
    assert float(jnp.sum(grad * direction)) == pytest.approx(float(numeric), rel=1e-7)


def test_windows_grow_with_the_width():
    settings = ww.WideWidthSettings()
    masses = np.array([0.1, 1.0, 4.0, 8.0])
    resolutions = np.array([0.234, 0.287, 0.262, 0.096])
    half = 0.5 * settings.window_bins * ww.window_bin_widths(masses, resolutions, settings)
    np.testing.assert_allclose(half, np.maximum(10 * resolutions, 3 * 0.1 * masses**2))
    assert half[0] == pytest.approx(2.34) and half[-1] == pytest.approx(19.2)


def test_wide_window_counts_are_the_weighted_m2_histogram_of_each_window():
    """Every event (any θ) in window k's M² bins counts with its weight; numpy's
    histogram over the same edges is the reference."""
    settings = ww.WideWidthSettings()
    masses, resolutions = np.array([1.0, 2.5]), np.array([0.287, 0.27])
    rng = np.random.default_rng(5)
    events = {"recoil_mass_squared": rng.uniform(-5.0, 15.0, 5000), "recoil_theta_cm": rng.uniform(0, 180, 5000)}
    weights = rng.uniform(0.5, 2.0, 5000)
    counts = np.asarray(ww.wide_window_counts(masses, resolutions, events, weights, settings))
    widths = ww.window_bin_widths(masses, resolutions, settings)
    for k in range(2):
        edges = templates.window_edges(masses[k] ** 2, widths[k], settings.window_bins)
        reference, _ = np.histogram(events["recoil_mass_squared"], edges, weights=weights)
        np.testing.assert_allclose(counts[k], reference, rtol=1e-12)


@pytest.mark.parametrize("bad", [{"relative_width": 0.0}, {"relative_width": 1.5}, {"window_bins": 1},
                                 {"half_width_widths": -1.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ww.WideWidthSettings(**bad)


def _toy_samples(masses, rng):
    """Flat background in M² (three processes) and Gaussian narrow signal per mass."""
    n_b, n_s = 4000, 400
    background = {"recoil_mass_squared": rng.uniform(-2.0, 80.0, n_b), "recoil_theta_cm": rng.uniform(20, 160, n_b),
                  "weight": np.full(n_b, 5.0), "process": rng.integers(1, 4, n_b).astype(float)}
    data_n = rng.poisson(background["weight"].sum())
    pick = rng.integers(0, n_b, data_n)
    pseudo = {k: v[pick] for k, v in background.items()}
    pseudo["weight"] = np.ones(data_n)
    signal = {"recoil_mass_squared": masses[:, None] ** 2 + rng.normal(0.0, 0.25, (masses.size, n_s)),
              "recoil_theta_cm": rng.uniform(20, 160, (masses.size, n_s)),
              "weight": np.full((masses.size, n_s), 0.05 * 80.0 / n_s)}
    return AnalysisSamples(masses=masses, background_train=background, background_test=background,
                           signal_train=signal, signal_test=signal, pseudo_data=pseudo, luminosity=80.0, generated={})


@pytest.mark.slow  # 55 s on 2 cores (two limit scans); the wide templates' tests stay in CI
def test_wide_limits_are_weaker_than_narrow_ones_and_converge():
    """A wide signal spreads over more background: its limit is weaker than the narrow
    fit's in the same toy, and every fit converges."""
    from diffana.analyses.zprime_invisible.fit import scan_limits
    from diffana.analyses.zprime_invisible.templates import analysis_templates, reference_cross_sections

    rng = np.random.default_rng(2)
    masses = np.array([2.0, 4.0, 6.0])
    resolutions = np.full(3, 0.25)
    samples = _toy_samples(masses, rng)
    sy = cfg.load_config(None, quick=True).systematics
    ones_s = np.ones_like(samples.signal_test["weight"])
    ones_b = np.ones_like(samples.background_test["weight"])
    ones_d = np.ones_like(samples.pseudo_data["weight"])
    wide = ww.wide_width_limits(masses, resolutions, samples, ones_s, ones_b, ones_d, sy, 0.9,
                                ww.WideWidthSettings())
    assert wide["converged"].all()
    gamma = ww.breit_wigner_half_width(masses, 0.1)
    half = wide["window_half_width"]
    # every hypothesis selects the same yield: ε(s) is flat up to the last one (36 GeV²),
    # then falls to 0 at the kinematic end point
    curve = ww.efficiency_curve(masses**2, np.ones(3))
    inside = [float(ww.efficiency_weighted_cdf(c + h, c, g, curve) - ww.efficiency_weighted_cdf(c - h, c, g, curve))
              for c, g, h in zip(masses**2, gamma, half)]
    np.testing.assert_allclose(wide["signal_fraction"], inside, atol=0.01)  # 0.25 GeV² resolution: small change

    edges = templates.theta_edges(1)
    raw = analysis_templates(masses**2, resolutions, samples.signal_test, ones_s, samples.background_test, ones_b,
                             edges, 20, sy, np.ones(3))
    t = analysis_templates(masses**2, resolutions, samples.signal_test, ones_s, samples.background_test, ones_b,
                           edges, 20, sy, reference_cross_sections(raw["signal"], raw["background"]))
    data = analysis_templates(masses**2, resolutions, samples.signal_test, ones_s, samples.pseudo_data, ones_d,
                              edges, 20, sy, np.ones(3))["background"]
    _, narrow_expected, _ = scan_limits(t, data, sy.luminosity, 0.9)
    assert np.all(wide["expected"][:, 2] > 1.5 * narrow_expected[:, 2])


def test_efficiency_weighted_cdf_integrates_the_breit_wigner_times_the_efficiency():
    centres = np.array([4.0, 16.0, 36.0, 64.0])
    yields = np.array([0.3, 0.25, 0.12, 0.02])
    curve = ww.efficiency_curve(centres, yields)
    centre, gamma = 36.0, 3.6
    bw = lambda s: gamma / np.pi / ((s - centre) ** 2 + gamma**2)  # noqa: E731
    norm = integrate.quad(bw, 0.0, ww.MAX_TRUE_MASS_SQUARED, limit=200)[0]
    eff = lambda s: np.interp(s, np.asarray(curve.knots), np.asarray(curve.values))  # noqa: E731
    for lo, hi in [(-3.0, 10.0), (20.0, 40.0), (30.0, 90.0), (60.0, 200.0)]:
        ours = float(ww.efficiency_weighted_cdf(hi, centre, gamma, curve)
                     - ww.efficiency_weighted_cdf(lo, centre, gamma, curve))
        points = [p for p in np.asarray(curve.knots) if max(lo, 0.0) < p < min(hi, ww.MAX_TRUE_MASS_SQUARED)]
        reference = integrate.quad(lambda s: eff(s) * bw(s), max(lo, 0.0), min(hi, ww.MAX_TRUE_MASS_SQUARED),
                                   points=points or None, limit=200)[0] / norm
        assert ours == pytest.approx(reference, rel=1e-9)


def test_efficiency_falling_to_zero_removes_the_unselectable_tail():
    """Events of a hypothesis near the end of the scan: with the efficiency curve the
    template above the last selectable mass is smaller than without it."""
    centres = jnp.array([49.0, 64.0])
    curve = ww.efficiency_curve(centres, jnp.array([0.1, 0.01]))
    m2 = jnp.full((1, 1), 64.0)
    args = (centres[1:], jnp.array([6.4]), jnp.array([2.0]), m2, jnp.ones((1, 1)), 20)
    with_curve = np.asarray(ww.wide_signal_histograms(*args, 0.0, curve))[0]
    flat = np.asarray(ww.wide_signal_histograms(*args, 0.0, None))[0]
    # bins 15-19 (74-84 GeV²): ε falls linearly from ε(64) to 0 at 107 GeV², ≈ 0.65 ε(64) there
    assert 0.6 < with_curve[15:].sum() / flat[15:].sum() < 0.72
    # bins 0-4 (44-54 GeV²): 10 ε(64) up to 49 GeV², falling to 7 ε(64) at 54 GeV²
    assert 7.0 < with_curve[:5].sum() / flat[:5].sum() < 10.0
