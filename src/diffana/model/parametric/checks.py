"""Argument checks of :mod:`diffana.model.parametric`: each runs only on concrete
values (silent under ``jit``/``vmap``) and raises one line naming the argument."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel
from diffana.model.arguments import scalar as _scalar
from diffana.model.parametric.config import PULL_BOUNDS

# A linear factor 1 + α·σ stays positive on the pulls' bounds [−5, 5] only for σ < 1/5.
_LINEAR_WIDTH_LIMIT = 1.0 / -PULL_BOUNDS[0]
_WIDTH_ATTRIBUTES = ("sigma",)  # shape fields scaled by the resolution nuisance (also sigma_*)


def _check_edges(edges, degree: int) -> jax.Array:
    """Bin edges as float64 (B+1,): one-line InvalidModel for a wrong shape, too few
    bins for the background polynomial, or (when concrete) non-increasing edges."""
    edges = jnp.asarray(edges, jnp.float64)
    if edges.ndim != 1:
        raise InvalidModel(f"edges must be a 1-d array of bin edges, got shape {tuple(edges.shape)}")
    if edges.shape[0] - 1 < degree + 2:
        raise InvalidModel(
            f"edges give {edges.shape[0] - 1} bins, but a degree-{degree} background needs at least "
            f"{degree + 2} (degree + 1 coefficients and a signal yield)"
        )
    if is_concrete(edges):
        values = np.asarray(edges)
        if not np.all(np.isfinite(values)):
            raise InvalidModel("edges contain NaN or inf")
        steps = np.diff(values)
        if np.any(steps <= 0):
            first = int(np.flatnonzero(steps <= 0)[0])
            raise InvalidModel(f"edges must increase strictly; edges[{first + 1}] = {float(values[first + 1])!r} "
                               f"<= edges[{first}] = {float(values[first])!r}")
    return edges


def _check_counts(counts, n_bins: int, argument: str = "counts") -> jax.Array:
    """Observed counts as float64 (B,), with one-line errors for a wrong length and,
    when concrete, NaN/inf, negative counts and an empty window."""
    counts = jnp.asarray(counts, jnp.float64)
    if counts.shape != (n_bins,):
        raise InvalidModel(f"{argument} has shape {tuple(counts.shape)}, but the window has {n_bins} bins")
    if is_concrete(counts):
        values = np.asarray(counts)
        if not np.all(np.isfinite(values)):
            raise InvalidModel(f"{argument} contain NaN or inf in bins {np.flatnonzero(~np.isfinite(values)).tolist()}")
        if np.any(values < 0):
            raise InvalidModel(f"{argument} are negative in bins {np.flatnonzero(values < 0).tolist()}")
        if not np.any(values > 0):
            raise InvalidModel(f"{argument} are all zero: the window is empty, there is no background to fit")
    return counts


def location_field(signal) -> str | None:
    """The name of the shape's peak position: ``mean`` (Gaussian, Crystal Balls) or
    ``mass`` (Breit–Wigner, Voigtian); None if it has neither."""
    for field in ("mean", "mass"):
        if hasattr(signal, field):
            return field
    return None


def _check_signal(signal, edges, use_mean: bool, use_width: bool) -> tuple[str, ...]:
    """The signal shape's width fields; one-line InvalidModel if it lacks
    ``bin_integrals``, ``mean`` or a width where a nuisance needs them, or (when
    concrete) its normalisation range is not the window or its mean lies outside."""
    if not callable(getattr(signal, "bin_integrals", None)):
        raise InvalidModel(f"signal must be a shape with bin_integrals(edges) (diffana.shapes), "
                           f"got {type(signal).__name__}")
    if use_mean and location_field(signal) is None:
        raise InvalidModel(f"signal ({type(signal).__name__}) has no 'mean' (or 'mass') for the mass-scale "
                           "nuisance to shift")
    width_fields = tuple(f.name for f in dataclasses.fields(signal)
                         if f.name in _WIDTH_ATTRIBUTES or f.name.startswith("sigma_")) \
        if dataclasses.is_dataclass(signal) else ()
    if use_width and not width_fields:
        raise InvalidModel(f"signal ({type(signal).__name__}) has no 'sigma' for the resolution nuisance to scale")
    lower, upper = getattr(signal, "lower", None), getattr(signal, "upper", None)
    if lower is None or upper is None:
        raise InvalidModel(f"signal ({type(signal).__name__}) has no normalisation range (lower, upper)")
    if all(is_concrete(v) for v in (lower, upper, edges)):
        window = (float(edges[0]), float(edges[-1]))
        shape_range = (float(np.asarray(lower)), float(np.asarray(upper)))
        if not np.allclose(shape_range, window, rtol=1e-12, atol=0.0):
            raise InvalidModel(f"signal is normalised on [{shape_range[0]!r}, {shape_range[1]!r}], but the window "
                               f"(edges) is [{window[0]!r}, {window[1]!r}]: build the shape with lower=edges[0], "
                               "upper=edges[-1]")
        field = location_field(signal)
        mean = None if field is None else getattr(signal, field)
        if mean is not None and is_concrete(mean):
            m = float(np.asarray(mean))
            if not window[0] <= m <= window[1]:
                raise InvalidModel(f"signal.{field} = {m!r} lies outside the window [{window[0]!r}, {window[1]!r}]")
    return width_fields


def _nuisance_width(value, name: str, meaning: str, linear: bool) -> jax.Array | None:
    """A nuisance's width (None: no such nuisance); for a linear factor 1 + α·σ,
    σ < 1/5 so that the factor stays positive on the pull's bounds."""
    if value is None:
        return None
    width = _scalar(value, name, meaning, positive=True)
    if linear and is_concrete(width) and float(width) >= _LINEAR_WIDTH_LIMIT:
        raise InvalidModel(f"{name} = {float(width)!r} must be < {_LINEAR_WIDTH_LIMIT} (relative): the factor "
                           f"1 + alpha*{name} would reach zero within the pull's bounds {PULL_BOUNDS}")
    return width


def _check_degree(degree) -> int:
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise InvalidModel(f"background_degree must be an integer >= 0, got {degree!r}")
    return int(degree)
