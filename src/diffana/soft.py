"""Soft (differentiable) operations: histograms, sigmoid cuts and annealing schedules.

Two kinds of differentiable histogram serve two situations:

* :func:`hard_histogram` — the binned variable does not depend on the trained
  parameters (e.g. a reconstructed mass), only the per-event weights do (e.g. a soft
  selection efficiency). Events fall into ordinary hard bins and the gradient flows
  through the weights. This is exact: no smoothing bias.
* :func:`kde_histogram` — the binned variable itself depends on the parameters (e.g. a
  network output). A hard bin assignment has zero gradient almost everywhere, so each
  event is spread by a Gaussian kernel of width ``bandwidth`` and the bin content is the
  kernel mass inside the bin (a binned kernel density estimate, as ``relaxed.hist``).
  As ``bandwidth → 0`` it tends to the hard histogram.

Both accept per-event weights and, through the ``_by_process`` variants, a process label
per event so that all samples (signal, backgrounds, systematic variations) are
histogrammed in one vectorised call with fixed shapes — the form that jits and vmaps.

Cuts are relaxed by :func:`sigmoid_cut`; temperatures and bandwidths can be annealed
during training with :func:`linear_anneal` / :func:`exponential_anneal` /
:func:`cosine_anneal`.
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
import relaxed

__all__ = [
    "sigmoid_cut",
    "window_cut",
    "hard_histogram",
    "hard_histograms_by_process",
    "kde_histogram",
    "kde_histograms_by_process",
    "process_histograms",
    "linear_anneal",
    "exponential_anneal",
    "cosine_anneal",
]

Array = jax.Array


# --------------------------------------------------------------------------- cuts
def sigmoid_cut(
    values: Array,
    threshold: Array | float,
    temperature: Array | float,
    keep: Literal["above", "below"] = "above",
) -> Array:
    """Soft cut: per-event weight in (0, 1) of passing ``values > threshold``.

    ``weight = sigmoid((values - threshold) / temperature)`` for ``keep="above"``
    (``sigmoid((threshold - values) / temperature)`` for ``"below"``). ``values``,
    ``threshold`` and ``temperature`` share the feature's unit (e.g. GeV, GeV²); the
    weight goes from 12% to 88% over ±2 temperatures around the threshold and tends to
    the hard cut as ``temperature → 0``.
    """
    if keep not in ("above", "below"):
        raise ValueError(f"sigmoid_cut: keep must be 'above' or 'below', got {keep!r}")
    z = (jnp.asarray(values) - threshold) / temperature
    return jax.nn.sigmoid(z if keep == "above" else -z)


def window_cut(
    values: Array, low: Array | float, high: Array | float, temperature: Array | float
) -> Array:
    """Soft window cut ``low < values < high``: product of two :func:`sigmoid_cut`.

    Units as ``values`` (e.g. GeV² for a recoil-mass-squared window).
    """
    return sigmoid_cut(values, low, temperature, "above") * sigmoid_cut(
        values, high, temperature, "below"
    )


# --------------------------------------------------------------------------- checks
def _check_edges(bin_edges) -> Array:
    edges = jnp.asarray(bin_edges, dtype=float)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(
            f"bin_edges must be a 1D array of at least 2 edges, got shape {edges.shape}"
        )
    if not isinstance(edges, jax.core.Tracer):
        e = np.asarray(edges)
        if not np.all(np.diff(e) > 0):
            raise ValueError(f"bin_edges must be strictly increasing, got {e}")
    return edges


def _check_weights(values: Array, weights) -> Array:
    values = jnp.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"values must be 1D (one entry per event), got shape {values.shape}")
    if weights is None:
        return jnp.ones_like(values, dtype=float)
    weights = jnp.asarray(weights)
    if weights.shape != values.shape:
        raise ValueError(
            f"weights shape {weights.shape} does not match values shape {values.shape}"
        )
    return weights


def _check_process(values: Array, process, n_processes: int) -> Array:
    process = jnp.asarray(process)
    if process.shape != jnp.shape(values):
        raise ValueError(
            f"process labels shape {process.shape} does not match values shape "
            f"{jnp.shape(values)}"
        )
    if not jnp.issubdtype(process.dtype, jnp.integer):
        raise TypeError(f"process labels must be integers, got dtype {process.dtype}")
    if int(n_processes) < 1:
        raise ValueError(f"n_processes must be >= 1, got {n_processes}")
    return process


# --------------------------------------------------------------------------- hard bins
def _hard_bin_onehot(values: Array, edges: Array, overflow: str) -> Array:
    """(N, B) 0/1 matrix: event i in bin b. Out-of-range events: dropped or clipped."""
    n_bins = edges.shape[0] - 1
    index = jnp.searchsorted(edges, values, side="right") - 1
    # the last edge is inclusive, as in numpy.histogram
    index = jnp.where(values == edges[-1], n_bins - 1, index)
    if overflow == "clip":
        index = jnp.clip(index, 0, n_bins - 1)
    elif overflow != "drop":
        raise ValueError(f"overflow must be 'drop' or 'clip', got {overflow!r}")
    # a NaN value belongs to no bin (never silently to an edge bin)
    index = jnp.where(jnp.isnan(values), -1, index)
    # one_hot of an index outside [0, n_bins) is the zero vector: the event is dropped
    return jax.nn.one_hot(index, n_bins, dtype=float)


def hard_histogram(
    values: Array,
    bin_edges: Array,
    weights: Array | None = None,
    overflow: Literal["drop", "clip"] = "drop",
) -> Array:
    """Weighted histogram with hard bins, differentiable w.r.t. ``weights``.

    ``values``: (N,) binned variable, fixed (no gradient flows through it).
    ``bin_edges``: (B+1,) increasing edges in the unit of ``values``.
    ``weights``: (N,) per-event weights (expected events per event, e.g. σ·L/N_gen
    times a soft selection weight); default 1.
    ``overflow``: ``"drop"`` discards events outside the edges (as numpy.histogram),
    ``"clip"`` adds them to the first / last bin.
    Returns (B,) expected yields (events). NaN values fall in no bin.
    """
    edges = _check_edges(bin_edges)
    weights = _check_weights(values, weights)
    onehot = _hard_bin_onehot(jax.lax.stop_gradient(jnp.asarray(values)), edges, overflow)
    return weights @ onehot


def hard_histograms_by_process(
    values: Array,
    bin_edges: Array,
    weights: Array | None,
    process: Array,
    n_processes: int,
    overflow: Literal["drop", "clip"] = "drop",
) -> Array:
    """Hard-bin histograms of every process at once: returns (n_processes, B) yields.

    ``process``: (N,) integer label in ``[0, n_processes)`` per event. Other arguments
    as :func:`hard_histogram`. One matrix product, no loop over processes.
    """
    edges = _check_edges(bin_edges)
    weights = _check_weights(values, weights)
    process = _check_process(values, process, n_processes)
    onehot = _hard_bin_onehot(jax.lax.stop_gradient(jnp.asarray(values)), edges, overflow)
    membership = jax.nn.one_hot(process, int(n_processes), dtype=float)  # (N, P)
    return (membership * weights[:, None]).T @ onehot


# --------------------------------------------------------------------------- KDE bins
def _kde_bin_fractions(values: Array, edges: Array, bandwidth, reflect_infinities: bool):
    """(N, B) fraction of each event's Gaussian kernel inside each bin."""
    if reflect_infinities:
        # events' kernel mass below the first / above the last edge goes to the edge bins
        inner = edges[1:-1]
        cdf = jsp.stats.norm.cdf(inner[None, :], loc=values[:, None], scale=bandwidth)
        ones = jnp.ones_like(values)[:, None]
        zeros = jnp.zeros_like(values)[:, None]
        cdf = jnp.concatenate([zeros, cdf, ones], axis=1)
    else:
        cdf = jsp.stats.norm.cdf(edges[None, :], loc=values[:, None], scale=bandwidth)
    return cdf[:, 1:] - cdf[:, :-1]


def kde_histogram(
    values: Array,
    bin_edges: Array,
    bandwidth: Array | float,
    weights: Array | None = None,
    density: bool = False,
    reflect_infinities: bool = False,
) -> Array:
    """Kernel-smoothed histogram, differentiable w.r.t. ``values`` and ``weights``.

    Each event contributes ``weight × ∫_bin N(x; value, bandwidth) dx`` to each bin
    (a binned KDE). ``bandwidth`` is in the unit of ``values`` (for a network output in
    [0, 1], a fraction of the bin width, e.g. 0.1–0.5 × width). Without ``weights`` this
    is ``relaxed.hist``; with them it extends it to weighted events.
    ``reflect_infinities=True`` puts the kernel mass beyond the outer edges into the
    first / last bin, so every event's full weight is counted.
    ``density=True`` normalises to unit area (divides by total and bin widths).
    Returns (B,) yields (events, or 1/unit for a density).
    """
    edges = _check_edges(bin_edges)
    if weights is None:
        _check_weights(values, None)
        return relaxed.hist(
            jnp.asarray(values, dtype=float),
            edges,
            bandwidth,
            density=density,
            reflect_infinities=reflect_infinities,
        )
    weights = _check_weights(values, weights)
    fractions = _kde_bin_fractions(jnp.asarray(values), edges, bandwidth, reflect_infinities)
    counts = weights @ fractions
    if density:
        counts = counts / jnp.diff(edges) / counts.sum()
    return counts


def kde_histograms_by_process(
    values: Array,
    bin_edges: Array,
    bandwidth: Array | float,
    weights: Array | None,
    process: Array,
    n_processes: int,
    reflect_infinities: bool = False,
) -> Array:
    """Kernel-smoothed histograms of every process at once: (n_processes, B) yields.

    ``process``: (N,) integer label in ``[0, n_processes)``; other arguments as
    :func:`kde_histogram`. Cost O(N × B) time and memory, one matrix product.
    """
    edges = _check_edges(bin_edges)
    weights = _check_weights(values, weights)
    process = _check_process(values, process, n_processes)
    fractions = _kde_bin_fractions(jnp.asarray(values), edges, bandwidth, reflect_infinities)
    membership = jax.nn.one_hot(process, int(n_processes), dtype=float)
    return (membership * weights[:, None]).T @ fractions


def process_histograms(
    events,
    values: Array,
    bin_edges: Array,
    *,
    selection_weight: Array | None = None,
    bandwidth: Array | float | None = None,
    overflow: Literal["drop", "clip"] = "drop",
    reflect_infinities: bool = False,
) -> Array:
    """Histograms of every process of an :class:`diffana.events.Events`: (P, B) yields.

    ``values``: (N,) binned variable per event (a feature in its unit, or a network
    output). ``selection_weight``: (N,) soft pass weight multiplying the event weights
    (default 1). ``bandwidth=None`` uses hard bins (gradient through the weights only,
    ``overflow`` applies); a bandwidth (unit of ``values``) uses kernel-smoothed bins
    (gradient through ``values`` too; ``reflect_infinities`` applies). Row ``p`` is
    process ``events.process_names[p]``. Yields in expected events.
    """
    values = jnp.asarray(values)
    if values.shape != (events.n_events,):
        raise ValueError(
            f"process_histograms: values shape {values.shape} != ({events.n_events},) events"
        )
    weights = events.weight if selection_weight is None else events.weight * selection_weight
    if bandwidth is None:
        return hard_histograms_by_process(
            values, bin_edges, weights, events.process, events.n_processes, overflow
        )
    return kde_histograms_by_process(
        values, bin_edges, bandwidth, weights, events.process, events.n_processes,
        reflect_infinities,
    )


# --------------------------------------------------------------------------- annealing
def linear_anneal(start: float, end: float, n_steps: int) -> Callable[[Array], Array]:
    """Schedule ``step -> value`` going linearly from ``start`` to ``end`` in ``n_steps``.

    Holds ``end`` afterwards. Use for a temperature (unit of the cut feature) or a KDE
    bandwidth (unit of the binned variable). Works with traced integer steps.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, dtype=float) / n_steps, 0.0, 1.0)
        return start + (end - start) * frac

    return schedule


def exponential_anneal(start: float, end: float, n_steps: int) -> Callable[[Array], Array]:
    """Schedule going geometrically from ``start`` to ``end`` (both > 0) in ``n_steps``.

    The usual choice for temperatures: each step multiplies by (end/start)^(1/n_steps).
    Holds ``end`` afterwards.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    if start <= 0 or end <= 0:
        raise ValueError(f"exponential_anneal needs start, end > 0, got {start}, {end}")

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, dtype=float) / n_steps, 0.0, 1.0)
        return start * (end / start) ** frac

    return schedule


def cosine_anneal(start: float, end: float, n_steps: int) -> Callable[[Array], Array]:
    """Schedule going from ``start`` to ``end`` along half a cosine in ``n_steps``.

    Flat at both ends (slow start, slow finish); holds ``end`` afterwards.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, dtype=float) / n_steps, 0.0, 1.0)
        return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

    return schedule
