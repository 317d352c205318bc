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


def map_in_blocks(function, args: tuple, block_size: int | None = None):
    """``function(*a_k)`` for every k along the leading axis of the ``args`` arrays.

    ``block_size=None`` (or at least the number of entries): one ``jax.vmap``, the
    fastest. An integer: ``jax.lax.map`` over vmapped blocks of that many entries,
    which bounds memory for (many hypotheses) × (many events) in one compiled loop;
    each block is rematerialised (``jax.checkpoint``) in reverse mode, or the
    gradient would keep every block's activations at once and the bound would only
    hold for the forward pass.
    """
    n = jax.tree_util.tree_leaves(args)[0].shape[0]
    if block_size is None or block_size >= n:
        return jax.vmap(function)(*args)
    return jax.lax.map(jax.checkpoint(lambda xs: function(*xs)), args, batch_size=int(block_size))
