"""Interpolation codes for systematic variations, with HistFactory/pyhf semantics.

A nuisance parameter ``alpha`` (in units of the variation's standard deviation)
moves a yield between its "down" (alpha = -1), nominal (0) and "up" (+1) templates.

- normsys (a multiplicative factor on a whole sample): ``code1`` (exponential) and
  ``code4`` (6th-order polynomial for |alpha| < 1, exponential outside; smooth to
  second order, the ROOT/pyhf default).
- histosys (an additive shift per bin): ``code0`` (piecewise linear) and ``code4p``
  (6th-order polynomial for |alpha| <= 1, linear outside; the pyhf default).

All functions broadcast over ``alpha`` and the template arrays.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

NORMSYS_CODES = ("code1", "code4")
HISTOSYS_CODES = ("code0", "code4p")

# Inverse of the 6x6 system that matches value, first and second derivative of the
# polynomial to the exponential branches at alpha = +-1 (alpha0 = 1, see pyhf's
# interpolators/code4.py for the derivation).
_CODE4_INVERSE = np.array(  # numpy: no XLA compile at import
    [
        [15.0 / 16, -15.0 / 16, -7.0 / 16, -7.0 / 16, 1.0 / 16, -1.0 / 16],
        [3.0 / 2, 3.0 / 2, -9.0 / 16, 9.0 / 16, 1.0 / 16, 1.0 / 16],
        [-5.0 / 8, 5.0 / 8, 5.0 / 8, 5.0 / 8, -1.0 / 8, 1.0 / 8],
        [-3.0 / 2, -3.0 / 2, 7.0 / 8, -7.0 / 8, -1.0 / 8, -1.0 / 8],
        [3.0 / 16, -3.0 / 16, -3.0 / 16, -3.0 / 16, 1.0 / 16, -1.0 / 16],
        [1.0 / 2, 1.0 / 2, -5.0 / 16, 5.0 / 16, 1.0 / 16, 1.0 / 16],
    ]
)


def normsys_code1(alpha, hi, lo):
    """Exponential interpolation: ``hi**alpha`` for alpha >= 0, ``lo**(-alpha)`` below."""
    return jnp.where(alpha >= 0, jnp.power(hi, alpha), jnp.power(lo, -alpha))


def normsys_code4(alpha, hi, lo):
    """Polynomial interpolation inside |alpha| < 1, exponential extrapolation outside."""
    log_hi, log_lo = jnp.log(hi), jnp.log(lo)
    b = jnp.stack([hi - 1.0, lo - 1.0, log_hi * hi, -log_lo * lo, log_hi**2 * hi, log_lo**2 * lo])
    coefficients = jnp.tensordot(_CODE4_INVERSE, b, axes=1)  # (6, ...)
    powers = jnp.stack([alpha**k for k in range(1, 7)])
    polynomial = 1.0 + jnp.sum(coefficients * powers, axis=0)
    # The exponential branches are evaluated with |alpha| >= 1 only, so that an
    # unused branch never produces inf/nan that would poison gradients.
    safe_alpha = jnp.where(jnp.abs(alpha) >= 1.0, alpha, 1.0)
    up = jnp.power(hi, safe_alpha)
    down = jnp.power(lo, -safe_alpha)
    return jnp.where(alpha >= 1.0, up, jnp.where(alpha > -1.0, polynomial, down))


def histosys_code0(alpha, up_shift, down_shift):
    """Piecewise-linear shift: ``up_shift * alpha`` above 0, ``down_shift * alpha`` below.

    ``up_shift = hi - nominal`` and ``down_shift = nominal - lo``. At the kink
    (alpha = 0) the value is 0 either way; the derivative is taken from the up side,
    so that a fit starting at alpha = 0 moves as ROOT's and pyhf's fits do (with
    two local minima, the start decides which one a fit reaches).
    """
    return jnp.where(alpha >= 0, up_shift * alpha, down_shift * alpha)


def histosys_code4p(alpha, up_shift, down_shift):
    """Polynomial shift for |alpha| <= 1, linear extrapolation outside."""
    mean = 0.5 * (up_shift + down_shift)
    asymmetry = 0.0625 * (up_shift - down_shift)
    inside = alpha * (mean + alpha * asymmetry * (15.0 + alpha**2 * (-10.0 + 3.0 * alpha**2)))
    return jnp.where(alpha > 1.0, up_shift * alpha, jnp.where(alpha < -1.0, down_shift * alpha, inside))


NORMSYS = {"code1": normsys_code1, "code4": normsys_code4}
HISTOSYS = {"code0": histosys_code0, "code4p": histosys_code4p}
