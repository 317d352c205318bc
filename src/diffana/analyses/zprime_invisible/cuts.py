"""Choosing a selection's hard cut ``score > t`` on the training half, all tries at once.

Every selection ends as a hard cut on its score. The cut value is chosen by the mean
log median expected σ_UL over ``cut_masses`` hypotheses spread evenly over the scan
(not the whole scan: the cut is one number, and 16 windows spread over 0.01–8.5 GeV
constrain it as well as 582 neighbouring, overlapping ones, at a 36th of the cost).
The templates of every (threshold, hypothesis) pair are stacked along the hypothesis
axis and go through ONE chunked limit scan (:func:`fit.scan_limits_with`), the same
compiled program as the held-out scans, so no try and no selection compiles again.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from diffana.analyses.zprime_invisible.fit import ScanSettings, scan_limits_with
from diffana.analyses.zprime_invisible.names import HYPOTHESIS_SPACINGS

ASIMOV_FLOOR = 1e-3
"""Events added to the training background to form the (Asimov-like) observed
counts; the median expected limit does not depend on them."""


class CutScan(NamedTuple):
    """The result of :func:`choose_cut`."""

    best: float  # the chosen cut value (score units)
    thresholds: np.ndarray  # (T,) cut values tried
    objective: np.ndarray  # (T,) mean log median expected σ_UL (ln fb); inf where not finite
    expected: np.ndarray  # (T, K) median expected σ_UL (fb) per try and cut hypothesis


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


def cut_thresholds(score_signal, signal_valid, n_thresholds: int) -> np.ndarray:
    """Cut values tried: the 0–80% quantiles of the valid (non-padding) signal scores;
    the lowest just below the minimum, so that the first try keeps every event."""
    score = np.asarray(score_signal)[np.asarray(signal_valid, bool)]
    thresholds = np.unique(np.quantile(score, np.linspace(0.0, 0.8, n_thresholds)))
    thresholds[0] = np.nextafter(thresholds[0], -np.inf)
    return thresholds


def stack_hypotheses(blocks: list[dict]) -> dict:
    """Concatenate per-try template dicts ((K, ...) arrays each) along the hypothesis axis."""
    return {key: np.concatenate([np.asarray(b[key]) for b in blocks]) for key in blocks[0]}


def choose_cut(thresholds, templates_for_cut: Callable[[float], dict], settings: ScanSettings) -> CutScan:
    """The cut among ``thresholds`` with the lowest mean log median expected σ_UL.

    ``templates_for_cut(t)``: the fit templates (see :func:`fit.scan_limits`) of the K
    cut hypotheses on training events with ``score > t``. All T·K fits run in one
    chunked scan."""
    thresholds = np.asarray(thresholds, float)
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
