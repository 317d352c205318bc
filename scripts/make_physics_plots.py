"""Figures for docs/physics.md (fast generator): stacked M²_rec after preselection,
signal-peak width against PHYSICS.md, and the μμ(γ) recoil-angle bands.

    python scripts/make_physics_plots.py [--events 200000] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import diffana  # noqa: E402,F401
from diffana.physics import BACKGROUND_PROCESSES, generate, preselection  # noqa: E402
from diffana.physics.features import gaussian_core_width as core_width  # noqa: E402

WIDTH_TABLE = {0.1: 0.234, 0.5: 0.262, 1.0: 0.287, 1.3: 0.339, 2.0: 0.311, 3.0: 0.271, 4.0: 0.262, 5.0: 0.243,
               6.0: 0.196, 7.0: 0.158, 8.0: 0.096, 9.0: 0.050, 10.0: 0.046}
LABELS = {"mumu": r"$\mu\mu(\gamma)$", "tautau": r"$\tau\tau(\gamma)$", "eemumu": r"$ee\mu\mu$"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--lumi", type=float, default=79.7)
    parser.add_argument("--out", default="docs/figures")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    samples = {p: generate(p, args.lumi, n_events=args.events, seed=21) for p in BACKGROUND_PROCESSES}
    edges = np.linspace(-1.0, 100.0, 102)
    fig, ax = plt.subplots(figsize=(6, 4))
    values, weights, labels = [], [], []
    for process, sample in samples.items():
        mask = preselection(sample)
        values.append(sample["recoil_mass_squared"][mask])
        weights.append(sample["weight"][mask])
        labels.append(LABELS[process])
    ax.hist(values, edges, weights=weights, stacked=True, histtype="stepfilled", label=labels, alpha=0.8)
    signal = generate("signal", args.lumi, n_events=args.events // 4, mass=5.0, seed=21)
    mask = preselection(signal)
    ax.hist(signal["recoil_mass_squared"][mask], edges, weights=signal["weight"][mask] * 1e-4, histtype="step",
            color="k", label=r"$Z'$ 5 GeV, $g'=10^{-2}$")
    ax.set_xlabel(r"$M^2_{\mathrm{rec}}$ [GeV$^2$]")
    ax.set_ylabel(f"events / GeV$^2$ ({args.lumi:g} fb$^{{-1}}$)")
    ax.set_yscale("log")
    ax.set_title("fast Belle II model, after preselection")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "physics_recoil_mass_stack.png"), dpi=80)
    plt.close(fig)

    masses = np.array([0.5, 1.0, 1.3, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    widths = []
    for mass in masses:
        s = generate("signal", n_events=args.events // 10, mass=float(mass), seed=4, signal_cross_section=1.0)
        widths.append(core_width(s["recoil_mass_squared"])[1])
    fig, ax = plt.subplots(figsize=(6, 4))
    table_m = np.array(list(WIDTH_TABLE))
    table_w = np.array(list(WIDTH_TABLE.values()))
    ax.fill_between(table_m, 0.7 * table_w, 1.3 * table_w, color="C0", alpha=0.2, label="PHYSICS.md ±30%")
    ax.plot(table_m, table_w, "o-", color="C0", label="Belle II-like simulation (PHYSICS.md)")
    ax.plot(masses, widths, "s--", color="C3", label="diffana fast model")
    ax.set_xlabel(r"$M_{Z'}$ [GeV]")
    ax.set_ylabel(r"$\sigma(M^2_{\mathrm{rec}})$ [GeV$^2$]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "physics_signal_width.png"), dpi=80)
    plt.close(fig)

    mumu = samples["mumu"]
    mask = (mumu["n_tracks"] == 2) & (mumu["photon_energy_total"] < 0.5) & (mumu["recoil_pt_cm"] > 0.5)
    fig, ax = plt.subplots(figsize=(6, 4))
    h = ax.hist2d(mumu["recoil_mass_squared"][mask], mumu["recoil_theta_cm"][mask], bins=[50, 45],
                  range=[[-1, 50], [0, 180]], weights=mumu["weight"][mask], cmap="viridis", cmin=1e-9)
    fig.colorbar(h[3], ax=ax, label="events")
    ax.set_xlabel(r"$M^2_{\mathrm{rec}}$ [GeV$^2$]")
    ax.set_ylabel(r"$\theta^{\mathrm{CM}}_{\mathrm{rec}}$ [deg]")
    ax.set_title(r"$\mu\mu(\gamma)$ with photon veto and $p_T^{\mathrm{rec}}>0.5$ GeV")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "physics_mumu_recoil_bands.png"), dpi=80)
    plt.close(fig)
    for name in ("physics_recoil_mass_stack", "physics_signal_width", "physics_mumu_recoil_bands"):
        path = os.path.join(args.out, name + ".png")
        print(path, os.path.getsize(path) // 1024, "kB")
    print("widths", dict(zip(masses.tolist(), np.round(widths, 3).tolist())))


if __name__ == "__main__":
    main()
