"""Small helpers shared by several diffana modules, one copy each.

This module imports nothing from diffana: every other module may import it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["is_concrete", "safe_sqrt"]


def is_concrete(x) -> bool:
    """True when x is a concrete value, not a JAX tracer (checks that need values run only then)."""
    return not isinstance(x, jax.core.Tracer)


def safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt with a finite (zero) gradient at x <= 0 (e.g. a zero test statistic or
    significance): the inner where keeps sqrt's infinite slope at 0 out of the gradient."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
