"""The Breit–Wigner (Cauchy) and the Voigtian (Breit–Wigner ⊗ Gaussian), with a JAX
Faddeeva function.

Breit–Wigner: f(x) ∝ 1/((x − mass)² + (width/2)²), ``width`` = Γ the full width at half
maximum (RooBreitWigner, scipy.stats.cauchy with scale = Γ/2). Its antiderivative is
arctan; a bin on one side of the peak uses arctan((z_b − z_a)/(1 + z_a·z_b)), which
does not cancel far in the tails.

Voigtian: the convolution of that Breit–Wigner with a Gaussian of standard deviation
``sigma`` (RooVoigtian(x, mean, width, sigma), scipy.special.voigt_profile(x − mass,
sigma, width/2), numba_stats.voigt with gamma = width/2):

    V(x) = Re w(z) / (sigma·√(2π)),   z = (x − mass + i·width/2) / (sigma·√2)

with w the Faddeeva function (:func:`faddeeva`). The Voigt profile has no elementary
antiderivative, so bins are integrated numerically. The real line is mapped to
θ = arctan((x − mass)/s) ∈ (−π/2, π/2), s the Voigt half width at half maximum
(Olivero's approximation), where the density times dx/dθ is smooth and bounded
(constant for a pure Breit–Wigner); (−π/2, π/2) is cut into :data:`VOIGT_CELLS`
equal cells, each integrated once with :data:`VOIGT_ORDER`-point Gauss–Legendre
quadrature. A bin is the sum of its whole cells' stored integrals and one
Gauss–Legendre rule over each of its two partial end cells (one rule when it lies in
one cell): a sum of non-negative pieces, so 2 × 16 density evaluations per bin plus
32 × 16 per shape. The normalisation is the same sum over the range. Measured
accuracy: docs/shapes.md and tests/shapes/test_shapes_resonances.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffana.shapes.base import Shape, check, check_range, parameter

__all__ = ["BreitWigner", "Voigtian", "faddeeva", "VOIGT_ORDER", "VOIGT_CELLS"]


# --- Faddeeva function (Weideman 1994) ------------------------------------------------

FADDEEVA_TERMS = 40
"""N of Weideman's rational approximation. Measured against scipy.special.wofz on
x ∈ [−60, 60]: |w| to 2e-14 relative for every y > 0 (rounding-limited: N = 64 or 96
is no better); Re w to 1e-14 for y >= 1, 6e-14 at y = 0.1, 6e-13 at y = 0.01,
6e-12 at y = 1e-3 (near the real axis Re w ≪ Im w, and the rounding of the
polynomial is relative to |w|). N = 32 (jax.scipy.special.wofz's choice) gives Re w
only to 3e-11 at y = 0.1."""


def _weideman(n: int):
    """(L, coefficients of the degree n−1 polynomial, highest first), computed with numpy."""
    m = 2 * n
    k = np.arange(-m + 1, m)
    length = math.sqrt(n / math.sqrt(2.0))
    t = length * np.tan(k * np.pi / m / 2.0)
    f = np.concatenate([[0.0], np.exp(-t * t) * (length * length + t * t)])
    a = np.real(np.fft.fft(np.fft.fftshift(f))) / (2 * m)
    return length, np.flipud(a[1:n + 1])


_WEIDEMAN_L, _WEIDEMAN_A = _weideman(FADDEEVA_TERMS)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def faddeeva(z) -> jax.Array:
    """w(z) = exp(−z²)·erfc(−iz) for Im z >= 0 (the upper half plane only), by
    Weideman's rational approximation with N = :data:`FADDEEVA_TERMS`; complex,
    differentiable (holomorphic: w'(z) = −2z·w(z) + 2i/√π)."""
    z = jnp.asarray(z, dtype=complex)
    l_minus = _WEIDEMAN_L - 1j * z
    ratio = (_WEIDEMAN_L + 1j * z) / l_minus

    def horner(p, coefficient):
        return p * ratio + coefficient, None

    # a scan, not an unrolled loop: 40 steps compile as one (compile time, also of grads)
    p, _ = jax.lax.scan(horner, jnp.zeros_like(z) + _WEIDEMAN_A[0], jnp.asarray(_WEIDEMAN_A[1:]))
    return 2.0 * p / (l_minus * l_minus) + _INV_SQRT_PI / l_minus


# --- Breit–Wigner ---------------------------------------------------------------------

def _arctan_difference(p, q):
    """arctan(q) − arctan(p) for p <= q, without cancellation when both have one sign."""
    same_side = p * q > 0
    denominator = jnp.where(same_side, 1.0 + p * q, 1.0)
    return jnp.where(same_side, jnp.arctan((q - p) / denominator), jnp.arctan(q) - jnp.arctan(p))


class BreitWigner(Shape):
    """Non-relativistic Breit–Wigner (Cauchy) f(x) ∝ 1/((x − mass)² + (width/2)²);
    ``width`` is the FWHM Γ > 0."""

    mass: jax.Array
    width: jax.Array

    def __init__(self, mass, width, lower, upper):
        check("BreitWigner", "mass", mass, "")
        check("BreitWigner", "width", width, "> 0", lambda v: v > 0)
        check_range("BreitWigner", lower, upper)
        self.mass, self.width = parameter(mass), parameter(width)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _density(self, x):
        z = (x - self.mass) / (0.5 * self.width)
        return 1.0 / (1.0 + z * z)

    def _integral(self, a, b):
        half = 0.5 * self.width
        return half * _arctan_difference((a - self.mass) / half, (b - self.mass) / half)


# --- Voigtian -------------------------------------------------------------------------

VOIGT_ORDER = 16
"""Gauss–Legendre points per piece of a Voigtian bin (in θ = arctan((x − mass)/s))."""
VOIGT_CELLS = 32
"""Equal θ-cells of (−π/2, π/2); a bin is integrated cell by cell (module docstring)."""
_CELL = math.pi / VOIGT_CELLS

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(VOIGT_ORDER)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


class Voigtian(Shape):
    """Breit–Wigner (``mass``, FWHM ``width``) convolved with a Gaussian of standard
    deviation ``sigma``; width > 0, sigma > 0. pdf via :func:`faddeeva`, bin integrals by
    Gauss–Legendre quadrature in θ = arctan((x − mass)/s) (module docstring)."""

    mass: jax.Array
    width: jax.Array
    sigma: jax.Array

    def __init__(self, mass, width, sigma, lower, upper):
        check("Voigtian", "mass", mass, "")
        check("Voigtian", "width", width, "> 0", lambda v: v > 0)
        check("Voigtian", "sigma", sigma, "> 0", lambda v: v > 0)
        check_range("Voigtian", lower, upper)
        self.mass, self.width, self.sigma = parameter(mass), parameter(width), parameter(sigma)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _density(self, x):
        z = ((x - self.mass) + 0.5j * self.width) / (self.sigma * math.sqrt(2.0))
        return jnp.real(faddeeva(z)) / (self.sigma * _SQRT_2PI)

    def _half_width(self):
        """Olivero & Longbothum's Voigt HWHM (to 0.02%): the θ map's scale."""
        lorentz = self.width
        gauss = 2.0 * self.sigma * math.sqrt(2.0 * math.log(2.0))
        return 0.5 * (0.5346 * lorentz + jnp.sqrt(0.2166 * lorentz ** 2 + gauss ** 2))

    def _theta(self, x):
        return jnp.arctan((jnp.asarray(x) - self.mass) / self._half_width())

    def _gauss_legendre(self, theta_a, theta_b):
        """∫ of the density over [θ_a, θ_b] (within one cell): one Gauss–Legendre rule."""
        s = self._half_width()
        half = 0.5 * (theta_b - theta_a)
        theta = (theta_a + half)[..., None] + half[..., None] * _GL_NODES
        tangent = jnp.tan(theta)
        values = self._density(self.mass + s * tangent) * (s * (1.0 + tangent * tangent))
        return half * jnp.sum(values * _GL_WEIGHTS, axis=-1)

    def _integral(self, a, b):
        """The bin's θ-interval cut at the cell boundaries: the partial cells at its two
        ends by one Gauss–Legendre rule each (one density evaluation for both), the whole
        cells between by their stored integrals; a sum of non-negative pieces."""
        theta_a, theta_b = jnp.broadcast_arrays(self._theta(a), self._theta(b))
        cell_a = jnp.clip(jnp.floor((theta_a + 0.5 * math.pi) / _CELL), 0, VOIGT_CELLS - 1)
        cell_b = jnp.clip(jnp.floor((theta_b + 0.5 * math.pi) / _CELL), 0, VOIGT_CELLS - 1)
        two_cells = cell_b > cell_a
        end_a = jnp.minimum(theta_b, -0.5 * math.pi + (cell_a + 1.0) * _CELL)
        start_b = jnp.where(two_cells, jnp.maximum(theta_a, -0.5 * math.pi + cell_b * _CELL), theta_b)
        ends = self._gauss_legendre(jnp.stack([theta_a, start_b], -1), jnp.stack([end_a, theta_b], -1))
        cells = np.arange(VOIGT_CELLS)
        between = (cells > cell_a[..., None]) & (cells < cell_b[..., None])
        return jnp.sum(ends, axis=-1) + jnp.sum(jnp.where(between, self._cell_integrals(), 0.0), axis=-1)

    def _cell_integrals(self):
        """(VOIGT_CELLS,) ∫ of the density over each θ-cell."""
        edges = -0.5 * math.pi + _CELL * np.arange(VOIGT_CELLS + 1)
        start = jnp.broadcast_to(jnp.asarray(edges[:-1]), self.mass.shape + (VOIGT_CELLS,))
        end = jnp.broadcast_to(jnp.asarray(edges[1:]), self.mass.shape + (VOIGT_CELLS,))
        return self._gauss_legendre(start, end)
