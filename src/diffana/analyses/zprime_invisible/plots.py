"""The analysis' PNG plots (written into the output folder)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from diffana import plot
from diffana.analyses.zprime_invisible.selections import SELECTION_LABELS


def _style():
    try:
        import mplhep

        plt.style.use(mplhep.style.ROOT)
        plt.rcParams.update({"font.size": 11, "figure.figsize": (6, 4.5)})
    except Exception:  # noqa: BLE001 - style is cosmetic
        pass


def make_all(result, samples, limits, output: Path, theta_edges, n_window) -> list[Path]:
    """Brazil band (end to end), g' vs M with the (g−2)_μ band, the stacked M²_rec
    spectrum with a signal overlay, the four selections' expected limits with their
    ratio to (a), and the training curves. Returns the written paths."""
    from diffana.physics.theory import g_minus_2_band

    _style()
    masses, paths = result.masses, []

    def save(fig, name):
        path = output / name
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)

    best = "end_to_end"
    fig, ax = plt.subplots()
    plot.brazil_band(masses, limits[best]["expected"], limits[best]["observed"], ax=ax, ylabel="90% CL σ_UL (fb)")
    ax.set_title(SELECTION_LABELS[best], fontsize=11)
    save(fig, "zprime_brazil.png")

    fig, ax = plt.subplots()
    for name, lim in limits.items():
        ax.plot(masses, lim["g_expected_vanilla"], label=f"{SELECTION_LABELS[name]} (exp.)")
    ax.plot(masses, limits[best]["g_vanilla"], "k-", label="observed, (d)")
    ax.plot(masses, limits[best]["g_invisible"], "k:", label="observed, (d), B(inv)=1")
    grid = np.linspace(masses[0], masses[-1], 200)
    low, high = (np.asarray(x) for x in g_minus_2_band(grid))
    ax.fill_between(grid, low, high, color="tab:green", alpha=0.3, label="(g−2)_μ ±2σ")
    ax.set_yscale("log")
    ax.set_xlabel("M_Z' (GeV)")
    ax.set_ylabel("90% CL g'_UL")
    ax.legend(frameon=False, fontsize="x-small")
    save(fig, "zprime_coupling.png")

    # stacked spectrum after preselection (held-out half), full M2 range
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
    save(fig, "zprime_spectrum.png")

    fig, (ax, ax_ratio) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]}, figsize=(6, 6))
    ref = limits["cut_based"]["expected"][:, 2]
    for name, lim in limits.items():
        ax.plot(masses, lim["expected"][:, 2], marker=".", label=SELECTION_LABELS[name])
        ax_ratio.plot(masses, lim["expected"][:, 2] / ref, marker=".")
    ax.set_yscale("log")
    ax.set_ylabel("median expected σ_UL (fb)")
    ax.legend(frameon=False, fontsize="x-small")
    ax_ratio.axhline(1.0, color="grey", lw=0.8)
    ax_ratio.set_yscale("log")
    ax_ratio.set_ylabel("ratio to (a)")
    ax_ratio.set_xlabel("M_Z' (GeV)")
    save(fig, "zprime_selections.png")

    fig, axes = plt.subplots(1, len(result.histories), figsize=(4 * max(1, len(result.histories)), 3.5))
    for axis, (name, history) in zip(np.atleast_1d(axes), result.histories.items()):
        plot.training_curves({SELECTION_LABELS[name]: history}, ax=axis)
    save(fig, "zprime_training.png")
    return paths
