"""2D templates (M²_rec × θ_rec^CM) in a window around each mass hypothesis.

Hypothesis k has ``n_window`` M² bins of width σ_k (the signal resolution, GeV²)
centred on M_k², times the θ_rec^CM bins (deg). Every function is pure JAX, hard bins
with (soft or hard) per-event weights, so templates are exact and differentiable
w.r.t. the weights; hypotheses are handled by ``jax.vmap``. Bins are flattened
M²-major: bin = i_M² · n_theta + i_θ.

θ edges are either one (n_theta + 1,) array shared by every hypothesis or one row
per hypothesis, (M, n_theta + 1). Per-hypothesis rows come from the M²-dependent rule
(:func:`theta_bin_counts`, :func:`padded_theta_edges`): hypothesis k has n_k
equal-width bins, then n_theta − n_k zero-width padding bins at ``high`` that no event
can enter; :func:`bin_mask` marks them so the fit drops them exactly.

One event set binned in every window (background, pseudo-data) costs O(N·M) with
:func:`shared_event_histograms`, every hypothesis looking at every event; for events
ordered by M²_rec, :func:`window_local_histograms` gives the same histograms from
cumulative sums at the window edges (:func:`diffana.windows.window_histograms`), at
O(N·θ bins + M·bins·log N): the held-out evaluation of the full scan (582 windows,
1.8·10⁶ events) no longer repeats every event 582 times.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import map_in_blocks
from diffana.objectives import YIELD_FLOOR  # events the fit adds to every background bin
from diffana.windows import window_histograms

# Memory bound of :func:`shared_event_histograms`: every hypothesis bins every event,
# with ~32 bytes of intermediates per (hypothesis, event) (bin indices, masks,
# weights). One vmap over 582 hypotheses × 1.7·10⁶ held-out background events asked
# for 31 GB and stopped the full 79.7 fb⁻¹ run; blocks of hypotheses keep it at
# HISTOGRAM_MEMORY_BYTES.
_BYTES_PER_HYPOTHESIS_EVENT = 32
HISTOGRAM_MEMORY_BYTES = 512 * 2**20


def theta_edges(n_bins: int, low: float = 0.0, high: float = 180.0) -> np.ndarray:
    """Equal-width θ_rec^CM bin edges (deg)."""
    return np.linspace(low, high, n_bins + 1)


def theta_bin_counts(centres_m2, m2_edges, counts) -> np.ndarray:
    """(M,) number of θ bins of each hypothesis: ``counts[i]`` for M² (GeV²) in
    [``m2_edges[i-1]``, ``m2_edges[i]``), ``counts[0]`` below the first edge."""
    index = np.searchsorted(np.asarray(m2_edges, float), np.asarray(centres_m2, float), side="right")
    return np.asarray(counts, int)[index]


def padded_theta_edges(bin_counts, n_theta: int, low: float = 0.0, high: float = 180.0) -> np.ndarray:
    """(M, n_theta + 1) θ edges (deg): row k has ``bin_counts[k]`` equal-width bins over
    [low, high], then zero-width padding bins at ``high`` (empty: an event at θ = high
    falls in no bin, as with unpadded edges)."""
    counts = np.asarray(bin_counts, int)
    if counts.min() < 1 or counts.max() > n_theta:
        raise ValueError(f"θ bin counts must lie in 1..{n_theta}, got {counts.min()}..{counts.max()}")
    edges = np.full((counts.size, n_theta + 1), float(high))
    for k, n in enumerate(counts):
        edges[k, : n + 1] = np.linspace(low, high, n + 1)
    return edges


def hypothesis_theta_edges(centres_m2, templates_config) -> np.ndarray:
    """(M, theta_bins + 1) θ edges (deg) of every hypothesis from a
    :class:`~diffana.analyses.zprime_invisible.config.TemplatesConfig`: the M² rule
    (``theta_bins_by_m2``, ``theta_m2_edges``) or ``theta_bins`` for all."""
    t = templates_config
    centres_m2 = np.asarray(centres_m2, float)
    if t.theta_bins_by_m2:
        counts = theta_bin_counts(centres_m2, t.theta_m2_edges, t.theta_bins_by_m2)
    else:
        counts = np.full(centres_m2.size, t.theta_bins)
    return padded_theta_edges(counts, t.theta_bins, t.theta_min, t.theta_max)


def bin_mask(theta_edges, n_window: int) -> np.ndarray:
    """1 for a real bin, 0 for a zero-width padding bin, flattened as the templates
    (M²-major): (n_window · n_theta,) for shared edges, (M, n_window · n_theta) for
    per-hypothesis rows."""
    real = (np.diff(np.asarray(theta_edges, float), axis=-1) > 0).astype(float)
    return np.tile(real, (1,) * (real.ndim - 1) + (n_window,))


def window_edges(centre_m2: float, width: float, n_window: int) -> np.ndarray:
    """M²_rec bin edges (GeV²) of the window of ``n_window`` bins of ``width`` centred on ``centre_m2``."""
    return centre_m2 + width * (np.arange(n_window + 1) - n_window / 2)


def window_histogram(centre_m2, width, m2, theta, weight, theta_edges, n_window: int):
    """Flattened (n_window · n_theta,) histogram of events (M²_rec GeV², θ deg) with
    ``weight`` in the window around ``centre_m2`` (GeV²) of bins ``width`` (GeV²).
    Events outside the window or the θ range fall in no bin. Differentiable in ``weight``."""
    theta_edges = jnp.asarray(theta_edges)
    n_theta = theta_edges.size - 1
    low = centre_m2 - 0.5 * n_window * width
    i_m2 = jnp.floor((m2 - low) / width).astype(jnp.int32)
    i_theta = jnp.searchsorted(theta_edges, theta, side="right") - 1
    inside = (i_m2 >= 0) & (i_m2 < n_window) & (i_theta >= 0) & (i_theta < n_theta)
    flat = jnp.where(inside, i_m2 * n_theta + i_theta, 0)
    return jnp.zeros(n_window * n_theta, dtype=jnp.result_type(weight, float)).at[flat].add(jnp.where(inside, weight, 0.0))


def _per_hypothesis(theta_edges, n_hypotheses: int):
    """θ edges as (M, n_theta + 1) rows: shared (n_theta + 1,) edges repeated."""
    theta_edges = jnp.asarray(theta_edges)
    return jnp.broadcast_to(theta_edges, (n_hypotheses, theta_edges.shape[-1]))


def hypotheses_per_block(n_events: int) -> int:
    """How many hypotheses :func:`shared_event_histograms` bins at once for
    ``n_events`` events (at least one)."""
    return max(1, HISTOGRAM_MEMORY_BYTES // (_BYTES_PER_HYPOTHESIS_EVENT * max(int(n_events), 1)))


@partial(jax.jit, static_argnames=("n_window",))
def shared_event_histograms(centres_m2, widths, m2, theta, weight, theta_edges, n_window: int):
    """(M, bins) histograms of one event set (background, data) in every hypothesis
    window; ``theta_edges`` shared (n_theta + 1,) or per hypothesis (M, n_theta + 1).
    Hypotheses are binned in blocks of :func:`hypotheses_per_block` (one vmap when
    they all fit in :data:`HISTOGRAM_MEMORY_BYTES`)."""
    edges = _per_hypothesis(theta_edges, jnp.shape(centres_m2)[0])

    def one(c, w, e):
        return window_histogram(c, w, m2, theta, weight, e, n_window)

    return map_in_blocks(one, (centres_m2, widths, edges), hypotheses_per_block(jnp.shape(m2)[0]))


def window_local_histograms(centres_m2, widths, m2, theta, weight, theta_edges, n_window: int):
    """:func:`shared_event_histograms`, window-local: the events ordered by M²_rec (on the
    host; free when they already are, as the held-out samples of ``make_samples``),
    then each window's bins are differences of cumulative sums of the weights at its
    M² edges, one cumulative sum per θ binning (hypotheses grouped by their row of
    ``theta_edges``). ``m2``, ``theta`` and ``theta_edges`` must be concrete (not
    traced); ``weight`` may be traced (differentiable). Equal to the dense histograms
    up to the round-off of the sums (relative ≲ 10⁻¹¹ per bin; integer counts exact)
    and to events lying exactly on an M² edge (the last edge counts as inside,
    :func:`diffana.windows.window_histograms`)."""
    centres_m2, widths = np.asarray(centres_m2, float), np.asarray(widths, float)
    m2, theta, weight = np.asarray(m2, float), np.asarray(theta, float), jnp.asarray(weight)
    if np.any(np.diff(m2) < 0):
        order = np.argsort(m2, kind="stable")
        m2, theta, weight = m2[order], theta[order], weight[order]
    theta_edges = np.broadcast_to(np.asarray(theta_edges, float), (centres_m2.size, np.shape(theta_edges)[-1]))
    m2_edges = window_edges(centres_m2[:, None], widths[:, None], n_window)  # (M, n_window + 1)
    patterns, group = np.unique(theta_edges, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    out = jnp.zeros((centres_m2.size, n_window * (theta_edges.shape[1] - 1)), jnp.result_type(weight, float))
    for g, pattern in enumerate(patterns):
        rows = np.flatnonzero(group == g)
        out = out.at[rows].set(_theta_binned_window_histograms(m2, theta, weight, m2_edges[rows], pattern))
    return out


@jax.jit
def _theta_binned_window_histograms(sorted_m2, theta, weight, m2_edges, theta_pattern):
    """(M, n_window · n_theta) histograms of events sorted by M² in windows ``m2_edges``
    (M, n_window + 1) that share the θ edges ``theta_pattern`` (n_theta + 1,),
    flattened M²-major."""
    n_theta = theta_pattern.shape[0] - 1
    i_theta = jnp.searchsorted(theta_pattern, theta, side="right") - 1
    inside = (i_theta >= 0) & (i_theta < n_theta)
    per_theta = window_histograms(sorted_m2, jnp.where(inside, weight, 0.0), m2_edges,
                                  category=jnp.where(inside, i_theta, 0), n_categories=n_theta)  # (M, θ, M²)
    return jnp.swapaxes(per_theta, 1, 2).reshape(per_theta.shape[0], -1)


@partial(jax.jit, static_argnames=("n_window",))
def signal_histograms(centres_m2, widths, m2, theta, weight, theta_edges, n_window: int, shape_shift=0.0):
    """(M, bins) signal templates, row k from its own (M, n) events; ``shape_shift``
    scales the signal peak's width: M² → M_k² + (M² − M_k²)(1 + shape_shift);
    ``theta_edges`` shared or per hypothesis as :func:`shared_event_histograms`."""

    def one(c, w, m2_k, theta_k, weight_k, edges_k):
        return window_histogram(c, w, c + (m2_k - c) * (1.0 + shape_shift), theta_k, weight_k, edges_k, n_window)

    edges = _per_hypothesis(theta_edges, jnp.shape(centres_m2)[0])
    return jax.vmap(one)(centres_m2, widths, m2, theta, weight, edges)


def bin_centres_m2(centres_m2, widths, n_window: int, n_theta: int):
    """(M, bins) M²_rec (GeV²) at the centre of each flattened bin of each window."""
    offsets = (jnp.arange(n_window) - n_window / 2 + 0.5)
    per_m2 = jnp.asarray(centres_m2)[:, None] + jnp.asarray(widths)[:, None] * offsets[None, :]
    return jnp.repeat(per_m2, n_theta, axis=1)


def background_shape_uncertainty(shape, background, background_sumw2):
    """(M, bins) relative per-bin uncertainty of the background template: the configured
    shape uncertainty ``shape`` and the template's MC-statistical error √Σw² / B added in
    quadrature (Barlow–Beeston-lite: the one Poisson-constrained shapesys parameter per
    bin carries both, as pyhf's staterror and shapesys would with two). B carries the
    fit's yield floor, as in :func:`fit.hypothesis_model`; a bin with no MC keeps
    ``shape``. Differentiable in the event weights: the sum under the root is ≥ shape²."""
    mc_relative_variance = background_sumw2 / (background + YIELD_FLOOR) ** 2
    return jnp.sqrt(jnp.asarray(shape) ** 2 + mc_relative_variance)


def analysis_templates(centres_m2, widths, signal, signal_selection, background, background_selection,
                       theta_edges, n_window: int, systematics, sigma_ref, window_local: bool = False):
    """Every input of :func:`fit.hypothesis_model` for all hypotheses, (M, ...) arrays.

    ``signal``: dict with (M, n) ``recoil_mass_squared``, ``recoil_theta_cm``,
    ``weight`` (fb⁻¹ per event); ``signal_selection``: (M, n) per-event selection
    weights in [0, 1] (soft or hard). ``background``: dict of (N,) columns incl.
    ``weight`` (events) and ``process`` (1 = μμ(γ)); ``background_selection``: (N,).
    ``systematics``: a :class:`~diffana.analyses.zprime_invisible.config.SystematicsConfig`
    (with ``background_mc_statistics``, ``background_shape`` includes the background
    MC error: :func:`background_shape_uncertainty`); ``sigma_ref``: (M,) POI unit per hypothesis (fb). ``theta_edges`` (deg): shared
    (n_theta + 1,) or per hypothesis (M, n_theta + 1) with padding bins, which the
    output's ``bin_mask`` (M, bins) marks 0. Pure JAX, differentiable in the
    selection weights. ``window_local``: the background histograms by
    :func:`window_local_histograms` (the background's M², θ and ``theta_edges`` then
    concrete; the held-out evaluation) instead of :func:`shared_event_histograms`.
    """
    from diffana.analyses.zprime_invisible.fit import by_range

    s_m2, s_theta = signal["recoil_mass_squared"], signal["recoil_theta_cm"]
    s_w = signal["weight"] * signal_selection
    b_w = background["weight"] * background_selection
    b_m2, b_theta = background["recoil_mass_squared"], background["recoil_theta_cm"]
    histograms = window_local_histograms if window_local else shared_event_histograms

    def background_histograms(weight):
        return histograms(centres_m2, widths, b_m2, b_theta, weight, theta_edges, n_window)

    out = {
        "signal": signal_histograms(centres_m2, widths, s_m2, s_theta, s_w, theta_edges, n_window),
        "signal_up": signal_histograms(centres_m2, widths, s_m2, s_theta, s_w, theta_edges, n_window,
                                       systematics.signal_shape),
        "signal_down": signal_histograms(centres_m2, widths, s_m2, s_theta, s_w, theta_edges, n_window,
                                         -systematics.signal_shape),
        "background": background_histograms(b_w),
        "background_mumu": background_histograms(jnp.where(background["process"] == 1, b_w, 0.0)),
    }
    n_theta = np.shape(theta_edges)[-1] - 1
    m2_bins = bin_centres_m2(centres_m2, widths, n_window, n_theta)
    # numpy, not a tracer: the fit groups hypotheses by their mask at trace time
    out["bin_mask"] = np.broadcast_to(bin_mask(theta_edges, n_window), m2_bins.shape)
    edges = systematics.range_edges
    out["signal_efficiency"] = by_range(jnp.asarray(centres_m2), edges, systematics.signal_efficiency)
    out["background_shape"] = by_range(m2_bins, edges, systematics.background_shape)
    if systematics.background_mc_statistics:
        sumw2 = background_histograms(b_w**2)
        out["background_shape"] = background_shape_uncertainty(out["background_shape"], out["background"], sumw2)
    out["photon_veto"] = jnp.where(m2_bins < systematics.photon_veto_boundary,
                                   systematics.photon_veto_below, systematics.photon_veto_above)
    out["sigma_ref"] = jnp.asarray(sigma_ref)
    return out


def reference_cross_sections(signal_templates, background_templates):
    """(M,) POI unit σ_ref (fb) per hypothesis: √B / (ε·L) of the preselected window
    (a selection-independent scale so fitted POIs are O(1); floors keep it finite)."""
    b = np.asarray(background_templates).sum(axis=1)
    s = np.asarray(signal_templates).sum(axis=1)
    return np.maximum(np.sqrt(b), 3.0) / np.maximum(s, 1e-9)


def preselected_reference_cross_sections(centres_m2, widths, signal, background, theta_edges, n_window: int):
    """(M,) :func:`reference_cross_sections` (fb) of the preselected events, before any
    selection: ``signal`` (M, n) and ``background`` (N,) event columns (``recoil_mass_squared``
    in GeV², ``recoil_theta_cm`` in deg, ``weight``: fb⁻¹ per signal event, expected events per
    background event), the background histogrammed window-local (its columns concrete)."""
    signal_counts = signal_histograms(centres_m2, widths, signal["recoil_mass_squared"], signal["recoil_theta_cm"],
                                      signal["weight"], theta_edges, n_window)
    background_counts = window_local_histograms(centres_m2, widths, background["recoil_mass_squared"],
                                                background["recoil_theta_cm"],
                                                jnp.asarray(background["weight"], float), theta_edges, n_window)
    return reference_cross_sections(signal_counts, background_counts)
