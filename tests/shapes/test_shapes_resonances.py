"""Breit–Wigner, Voigtian and the Faddeeva function against scipy and numba-stats.

The Voigtian's bin integrals are Gauss–Legendre quadrature (16 points × 4 θ-pieces per
bin); the reference is scipy.integrate.quad of scipy.special.voigt_profile at
epsrel=1e-13 (quad's tightest honest setting), itself limited by the Faddeeva
package's ~1e-13 relative accuracy of Re w near the real axis.
"""

import jax
import mpmath
import numpy as np
import pytest
import scipy.special
from numba_stats import voigt as nb_voigt
from scipy import stats
from scipy.integrate import quad

import diffana  # noqa: F401  (float64)
from diffana.shapes import BreitWigner, ShapeError, Voigtian, faddeeva


# compiled once per shape class (eager evaluation compiles every operation separately)
_pdf = jax.jit(lambda shape, x: shape.pdf(x))
_log_pdf = jax.jit(lambda shape, x: shape.log_pdf(x))
_bins = jax.jit(lambda shape, edges: shape.bin_integrals(edges))


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def test_faddeeva_against_scipy():
    x = np.linspace(-40.0, 40.0, 801)
    for y, tolerance in [(30.0, 1e-14), (1.0, 5e-14), (0.1, 3e-13)]:
        z = x + 1j * y
        got, reference = np.asarray(faddeeva(z)), scipy.special.wofz(z)
        assert np.max(np.abs(got - reference) / np.abs(reference)) < 5e-14
        assert rel(got.real, reference.real) < tolerance


def test_breit_wigner_against_scipy_and_mpmath():
    mass, width, lower, upper = 3.097, 0.3, 2.0, 4.5
    shape = BreitWigner(mass, width, lower, upper)
    ref = stats.cauchy(mass, width / 2)
    norm = ref.cdf(upper) - ref.cdf(lower)
    x = np.linspace(1.9, 4.6, 55)
    inside = (x >= lower) & (x <= upper)
    assert rel(_pdf(shape, x), np.where(inside, ref.pdf(x) / norm, 0.0)) < 1e-13
    edges = np.linspace(lower, 3.3, 27)
    assert rel(_bins(shape, edges), np.diff(ref.cdf(edges)) / norm) < 1e-12
    # far-tail bins (arctan(z_b) − arctan(z_a) would cancel): 50-digit arctan
    shape = BreitWigner(0.0, 2.0, -1e6, 1e6)
    edges = np.array([-1e6, -1e6 + 1.0, -10.0, 10.0, 1e5, 1e5 + 0.5, 1e6])
    with mpmath.workdps(50):
        antiderivative = [mpmath.atan(mpmath.mpf(float(e))) for e in edges]
        total = antiderivative[-1] - antiderivative[0]
        expected = [float((b - a) / total) for a, b in zip(antiderivative[:-1], antiderivative[1:])]
    assert rel(_bins(shape, edges), expected) < 1e-13


@pytest.mark.parametrize("width, sigma, tolerance", [
    (2.4952, 1.5, 1e-12),    # Z-like: comparable widths
    (0.3, 0.05, 1e-12),      # Breit–Wigner dominated
    (0.01, 1.0, 1e-11),      # Gaussian dominated: Re w near the real axis (y = 0.0035)
])
def test_voigtian_against_scipy_quad(width, sigma, tolerance):
    mass, lower, upper = 91.19, 70.0, 110.0
    shape = Voigtian(mass, width, sigma, lower, upper)
    density = lambda v: scipy.special.voigt_profile(v - mass, sigma, width / 2)
    scale = max(width, sigma)
    breaks = list(mass + scale * np.array([-10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0]))

    def integral(a, b):
        points = [p for p in breaks if a < p < b] or None
        return quad(density, a, b, epsabs=0, epsrel=1e-13, limit=2000, points=points)[0]

    norm = integral(lower, upper)
    x = np.linspace(69.0, 111.0, 85)
    inside = (x >= lower) & (x <= upper)
    assert rel(_pdf(shape, x), np.where(inside, density(x) / norm, 0.0)) < tolerance
    assert rel(_pdf(shape, x[inside]), nb_voigt.pdf(x[inside], width / 2, mass, sigma) / norm) < tolerance
    # ordinary bins, bins much wider than the peak, bins inside it, far-tail bins
    edges = np.array([70.0, 70.5, 80.0, 90.0, 91.0, 91.1, 91.19, 91.3, 92.0, 95.0, 109.0, 110.0])
    expected = np.array([integral(a, b) for a, b in zip(edges[:-1], edges[1:])]) / norm
    assert rel(_bins(shape, edges), expected) < tolerance
    assert abs(float(np.sum(_bins(shape, np.linspace(lower, upper, 41)))) - 1.0) < 1e-13


@pytest.mark.parametrize("build, message", [
    (lambda: BreitWigner(1.0, 0.0, 0.0, 2.0), "BreitWigner: width must be finite and > 0"),
    (lambda: Voigtian(1.0, 0.1, -0.1, 0.0, 2.0), "Voigtian: sigma must be finite and > 0"),
    (lambda: Voigtian(1.0, np.nan, 0.1, 0.0, 2.0), "Voigtian: width must be finite"),
])
def test_bad_parameters(build, message):
    with pytest.raises(ShapeError, match="^" + message):
        build()
