"""Gaussian and Crystal Ball shapes against scipy.stats, numba-stats and mpmath.

scipy and numba-stats give the pdf to ~1e-15 and their CDFs to ~1e-15 *absolute*,
which is 1e-10 relative for a bin only where its probability is above ~1e-5: the bin
integrals are compared with them in the core and the low tail, and far-tail bins
(where those references' 1 − cdf cancels) with 40-digit mpmath antiderivatives written
independently (RooCBShape's A·(B − z)^(−n) form, erf for the core) to 1e-12.
"""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from numba_stats import crystalball as nb_crystalball
from numba_stats import crystalball_ex as nb_crystalball_ex
from scipy import stats

import diffana  # noqa: F401  (float64)
from diffana.shapes import (
    CrystalBall,
    CrystalBallSum,
    DoubleCrystalBall,
    DoubleCrystalBallSum,
    Gaussian,
    ShapeError,
)



# compiled once per shape class (eager evaluation compiles every operation separately)
_pdf = jax.jit(lambda shape, x: shape.pdf(x))
_log_pdf = jax.jit(lambda shape, x: shape.log_pdf(x))
_bins = jax.jit(lambda shape, edges: shape.bin_integrals(edges))


def truncated(pdf, cdf, lower, upper):
    """The reference pdf and bin probabilities of a real-line distribution on a range."""
    norm = cdf(upper) - cdf(lower)
    return (lambda x: np.where((x >= lower) & (x <= upper), pdf(x) / norm, 0.0),
            lambda edges: np.diff(cdf(np.clip(edges, lower, upper))) / norm)


def mp_cb_antiderivative(alpha_low, n_low, alpha_high=None, n_high=None):
    """F(z) = ∫_{−∞}^z of the (double) Crystal Ball density in z at 40 digits, written
    as RooCBShape does: A (B − |z|)^(−n) in a tail, A = (n/α)^n e^(−α²/2), B = n/α − α,
    integrated in closed form (A (B − |z|)^(1−n)/(n − 1)) — independent of diffana's
    expm1/log1p form."""
    mp = mpmath.mpf

    def gauss(a, b):
        return mpmath.sqrt(mpmath.pi / 2) * (mpmath.erf(b / mpmath.sqrt(2)) - mpmath.erf(a / mpmath.sqrt(2)))

    def roofit_tail_beyond(t, alpha, n):  # t = |z| >= alpha
        a = (n / alpha) ** n * mpmath.exp(-alpha ** 2 / 2)
        b = n / alpha - alpha
        return a * (b + t) ** (1 - n) / (n - 1)

    low_mass = roofit_tail_beyond(alpha_low, alpha_low, n_low)

    def F(z):
        z = mp(z)
        if z <= -alpha_low:
            return roofit_tail_beyond(-z, alpha_low, n_low)
        if alpha_high is None or z <= alpha_high:
            return low_mass + gauss(-alpha_low, z)
        return (low_mass + gauss(-alpha_low, alpha_high) + roofit_tail_beyond(alpha_high, alpha_high, n_high)
                - roofit_tail_beyond(z, alpha_high, n_high))
    return F


def mp_bins(F, mean, sigma, lower, upper, edges):
    """Bin probabilities on [lower, upper] from an antiderivative F(z) at 400 digits."""
    with mpmath.workdps(400):  # the Gaussian bins 30 sigma out are differences of O(1) erfs
        values = [F((mpmath.mpf(float(e)) - mean) / sigma) for e in edges]
        norm = F((mpmath.mpf(upper) - mean) / sigma) - F((mpmath.mpf(lower) - mean) / sigma)
        return np.array([float((b - a) / norm) for a, b in zip(values[:-1], values[1:])])


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


# --- Gaussian ------------------------------------------------------------------------

def test_gaussian_against_scipy():
    mean, sigma, lower, upper = 1.3, 0.7, -1.0, 4.0
    shape = Gaussian(mean, sigma, lower, upper)
    ref = stats.norm(mean, sigma)
    pdf, bins = truncated(ref.pdf, ref.cdf, lower, upper)
    x = np.linspace(-1.5, 4.5, 41)
    assert rel(_pdf(shape, x), pdf(x)) < 1e-13
    assert rel(_log_pdf(shape, x[(x >= lower) & (x <= upper)]),
               np.log(pdf(x[(x >= lower) & (x <= upper)]))) < 1e-13
    edges = np.linspace(-1.2, 4.2, 28)
    assert rel(_bins(shape, edges), bins(edges)) < 1e-12
    assert rel(shape.cdf(x), np.clip((ref.cdf(x) - ref.cdf(lower)) / (ref.cdf(upper) - ref.cdf(lower)), 0, 1)) < 1e-12


def test_gaussian_far_tails_against_mpmath():
    """Bins 10–30 sigma out on both sides keep ~1e-14 relative precision (scipy's cdf
    differences would return 0 there above the mean)."""
    shape = Gaussian(0.0, 1.0, -32.0, 32.0)
    edges = np.array([-30.0, -25.0, -20.0, -12.0, -10.0, -0.1, 0.1, 10.0, 10.01, 12.0, 20.0, 30.0])
    expected = mp_bins(lambda z: -mpmath.erfc(z / mpmath.sqrt(2)), 0, 1, -32, 32, edges)
    assert rel(_bins(shape, edges), expected) < 1e-13


# --- Crystal Ball --------------------------------------------------------------------

CB = dict(mean=91.0, sigma=2.5, alpha=1.3, n=2.7, lower=60.0, upper=110.0)


def test_crystal_ball_against_scipy_and_numba_stats():
    p = CB
    shape = CrystalBall(p["mean"], p["sigma"], p["alpha"], p["n"], p["lower"], p["upper"])
    ref = stats.crystalball(p["alpha"], p["n"], loc=p["mean"], scale=p["sigma"])
    pdf, bins = truncated(ref.pdf, ref.cdf, p["lower"], p["upper"])
    x = np.linspace(55.0, 115.0, 241)
    assert rel(_pdf(shape, x), pdf(x)) < 1e-12
    nb = lambda v: nb_crystalball.pdf(v, p["alpha"], p["n"], p["mean"], p["sigma"])
    nb_cdf = lambda v: nb_crystalball.cdf(v, p["alpha"], p["n"], p["mean"], p["sigma"])
    nb_pdf, nb_bins = truncated(nb, nb_cdf, p["lower"], p["upper"])
    assert rel(_pdf(shape, x), nb_pdf(x)) < 1e-12
    # bins up to 2 sigma above the mean: the references' CDFs are accurate there
    edges = np.linspace(60.0, 96.0, 37)
    assert rel(_bins(shape, edges), bins(edges)) < 1e-10
    assert rel(_bins(shape, edges), nb_bins(edges)) < 1e-10


def test_crystal_ball_tails_against_mpmath():
    p = CB
    shape = CrystalBall(p["mean"], p["sigma"], p["alpha"], p["n"], p["lower"], p["upper"])
    edges = np.array([60.0, 60.001, 70.0, 85.0, 87.7, 87.75, 91.0, 100.0, 110.0 - 1e-3, 110.0])
    F = mp_cb_antiderivative(mpmath.mpf(p["alpha"]), mpmath.mpf(p["n"]))
    expected = mp_bins(F, p["mean"], p["sigma"], p["lower"], p["upper"], edges)
    assert rel(_bins(shape, edges), expected) < 1e-12


def test_crystal_ball_high_side_is_the_mirror_image():
    low = CrystalBall(0.5, 1.2, 1.1, 3.5, -7.0, 6.0)
    high = CrystalBall(-0.5, 1.2, 1.1, 3.5, -6.0, 7.0, side="high")
    x = np.linspace(-7.0, 6.0, 27)
    assert rel(_pdf(high, -x), _pdf(low, x)) < 1e-14
    edges = np.linspace(-7.0, 6.0, 14)
    assert rel(_bins(high, -edges[::-1])[::-1], _bins(low, edges)) < 1e-13


def test_double_crystal_ball_against_numba_stats_and_mpmath():
    mean, sigma, al, nl, ah, nh, lower, upper = 3.0, 0.4, 1.4, 2.2, 0.9, 6.0, 0.0, 8.0
    shape = DoubleCrystalBall(mean, sigma, al, nl, ah, nh, lower, upper)
    args = (al, nl, sigma, ah, nh, sigma, mean)
    pdf, bins = truncated(lambda v: nb_crystalball_ex.pdf(v, *args),
                          lambda v: nb_crystalball_ex.cdf(v, *args), lower, upper)
    x = np.linspace(-0.5, 8.5, 181)
    assert rel(_pdf(shape, x), pdf(x)) < 1e-12
    edges = np.linspace(0.0, 3.4, 35)
    assert rel(_bins(shape, edges), bins(edges)) < 1e-10
    tail_edges = np.array([0.0, 0.3, 2.4, 2.44, 3.0, 3.36, 3.4, 5.0, 7.99, 8.0])
    F = mp_cb_antiderivative(mpmath.mpf(al), mpmath.mpf(nl), mpmath.mpf(ah), mpmath.mpf(nh))
    expected = mp_bins(F, mean, sigma, lower, upper, tail_edges)
    assert rel(_bins(shape, tail_edges), expected) < 1e-12


def test_sums_are_weighted_components_each_normalised_on_the_range():
    lower, upper = 80.0, 100.0
    sigma, alpha, n, fractions = [1.0, 2.5, 4.0], [1.2, 2.0, 1.5], [3.0, 1.5, 5.0], [0.5, 0.3]
    total = CrystalBallSum(90.0, sigma, alpha, n, fractions, lower, upper)
    weights = [0.5, 0.3, 0.2]
    parts = [CrystalBall(90.0, s, a, m, lower, upper) for s, a, m in zip(sigma, alpha, n)]
    x = np.linspace(79.0, 101.0, 45)
    edges = np.linspace(lower, upper, 21)
    assert rel(_pdf(total, x), sum(w * _pdf(c, x) for w, c in zip(weights, parts))) < 1e-13
    assert rel(_bins(total, edges), sum(w * _bins(c, edges) for w, c in zip(weights, parts))) < 1e-13
    inside = (x >= lower) & (x <= upper)
    assert rel(_log_pdf(total, x[inside]), np.log(_pdf(total, x[inside]))) < 1e-13

    double = DoubleCrystalBallSum(90.0, sigma[:2], alpha[:2], n[:2], [0.8, 1.1], [4.0, 2.0], [0.25], lower, upper)
    parts = [DoubleCrystalBall(90.0, s, a, m, ah, nh, lower, upper)
             for s, a, m, ah, nh in zip(sigma, alpha, n, [0.8, 1.1], [4.0, 2.0])]
    assert rel(_bins(double, edges), 0.25 * _bins(parts[0], edges) + 0.75 * _bins(parts[1], edges)) < 1e-13
    high = CrystalBallSum(90.0, sigma, alpha, n, fractions, lower, upper, side="high")
    parts = [CrystalBall(90.0, s, a, m, lower, upper, side="high") for s, a, m in zip(sigma, alpha, n)]
    assert rel(_pdf(high, x), sum(w * _pdf(c, x) for w, c in zip(weights, parts))) < 1e-13


def test_zero_fraction_is_finite_with_finite_gradient():
    def log_pdf(fractions):
        return CrystalBallSum(0.0, jnp.array([1.0, 2.0]), jnp.array([1.5, 1.5]),
                              jnp.array([3.0, 3.0]), fractions, -5.0, 5.0).log_pdf(0.3)
    gradient = jax.grad(log_pdf)(jnp.array([0.0]))
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("build, message", [
    (lambda: Gaussian(0.0, 0.0, -1.0, 1.0), "Gaussian: sigma must be finite and > 0, got 0.0"),
    (lambda: Gaussian(0.0, 1.0, 1.0, -1.0), "Gaussian: the range needs lower < upper"),
    (lambda: Gaussian(np.nan, 1.0, -1.0, 1.0), "Gaussian: mean must be finite"),
    (lambda: CrystalBall(0.0, 1.0, -1.0, 2.0, -1.0, 1.0), "CrystalBall: alpha must be finite and > 0"),
    (lambda: CrystalBall(0.0, 1.0, 1.0, 1.0, -1.0, 1.0), "CrystalBall: n must be finite and > 1"),
    (lambda: CrystalBall(0.0, 1.0, 1.0, 2.0, -1.0, 1.0, side="left"), "CrystalBall: side must be 'low' or 'high'"),
    (lambda: DoubleCrystalBall(0.0, 1.0, 1.0, 2.0, 1.0, 0.5, -1.0, 1.0), "DoubleCrystalBall: n_high must be finite and > 1"),
    (lambda: DoubleCrystalBall(0.0, 1.0, 1.0, 2.0, 0.0, 2.0, -1.0, np.inf), "DoubleCrystalBall: alpha_high"),
    (lambda: DoubleCrystalBall(0.0, 1.0, 1.0, 2.0, 1.0, 2.0, -1.0, np.inf), "DoubleCrystalBall: upper must be finite"),
    (lambda: CrystalBallSum(0.0, [1.0, 2.0], [1.0, 1.0], [2.0, 2.0], [0.5, 0.5], -1.0, 1.0), "CrystalBallSum: fractions must have 1 entries"),
    (lambda: CrystalBallSum(0.0, [1.0, 2.0], [1.0], [2.0, 2.0], [0.5], -1.0, 1.0), "CrystalBallSum: sigma, alpha, n must be 1-D arrays of one length"),
    (lambda: DoubleCrystalBallSum(0.0, [1.0, 2.0, 3.0], [1.0] * 3, [2.0] * 3, [1.0] * 3, [2.0] * 3, [0.7, 0.6], -1.0, 1.0),
     "DoubleCrystalBallSum: fractions must be finite and in [0, 1] with sum <= 1"),
])
def test_bad_parameters_name_the_shape_and_the_parameter(build, message):
    with pytest.raises(ShapeError, match="^" + message.replace("(", r"\(").replace("[", r"\[")) as error:
        build()
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


def test_checks_are_skipped_under_jit():
    """A traced sigma is not checked (no ConcretizationTypeError)."""
    value = jax.jit(lambda s: Gaussian(0.0, s, -1.0, 1.0).pdf(0.0))(-1.0)
    assert np.shape(value) == ()
