"""The analysis' PNG plots (written into the output folder)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from diffana import plot
from diffana.analyses.zprime_invisible.outputs import has_limit
from diffana.analyses.zprime_invisible.selections import SELECTION_LABELS

BEST = "end_to_end"
"""The selection whose observed limits and bands the figures show."""


def _style():
    try:
        import mplhep

        plt.style.use(mplhep.style.ROOT)
        plt.rcParams.update({"font.size": 11, "figure.figsize": (6, 4.5)})
    except Exception:  # noqa: BLE001 - style is cosmetic
        pass


def only_with_limit(lim, values) -> np.ndarray:
    """``values`` ((M,) or (M, k) per hypothesis) with NaN where the selection has no limit
    (:func:`outputs.has_limit`): matplotlib leaves a gap there instead of drawing the
    fitter's bound (~10³⁷ fb when no signal is left), which would set the axis range."""
    values = np.asarray(values, float)
    mask = has_limit(lim).reshape((-1,) + (1,) * (values.ndim - 1))
    return np.where(mask, values, np.nan)


def make_all(result, samples, limits, output: Path) -> list[Path]:
    """Brazil band (end to end), g' vs M with the (g−2)_μ band, the stacked M²_rec
    spectrum with a signal overlay, the four selections' expected limits with their
    ratio to (a), and the training curves. Returns the written paths."""
    paths = limit_figures(result.masses, limits, output)
    paths.append(_save(spectrum_figure(samples, result.masses, limits), output / "zprime_spectrum.png"))
    paths.append(_save(training_figure(result.histories), output / "zprime_training.png"))
    return paths


def limit_figures(masses, limits, output: Path) -> list[Path]:
    """The figures drawn from the limits alone (``zprime_brazil.png``,
    ``zprime_coupling.png``, ``zprime_selections.png``); ``limits[selection]`` as the
    pipeline keeps them (``scripts/zprime_replot.py`` rebuilds them from ``limits.json``)."""
    return [_save(brazil_figure(masses, limits[BEST]), output / "zprime_brazil.png"),
            _save(coupling_figure(masses, limits), output / "zprime_coupling.png"),
            _save(selections_figure(masses, limits), output / "zprime_selections.png")]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def brazil_figure(masses, lim):
    """Observed and expected σ_UL (fb) with the ±1σ/±2σ bands of one selection."""
    _style()
    fig, ax = plt.subplots()
    plot.brazil_band(masses, only_with_limit(lim, lim["expected"]), only_with_limit(lim, lim["observed"]), ax=ax,
                     ylabel="90% CL σ_UL (fb)")
    ax.set_title(SELECTION_LABELS[BEST], fontsize=11)
    return fig


def coupling_figure(masses, limits):
    """g'_UL against M_Z': every selection's expected (vanilla Lμ−Lτ), (d)'s observed
    (vanilla and fully invisible), and the (g−2)_μ ±2σ band."""
    from diffana.physics.theory import g_minus_2_band

    _style()
    fig, ax = plt.subplots()
    for name, lim in limits.items():
        ax.plot(masses, only_with_limit(lim, lim["g_expected_vanilla"]), label=f"{SELECTION_LABELS[name]} (exp.)")
    ax.plot(masses, only_with_limit(limits[BEST], limits[BEST]["g_vanilla"]), "k-", label="observed, (d)")
    ax.plot(masses, only_with_limit(limits[BEST], limits[BEST]["g_invisible"]), "k:", label="observed, (d), B(inv)=1")
    grid = np.linspace(masses[0], masses[-1], 200)
    low, high = (np.asarray(x) for x in g_minus_2_band(grid))
    ax.fill_between(grid, low, high, color="tab:green", alpha=0.3, label="(g−2)_μ ±2σ")
    ax.set_yscale("log")
    ax.set_xlabel("M_Z' (GeV)")
    ax.set_ylabel("90% CL g'_UL")
    ax.legend(frameon=False, fontsize="x-small")
    return fig


def spectrum_figure(samples, masses, limits):
    """Stacked M²_rec spectrum of the held-out background after preselection, with the
    signal at the hypothesis nearest 4 GeV overlaid at 10× (a)'s median expected limit."""
    _style()
    bg = samples.background_test
    edges = np.linspace(-1.0, 75.0, 77)
    names = {1: "μμ(γ)", 2: "ττ(γ)", 3: "eeμμ"}
    stacks = {names[p]: np.histogram(bg["recoil_mass_squared"][bg["process"] == p], edges,
                                     weights=bg["weight"][bg["process"] == p])[0] for p in (3, 2, 1)}
    k = int(np.argmin(np.abs(masses - 4.0)))
    sig = samples.signal_test
    sigma_show = 10.0 * limits["cut_based"]["expected"][k, 2]
    overlay = {f"Z' {masses[k]:.2f} GeV, σ = {sigma_show:.3g} fb": np.histogram(
        sig["recoil_mass_squared"][k], edges, weights=sig["weight"][k] * sigma_show)[0]}
    fig, ax = plt.subplots()
    plot.stacked_histogram(edges, stacks, overlay, ax=ax, logy=True)
    ax.set_title("after preselection", fontsize=11)
    return fig


def selections_figure(masses, limits):
    """The four selections' median expected σ_UL (fb) and their ratio to (a)."""
    _style()
    fig, (ax, ax_ratio) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]}, figsize=(6, 6))
    ref = only_with_limit(limits["cut_based"], limits["cut_based"]["expected"][:, 2])
    for name, lim in limits.items():
        expected = only_with_limit(lim, lim["expected"][:, 2])
        ax.plot(masses, expected, marker=".", label=SELECTION_LABELS[name])
        ax_ratio.plot(masses, expected / ref, marker=".")
    ax.set_yscale("log")
    ax.set_ylabel("median expected σ_UL (fb)")
    ax.legend(frameon=False, fontsize="x-small")
    ax_ratio.axhline(1.0, color="grey", lw=0.8)
    ax_ratio.set_yscale("log")
    ax_ratio.set_ylabel("ratio to (a)")
    ax_ratio.set_xlabel("M_Z' (GeV)")
    return fig


def training_figure(histories):
    """The training curves of the trained selections, one panel each."""
    _style()
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * max(1, len(histories)), 3.5))
    for axis, (name, history) in zip(np.atleast_1d(axes), histories.items()):
        plot.training_curves({SELECTION_LABELS[name]: history}, ax=axis)
    return fig
