"""Reusable plots for limit scans and templates (matplotlib; mplhep style when asked).

- :func:`brazil_band`: expected limit with ±1σ/±2σ bands and the observed limit.
- :func:`stacked_histogram`: stacked background templates with a signal overlay.
- :func:`training_curves`: loss against step for several trainings.

Each draws on a given ``ax`` (or a new one) and returns the axes. Importing this
module leaves matplotlib's backend alone (a notebook keeps its inline figures);
without a display matplotlib falls back to Agg by itself, and ``diffana
zprime-invisible`` selects Agg, as it only writes files.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def brazil_band(masses, expected, observed=None, ax=None, label="expected", ylabel="σ_UL (fb)", logy=True):
    """Brazil plot: ``expected`` (M, 5) limits (−2σ, −1σ, median, +1σ, +2σ) against
    ``masses`` (GeV), green ±1σ / yellow ±2σ bands, dashed median, optional
    ``observed`` (M,) solid line. Raises ValueError on mismatched shapes."""
    masses, expected = np.asarray(masses, float), np.asarray(expected, float)
    if expected.shape != (masses.size, 5):
        raise ValueError(f"brazil_band: expected must have shape ({masses.size}, 5), got {expected.shape}")
    ax = _axes(ax)
    ax.fill_between(masses, expected[:, 0], expected[:, 4], color="#ffdd00", label="±2σ", step=None)
    ax.fill_between(masses, expected[:, 1], expected[:, 3], color="#00cc00", label="±1σ")
    ax.plot(masses, expected[:, 2], "k--", label=label)
    if observed is not None:
        observed = np.asarray(observed, float)
        if observed.shape != masses.shape:
            raise ValueError(f"brazil_band: observed must have shape {masses.shape}, got {observed.shape}")
        ax.plot(masses, observed, "k-", label="observed")
    ax.set_xlabel("M_Z' (GeV)")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    return ax


def stacked_histogram(edges, stacks: dict, overlay: dict | None = None, ax=None, xlabel="M²_rec (GeV²)",
                      ylabel="events / bin", logy=False):
    """Stacked step histogram of ``stacks`` {label: (B,) yields} on bin ``edges`` (B+1,),
    drawn in the given order bottom-up, plus unstacked ``overlay`` {label: (B,)} lines
    (e.g. a signal). Raises ValueError when a histogram does not match the edges."""
    edges = np.asarray(edges, float)
    ax = _axes(ax)
    bottom = np.zeros(edges.size - 1)
    for label, values in stacks.items():
        values = np.asarray(values, float)
        if values.shape != bottom.shape:
            raise ValueError(f"stacked_histogram: {label!r} has {values.shape} bins, edges give {bottom.shape}")
        ax.stairs(bottom + values, edges, baseline=bottom, fill=True, label=label, alpha=0.8)
        bottom = bottom + values
    for label, values in (overlay or {}).items():
        values = np.asarray(values, float)
        if values.shape != bottom.shape:
            raise ValueError(f"stacked_histogram: overlay {label!r} has {values.shape} bins, edges give {bottom.shape}")
        ax.stairs(values, edges, color="red", linewidth=1.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(frameon=False, fontsize="small")
    return ax


def training_curves(histories: dict, ax=None, logy=False, normalise=False):
    """Loss against step for {label: History or (steps, losses)}; ``normalise`` divides
    each curve by its first value (compare losses of different units)."""
    ax = _axes(ax)
    for label, history in histories.items():
        steps, losses = (history.step, history.loss) if hasattr(history, "step") else history
        steps, losses = np.asarray(steps, float), np.asarray(losses, float)
        if steps.size == 0:
            continue
        if normalise:
            losses = losses / losses[0]
        ax.plot(steps, losses, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss / initial loss" if normalise else "loss")
    if logy:
        ax.set_yscale("log")
    ax.legend(frameon=False, fontsize="small")
    return ax
