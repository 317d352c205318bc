"""Exponential and KDE shapes against scipy.stats and numba-stats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numba_stats import truncexpon as nb_truncexpon
from scipy import stats

import diffana  # noqa: F401  (float64)
from diffana.shapes import KDE, Exponential, ShapeError


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def test_exponential_against_scipy_and_numba_stats():
    slope, lower, upper = -0.7, 1.0, 12.0
    shape = Exponential(slope, lower, upper)
    scale = -1.0 / slope
    ref = stats.truncexpon(b=(upper - lower) / scale, loc=lower, scale=scale)
    x = np.linspace(0.5, 12.5, 49)
    assert rel(shape.pdf(x), ref.pdf(x)) < 1e-13
    below_upper = x < upper  # numba-stats' range is half-open [lower, upper)
    assert rel(shape.pdf(x[below_upper]), nb_truncexpon.pdf(x[below_upper], lower, upper, lower, scale)) < 1e-13
    edges = np.linspace(lower, upper, 23)
    # the references' cdf differences are accurate where the cdf is below ~0.9
    assert rel(shape.bin_integrals(edges)[:4], np.diff(ref.cdf(edges))[:4]) < 1e-12
    assert rel(shape.bin_integrals(edges)[:4], np.diff(nb_truncexpon.cdf(edges, lower, upper, lower, scale))[:4]) < 1e-12
    # everywhere else against the closed form: ∫ = (e^{s b} − e^{s a})/s, with a survival-side form
    exact = np.exp(slope * (edges[:-1] - lower)) * -np.expm1(slope * np.diff(edges)) / -slope
    exact /= -np.expm1(slope * (upper - lower)) / -slope
    assert rel(shape.bin_integrals(edges), exact) < 1e-13


def test_exponential_rising_and_flat():
    rising = Exponential(2.0, 0.0, 50.0)  # e^100 at the top: referred to the upper end, no overflow
    x = np.array([0.0, 25.0, 49.0, 50.0])
    expected = 2.0 * np.exp(2.0 * (x - 50.0)) / -np.expm1(-100.0)
    assert rel(rising.pdf(x), expected) < 1e-13
    mirrored = Exponential(-2.0, -50.0, 0.0)
    edges = np.linspace(0.0, 50.0, 11)
    assert rel(rising.bin_integrals(edges), mirrored.bin_integrals(-edges[::-1])[::-1]) < 1e-13
    for slope in (0.0, 1e-300, -1e-12, 1e-6):
        shape = Exponential(slope, 2.0, 6.0)
        assert rel(shape.pdf(np.array([2.0, 4.0, 6.0])), np.full(3, 0.25)) < 5e-6
        assert rel(shape.bin_integrals(np.linspace(2.0, 6.0, 5)), np.full(4, 0.25)) < 5e-6


def test_exponential_gradient_at_zero_slope():
    """d/ds of a bin's probability at s = 0 is finite and equals the central difference
    and the exact value."""
    edges = jnp.linspace(2.0, 6.0, 5)

    def third_bin(slope):
        return Exponential(slope, 2.0, 6.0).bin_integrals(edges)[2]

    gradient = jax.grad(third_bin)(0.0)
    h = 1e-4
    difference = (third_bin(h) - third_bin(-h)) / (2 * h)
    assert np.isfinite(gradient)
    assert abs(gradient - difference) < 1e-8
    # bin [4, 5] of a flat [2, 6]: d/ds at 0 = (∫x dx)/4 − (1/4)(∫_2^6 x dx)/4 = 1.125 − 1 = 0.125
    assert abs(float(gradient) - 0.125) < 1e-12


def test_kde_against_scipy_gaussian_kde():
    rng = np.random.default_rng(7)
    sample = np.concatenate([rng.normal(5.0, 0.3, 300), rng.exponential(2.0, 200)])
    lower, upper = 0.5, 9.0
    shape = KDE(sample, lower, upper)
    reference = stats.gaussian_kde(sample, bw_method="silverman")
    assert rel(shape.bandwidth, np.sqrt(reference.covariance[0, 0])) < 1e-13
    norm = reference.integrate_box_1d(lower, upper)
    x = np.linspace(0.0, 9.5, 39)
    inside = (x >= lower) & (x <= upper)
    assert rel(shape.pdf(x), np.where(inside, reference(x) / norm, 0.0)) < 1e-12
    edges = np.linspace(lower, upper, 18)
    expected = [reference.integrate_box_1d(a, b) / norm for a, b in zip(edges[:-1], edges[1:])]
    assert rel(shape.bin_integrals(edges), expected) < 1e-11
    assert abs(float(jnp.sum(shape.bin_integrals(edges))) - 1.0) < 1e-14
    # weights and the Scott rule, as scipy
    weights = rng.uniform(0.5, 2.0, sample.size)
    weighted = KDE(sample, lower, upper, bandwidth="scott", weights=weights)
    reference = stats.gaussian_kde(sample, bw_method="scott", weights=weights)
    norm = reference.integrate_box_1d(lower, upper)
    assert rel(weighted.pdf(x[inside]), reference(x[inside]) / norm) < 1e-12
    fixed = KDE(sample, lower, upper, bandwidth=0.2)
    assert float(fixed.bandwidth) == 0.2


@pytest.mark.parametrize("build, message", [
    (lambda: KDE([], 0.0, 1.0), "KDE: sample must be a non-empty 1-D array"),
    (lambda: KDE([0.5, np.nan], 0.0, 1.0), "KDE: sample must be finite"),
    (lambda: KDE([0.5, 0.5], 0.0, 1.0), "KDE: bandwidth must be finite and > 0 \\(the sample needs a spread\\)"),
    (lambda: KDE([0.5, 0.6], 0.0, 1.0, bandwidth=-1.0), "KDE: bandwidth must be finite and > 0"),
    (lambda: KDE([0.5, 0.6], 0.0, 1.0, bandwidth="wide"), "KDE: bandwidth must be a number or one of"),
    (lambda: KDE([0.5, 0.6], 0.0, 1.0, weights=[1.0, -1.0]), "KDE: weights must be finite and >= 0"),
    (lambda: Exponential(np.inf, 0.0, 1.0), "Exponential: slope must be finite"),
])
def test_bad_parameters(build, message):
    with pytest.raises(ShapeError, match="^" + message):
        build()
