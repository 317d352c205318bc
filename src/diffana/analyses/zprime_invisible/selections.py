"""The four selections compared on the same events and the same fit.

(a) ``cut_based``: the 2018 τ suppression — keep events whose recoil is away from
    both muons, min(p_T,rec w.r.t. μ1, p_T,rec w.r.t. μ2) > t (GeV, CM).
(b) ``mlp_bce``: a 4-8-4-1 tanh MLP on the four Punzi-net features trained with
    class-balanced BCE.
(c) ``punzi_net``: (b)'s network fine-tuned on the Punzi loss (mean log s_min over
    the training masses), a near-hard soft cut sigmoid(logit / T) as the per-event
    weight (:data:`PUNZI_TEMPERATURE`).
(d) ``end_to_end``: (b)'s network fine-tuned on the mean log median expected σ_UL
    over the training masses, full likelihood with every systematic (soft weights →
    templates → model built inside the vmapped, differentiated function). The soft
    weight is the cut (d) is judged by, softened: sigmoid((logit − logit c_b)/T) at
    (b)'s chosen cut c_b (``[training] limit_cut``, ``limit_temperature``); with the
    plain output sigmoid(logit) (a soft cut at 0, T = 1) the training moved the network
    away from every good hard cut (docs/zprime_invisible_studies.md, "The four selections
    over seeds with the background MC at data statistics").

One (not mass-parametrised) network: Punzi-net's recipe uses one network for all
masses, and sharing the architecture and starting point makes (b)–(d) differ only in
the training objective — the comparison the analysis is about. For evaluation every
selection becomes a hard cut on its score, with the cut value chosen on the training
events by the same mean-log-expected-limit scan (:func:`diffana.analyses.zprime_invisible.cuts.choose_cut`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffana import objectives
from diffana.analyses.zprime_invisible.cuts import spread_hypotheses
from diffana.analyses.zprime_invisible.fit import expected_median_limits
from diffana.analyses.zprime_invisible.names import (
    PUNZI_FEATURES,
    SELECTION_LABELS,
    SELECTION_NAMES,
    TAU_PLANE_FEATURES,
)
from diffana.analyses.zprime_invisible.templates import analysis_templates
from diffana.selection import MLP, Standardisation
from diffana.train import train
from diffana.windows import window_histograms


def tau_plane_score(features) -> np.ndarray:
    """(a)'s score: min of the recoil p_T w.r.t. muon1 and muon2 (GeV, CM)."""
    return np.minimum(np.asarray(features[TAU_PLANE_FEATURES[0]]), np.asarray(features[TAU_PLANE_FEATURES[1]]))


def _flat(signal: dict, names) -> dict:
    return {n: jnp.asarray(signal[n]).reshape(-1) for n in names}


def network_scores(net: MLP, events: dict) -> np.ndarray:
    """Network output in (0, 1) for (N,) or (M, n) feature columns (same shape back)."""
    shape = np.shape(events[PUNZI_FEATURES[0]])
    return np.asarray(net(_flat(events, PUNZI_FEATURES))).reshape(shape)


def make_network(background: dict, hidden, seed: int) -> MLP:
    """The Punzi-net MLP (tanh, sigmoid output), inputs scaled to [0, 1] on ``background``."""
    scaling = Standardisation.fit({n: background[n] for n in PUNZI_FEATURES}, PUNZI_FEATURES, method="min_max")
    return MLP(scaling, hidden=tuple(int(h) for h in hidden), activation=jnp.tanh, key=jax.random.key(seed))


def _subset(background: dict, index: np.ndarray) -> dict:
    """The events ``index`` of ``background`` with weights rescaled per process so that
    each process keeps the total weight it has in ``background``."""
    sub = {k: np.asarray(v)[index] for k, v in background.items()}
    for label in np.unique(background["process"]):
        full = background["weight"][background["process"] == label].sum()
        mine = sub["process"] == label
        if mine.any():
            sub["weight"][mine] *= full / sub["weight"][mine].sum()
    return sub


def random_subset(background: dict, max_events: int, rng: np.random.Generator) -> dict:
    """A random subset of at most ``max_events`` events (all when ``max_events`` = 0),
    weights rescaled per process to the full yields (:func:`_subset`)."""
    n = background["weight"].size
    if max_events == 0 or max_events >= n:
        return {k: np.asarray(v) for k, v in background.items()}
    return _subset(background, np.sort(rng.choice(n, size=max_events, replace=False)))


def in_windows(m2, centres_m2, widths, half_width: float) -> np.ndarray:
    """(N,) True for events whose M²_rec (GeV²) lies within ``half_width`` resolutions
    ``widths`` (GeV²) of any of the centres (GeV²)."""
    m2, centres, widths = np.asarray(m2), np.asarray(centres_m2), np.asarray(widths)
    inside = np.zeros(m2.size, bool)
    for c, w in zip(centres, widths):  # one pass per training mass: no (M, N) array
        inside |= np.abs(m2 - c) < half_width * w
    return inside


def training_window_half_width(n_window: int, punzi_window: float) -> float:
    """Half-width (resolutions) of the training windows: the template window of
    ``n_window`` bins of one resolution, or Punzi's ± ``punzi_window`` if wider."""
    return max(0.5 * n_window, punzi_window)


def training_data(background: dict, signal: dict, centres_m2, widths, max_events: int, seed: int, *,
                  window_half_width: float, max_window_events: int = 0) -> dict:
    """The training pytree (JAX arrays): the training hypotheses' ``signal`` and two
    background sets from the training half.

    ``background`` (BCE: the whole spectrum): a fixed random subset of ``max_events``
    events, weights rescaled per process to the full yields. ``window_background``
    (the Punzi and limit losses, which see only the windows): the events within
    ``window_half_width`` resolutions of a training mass — all of them
    (``max_window_events`` = 0) or a rescaled random subset of that many. Only events
    in a window enter those losses, so restricting to them is exact; a random subset of
    the whole spectrum left ≈ 1% of the window events (quick config), and the losses
    then followed the fluctuations of a few heavy events."""
    rng = np.random.default_rng([seed, 7])
    spectrum = random_subset(background, max_events, rng)
    inside = in_windows(background["recoil_mass_squared"], centres_m2, widths, window_half_width)
    windows = random_subset({k: np.asarray(v)[inside] for k, v in background.items()}, max_window_events, rng)
    as_jax = lambda d: {k: jnp.asarray(v) for k, v in d.items()}  # noqa: E731
    return {"background": as_jax(spectrum), "window_background": as_jax(windows), "signal": as_jax(signal),
            "centres_m2": jnp.asarray(centres_m2), "widths": jnp.asarray(widths)}


class TrainingSet(NamedTuple):
    """The training hypotheses and the training pytree of :func:`training_data`."""

    rows: np.ndarray
    """Scan indices of the ``training.n_masses`` hypotheses, evenly spread, both ends included."""
    data: dict
    """:func:`training_data` for those hypotheses."""


def hypothesis_training_data(samples, training, centres_m2, widths, seed: int, window_bins: int) -> TrainingSet:
    """:func:`training_data` for the config's training hypotheses: ``samples`` an
    ``AnalysisSamples``, ``training`` the ``[training]`` section, ``centres_m2`` and
    ``widths`` (GeV²) of every scanned hypothesis, ``window_bins`` the template window
    (bins of one resolution), which bounds the training windows. The training
    hypotheses: ``training.n_masses`` of them, spread by ``training.hypothesis_spacing``."""
    rows = spread_hypotheses(np.sqrt(np.maximum(centres_m2, 0.0)), training.n_masses, training.hypothesis_spacing)
    signal = {k: np.asarray(v)[rows] for k, v in samples.signal_train.items()}
    data = training_data(samples.background_train, signal, centres_m2[rows], widths[rows], training.max_events, seed,
                         window_half_width=training_window_half_width(window_bins, training.punzi_window),
                         max_window_events=training.max_window_events)
    return TrainingSet(rows, data)


def soft_cut_weights(net, events, cut_logit=0.0, temperature=1.0):
    """Soft pass weight sigmoid((logit − cut_logit) / T) in (0, 1) of the hard cut
    ``logit > cut_logit`` for (N,) or (M, n) feature columns (same shape back).
    cut_logit = 0, T = 1 is the plain network output. ``cut_logit`` may also be a
    function of the events' M²_rec (GeV²), e.g. ``cuts.RegionalCut.logit_at``: a cut
    that depends on the recoil mass."""
    shape = jnp.shape(events[PUNZI_FEATURES[0]])
    logit = net.logit(_flat(events, PUNZI_FEATURES)).reshape(shape)
    if callable(cut_logit):
        cut_logit = cut_logit(events["recoil_mass_squared"])
    return jax.nn.sigmoid((logit - cut_logit) / temperature)


def bce_loss(net, data):
    """Class-balanced BCE of the network (signal of all training masses vs background)."""
    b_logit = net.logit(data["background"])
    s_logit = net.logit(_flat(data["signal"], PUNZI_FEATURES))
    logits = jnp.concatenate([s_logit, b_logit])
    labels = jnp.concatenate([jnp.ones_like(s_logit), jnp.zeros_like(b_logit)])
    weights = jnp.concatenate([data["signal"]["weight"].reshape(-1), data["background"]["weight"]])
    return objectives.binary_cross_entropy(logits, labels, weights, balanced=True, from_logits=True)


PUNZI_TEMPERATURE = 0.1
"""Temperature of Punzi-net's soft cut: the loss weights each event with
sigmoid(logit / T). With T = 1 (the plain network output) the weights of a BCE
network sit between 0.3 and 0.9 for signal *and* background, and the soft s_min ∝
√B/ε then falls when every weight rises (B and ε scale together, s_min ∝ 1/√scale):
fine-tuning pushed all scores towards one instead of separating them (the 30–80%
signal quantiles ended within 0.984–0.990). With T = 0.1 the weights are nearly
0 or 1, so the soft loss is the hard-cut s_min the selection is judged by."""


def punzi_weights(net, events, temperature: float = PUNZI_TEMPERATURE):
    """Punzi-net's soft pass weight sigmoid(logit / T) in (0, 1) for (N,) or (M, n)
    feature columns (same shape back); monotone in the network output, so a hard cut
    on either selects the same events."""
    return soft_cut_weights(net, events, 0.0, temperature)


def punzi_window_yields(s_sel, b_sel, data, luminosity: float, window: float, window_local: bool = False):
    """(efficiency (M,), background (M,)) in each training mass' M² window of
    ± ``window`` resolutions: ε = Σ w_s·s_sel / L (dimensionless), B = Σ w_b·b_sel
    (expected events), with soft pass weights ``s_sel`` (M, n) and ``b_sel`` (N,).
    ``window_local``: B from cumulative sums at the window edges
    (:func:`window_local_window_sums`) instead of every mass summing every event."""
    centres, widths = data["centres_m2"], data["widths"]
    s_in = jnp.abs(data["signal"]["recoil_mass_squared"] - centres[:, None]) < window * widths[:, None]
    efficiency = (data["signal"]["weight"] * s_sel * s_in).sum(axis=1) / luminosity
    b_m2 = data["window_background"]["recoil_mass_squared"]
    b_weight = data["window_background"]["weight"] * b_sel
    if window_local:
        # the window edges in numpy: jnp arithmetic on them would be traced under jit
        return efficiency, window_local_window_sums(b_m2, b_weight, centres, window * np.asarray(widths))
    b_in = jnp.abs(b_m2[None, :] - centres[:, None]) < window * widths[:, None]
    background = (b_in * b_weight[None, :]).sum(axis=1)
    return efficiency, background


def window_local_window_sums(m2, weight, centres_m2, half_widths):
    """(M,) Σ ``weight`` of the events with M²_rec (GeV²) within ``half_widths`` of each
    centre (GeV²): the events ordered by ``m2`` on the host (``m2``, ``centres_m2`` and
    ``half_widths`` concrete; ``weight`` may be traced), then one cumulative sum read at
    the window edges (``diffana.windows.window_histograms``), O(N + M log N) instead of
    the dense O(N·M). Equal to the dense sum up to round-off and to events exactly on an
    edge (inside here, outside there)."""
    m2 = np.asarray(m2, float)
    order = np.argsort(m2, kind="stable")
    centres, half = np.asarray(centres_m2, float), np.asarray(half_widths, float)
    edges = np.stack([centres - half, centres + half], axis=1)  # (M, 2): one bin per window
    return window_histograms(m2[order], jnp.asarray(weight)[order], edges)[:, 0]


def punzi_loss(net, data, luminosity: float, window: float, temperature: float = PUNZI_TEMPERATURE,
               cut_logit=0.0, window_local: bool = False):
    """Mean over training masses of log s_min (s_min in fb, Punzi's minimal detectable
    cross section) with soft efficiencies sigmoid((logit − ``cut_logit``) / T), each
    mass in its M² window of ± ``window`` resolutions.

    The log: s_min of the edge masses (0.01 GeV, 8.5 GeV) is 10–100× that of the
    masses in between, so an arithmetic mean (the paper's Eq. 12) is their loss alone
    and the one network ends up tuned for them; the mean of log s_min counts every
    mass' relative gain the same (the paper's masses had comparable s_min).
    ``window_local``: the window backgrounds from cumulative sums
    (:func:`window_local_window_sums`; ``data``'s events concrete)."""
    s_sel = soft_cut_weights(net, data["signal"], cut_logit, temperature)
    b_sel = soft_cut_weights(net, data["window_background"], cut_logit, temperature)
    efficiency, background = punzi_window_yields(s_sel, b_sel, data, luminosity, window, window_local)
    return jnp.log(objectives.punzi_sensitivity(efficiency, background, luminosity)).mean()


WINDOW_LOCAL_FROM_MASSES = 16
"""From this many training masses on, (d)'s loss builds its background templates
window-local (``limit_loss(window_local=True)``, the same numbers to round-off) and (c)'s
Punzi loss sums its window backgrounds so (``punzi_loss(window_local=True)``): the dense
sums cost training masses × window events. One loss and gradient
(``benchmarks/bench_limit_loss.py``, 2026-12-05, 2 shared cores): full config 8 masses
0.44 s dense / 0.73 s window-local, 32 masses 5.2 / 1.5 s; quick 5 masses 0.078 / 0.072 s,
16 masses 0.61 / 0.14 s. The Punzi loss (``--loss punzi``): full 0.152 / 0.086 s at 8, 1.21 /
0.26 s at 32 masses; quick 0.033 / 0.013 s at 5, 0.148 / 0.046 s at 16. One threshold for
both keeps the shipped runs (5 / 8 masses) on their dense sums, bit for bit."""


def limit_loss(net, data, *, theta_edges, n_window, systematics, luminosity_uncertainty, cl,
               cut_logit=0.0, temperature=1.0, window_local=False):
    """Mean over training masses of log median expected σ_UL (fb), all systematics,
    events weighted with the soft cut :func:`soft_cut_weights` (``cut_logit``,
    ``temperature``; the defaults weight with the plain network output).
    ``window_local``: the background templates by ``templates.window_local_histograms``
    (``data``'s events concrete, i.e. closed over rather than traced)."""
    s_sel = soft_cut_weights(net, data["signal"], cut_logit, temperature)
    b_sel = soft_cut_weights(net, data["window_background"], cut_logit, temperature)
    t = analysis_templates(data["centres_m2"], data["widths"], data["signal"], s_sel, data["window_background"], b_sel,
                           theta_edges, n_window, systematics, data["sigma_ref"], window_local=window_local)
    limits = expected_median_limits(t, luminosity_uncertainty, cl)  # padding θ bins dropped per group
    return jnp.mean(jnp.log(limits))


def fit_network(loss_fn: Callable, net: MLP, data: dict, n_steps: int, learning_rate: float, seed: int):
    """Adam on ``loss_fn(net, data)`` for ``n_steps`` (full batch) with diffana.train;
    returns (trained network, History)."""
    if n_steps == 0:
        from diffana.train import History

        return net, History()
    # the training pytree mixes event axes (background N, signal M × n), so it is
    # closed over rather than minibatched by train()
    result = train(lambda params, _: loss_fn(params, data), net, jnp.zeros(1), n_steps=n_steps,
                   optimizer=optax.adam(learning_rate), seed=seed, progress=True)
    return result.params, result.history
