"""The Gaussian (normal) shape, truncated to its range."""

from __future__ import annotations

import jax

from diffana.shapes.base import Shape, check, check_range, normal_mass, parameter

__all__ = ["Gaussian"]


class Gaussian(Shape):
    """f(x) ∝ exp(−(x − mean)²/(2 sigma²)) on [lower, upper].

    Bin integrals are erf/erfc differences taken on the side of the mean each bin is
    on (:func:`diffana.shapes.base.normal_mass`), so bins far in either tail keep
    full relative precision (no 1 − 1)."""

    mean: jax.Array
    sigma: jax.Array

    def __init__(self, mean, sigma, lower, upper):
        check("Gaussian", "mean", mean, "")
        check("Gaussian", "sigma", sigma, "> 0", lambda v: v > 0)
        check_range("Gaussian", lower, upper)
        self.mean, self.sigma = parameter(mean), parameter(sigma)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _log_density(self, x):
        z = (x - self.mean) / self.sigma
        return -0.5 * z * z

    def _integral(self, a, b):
        return self.sigma * normal_mass((a - self.mean) / self.sigma, (b - self.mean) / self.sigma)
