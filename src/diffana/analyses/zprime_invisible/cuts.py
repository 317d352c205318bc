"""Choosing a selection's hard cut ``score > t`` on the training half, all tries at once.

Every selection ends as a hard cut on its score. The cut value is chosen by the mean
log median expected σ_UL over ``cut_masses`` hypotheses spread evenly over the scan
(not the whole scan: the cut is one number, and 16 windows spread over 0.01–8.5 GeV
constrain it as well as 582 neighbouring, overlapping ones, at a 36th of the cost).
The tries come in two passes (:func:`scan_cut`): geometric steps in the kept signal
fraction, then finer ones around the winner. Within a pass the templates of every
(threshold, hypothesis) pair are stacked along the hypothesis axis and go through ONE
chunked limit scan (:func:`fit.scan_limits_with`), the same compiled program as the
held-out scans, so no try and no selection compiles again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from diffana.analyses.zprime_invisible.fit import ScanSettings, scan_limits_with
from diffana.analyses.zprime_invisible.names import HYPOTHESIS_SPACINGS
from diffana.analyses.zprime_invisible.samples import AnalysisSamples

ASIMOV_FLOOR = 1e-3
"""Events added to the training background to form the (Asimov-like) observed
counts; the median expected limit does not depend on them."""


class CutScan(NamedTuple):
    """The result of :func:`choose_cut`."""

    best: float  # the chosen cut value (score units)
    thresholds: np.ndarray  # (T,) cut values tried
    objective: np.ndarray  # (T,) mean log median expected σ_UL (ln fb); inf where not finite
    expected: np.ndarray  # (T, K) median expected σ_UL (fb) per try and cut hypothesis

    @property
    def at_tightest(self) -> bool:
        """True when the tightest try won: the optimum may lie at a tighter cut than
        the scan reaches (``[training] cut_tightest_signal_fraction``)."""
        return int(np.argmin(self.objective)) == self.objective.size - 1


def cut_hypotheses(n_masses: int, n_cut: int) -> np.ndarray:
    """Indices of ``n_cut`` hypotheses evenly spread over a scan of ``n_masses``
    (both ends included; all of them when ``n_cut`` >= ``n_masses``)."""
    return np.unique(np.round(np.linspace(0, n_masses - 1, min(n_cut, n_masses))).astype(int))


def hypotheses_evenly_in_mass(masses, n: int) -> np.ndarray:
    """Indices of the scan hypotheses nearest to ``n`` masses evenly spaced (GeV) from
    the first to the last of ``masses`` (increasing); fewer where two share one.

    The scan steps by one M²_rec resolution, which is ≈ 20× finer in M_Z' at 8 GeV
    than at 1 GeV, so hypotheses evenly spread in scan index crowd at high mass (of 8
    in the full 582-hypothesis scan, one lies in 0.01–4.3 GeV)."""
    masses = np.asarray(masses, float)
    targets = np.linspace(masses[0], masses[-1], min(n, masses.size))
    return np.unique(np.abs(masses[None, :] - targets[:, None]).argmin(axis=1))


def spread_hypotheses(masses, n: int, spacing: str = "scan") -> np.ndarray:
    """Indices of ``n`` hypotheses of the scan ``masses`` (GeV) to train on or to
    choose a cut on: evenly in scan index (``"scan"``, :func:`cut_hypotheses`) or in
    mass (``"mass"``, :func:`hypotheses_evenly_in_mass`)."""
    if spacing == "scan":
        return cut_hypotheses(np.size(masses), n)
    if spacing == "mass":
        return hypotheses_evenly_in_mass(masses, n)
    raise ValueError(f"hypothesis spacing must be one of {HYPOTHESIS_SPACINGS}, got {spacing!r}")


class CutScanSettings(NamedTuple):
    """How :func:`scan_cut` searches a selection's cut (``[training]`` keys in brackets)."""

    n_thresholds: int
    """Tries of the first pass (``n_thresholds``)."""
    n_refine: int
    """Tries of the second pass, between the first pass' winner's neighbours; 0: one
    pass only (``n_refine_thresholds``)."""
    tightest_signal_fraction: float
    """Fraction of the training signal the tightest try keeps
    (``cut_tightest_signal_fraction``)."""
    min_signal_events: int
    """Training signal MC events every hypothesis keeps in its window at any try
    (``cut_min_signal_events``; :func:`signal_guard_ceiling`)."""


def cut_scan_settings(training) -> CutScanSettings:
    """The settings of a config's ``[training]`` section (``config.TrainingConfig``)."""
    return CutScanSettings(training.n_thresholds, training.n_refine_thresholds, training.cut_tightest_signal_fraction,
                           training.cut_min_signal_events)


def kept_signal_fractions(n_thresholds: int, tightest_signal_fraction: float) -> np.ndarray:
    """(n,) fractions of the signal kept by the first pass' tries: geometric from 1 to
    ``tightest_signal_fraction``. Geometric, not even, steps: the trained networks'
    optima lie at the tight end, where a fixed step in quantile would be a large
    factor in efficiency and background."""
    return tightest_signal_fraction ** np.linspace(0.0, 1.0, n_thresholds)


def cut_thresholds(score_signal, signal_valid, kept_fractions) -> np.ndarray:
    """Cut values keeping ``kept_fractions`` of the valid (non-padding) signal events
    (quantiles of their score), one per fraction; a fraction of 1 gives a cut just
    below the lowest score, so that it keeps every event. Tied scores can repeat a
    value (:func:`choose_cut` tries each value once)."""
    score = np.asarray(score_signal)[np.asarray(signal_valid, bool)]
    kept = np.asarray(kept_fractions, float)
    return np.where(kept >= 1.0, np.nextafter(score.min(), -np.inf), np.quantile(score, 1.0 - kept))


def refined_fractions(kept_fractions, best: int, n_refine: int) -> np.ndarray:
    """(n_refine,) kept fractions of the second pass of :func:`scan_cut`: geometric
    steps between try ``best`` of ``kept_fractions`` (decreasing) and each neighbour,
    half on either side (the odd one on the tighter side; all on the one side at an
    end of the scan), neither the winner nor a neighbour repeated."""
    kept = np.asarray(kept_fractions, float)
    looser = best > 0
    tighter = best < kept.size - 1
    n_loose = (n_refine // 2 if tighter else n_refine) if looser else 0
    sides = []
    if looser:
        sides.append(np.geomspace(kept[best - 1], kept[best], n_loose + 2)[1:-1])
    if tighter:
        sides.append(np.geomspace(kept[best], kept[best + 1], n_refine - n_loose + 2)[1:-1])
    return np.concatenate(sides) if sides else np.empty(0)


def signal_in_windows(signal_m2, signal_valid, centres_m2, widths, window_bins: int) -> np.ndarray:
    """(M, n) bool: the valid signal events of each hypothesis row that fall in its fit
    window (centre ``centres_m2``, ``window_bins`` resolutions ``widths`` wide; GeV²)."""
    half = 0.5 * window_bins * np.asarray(widths, float)[:, None]
    offset = np.abs(np.asarray(signal_m2, float) - np.asarray(centres_m2, float)[:, None])
    return np.asarray(signal_valid, bool) & (offset < half)


def signal_guard_scores(score_signal, in_window, min_events: int) -> np.ndarray:
    """(M,) per hypothesis, the score below which a cut must stay for it to keep
    ``min_events`` of its signal MC events in its window (``score_signal``,
    ``in_window``: (M, n)): its ``min_events``-th highest window score; inf where the
    guard is off (``min_events`` < 1) or the hypothesis has fewer window events before
    any cut (it cannot meet the guard and does not constrain it)."""
    in_window = np.asarray(in_window, bool)
    guard = np.full(in_window.shape[0], np.inf)
    constraining = in_window.sum(axis=1) >= min_events
    if min_events < 1 or not constraining.any():
        return guard
    score = np.where(in_window, np.asarray(score_signal, float), -np.inf)
    guard[constraining] = -np.sort(-score[constraining], axis=1)[:, min_events - 1]
    return guard


class GuardCeiling(NamedTuple):
    """Where the signal guard stops a cut scan."""

    score: float  # no try reaches this score; inf when no hypothesis constrains the cut
    hypothesis: int | None  # index of the hypothesis that sets it; None when none does


def spared_hypotheses(n_hypotheses: int, spared_fraction: float) -> int:
    """How many of ``n_hypotheses`` the guard spares: ``spared_fraction`` of them,
    rounded up (``training.cut_guard_spared_fraction``; any positive share spares one),
    so that one setting means the same share of the scan in ``--quick`` and in full."""
    return int(np.ceil(spared_fraction * n_hypotheses - 1e-9))


def guard_ceiling(guard_scores, spared: int = 0) -> GuardCeiling:
    """The ceiling of :func:`signal_guard_scores` that spares the ``spared`` hypotheses
    with the lowest guard scores (they may keep fewer signal events than the guard
    asks; :func:`spared_hypotheses`): the (``spared`` + 1)-th lowest.

    Why spare any: one cut serves every mass, and the hypothesis whose window keeps the
    fewest signal events (the top of the scan, 8.50 GeV, in quick seed 1) otherwise
    holds every other hypothesis' cut back (tutorial §5, "The signal guard"; studies log,
    "Sparing the top of the scan")."""
    guard_scores = np.asarray(guard_scores, float)
    order = np.argsort(guard_scores, kind="stable")
    if spared >= order.size or not np.isfinite(guard_scores[order[spared]]):
        return GuardCeiling(float(np.inf), None)
    return GuardCeiling(float(guard_scores[order[spared]]), int(order[spared]))


def signal_guard_ceiling(score_signal, in_window, min_events: int) -> float:
    """The cut value that every admissible cut must stay below so that each hypothesis
    keeps at least ``min_events`` of its signal MC events in its window: the lowest of
    :func:`signal_guard_scores`; inf when no hypothesis constrains it.

    Why: with few signal MC events left, the efficiency measured on the events the cut
    is chosen on can be an upward fluctuation, and the held-out efficiency zero (an
    unbounded limit)."""
    return guard_ceiling(signal_guard_scores(score_signal, in_window, min_events)).score


def stack_hypotheses(blocks: list[dict]) -> dict:
    """Concatenate per-try template dicts ((K, ...) arrays each) along the hypothesis axis."""
    return {key: np.concatenate([np.asarray(b[key]) for b in blocks]) for key in blocks[0]}


def choose_cut(thresholds, templates_for_cut: Callable[[float], dict], settings: ScanSettings) -> CutScan:
    """The cut among ``thresholds`` (each distinct value tried once, in increasing
    order) with the lowest mean log median expected σ_UL.

    ``templates_for_cut(t)``: the fit templates (see :func:`fit.scan_limits`) of the K
    cut hypotheses on training events with ``score > t``. All T·K fits run in one
    chunked scan."""
    thresholds = np.unique(np.asarray(thresholds, float))
    blocks = [templates_for_cut(float(t)) for t in thresholds]
    stacked = stack_hypotheses(blocks)
    observed = stacked["background"] + ASIMOV_FLOOR
    _, expected, _ = scan_limits_with(settings, stacked, observed)
    median = expected[:, 2].reshape(thresholds.size, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        objective = np.mean(np.log(median), axis=1)
    objective = np.where(np.isfinite(objective), objective, np.inf)
    return CutScan(best=float(thresholds[int(np.argmin(objective))]), thresholds=thresholds,
                   objective=objective, expected=median)


def merge_scans(first: CutScan, second: CutScan) -> CutScan:
    """The tries of two scans in one, sorted by cut value; the best over both."""
    thresholds = np.concatenate([first.thresholds, second.thresholds])
    order = np.argsort(thresholds, kind="stable")
    objective = np.concatenate([first.objective, second.objective])[order]
    return CutScan(best=float(thresholds[order][int(np.argmin(objective))]), thresholds=thresholds[order],
                   objective=objective, expected=np.concatenate([first.expected, second.expected])[order])


def tightest_kept_fraction(score_signal, signal_valid, ceiling: float, tightest_signal_fraction: float) -> float:
    """The share of the valid signal that :func:`scan_cut`'s tightest try keeps: the
    larger of ``tightest_signal_fraction`` and the share above the signal guard's
    ``ceiling`` (:func:`signal_guard_ceiling`). When the second is larger, the guard,
    not the configured fraction, stops the scan."""
    if not np.isfinite(ceiling):
        return tightest_signal_fraction
    score = np.asarray(score_signal)[np.asarray(signal_valid, bool)]
    return max(tightest_signal_fraction, float(np.mean(score > ceiling)))


def scan_cut(score_signal, signal_valid, templates_for_cut: Callable[[float], dict], fit_settings: ScanSettings,
             settings: CutScanSettings, ceiling: float = np.inf) -> CutScan:
    """A selection's cut in two passes of :func:`choose_cut`: ``n_thresholds`` tries
    keeping from all to ``tightest_signal_fraction`` of the valid signal (geometric),
    then ``n_refine`` tries between the winner's neighbours. Two passes resolve the
    optimum (and the cliff where a cut mass loses its last signal) ≈ n_refine times
    finer than one pass of the same number of tries.

    Every try stays below ``ceiling`` (:func:`signal_guard_ceiling`): the tightest
    try keeps the larger of ``tightest_signal_fraction`` and the fraction above the
    ceiling, and any try past it is pulled back to just below it."""
    kept = kept_signal_fractions(settings.n_thresholds, tightest_kept_fraction(
        score_signal, signal_valid, ceiling, settings.tightest_signal_fraction))
    below_ceiling = np.nextafter(ceiling, -np.inf)

    def thresholds(fractions):
        return np.minimum(cut_thresholds(score_signal, signal_valid, fractions), below_ceiling)

    coarse = thresholds(kept)
    first = choose_cut(coarse, templates_for_cut, fit_settings)
    if settings.n_refine == 0:
        return first
    best = int(np.flatnonzero(coarse == first.best)[0])
    fine = np.setdiff1d(thresholds(refined_fractions(kept, best, settings.n_refine)), first.thresholds)
    if fine.size == 0:
        return first
    return merge_scans(first, choose_cut(fine, templates_for_cut, fit_settings))


class RegionalCut(NamedTuple):
    """A hard cut ``score > t`` whose value t depends on the event's M²_rec: one value per
    mass region (``[training] cut_region_masses``). An event belongs to the region of its
    own M²_rec, a hypothesis to the region of its M²; with no region edges this is the one
    cut of every selection. Cutting by the event's M²_rec, not by the hypothesis, keeps the
    selection one event-level decision (as the 2018 search's recoil-mass-dependent τ
    suppression): the background passes or not once, whatever window it lands in."""

    region_edges_m2: np.ndarray  # (R − 1,) region boundaries in M²_rec (GeV²), increasing
    values: np.ndarray  # (R,) cut value per region (score units)

    @classmethod
    def single(cls, value: float) -> "RegionalCut":
        """One cut for every mass."""
        return cls(np.empty(0), np.array([float(value)]))

    def at(self, m2):
        """The cut value at M²_rec ``m2`` (GeV², any shape; numpy or JAX)."""
        return jnp.asarray(self.values)[jnp.searchsorted(jnp.asarray(self.region_edges_m2), m2, side="right")]

    def label(self) -> str:
        """The cut value(s) for a log line, one per region."""
        return ", ".join(f"{v:.4g}" for v in self.values)

    def passes(self, score, m2) -> np.ndarray:
        """Hard pass mask of events with ``score`` and M²_rec ``m2`` (same shape)."""
        return np.asarray(score) > np.asarray(self.at(np.asarray(m2)))

    def logit_at(self, m2):
        """logit of :meth:`at` (the network's logit units; a cut at 0.5 is logit 0), for
        the soft cuts of the Punzi and limit losses (``selections.soft_cut_weights``)."""
        value = self.at(m2)
        return jnp.log(value) - jnp.log1p(-value)


def hypothesis_regions(masses, region_masses) -> np.ndarray:
    """(M,) index of the mass region of each hypothesis (masses and region edges in GeV;
    a hypothesis on an edge belongs to the region above)."""
    return np.searchsorted(np.asarray(region_masses, float), np.asarray(masses, float), side="right")


def region_rows(masses, region_masses) -> list[np.ndarray]:
    """Per mass region (``region_masses``: R − 1 edges, GeV), the scan indices of its
    hypotheses (``masses`` in GeV, :func:`hypothesis_regions`). Raises ``ValueError``
    naming an empty region."""
    regions = hypothesis_regions(masses, region_masses)
    rows = [np.flatnonzero(regions == r) for r in range(len(region_masses) + 1)]
    for r, inside in enumerate(rows):
        if inside.size == 0:
            raise ValueError(f"cut region {r} holds no mass hypothesis of the scan; move [training] cut_region_masses")
    return rows


def region_cut_hypotheses(rows_by_region, n_cut: int) -> list[np.ndarray]:
    """Per region (``rows_by_region`` from :func:`region_rows`), the scan indices of
    ⌈``n_cut`` / R⌉ of its hypotheses, evenly spread over it in scan index (both ends), so
    that every region's cut is chosen on its own masses and the whole cut scan still fits
    about ``n_cut`` hypotheses."""
    per_region = int(np.ceil(n_cut / len(rows_by_region)))
    return [rows[cut_hypotheses(rows.size, per_region)] for rows in rows_by_region]


class CutChoiceSample(NamedTuple):
    """The events a selection's hard cut is chosen on, weights scaled to the full
    sample like every half of :class:`~samples.AnalysisSamples`."""

    signal: dict  # feature → (M, n), one row per hypothesis; weight (fb⁻¹ per event) 0 = not in this share
    background: dict  # feature → (N,); weight in expected events


def _weighted_share(sample: dict, in_share: np.ndarray, fraction: float) -> dict:
    """``sample`` with the events outside ``in_share`` at weight 0 and the rest scaled
    by 1/``fraction`` (the (M, n) signal keeps its shape: weight 0 is padding there)."""
    return {**sample, "weight": np.where(in_share, np.asarray(sample["weight"]) / fraction, 0.0)}


def _background_share(sample: dict, in_share: np.ndarray, fraction: float) -> dict:
    share = {k: np.asarray(v)[in_share] for k, v in sample.items()}
    share["weight"] = share["weight"] / fraction
    return share


def split_for_cut_choice(samples: AnalysisSamples, fraction: float, seed: int) -> tuple[AnalysisSamples,
                                                                                         CutChoiceSample]:
    """The training half split into the events the networks learn from (returned as
    ``samples`` with a smaller training half) and a validation share ``fraction`` of
    it that no network sees, on which the cut is chosen.

    Why: a cut chosen on the networks' own training events favours the tight cuts
    where the networks learned the events' fluctuations; with the guard of
    :func:`signal_guard_ceiling` the training-half objective falls until the weakest
    hypothesis is about to lose its signal (studies log, "The cut scan stopped short of the
    trained cuts"). ``fraction`` = 0 keeps the
    old behaviour: both are the whole training half."""
    if fraction == 0:
        return samples, CutChoiceSample(samples.signal_train, samples.background_train)
    rng = np.random.default_rng([seed, 20261204])
    signal_held = rng.uniform(size=np.shape(samples.signal_train["weight"])) < fraction
    background_held = rng.uniform(size=np.shape(samples.background_train["weight"])) < fraction
    networks = dataclasses.replace(
        samples, signal_train=_weighted_share(samples.signal_train, ~signal_held, 1.0 - fraction),
        background_train=_background_share(samples.background_train, ~background_held, 1.0 - fraction))
    validation = CutChoiceSample(_weighted_share(samples.signal_train, signal_held, fraction),
                                 _background_share(samples.background_train, background_held, fraction))
    return networks, validation

