"""Bernstein and Chebyshev shapes, and the Bernstein basis integrals, against
numba-stats, scipy and numpy's Chebyshev module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from numba_stats import bernstein as nb_bernstein
from numpy.polynomial import chebyshev as npcheb
from scipy.interpolate import BPoly

import diffana  # noqa: F401  (float64)
from diffana.shapes import Bernstein, Chebyshev, ShapeError, bernstein_basis_integrals

COEFFICIENTS = np.array([2.0, 0.3, 1.5, 0.0, 4.0])
LOWER, UPPER = 0.5, 3.5


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def test_bernstein_against_numba_stats_and_scipy():
    shape = Bernstein(COEFFICIENTS, LOWER, UPPER)
    norm = (UPPER - LOWER) * COEFFICIENTS.sum() / len(COEFFICIENTS)
    x = np.linspace(LOWER, UPPER, 31)
    reference = nb_bernstein.density(x, COEFFICIENTS, LOWER, UPPER) / norm
    assert rel(shape.pdf(x), reference) < 1e-13
    assert rel(shape.pdf(x), BPoly(COEFFICIENTS[:, None], [LOWER, UPPER])(x) / norm) < 1e-13
    assert float(shape.pdf(LOWER - 0.1)) == 0.0 and float(shape.pdf(UPPER + 0.1)) == 0.0
    edges = np.linspace(LOWER, UPPER, 16)
    integral = nb_bernstein.integral(edges, COEFFICIENTS, LOWER, UPPER)
    assert rel(shape.bin_integrals(edges), np.diff(integral) / norm) < 1e-12
    assert rel(shape.cdf(x), nb_bernstein.integral(x, COEFFICIENTS, LOWER, UPPER) / norm) < 1e-12
    assert abs(float(jnp.sum(shape.bin_integrals(edges))) - 1.0) < 1e-14


def test_basis_integrals_are_incomplete_beta_differences():
    degree = 4
    edges = np.concatenate([[0.0], np.linspace(0.5, 3.5, 13), [4.0]])  # outer bins are clipped
    matrix = bernstein_basis_integrals(degree, LOWER, UPPER, edges)
    assert matrix.shape == (len(edges) - 1, degree + 1)
    u = (np.clip(edges, LOWER, UPPER) - LOWER) / (UPPER - LOWER)
    k = np.arange(degree + 1)
    beta = scipy.special.betainc(k + 1, degree - k + 1, u[:, None])
    expected = (UPPER - LOWER) / (degree + 1) * np.diff(beta, axis=0)
    assert np.max(np.abs(matrix - expected)) < 1e-15
    # each column integrates to (upper − lower)/(n + 1) over the range
    assert np.max(np.abs(matrix.sum(axis=0) - (UPPER - LOWER) / (degree + 1))) < 1e-15
    shape = Bernstein(COEFFICIENTS, LOWER, UPPER)
    assert rel(shape.bin_integrals_unnormalised(edges)[1:-1], matrix[1:-1] @ COEFFICIENTS) < 1e-14


def test_basis_integrals_keep_precision_at_both_ends():
    """The outermost basis polynomials vanish like u^n at the far end: a bin there holds
    ~1e-40 of their mass and is returned to full relative precision (1 − 1 would give 0)."""
    degree = 6
    edges = np.array([0.0, 1e-7, 0.5, 1.0 - 1e-7, 1.0])
    matrix = np.asarray(bernstein_basis_integrals(degree, 0.0, 1.0, edges))
    # b_{n,n} = u^n on [0, 1e-7] and b_{0,n} = (1 − u)^n on [1 − 1e-7, 1]: 1e-7^(n+1)/(n+1)
    assert rel(matrix[0, degree], 1e-7 ** (degree + 1) / (degree + 1)) < 1e-12
    width = 1.0 - (1.0 - 1e-7)  # the last bin's width as stored (exact subtraction)
    assert rel(matrix[-1, 0], width ** (degree + 1) / (degree + 1)) < 1e-12


def test_bernstein_gradients_are_finite_at_the_ends():
    edges = jnp.linspace(LOWER, UPPER, 6)

    def first_bin(coefficients, lower):
        return Bernstein(coefficients, lower, UPPER).bin_integrals(edges.at[0].set(lower))[0]

    gradient = jax.grad(first_bin, argnums=(0, 1))(jnp.asarray(COEFFICIENTS), LOWER)
    assert all(np.all(np.isfinite(g)) for g in gradient)
    value_gradient = jax.grad(lambda x: Bernstein(COEFFICIENTS, LOWER, UPPER).pdf(x))(LOWER)
    assert np.isfinite(value_gradient)


def test_chebyshev_against_numpy():
    coefficients = np.array([0.3, -0.2, 0.1, 0.05])
    shape = Chebyshev(coefficients, LOWER, UPPER)
    full = np.concatenate([[1.0], coefficients])
    t = lambda x: 2 * (x - LOWER) / (UPPER - LOWER) - 1
    antiderivative = npcheb.chebint(full)
    norm = (UPPER - LOWER) / 2 * (npcheb.chebval(1, antiderivative) - npcheb.chebval(-1, antiderivative))
    x = np.linspace(LOWER, UPPER, 31)
    assert rel(shape.pdf(x), npcheb.chebval(t(x), full) / norm) < 1e-13
    edges = np.linspace(LOWER, UPPER, 16)
    expected = (UPPER - LOWER) / 2 * np.diff(npcheb.chebval(t(edges), antiderivative)) / norm
    assert rel(shape.bin_integrals(edges), expected) < 1e-12
    assert abs(float(jnp.sum(shape.bin_integrals(edges))) - 1.0) < 1e-14
    flat = Chebyshev([], LOWER, UPPER)
    assert rel(flat.pdf(x), np.full_like(x, 1 / (UPPER - LOWER))) < 1e-15


def test_chebyshev_may_be_negative():
    """Documented: RooChebychev-style coefficients can make the density negative."""
    shape = Chebyshev([0.0, 2.0], -1.0, 1.0)  # 1 + 2(2t² − 1) < 0 near t = 0
    assert float(shape.pdf(0.0)) < 0


@pytest.mark.parametrize("build, message", [
    (lambda: Bernstein([], 0.0, 1.0), "Bernstein: coefficients must be a 1-D array of at least 1 entries"),
    (lambda: Bernstein([0.0, 0.0], 0.0, 1.0), "Bernstein: coefficients must have a positive sum"),
    (lambda: Bernstein([1.0, np.inf], 0.0, 1.0), "Bernstein: coefficients must be finite"),
    (lambda: Bernstein([1.0], 1.0, 1.0), "Bernstein: the range needs lower < upper"),
    (lambda: Chebyshev([0.0, 4.0], 0.0, 1.0), "Chebyshev: coefficients must give a positive integral"),
])
def test_bad_parameters(build, message):
    with pytest.raises(ShapeError, match="^" + message.replace("(", r"\(")) as error:
        build()
    assert "\n" not in str(error.value)
