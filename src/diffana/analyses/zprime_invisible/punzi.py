"""The Punzi-net paper's own comparison, on held-out events.

For every mass hypothesis, in its own M²_rec window (± ``window`` resolutions, the
window the Punzi loss uses), Punzi's minimal detectable cross section s_min
(PHYSICS.md, a = 3, b = 1.28; lower is better) of

(i)  the BCE network with its best hard cut *per mass* — the cut scanned on the
     held-out events themselves, so this is the best the BCE network can do in any
     one window (an optimistic reference), against
(ii) Punzi-net with *one* hard cut for all masses, chosen on the training events as
     the paper's "best single cut" (the largest mean over masses of the FOM 1/s_min,
     its Fig. 7) and then applied to the held-out events.

The paper (Fig. 7) finds (ii) very close to (i); the analysis requires
s_min(ii) / s_min(i) ≤ 1.1 at 1–6 GeV.

(i) is chosen on the very events it is evaluated on, (ii) is not: where the
background MC is sparse, the per-mass scan of (i) picks the cut at which that
sample's MC happens to run out (B = 0), a downward fluctuation no cut chosen
elsewhere can follow. So the comparison is also made on the same footing:
(i') the BCE network's best cut per mass chosen on the *training* events, like
(ii)'s one cut, and evaluated on the held-out events (``ratio_out_of_sample``).

Units: masses GeV, M²_rec GeV², luminosity fb⁻¹, s_min fb, background in expected
events. Everything here is numpy float64 (evaluation, not training).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from diffana.analyses.zprime_invisible.samples import AnalysisSamples, recoil_mass_squared_resolution

PUNZI_A = 3.0
"""Discovery level of the Punzi FOM, in one-sided Gaussian sigmas."""
PUNZI_B = 1.28
"""Exclusion level (90% CL) of the Punzi FOM, in one-sided Gaussian sigmas."""


def punzi_s_min(efficiency, background, luminosity: float, a: float = PUNZI_A, b: float = PUNZI_B) -> np.ndarray:
    """s_min = [b²/2 + a√B + (b/2)√(b² + 4a√B + 4B)] / (ε·L) in fb (numpy float64).

    ``efficiency`` ε (dimensionless), ``background`` B (expected events, clipped at 0),
    ``luminosity`` L (fb⁻¹); broadcast together. ε = 0 gives +inf."""
    eps = np.asarray(efficiency, dtype=np.float64)
    B = np.maximum(np.asarray(background, dtype=np.float64), 0.0)
    numerator = b**2 / 2 + a * np.sqrt(B) + (b / 2) * np.sqrt(b**2 + 4 * a * np.sqrt(B) + 4 * B)
    with np.errstate(divide="ignore"):
        return numerator / (eps * luminosity)


def cut_grid(score_signal, valid, n_cuts: int) -> np.ndarray:
    """``n_cuts`` increasing cut values: quantiles of the (valid) signal score at
    signal-efficiency steps of 1/n_cuts, the first just below the smallest score
    (keeps everything). Quantiles, not a linear grid, so that a network whose scores
    crowd near 1 is scanned as finely as one whose scores are spread."""
    s = np.asarray(score_signal, dtype=np.float64)[np.asarray(valid, bool)]
    cuts = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_cuts, endpoint=False)))
    cuts[0] = np.nextafter(cuts[0], -np.inf)
    return cuts


def _passing_weight(score, weight, cuts) -> np.ndarray:
    """(T,) Σ weight of the events with score > cuts[t] (cuts increasing)."""
    n_below = np.searchsorted(cuts, score, side="left")  # number of cuts < score: the event passes those
    per_slot = np.bincount(n_below, weights=weight, minlength=cuts.size + 1)
    return np.cumsum(per_slot[::-1])[::-1][1:]


class CutScan(NamedTuple):
    """Hard cuts ``score > cuts[t]`` for every hypothesis k in its window.

    ``efficiency`` (M, T) signal efficiency in the window; ``background`` (M, T)
    expected background events in the window; ``s_min`` (M, T) in fb;
    ``background_mc`` (M, T) background MC events behind ``background`` (0 means B = 0
    only because no MC event is left: the true B is then below about one event weight)."""

    cuts: np.ndarray
    efficiency: np.ndarray
    background: np.ndarray
    s_min: np.ndarray
    background_mc: np.ndarray


def scan_cuts(signal: dict, score_signal, background: dict, score_background, centres_m2, widths_m2,
              window: float, cuts, luminosity: float) -> CutScan:
    """s_min of every cut in ``cuts`` for every hypothesis.

    ``signal``: (M, n) columns ``recoil_mass_squared`` and ``weight`` (fb⁻¹ per event =
    ε·L, 0 for padding), row k the hypothesis with window centre ``centres_m2[k]``;
    ``background``: (N,) columns ``recoil_mass_squared``, ``weight`` (events). A
    window is |M²_rec − centre| < ``window`` · width (GeV²), as in the Punzi loss."""
    cuts = np.asarray(cuts, np.float64)
    centres, widths = np.asarray(centres_m2, np.float64), np.asarray(widths_m2, np.float64)
    s_m2, s_w = np.asarray(signal["recoil_mass_squared"]), np.asarray(signal["weight"], np.float64)
    s_score = np.asarray(score_signal, np.float64)
    # background sorted in M² once, each window a contiguous slice
    order = np.argsort(np.asarray(background["recoil_mass_squared"]))
    b_m2 = np.asarray(background["recoil_mass_squared"])[order]
    b_w = np.asarray(background["weight"], np.float64)[order]
    b_score = np.asarray(score_background, np.float64)[order]
    eff, bkg, n_mc = (np.zeros((centres.size, cuts.size)) for _ in range(3))
    for k, (c, w) in enumerate(zip(centres, widths)):
        inside = np.abs(s_m2[k] - c) < window * w
        eff[k] = _passing_weight(s_score[k][inside], s_w[k][inside], cuts) / luminosity
        # the strict inequality |M² − c| < window·w excludes the exact lower edge
        lo = np.searchsorted(b_m2, c - window * w, side="right")
        hi = np.searchsorted(b_m2, c + window * w, side="left")
        bkg[k] = _passing_weight(b_score[lo:hi], b_w[lo:hi], cuts)
        n_mc[k] = _passing_weight(b_score[lo:hi], np.ones(hi - lo), cuts)
    return CutScan(cuts, eff, bkg, punzi_s_min(eff, bkg, luminosity), n_mc.astype(int))


def best_cut_per_mass(scan: CutScan) -> np.ndarray:
    """(M,) index into ``scan.cuts`` of each hypothesis' smallest s_min."""
    return np.argmin(scan.s_min, axis=1)


def best_single_cut(scan: CutScan, hypotheses=None) -> int:
    """Index of the one cut with the largest mean over hypotheses of the Punzi FOM
    1/s_min (fb⁻¹): the paper's "best single cut" (its Fig. 7 averages the FOM, "the
    inverse of the minimal detectable cross-section", over the signal hypotheses). A
    cut that removes all signal of some mass adds FOM 0 for it, rather than
    excluding the cut. ``hypotheses``: optional (M,) bool mask of the hypotheses the
    mean runs over (default: all, the paper's criterion; a mass range such as 1–6 GeV
    for a cut that serves that range — on a resolution-stepped scan most hypotheses
    are heavy and dominate the plain mean)."""
    fom = 1.0 / scan.s_min
    if hypotheses is not None:
        fom = fom[np.asarray(hypotheses, bool)]
    return int(np.argmax(fom.mean(axis=0)))


class PunziComparison(NamedTuple):
    """The paper's comparison per hypothesis (all (M,) arrays, s_min in fb).

    ``bce_best``: s_min of the BCE network with its best cut per mass (held-out);
    ``bce_best_cut``: those cuts; ``punzi_one_cut``: s_min of Punzi-net with the one
    cut ``punzi_cut`` (chosen on training events); ``punzi_best``: Punzi-net with its
    own best cut per mass (held-out), for reference; ``ratio`` = punzi_one_cut /
    bce_best (≤ 1.1 is the target); ``bce_one_cut`` / ``bce_cut``: the BCE network
    with one cut chosen the same way as Punzi-net's (for reference).
    ``bce_per_mass_out_of_sample``: s_min on the held-out events of the BCE network's
    best cut per mass *chosen on the training events* (the per-mass optimum on the
    same footing as Punzi-net's one cut); ``ratio_out_of_sample`` = punzi_one_cut /
    bce_per_mass_out_of_sample; ``*_mc``: background MC events left in the held-out
    window by those cuts."""

    masses: np.ndarray
    bce_best: np.ndarray
    bce_best_cut: np.ndarray
    punzi_one_cut: np.ndarray
    punzi_cut: float
    punzi_best: np.ndarray
    bce_one_cut: np.ndarray
    bce_cut: float
    ratio: np.ndarray
    bce_best_mc: np.ndarray
    punzi_one_cut_mc: np.ndarray
    bce_per_mass_out_of_sample: np.ndarray
    bce_per_mass_out_of_sample_mc: np.ndarray
    ratio_out_of_sample: np.ndarray

    def worst_ratio(self, mass_min: float = 1.0, mass_max: float = 6.0) -> float:
        """Largest ``ratio`` over the hypotheses with mass_min ≤ M ≤ mass_max (GeV)."""
        return float(np.max(self.ratio[self.in_range(mass_min, mass_max)]))

    def in_range(self, mass_min: float = 1.0, mass_max: float = 6.0) -> np.ndarray:
        """:func:`masses_in_range` of these hypotheses."""
        return masses_in_range(self.masses, mass_min, mass_max)

    def geometric_mean(self, ratio: np.ndarray, mass_min: float = 1.0, mass_max: float = 6.0) -> float:
        """:func:`geometric_mean_in_range` of a per-mass ``ratio`` over these masses."""
        return geometric_mean_in_range(ratio, self.masses, mass_min, mass_max)


def masses_in_range(masses, mass_min: float = 1.0, mass_max: float = 6.0) -> np.ndarray:
    """(M,) bool: the hypotheses with mass_min ≤ M ≤ mass_max (GeV; both ends
    included, the paper's 1–6 GeV)."""
    masses = np.asarray(masses)
    return (masses >= mass_min) & (masses <= mass_max)


def geometric_mean_in_range(ratio, masses, mass_min: float = 1.0, mass_max: float = 6.0) -> float:
    """Geometric mean of a per-mass ``ratio`` over :func:`masses_in_range` (+inf if any
    is infinite: a cut removes all of some mass' signal)."""
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(np.asarray(ratio)[masses_in_range(masses, mass_min, mass_max)]))))


def logit_scores(net, events: dict) -> np.ndarray:
    """A network's output before the sigmoid (float64, same shape as the feature
    columns): the score to cut on. Monotone in the sigmoid output, but it does not
    round to exactly 1.0 — a Punzi-net weight sigmoid(logit / T) does so for
    logit > 37·T, which ties a large part of the events and leaves the cut scan
    with nothing to resolve."""
    from diffana.analyses.zprime_invisible.samples import PUNZI_FEATURES
    from diffana.analyses.zprime_invisible.selections import _flat

    shape = np.shape(events[PUNZI_FEATURES[0]])
    return np.asarray(net.logit(_flat(events, PUNZI_FEATURES)), dtype=np.float64).reshape(shape)


def network_cut_grid(samples: AnalysisSamples, score: Callable, n_cuts: int) -> np.ndarray:
    """One network's cut grid (:func:`cut_grid`) from its scores of the *training*
    signal of ``samples`` (``score``: events dict → scores)."""
    return cut_grid(score(samples.signal_train), samples.signal_train["weight"] > 0, n_cuts)


def scan_network(samples: AnalysisSamples, score: Callable, cuts, signal: dict, background: dict, window: float,
                 resolution: str = "published") -> CutScan:
    """:func:`scan_cuts` of one network (``score``) on ``signal`` ((M, n) columns, row k
    the hypothesis ``samples.masses[k]``) and ``background``, each hypothesis in its
    window of ± ``window`` σ(M²_rec) of the ``resolution`` model, at ``samples``'
    luminosity."""
    return scan_cuts(signal, score(signal), background, score(background), samples.masses**2,
                     recoil_mass_squared_resolution(samples.masses, resolution), window, cuts, samples.luminosity)


def _scans(samples: AnalysisSamples, score: Callable, window: float, n_cuts: int,
           resolution: str = "published") -> tuple[CutScan, CutScan]:
    """(training scan, held-out scan) of one network, on one cut grid made from its
    training signal scores; windows from the ``resolution`` model's σ(M²_rec)."""
    cuts = network_cut_grid(samples, score, n_cuts)
    train = scan_network(samples, score, cuts, samples.signal_train, samples.background_train, window, resolution)
    test = scan_network(samples, score, cuts, samples.signal_test, samples.background_test, window, resolution)
    return train, test


def punzi_comparison(samples: AnalysisSamples, score_bce: Callable, score_punzi: Callable, window: float,
                     n_cuts: int = 400, resolution: str = "published") -> PunziComparison:
    """The comparison of the module docstring on ``samples`` (train half to choose
    Punzi-net's one cut and the out-of-sample per-mass cuts, held-out half for every
    number reported).

    ``score_bce`` / ``score_punzi``: events dict → scores of the same shape (e.g.
    ``lambda ev: selections.network_scores(net, ev)``); ``window``: half-width of the
    M² windows in resolutions; ``n_cuts``: size of each network's cut grid;
    ``resolution``: the σ(M²_rec) model (config ``analysis.resolution``), as in training."""
    bce_train, bce_test = _scans(samples, score_bce, window, n_cuts, resolution)
    pz_train, pz_test = _scans(samples, score_punzi, window, n_cuts, resolution)
    rows = np.arange(samples.masses.size)
    bce_idx, pz_idx = best_cut_per_mass(bce_test), best_cut_per_mass(pz_test)
    pz_one, bce_one = best_single_cut(pz_train), best_single_cut(bce_train)
    bce_from_train = best_cut_per_mass(bce_train)  # the same grid: the indices carry over to the held-out scan
    bce_best = bce_test.s_min[rows, bce_idx]
    bce_out_of_sample = bce_test.s_min[rows, bce_from_train]
    punzi_one = pz_test.s_min[:, pz_one]
    with np.errstate(invalid="ignore"):
        ratio, ratio_out_of_sample = punzi_one / bce_best, punzi_one / bce_out_of_sample
    return PunziComparison(
        masses=np.asarray(samples.masses), bce_best=bce_best, bce_best_cut=bce_test.cuts[bce_idx],
        punzi_one_cut=punzi_one, punzi_cut=float(pz_test.cuts[pz_one]), punzi_best=pz_test.s_min[rows, pz_idx],
        bce_one_cut=bce_test.s_min[:, bce_one], bce_cut=float(bce_test.cuts[bce_one]), ratio=ratio,
        bce_best_mc=bce_test.background_mc[rows, bce_idx], punzi_one_cut_mc=pz_test.background_mc[:, pz_one],
        bce_per_mass_out_of_sample=bce_out_of_sample,
        bce_per_mass_out_of_sample_mc=bce_test.background_mc[rows, bce_from_train],
        ratio_out_of_sample=ratio_out_of_sample)


class TrainedNetworks(NamedTuple):
    """(b)'s BCE network and (c)'s Punzi-net fine-tuned from it, with their histories."""

    bce: object
    punzi: object
    history_bce: object
    history_punzi: object


def train_networks(samples: AnalysisSamples, training, seed: int, resolution: str = "published",
                   window_bins: int = 20, punzi_temperature: float | None = None) -> TrainedNetworks:
    """Train (b) and (c) exactly as ``pipeline.run_analysis`` does: ``training`` is
    the config's ``[training]`` section; the training masses are ``training.n_masses``
    hypotheses of the scan, spread by ``training.hypothesis_spacing``; ``resolution``: the σ(M²_rec) model of the
    Punzi windows (config ``analysis.resolution``); ``window_bins``: the template
    window (config ``templates.window_bins``), which bounds the training windows;
    ``punzi_temperature``: T of the Punzi loss' soft efficiencies sigmoid(logit/T)
    (default :data:`selections.PUNZI_TEMPERATURE`, as the pipeline)."""
    from diffana.analyses.zprime_invisible import selections as sel

    masses = samples.masses
    centres, widths = masses**2, recoil_mass_squared_resolution(masses, resolution)
    data = sel.hypothesis_training_data(samples, training, centres, widths, seed, window_bins).data
    temperature = sel.PUNZI_TEMPERATURE if punzi_temperature is None else punzi_temperature
    net = sel.make_network(samples.background_train, training.hidden, seed)
    net_bce, h_bce = sel.fit_network(sel.bce_loss, net, data, training.bce_steps, training.learning_rate, seed)
    net_punzi, h_punzi = sel.fit_network(
        lambda n, d: sel.punzi_loss(n, d, samples.luminosity, training.punzi_window, temperature), net_bce, data,
        training.punzi_steps, training.learning_rate, seed)
    return TrainedNetworks(net_bce, net_punzi, h_bce, h_punzi)
