"""The exponential shape f(x) ∝ exp(slope·x) on the range (RooExponential's
exp(c·x); zfit's Exponential(lam)); any slope, including 0 (then flat) and positive."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffana.shapes.base import Shape, check, check_range, parameter

__all__ = ["Exponential"]

_TAYLOR_BELOW = 1e-4  # |t| below which expm1(t)/t is its Taylor series (error t⁴/120 < 1e-18)


def _relative_expm1(t):
    """expm1(t)/t for t <= 0 (1 at t = 0), with finite value and gradient everywhere."""
    small = jnp.abs(t) < _TAYLOR_BELOW
    safe = jnp.where(small, -1.0, t)
    taylor = 1.0 + t * (0.5 + t * (1.0 / 6.0 + t / 24.0))
    return jnp.where(small, taylor, jnp.expm1(safe) / safe)


class Exponential(Shape):
    """f(x) ∝ exp(slope·x) on [lower, upper] (``slope`` in 1/x units; negative for a
    falling spectrum). The density is referred to the range end where it is largest
    (lower for slope <= 0, upper otherwise), so it is <= 1 on the range and never
    overflows, and ∫_a^b = (b − a)·f(larger end)·expm1(t)/t with t = −|slope|·(b − a) <= 0:
    a product, no cancellation, exact as slope → 0 (a Taylor series below |t| = 1e-4)."""

    slope: jax.Array

    def __init__(self, slope, lower, upper):
        check("Exponential", "slope", slope, "")
        check_range("Exponential", lower, upper)
        self.slope = parameter(slope)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _reference(self):
        return jnp.where(self.slope > 0, self.upper, self.lower)

    def _log_density(self, x):
        return self.slope * (x - self._reference())

    def _integral(self, a, b):
        a, b = jnp.asarray(a), jnp.asarray(b)
        rising = self.slope > 0
        larger_end = jnp.where(rising, b, a)
        # t = −|slope|·(b − a), written per branch (jnp.abs has a one-sided gradient at 0)
        t = jnp.where(rising, -self.slope, self.slope) * (b - a)
        return (b - a) * jnp.exp(self._log_density(larger_end)) * _relative_expm1(t)
