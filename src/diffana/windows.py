"""Window-local evaluation: each hypothesis sees only the events in its window.

Every search of the seeds fits each hypothesis in a window of one observable (the
recoil mass squared of Z'→invisible, the dimuon mass of the four-muon search, the
diphoton mass of ALP→γγ). A dense evaluation sends every event through the network and
into the histograms of every hypothesis: a training step costs O(N·M) for N events and
M hypotheses, although an event falls in the windows of only a few. With the events
sorted by the observable once (on the host, before training), the events of a window
are one contiguous run of the sorted arrays, found by a binary search:

* **hypothesis-independent weights** (a network that does not take the mass as input):
  :func:`window_histograms` — the network runs once per event, and every window's bin
  content is a difference of cumulative sums of the weights at the bin edges.
  Cost O(N) for the cumulative sum plus O(M·B·log N) for the edge look-ups; the
  gradient (a scatter of the bin cotangents at the edges and one reverse cumulative
  sum) costs the same.
* **hypothesis-dependent weights** (a mass-parametrised network): :func:`map_windows`
  hands each hypothesis a fixed-size slice of the sorted events that contains its
  window (:func:`plan_windows` sizes the slice to the fullest window), so the network
  runs O(N·k) times for k the windows an event falls in, with one compiled shape.
  Slice events outside the window fall outside its bin edges and contribute nothing.

Both give the dense evaluation's histograms and gradients: the slices exactly (the
same events in the same bins), the cumulative sums up to the round-off of a sum of N
terms (absolute ≲ ε·log₂N·Σ|w| per bin, ε = 2.2×10⁻¹⁶; relative 10⁻¹³–10⁻¹¹ for bins
holding 10⁻³–10⁻¹ of the total weight).

Bin convention as :func:`diffana.soft.hard_histogram` (``numpy.histogram``): bins are
[low, high), the last edge inclusive; events outside the edges are dropped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete, map_in_blocks
from diffana.events import Events

__all__ = ["sort_events", "window_histograms", "WindowPlan", "plan_windows", "window_slice", "map_windows"]

Array = jax.Array


# --------------------------------------------------------------------------- sorting
def _check_sortable(values: np.ndarray, what: str) -> None:
    if values.ndim != 1:
        raise ValueError(f"{what}: the observable must be a 1D column, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{what}: no events")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: the observable holds {int(np.sum(~np.isfinite(values)))} NaN/inf value(s)")


def sort_events(events: Events | Mapping[str, Any], by: str):
    """The events ordered by the observable ``by`` (ascending, stable), as the same
    container: an :class:`~diffana.events.Events` or a dict of equal-length columns.

    Done once on the host before training (the order does not depend on the
    parameters). Raises if the column is missing, not 1D, empty or not finite.
    """
    columns = events.features if isinstance(events, Events) else events
    if by not in columns:
        raise KeyError(f"sort_events: no column {by!r}; columns are {sorted(columns)}")
    values = np.asarray(columns[by])
    _check_sortable(values, "sort_events")
    order = np.argsort(values, kind="stable")
    if isinstance(events, Events):
        return events.take(jnp.asarray(order))
    return {name: _take(column, order, name, values.size) for name, column in events.items()}


def _take(column, order: np.ndarray, name: str, n: int):
    column = jnp.asarray(column)
    if column.ndim == 0 or column.shape[0] != n:
        raise ValueError(f"sort_events: column {name!r} has shape {column.shape}, expected ({n}, ...)")
    return column[order]


def _check_sorted_values(sorted_values) -> Array:
    sorted_values = jnp.asarray(sorted_values, dtype=float)
    if sorted_values.ndim != 1:
        raise ValueError(f"sorted_values must be 1D, got shape {sorted_values.shape}")
    if is_concrete(sorted_values):
        values = np.asarray(sorted_values)
        if values.size and np.any(np.diff(values) < 0):
            raise ValueError("sorted_values are not in ascending order: sort the events with sort_events first")
    return sorted_values


# --------------------------------------------------------------------------- cumulative sums
def _edge_positions(sorted_values: Array, edges: Array) -> Array:
    """Index of the first event at or above each edge; past the events equal to the
    last edge for the last one (the last bin is closed, as numpy.histogram)."""
    below = jnp.searchsorted(sorted_values, edges, side="left")
    through_last = jnp.searchsorted(sorted_values, edges[..., -1:], side="right")
    return jnp.concatenate([below[..., :-1], through_last], axis=-1)


def window_histograms(sorted_values, weights, edges, *, category=None, n_categories: int | None = None) -> Array:
    """Hard histograms of every window from one set of hypothesis-independent weights.

    ``sorted_values``: (N,) the observable of events sorted ascending
    (:func:`sort_events`), fixed (no gradient). ``weights``: (N,) expected events per
    event (generator weight × soft selection weight), differentiable. ``edges``:
    (M, B+1) ascending bin edges of each hypothesis' window, in the observable's unit
    (or (B+1,) for one window). ``category``: optional (N,) integer label in
    ``[0, n_categories)`` (e.g. a θ bin or a process): the result then has one
    histogram per category.

    Returns (M, B) yields (events), or (M, n_categories, B) with categories. Equal to
    ``vmap(hard_histogram)`` over the windows up to round-off (module docstring), at
    O(N·C + M·B·log N) instead of O(N·M·B).
    """
    sorted_values = _check_sorted_values(sorted_values)
    weights = jnp.asarray(weights, dtype=float)
    if weights.shape != sorted_values.shape:
        raise ValueError(f"weights shape {weights.shape} != sorted_values shape {sorted_values.shape}")
    edges = jnp.asarray(edges, dtype=float)
    if edges.ndim not in (1, 2) or edges.shape[-1] < 2:
        raise ValueError(f"edges must be (B+1,) or (M, B+1) with B >= 1, got shape {edges.shape}")
    if category is not None:
        weights = _by_category(weights, category, n_categories)  # (N, C)
    # a leading 0 so that the content of events [i, j) is cumulative[j] - cumulative[i]
    cumulative = jnp.cumsum(jnp.concatenate([jnp.zeros_like(weights[:1]), weights]), axis=0)
    positions = _edge_positions(jax.lax.stop_gradient(sorted_values), edges)
    at_edges = cumulative[positions]  # (M, B+1) or (M, B+1, C)
    contents = jnp.diff(at_edges, axis=edges.ndim - 1)
    return contents if category is None else jnp.moveaxis(contents, -1, -2)


def _by_category(weights: Array, category, n_categories: int | None) -> Array:
    if n_categories is None or int(n_categories) < 1:
        raise ValueError(f"n_categories must be a positive integer with category, got {n_categories!r}")
    category = jnp.asarray(category)
    if category.shape != weights.shape or not jnp.issubdtype(category.dtype, jnp.integer):
        raise ValueError(f"category must be an integer array of shape {weights.shape}, got "
                         f"{category.dtype} {category.shape}")
    return weights[:, None] * jax.nn.one_hot(category, int(n_categories), dtype=weights.dtype)


# --------------------------------------------------------------------------- slices
class WindowPlan(eqx.Module):
    """Where each hypothesis' window lies in events sorted by the observable.

    ``start``: (M,) index of the first sorted event at or above the window's low edge.
    ``size``: events per slice, the count of the fullest window (static: one compiled
    shape for every hypothesis). ``n_events``: events in the sorted sample.
    """

    start: Array
    size: int = eqx.field(static=True)
    n_events: int = eqx.field(static=True)


def plan_windows(sorted_values, low, high, *, multiple_of: int = 1) -> WindowPlan:
    """Plan fixed-size slices holding each window [``low``, ``high``] (observable
    units, (M,) each) of the sorted events (host side, concrete inputs).

    ``multiple_of`` rounds the slice size up (to at most N) so that a slowly changing
    sample (a resampled or reweighted MC set) keeps the same compiled shape.
    """
    values = np.asarray(sorted_values, dtype=float)
    _check_sortable(values, "plan_windows")
    if np.any(np.diff(values) < 0):
        raise ValueError("plan_windows: sorted_values are not in ascending order: sort with sort_events first")
    low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
    if low.shape != high.shape or low.ndim != 1:
        raise ValueError(f"plan_windows: low {low.shape} and high {high.shape} must be equal (M,) arrays")
    if np.any(~(high >= low)):
        raise ValueError("plan_windows: every window needs high >= low (finite)")
    start = np.searchsorted(values, low, side="left")
    count = np.searchsorted(values, high, side="right") - start
    size = max(1, int(count.max()))
    size = min(values.size, -(-size // max(1, int(multiple_of))) * max(1, int(multiple_of)))
    return WindowPlan(start=jnp.asarray(start), size=size, n_events=int(values.size))


def window_slice(sorted_tree, plan: WindowPlan, start) -> Any:
    """The ``plan.size`` sorted events from ``start`` on, for every array leaf of
    ``sorted_tree`` with the event axis first (an :class:`Events` or a dict).

    ``dynamic_slice`` moves a slice that would run past the end back to end at the
    last event; it then still holds the whole window (the window ends at or before
    the last event), so no padding is needed.
    """
    def cut(leaf):
        if not eqx.is_array(leaf) or leaf.ndim == 0 or leaf.shape[0] != plan.n_events:
            return leaf
        return jax.lax.dynamic_slice_in_dim(leaf, start, plan.size, axis=0)

    return jax.tree_util.tree_map(cut, sorted_tree)


def map_windows(per_window: Callable[..., Any], sorted_tree, plan: WindowPlan, *per_hypothesis,
                batch_size: int | None = None):
    """``per_window(window_events, *args_k)`` for every hypothesis k at once.

    ``window_events`` is :func:`window_slice` of ``sorted_tree`` at ``plan.start[k]``
    (fixed size ``plan.size``: it may hold events outside the window, which the
    hypothesis' bin edges drop); ``per_hypothesis`` are arrays with a leading (M,)
    axis (the mass, the bin edges, the signal sample of hypothesis k …). One
    ``jax.vmap`` over the hypotheses, or vmapped blocks of ``batch_size`` through
    ``jax.lax.map`` (rematerialised in reverse mode) to bound memory, as
    :func:`diffana.objectives.over_masses`.
    """
    n_hypotheses = plan.start.shape[0]
    for i, arg in enumerate(per_hypothesis):
        leading = {x.shape[0] for x in jax.tree_util.tree_leaves(arg) if eqx.is_array(x) and x.ndim}
        if leading != {n_hypotheses}:
            raise ValueError(f"map_windows: per-hypothesis argument {i} needs a leading axis of "
                             f"{n_hypotheses} hypotheses, got {sorted(leading)}")

    def one(start, *args):
        return per_window(window_slice(sorted_tree, plan, start), *args)

    return map_in_blocks(one, (plan.start, *per_hypothesis), batch_size)
