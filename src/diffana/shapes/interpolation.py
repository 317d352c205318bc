"""Shape parameters between generated masses.

Signal shapes are fitted to simulation at a few generated masses m_1 < … < m_K; a
hypothesis at mass m uses parameters interpolated between them:

    params = interpolate_parameters(masses, {"sigma": sigmas, "alpha_low": …}, m)
    shape = DoubleCrystalBall(mean=m, **params, lower=…, upper=…)

``method="linear"`` (default) joins neighbouring points by straight lines;
``method="monotone-cubic"`` is the Fritsch–Carlson/PCHIP cubic (scipy's
PchipInterpolator: C¹, no overshoot, monotone between monotone data). Outside
[m_1, m_K] the call fails (a concrete mass raises :class:`ShapeError`; a traced one,
under jit/vmap, raises at run time through ``equinox.error_if``) unless
``extrapolate=True``, which continues the end segment (the end line, or the end cubic
as scipy's ``extrapolate=True``). Values and gradients (in m and in the table) are
finite everywhere.
"""

from __future__ import annotations

from typing import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.shapes.base import ShapeError

__all__ = ["interpolate", "interpolate_parameters", "METHODS"]

METHODS = ("linear", "monotone-cubic")


def _pchip_slopes(masses, values):
    """PCHIP derivatives at the knots (scipy.interpolate.PchipInterpolator's rule)."""
    h = jnp.diff(masses)  # (K−1,)
    shape = (-1,) + (1,) * (values.ndim - 1)
    h = h.reshape(shape)
    delta = jnp.diff(values, axis=0) / h  # (K−1, …)
    if masses.shape[0] == 2:
        return jnp.concatenate([delta, delta], axis=0)
    h0, h1 = h[:-1], h[1:]
    d0, d1 = delta[:-1], delta[1:]
    w1, w2 = 2.0 * h1 + h0, h1 + 2.0 * h0
    same_sign = (jnp.sign(d0) * jnp.sign(d1)) > 0
    safe0, safe1 = jnp.where(same_sign, d0, 1.0), jnp.where(same_sign, d1, 1.0)
    interior = jnp.where(same_sign, (w1 + w2) / (w1 / safe0 + w2 / safe1), 0.0)

    def edge(h_0, h_1, m_0, m_1):
        d = ((2.0 * h_0 + h_1) * m_0 - h_0 * m_1) / (h_0 + h_1)
        d = jnp.where(jnp.sign(d) != jnp.sign(m_0), 0.0, d)
        return jnp.where((jnp.sign(m_0) != jnp.sign(m_1)) & (jnp.abs(d) > jnp.abs(3.0 * m_0)), 3.0 * m_0, d)

    first = edge(h[0], h[1], delta[0], delta[1])
    last = edge(h[-1], h[-2], delta[-1], delta[-2])
    return jnp.concatenate([first[None], interior, last[None]], axis=0)


def _check_out_of_range(mass, masses, extrapolate):
    if extrapolate:
        return mass
    outside = (mass < masses[0]) | (mass > masses[-1])
    if is_concrete(mass) and is_concrete(masses):
        if np.any(np.asarray(outside)):
            raise ShapeError(f"interpolate: mass {np.asarray(mass).tolist()} is outside the "
                             f"generated masses [{float(masses[0])}, {float(masses[-1])}]; "
                             "pass extrapolate=True to extrapolate")
        return mass
    return eqx.error_if(mass, outside,
                        "interpolate: mass outside the generated masses; pass extrapolate=True")


def interpolate(masses, values, mass, method: str = "linear", extrapolate: bool = False) -> jax.Array:
    """``values`` (K, …) given at increasing ``masses`` (K,), at ``mass`` (a scalar or
    any array): shape ``mass.shape + values.shape[1:]``."""
    if method not in METHODS:
        raise ShapeError(f"interpolate: method must be one of {METHODS}, got {method!r}")
    masses = jnp.asarray(masses, dtype=float)
    values = jnp.asarray(values, dtype=float)
    if masses.ndim != 1 or masses.shape[0] < 2 or values.shape[:1] != masses.shape:
        raise ShapeError(f"interpolate: needs masses (K,) with K >= 2 and values (K, …), got "
                         f"masses {masses.shape} and values {values.shape}")
    if is_concrete(masses) and not np.all(np.diff(np.asarray(masses)) > 0):
        raise ShapeError(f"interpolate: masses must be strictly increasing, got {np.asarray(masses).tolist()}")
    mass = _check_out_of_range(jnp.asarray(mass, dtype=float), masses, extrapolate)
    index = jnp.clip(jnp.searchsorted(masses, mass, side="right") - 1, 0, masses.shape[0] - 2)
    m0, m1 = masses[index], masses[index + 1]
    h = m1 - m0
    t = (mass - m0) / h
    expand = (...,) + (None,) * (values.ndim - 1)
    t, h = t[expand], h[expand]
    y0, y1 = values[index], values[index + 1]
    if method == "linear":
        return y0 + t * (y1 - y0)
    slopes = _pchip_slopes(masses, values)
    d0, d1 = slopes[index], slopes[index + 1]
    # cubic Hermite basis on [m0, m1]
    h00 = (1.0 + 2.0 * t) * (1.0 - t) ** 2
    h10 = t * (1.0 - t) ** 2
    h01 = t * t * (3.0 - 2.0 * t)
    h11 = t * t * (t - 1.0)
    return h00 * y0 + h10 * h * d0 + h01 * y1 + h11 * h * d1


def interpolate_parameters(masses, table: Mapping[str, object], mass, method: str = "linear",
                           extrapolate: bool = False) -> dict[str, jax.Array]:
    """{name: :func:`interpolate`(masses, table[name], mass, …)} for a table of shape
    parameters given at the generated masses (each entry (K,) or (K, …))."""
    return {name: interpolate(masses, values, mass, method, extrapolate) for name, values in table.items()}
