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
antiderivative, so bins are integrated numerically: each bin is mapped to
θ = arctan((x − mass)/s), s the Voigt half width at half maximum (Olivero's
approximation), in which the density times dx/dθ is smooth and bounded over the
whole real line (constant for a pure Breit–Wigner); the bin's θ-interval is cut into
:data:`VOIGT_PIECES` equal pieces, each integrated with :data:`VOIGT_ORDER`-point
Gauss–Legendre quadrature. The range normalisation is 1 minus the two tails outside the range, each by the
same quadrature with :data:`VOIGT_TAIL_PIECES` pieces. Measured accuracy: see docs/shapes.md and tests/shapes/test_shapes_resonances.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffana.shapes.base import Shape, check, check_range, parameter

__all__ = ["BreitWigner", "Voigtian", "faddeeva", "VOIGT_ORDER", "VOIGT_PIECES", "VOIGT_TAIL_PIECES"]


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
    p = jnp.zeros_like(z) + _WEIDEMAN_A[0]
    for coefficient in _WEIDEMAN_A[1:]:
        p = p * ratio + coefficient
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
VOIGT_PIECES = 4
"""Equal θ-pieces per bin (so VOIGT_ORDER × VOIGT_PIECES density evaluations per bin)."""

VOIGT_TAIL_PIECES = 16
"""θ-pieces for each of the two tails outside the range in the normalisation."""

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

    def _quadrature(self, theta_a, theta_b, pieces: int):
        """∫ of the density from θ_a to θ_b: ``pieces`` equal θ-pieces of Gauss–Legendre."""
        s = self._half_width()
        step = (theta_b - theta_a) / pieces
        starts = theta_a[..., None] + step[..., None] * np.arange(pieces)
        theta = starts[..., None] + (0.5 * step)[..., None, None] * (_GL_NODES + 1.0)
        tangent = jnp.tan(theta)
        values = self._density(self.mass + s * tangent) * (s * (1.0 + tangent * tangent))
        return 0.5 * step * jnp.sum(values * _GL_WEIGHTS, axis=(-2, -1))

    def _integral(self, a, b):
        return self._quadrature(self._theta(a), self._theta(b), VOIGT_PIECES)

    def _normalisation(self):
        """1 − the two tails outside the range (the profile integrates to exactly 1 on
        the real line), each tail by the θ-quadrature with VOIGT_TAIL_PIECES pieces."""
        half_pi = jnp.full_like(self.mass, 0.5 * math.pi)
        below = self._quadrature(-half_pi, self._theta(self.lower), VOIGT_TAIL_PIECES)
        above = self._quadrature(self._theta(self.upper), half_pi, VOIGT_TAIL_PIECES)
        return 1.0 - below - above
