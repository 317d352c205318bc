"""Checks of a model constructor's scalar arguments, shared by the counting and the
parametric model: one-line errors naming the argument, only on concrete values (a
model built under ``jit`` or ``vmap`` is not checked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel


def scalar(value, argument: str, meaning: str, *, positive: bool) -> jax.Array:
    """``value`` as a float64 scalar; a one-line InvalidModel naming ``argument`` if
    it is concrete and not finite, or not > 0 (``positive``) or not ≥ 0."""
    if is_concrete(value):
        try:
            number = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidModel(f"{argument} must be a number ({meaning}), got {value!r}") from None
        if number.ndim != 0:
            raise InvalidModel(f"{argument} must be a single number ({meaning}), got shape {number.shape}")
        if not np.isfinite(number) or (number <= 0 if positive else number < 0):
            relation = "> 0" if positive else ">= 0"
            raise InvalidModel(f"{argument} must be a finite number {relation} ({meaning}), got {float(number)!r}")
    return jnp.asarray(value, jnp.float64)
