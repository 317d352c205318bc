"""A Gaussian kernel density estimate from a sample, normalised on the range
(RooKeysPdf without adaptive widths or mirroring; zfit's KDE1DimExact;
scipy.stats.gaussian_kde).

    f(x) ∝ Σ_i w_i φ((x − x_i)/h)/h,   F(b) − F(a) ∝ Σ_i w_i [Φ((b − x_i)/h) − Φ((a − x_i)/h)]

renormalised to 1 on [lower, upper] (kernel mass outside the range is dropped, not
mirrored). Each kernel's bin mass is taken on its own tail side
(:func:`diffana.shapes.base.normal_mass`), so there is no cancellation. Cost: one
kernel evaluation per (point, sample event), so keep samples to ~10⁴ events.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.shapes.base import Shape, ShapeError, check, check_range, normal_mass, parameter

__all__ = ["KDE", "BANDWIDTH_RULES"]

BANDWIDTH_RULES = ("silverman", "scott")
"""h = σ̂·(4/(3 n_eff))^(1/5) ("silverman", as scipy's gaussian_kde bw_method="silverman"
and RooKeysPdf's non-adaptive width) or σ̂·n_eff^(−1/5) ("scott", scipy's default);
σ̂ the (weighted) sample standard deviation with scipy's bias correction and
n_eff = (Σw)²/Σw² (the number of events when unweighted)."""


class KDE(Shape):
    """Gaussian KDE of ``sample`` (N,) with optional non-negative ``weights`` (N,) and
    bandwidth ``bandwidth`` (a number in x units, or a rule in :data:`BANDWIDTH_RULES`),
    normalised on [lower, upper]."""

    sample: jax.Array
    weights: jax.Array
    bandwidth: jax.Array

    def __init__(self, sample, lower, upper, bandwidth="silverman", weights=None):
        name = "KDE"
        if is_concrete(sample):
            values = np.asarray(sample, dtype=float)
            if values.ndim != 1 or values.size == 0:
                raise ShapeError(f"{name}: sample must be a non-empty 1-D array, got shape {values.shape}")
        check(name, "sample", sample, "")
        sample = parameter(sample)
        if weights is None:
            weights = jnp.ones_like(sample)
        else:
            check(name, "weights", weights, ">= 0 with a positive sum",
                  lambda v: (v >= 0).all() & (v.sum() > 0) & (v.shape == np.shape(sample)))
            weights = parameter(weights)
        check_range(name, lower, upper)
        if isinstance(bandwidth, str):
            if bandwidth not in BANDWIDTH_RULES:
                raise ShapeError(f"{name}: bandwidth must be a number or one of {BANDWIDTH_RULES}, "
                                 f"got {bandwidth!r}")
            bandwidth = _rule(bandwidth, sample, weights)
            check(name, "bandwidth", bandwidth, "> 0 (the sample needs a spread)", lambda v: v > 0)
        else:
            check(name, "bandwidth", bandwidth, "> 0", lambda v: v > 0)
        self.sample, self.weights, self.bandwidth = sample, weights, parameter(bandwidth)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _density(self, x):
        z = (jnp.asarray(x)[..., None] - self.sample) / self.bandwidth
        return jnp.sum(self.weights * jnp.exp(-0.5 * z * z), axis=-1) / (self.bandwidth * math.sqrt(2 * math.pi))

    def _integral(self, a, b):
        p = (jnp.asarray(a)[..., None] - self.sample) / self.bandwidth
        q = (jnp.asarray(b)[..., None] - self.sample) / self.bandwidth
        return jnp.sum(self.weights * normal_mass(p, q), axis=-1) / math.sqrt(2 * math.pi)


def _rule(rule: str, sample, weights):
    total = jnp.sum(weights)
    n_eff = total ** 2 / jnp.sum(weights ** 2)
    mean = jnp.sum(weights * sample) / total
    # scipy's weighted covariance: Σw(x − mean)² / (Σw − Σw²/Σw)
    variance = jnp.sum(weights * (sample - mean) ** 2) / (total - jnp.sum(weights ** 2) / total)
    factor = (4.0 / (3.0 * n_eff)) ** 0.2 if rule == "silverman" else n_eff ** -0.2
    return jnp.sqrt(variance) * factor
