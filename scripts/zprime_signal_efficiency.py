"""The Z'→invisible signal efficiency against the paper's "typically 5%, nearly uniform in M²_rec".

Two measurements (either or both):

    python scripts/zprime_signal_efficiency.py --runs full1 full2     # what each final selection of a run keeps
    python scripts/zprime_signal_efficiency.py --isr --cut 0.93       # what the signal's ISR would take away

``--runs``: the efficiency that ``diffana zprime-invisible`` stores per hypothesis in
``limits.json`` (preselection × the selection's cut × the fit window, of the produced
σ·L), as medians over the published M²_rec ranges (:func:`outputs.signal_efficiency_by_range`).

``--isr``: ISR is a config switch (``samples.signal_isr``, on in the shipped 79.7 fb⁻¹
config). This generates each mass twice from one seed, without and with ISR photons
(``generate(..., signal_isr=True)``: σ(s')-weighted, total kept at the Born σ), and
prints the fraction of σ·L that passes the preselection and lands in the fit window
(±``window_bins``/2 resolutions around M²), and the same after (a)'s cut on the
τ-plane score (``--cut``, GeV; a run's ``summary.cut_based.cut``). The ratio is the
factor ISR would apply to our efficiencies. Statistical errors are binomial on the
unit-weight Born sample (the ISR sample's weights vary a little; its error is similar).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from diffana.analyses.zprime_invisible import outputs
from diffana.analyses.zprime_invisible.config import ConfigError, config_from_options
from diffana.analyses.zprime_invisible.samples import recoil_mass_squared_resolution
from diffana.analyses.zprime_invisible.seeds import read_run
from diffana.analyses.zprime_invisible.selections import SELECTION_LABELS, tau_plane_score
from diffana.cli.zprime import add_config_options
from diffana.physics import features as _features
from diffana.physics.generator import generate

DEFAULT_MASSES = (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.5)
"""Z' masses (GeV) of the ISR table: the scan's range, denser where the window is wide."""


def run_efficiencies(run_dir: Path) -> dict:
    """Per selection of one run's ``limits.json``: medians of its signal efficiency by M² range."""
    run = read_run(run_dir)
    return {name: outputs.signal_efficiency_by_range(run.masses, efficiency)
            for name, efficiency in run.signal_efficiency.items()}


def print_run_table(run_dir: Path) -> None:
    table = run_efficiencies(run_dir)
    ranges = list(next(iter(table.values()))["signal_efficiency_median_by_range"])
    print(f"\n{run_dir}: median signal efficiency after the cut, in the fit window (paper: ≈ 5%)")
    print(f"{'selection':32s} {'all':>7s} " + " ".join(f"{r:>11s}" for r in ranges))
    for name, entry in table.items():
        print(f"{SELECTION_LABELS[name]:32s} {100 * entry['signal_efficiency_median']:6.1f}% " + " ".join(
            f"{100 * v:10.1f}%" for v in entry["signal_efficiency_median_by_range"].values()))


class WindowEfficiency(NamedTuple):
    """Fractions of the produced σ·L of one signal sample (dimensionless)."""

    preselected_in_window: float
    after_cut: float


def window_efficiency(sample: dict, mass: float, config, cut: float) -> WindowEfficiency:
    """Fraction of ``sample``'s σ·L that passes the preselection and lands in the fit
    window of ``mass`` (GeV); ``after_cut`` also passes (a)'s τ-plane cut (GeV)."""
    a = config.analysis
    weight = np.asarray(sample["weight"])
    width = float(recoil_mass_squared_resolution(mass, a.resolution))
    half = 0.5 * config.templates.window_bins * width
    in_window = np.abs(np.asarray(sample["recoil_mass_squared"]) - mass**2) < half
    kept = np.asarray(_features.preselection(sample, a.min_muon_delta_phi)) & in_window
    total = weight.sum()
    return WindowEfficiency(float(weight[kept].sum() / total),
                            float(weight[kept & (tau_plane_score(sample) > cut)].sum() / total))


def isr_table(config, masses, n_events: int, seed: int, cut: float) -> list[dict]:
    """Born and ISR window efficiencies per mass (:func:`window_efficiency`), printed as they come."""
    print(f"\nsignal efficiency without / with ISR ({n_events} events per mass, seed {seed}; (a)'s cut {cut} GeV)")
    print(f"{'M (GeV)':>8s} {'presel+window':>22s} {'ratio':>14s} {'+ (a) cut':>22s} {'ratio':>14s}")
    rows = []
    for k, mass in enumerate(masses):
        born, isr = (window_efficiency(generate("signal", 1.0, n_events=n_events, mass=float(mass), seed=seed + k,
                                                chunk_size=n_events, signal_isr=with_isr), mass, config, cut)
                     for with_isr in (False, True))
        row = {"mass_GeV": float(mass), "born": born._asdict(), "isr": isr._asdict()}
        rows.append(row)
        cells = []
        for field in WindowEfficiency._fields:
            b, i = getattr(born, field), getattr(isr, field)
            error = np.sqrt(b * (1 - b) / n_events)
            cells.append(f"{100 * b:9.2f}% / {100 * i:6.2f}% {i / b:7.3f} ± {np.sqrt(2) * error / b:.3f}")
        print(f"{mass:8.3g} " + " ".join(cells))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="output directories of diffana zprime-invisible")
    parser.add_argument("--isr", action="store_true", help="measure the Born → ISR factor per mass")
    parser.add_argument("--masses", type=float, nargs="+", default=list(DEFAULT_MASSES), help="Z' masses (GeV)")
    parser.add_argument("--events", type=int, default=40000, help="signal events per mass and mode")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cut", type=float, default=0.93, help="(a)'s τ-plane cut (GeV); 0.93 in the full seed-1 run")
    parser.add_argument("--json", type=Path, help="write the ISR table here")
    add_config_options(parser, default="belle2_2019_2020")
    args = parser.parse_args(argv)
    if not args.runs and not args.isr:
        parser.error("nothing to do: give --runs DIR... and/or --isr")
    try:
        config = config_from_options(args)
        for run_dir in args.runs:
            print_run_table(run_dir)
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")
    if args.isr:
        rows = isr_table(config, args.masses, args.events, args.seed, args.cut)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
