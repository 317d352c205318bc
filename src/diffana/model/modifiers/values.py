"""Template values from a spec: parsed, checked and combined.

Concrete templates (lists, numpy or JAX arrays) are handled with numpy and become
JAX arrays once, at the end of the build: an eager JAX operation costs ~0.3-0.5 ms
to dispatch (and a compilation the first time each shape is met), and a published
likelihood's ~500 modifiers took ~2000 of them. Only values that are tracers (a
model built inside ``jit``/``grad``/``vmap`` from traced yields) go through
``jax.numpy``, so such a model stays differentiable in them; the result is the same
either way. Checks on values (NaN, negative yields) run when the values are concrete.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel


def traced(value) -> bool:
    """Whether ``value`` is a JAX tracer, or a list/tuple holding one."""
    if isinstance(value, jax.core.Tracer):
        return True
    if isinstance(value, (list, tuple)):
        return any(traced(v) for v in value)
    return False


def xp(*values):
    """``jax.numpy`` if any of ``values`` is a tracer, else ``numpy``."""
    return jnp if any(isinstance(v, jax.core.Tracer) for v in values) else np


def values(value, dtype=np.float64):
    """``value`` as an array: numpy when concrete, JAX when it holds tracers."""
    return jnp.asarray(value, dtype) if traced(value) else np.asarray(value, dtype)


def where(channel, sample=None, modifier=None) -> str:
    """The culprit, for messages: ``channel 'sr', sample 'bkg', modifier 'jes'``."""
    text = f"channel {channel!r}"
    if sample is not None:
        text += f", sample {sample!r}"
    if modifier is not None:
        text += f", modifier {modifier!r}"
    return text


def bad_shape(where: str, shape):
    raise InvalidModel(f"{where}: expected a one-dimensional list of bin values, got shape {tuple(shape)}")


def float_values(values, where: str):
    """Template values as a one-dimensional float64 array; a concrete input becomes
    a numpy array (a fresh one or a read-only view: never written to) with no NaN or
    inf, a tracer stays one."""
    if isinstance(values, jax.core.Tracer):
        return values.astype(jnp.float64) if values.ndim == 1 else bad_shape(where, values.shape)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidModel(f"{where}: expected a list of numbers, got {values!r}") from error
    if array.ndim != 1:
        bad_shape(where, array.shape)
    if not np.isfinite(array).all():  # (the method: np.all's dispatch costs more than the test)
        bad = np.flatnonzero(~np.isfinite(array)).tolist()
        raise InvalidModel(f"{where}: non-finite values (NaN or inf) in bins {bad}")
    return array


def check_non_negative(array, where: str):
    """Reject negative yields, when ``array`` is concrete."""
    if is_concrete(array) and (np.asarray(array) < 0).any():
        bad = np.flatnonzero(np.asarray(array) < 0).tolist()
        raise InvalidModel(f"{where}: negative yields in bins {bad}")


def concatenate(chunks, dtype=np.float64):
    """The chunks (scalars or 1-d) end to end; numpy unless one is traced."""
    if not chunks:
        return np.zeros(0, dtype)
    module = xp(*chunks)
    return module.concatenate([module.atleast_1d(module.asarray(c, dtype)) for c in chunks])
