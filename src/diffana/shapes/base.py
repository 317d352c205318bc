"""The base of every shape: a density normalised on a range, its CDF and exact bin
integrals, written once from two pieces each shape supplies.

A shape is an :class:`equinox.Module` whose parameters *and* normalisation range
``[lower, upper]`` are JAX array leaves, so a stack of shapes with different
parameters and ranges (sliding fit windows) goes through ``jax.vmap`` as one
module (see :func:`stack`). A subclass provides

- ``_density(x)`` (or ``_log_density(x)``): the unnormalised density on the real
  line (or wherever it is defined; it is only evaluated on the range), and
- ``_integral(a, b)``: ∫_a^b of that density for ``a <= b`` — by default
  ``_antiderivative(b) - _antiderivative(a)``, so a shape may supply an
  antiderivative instead. Shapes with tails override ``_integral`` with forms that do
  not cancel (survival-function differences above the mode, sums of non-negative
  pieces, ``expm1``/``log1p`` forms), which is what keeps bin integrals far in a
  tail accurate to ~1e-13 relative.

and the base gives ``pdf``, ``log_pdf``, ``cdf``, ``sf`` and ``bin_integrals``. All are
pure JAX: jit-, vmap- and grad-able, for ``x``/``edges`` arrays of any shape.
Densities are evaluated at ``x`` clipped to the range and then masked, so nothing
outside the range (a polynomial's negative extension, an overflowing exponential)
reaches a value or a gradient.

Constructors check parameter ranges when given concrete values and skip the checks
under ``jit``/``vmap`` (tracers), raising :class:`ShapeError` with one line that
names the shape and the parameter.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel

__all__ = ["Shape", "ShapeError", "stack", "normal_mass"]

_SQRT_HALF = math.sqrt(0.5)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)


class ShapeError(InvalidModel):
    """A shape parameter out of its range; one line naming the shape and the parameter.

    An :class:`diffana.errors.InvalidModel` (so also a ``ValueError``): a model built
    on a bad shape cannot describe a valid likelihood."""


def parameter(value) -> jax.Array:
    """A shape parameter as a float64 JAX array (a tracer stays a tracer)."""
    return jnp.asarray(value, dtype=float)


def _format(value: np.ndarray) -> str:
    if value.ndim == 0:
        return repr(float(value))
    return np.array2string(value, separator=", ", max_line_width=10**6, threshold=12)


def check(shape: str, name: str, value, requirement: str,
          ok: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Raise ``ShapeError("<shape>: <name> must be finite and <requirement>, got …")``
    when ``value`` is concrete and not finite or ``ok(value)`` is not all true.
    A tracer (inside ``jit``/``vmap``/``grad``) is not checked."""
    if not is_concrete(value):
        return
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or (ok is not None and not np.all(ok(array))):
        what = f"finite and {requirement}" if requirement else "finite"
        raise ShapeError(f"{shape}: {name} must be {what}, got {_format(array)}")


def check_range(shape: str, lower, upper) -> None:
    """``lower`` and ``upper`` finite with ``lower < upper`` (when concrete)."""
    check(shape, "lower", lower, "")
    check(shape, "upper", upper, "")
    if is_concrete(lower) and is_concrete(upper):
        lo, hi = np.asarray(lower, float), np.asarray(upper, float)
        if not np.all(lo < hi):
            raise ShapeError(f"{shape}: the range needs lower < upper, got lower={_format(lo)}, "
                             f"upper={_format(hi)}")


def normal_mass(p, q) -> jax.Array:
    """∫_p^q exp(−t²/2) dt for p <= q, without cancellation: erfc differences when both
    ends are in the same tail (|t| >= 1), an erf difference otherwise. Relative error
    ~1e-15 wherever the result is a normal float (|t| below ~37); finite gradients."""
    p, q = jnp.asarray(p), jnp.asarray(q)
    erf, erfc = jax.scipy.special.erf, jax.scipy.special.erfc
    # a lower-tail interval is mirrored into the upper tail: [p, q] -> [−q, −p]
    lower = q <= -1.0
    tail_p, tail_q = jnp.where(lower, -q, p), jnp.where(lower, -p, q)
    tail = erfc(tail_p * _SQRT_HALF) - erfc(tail_q * _SQRT_HALF)
    central = erf(q * _SQRT_HALF) - erf(p * _SQRT_HALF)
    return _SQRT_HALF_PI * jnp.where(tail_p >= 1.0, tail, central)


class Shape(eqx.Module):
    """A density normalised to 1 on ``[lower, upper]`` (0 outside), in the
    observable's units. Subclasses supply ``_density`` or ``_log_density``, and
    ``_integral`` or ``_antiderivative`` (see the module docstring)."""

    lower: jax.Array
    upper: jax.Array

    # --- what a shape supplies ------------------------------------------------------

    def _density(self, x: jax.Array) -> jax.Array:
        """Unnormalised density at x (x inside the range)."""
        return jnp.exp(self._log_density(x))

    def _log_density(self, x: jax.Array) -> jax.Array:
        """log of :meth:`_density` (override where a direct form is more accurate)."""
        return jnp.log(self._density(x))

    def _antiderivative(self, x: jax.Array) -> jax.Array:
        """An antiderivative of :meth:`_density` (any constant)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define _density or _log_density, "
            "and _antiderivative or _integral")

    def _integral(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """∫_a^b of :meth:`_density`, for a <= b inside the range."""
        return self._antiderivative(b) - self._antiderivative(a)

    def _normalisation(self) -> jax.Array:
        """∫ of :meth:`_density` over the range."""
        return self._integral(self.lower, self.upper)

    # --- what the base gives ---------------------------------------------------------

    def _clip(self, x) -> jax.Array:
        return jnp.clip(jnp.asarray(x, dtype=float), self.lower, self.upper)

    def _inside(self, x) -> jax.Array:
        x = jnp.asarray(x, dtype=float)
        return (x >= self.lower) & (x <= self.upper)

    def normalisation(self) -> jax.Array:
        """∫ of the unnormalised density over [lower, upper] (its units: the shape's)."""
        return self._normalisation()

    def pdf(self, x) -> jax.Array:
        """Density normalised to 1 on [lower, upper], 0 outside (per unit of x)."""
        density = self._density(self._clip(x)) / self._normalisation()
        return jnp.where(self._inside(x), density, 0.0)

    def log_pdf(self, x) -> jax.Array:
        """log of :meth:`pdf` (−inf outside the range), accurate where pdf underflows."""
        log_density = self._log_density(self._clip(x)) - jnp.log(self._normalisation())
        return jnp.where(self._inside(x), log_density, -jnp.inf)

    def cdf(self, x) -> jax.Array:
        """P(X <= x) on the range: exactly 0 at and below lower, 1 at and above upper."""
        x = jnp.asarray(x, dtype=float)
        value = self._integral(self.lower, self._clip(x)) / self._normalisation()
        return jnp.where(x >= self.upper, 1.0, jnp.where(x <= self.lower, 0.0, value))

    def sf(self, x) -> jax.Array:
        """P(X > x) = 1 − cdf(x), computed directly (accurate in the upper tail)."""
        x = jnp.asarray(x, dtype=float)
        value = self._integral(self._clip(x), self.upper) / self._normalisation()
        return jnp.where(x <= self.lower, 1.0, jnp.where(x >= self.upper, 0.0, value))

    def integral(self, a, b) -> jax.Array:
        """P(a <= X <= b) for a <= b (clipped to the range), elementwise."""
        return self._integral(self._clip(a), self._clip(b)) / self._normalisation()

    def bin_integrals(self, edges) -> jax.Array:
        """The probability in each bin [edges[i], edges[i+1]] (clipped to the range):
        shape ``edges.shape[:-1] + (len - 1,)``, exact (antiderivative differences in
        cancellation-free forms), summing to 1 over a partition of the range."""
        edges = self._clip(edges)
        a, b = edges[..., :-1], edges[..., 1:]
        if type(self)._normalisation is not Shape._normalisation:
            return self._integral(a, b) / self._normalisation()
        # the range as one more "bin" of the same call: one integral in the program, not two
        # (halves the compile time of shapes whose integral is large, e.g. the Voigtian)
        lower = jnp.broadcast_to(self.lower, a.shape[:-1] + (1,))
        upper = jnp.broadcast_to(self.upper, a.shape[:-1] + (1,))
        values = self._integral(jnp.concatenate([a, lower], -1), jnp.concatenate([b, upper], -1))
        return values[..., :-1] / values[..., -1:]


def stack(shapes: Sequence[Shape]) -> Shape:
    """One shape whose leaves are the given shapes' leaves stacked on a new leading
    axis (same class and static fields, e.g. the same polynomial degree), for
    ``jax.vmap(lambda s: s.bin_integrals(edges))(stack(shapes))``."""
    shapes = list(shapes)
    if not shapes:
        raise ShapeError("stack: needs at least one shape, got none")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *shapes)
