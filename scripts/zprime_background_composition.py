"""Background composition, efficiencies and MC statistics of the Z'→invisible preselection.

Generates the samples of a config exactly as ``diffana zprime-invisible`` does
(``make_samples``) and prints: per background process the expected events after
preselection, its share against PHYSICS.md (ττ ≈ 83%, eeμμ ≈ 14.5%, μμ(γ) ≈ 2.4%
before the final MVA), its preselection efficiency, MC events, Kish N_eff and
L_eff/L (overall and in the worst hypothesis window where it is ≥ 10% of the
background), the generation time per process, the shares among the events below
several M²_rec edges (50, 64, 72.25 GeV², all), and the signal efficiency after
preselection per mass.

    python scripts/zprime_background_composition.py --quick --seed 1
    python scripts/zprime_background_composition.py --config belle2_2019_2020 --seed 1 --json out.json
    python scripts/zprime_background_composition.py --quick --no-bias      # the unbiased generator
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible.config import load_config
from diffana.analyses.zprime_invisible.mc_statistics import PROCESS_CODES, format_table, mc_statistics
from diffana.analyses.zprime_invisible.samples import make_samples, recoil_mass_squared_resolution
from diffana.physics.generator import expected_events

PUBLISHED_SHARES = {"tautau": 0.83, "eemumu": 0.145, "mumu": 0.024}
"""Share of each process before the final MVA in Belle II's simulation (PHYSICS.md)."""


def composition_rows(statistics: dict, luminosity: float) -> list[dict]:
    """Per process: expected events, share, PHYSICS.md share, their ratio and the
    preselection efficiency (expected after / σ·L generated)."""
    rows = []
    for name, tot in statistics["totals"].items():
        generated = expected_events(name, luminosity)
        rows.append({"process": name, "expected": tot["expected"], "share": tot["share"],
                     "published_share": PUBLISHED_SHARES[name],
                     "share_ratio": tot["share"] / PUBLISHED_SHARES[name],
                     "efficiency": tot["expected"] / generated})
    return rows


SHARE_RANGES = (50.0, 64.0, 72.25, np.inf)
"""GeV²: upper M²_rec edges of the ranges the shares are also printed in. PHYSICS.md has
ττ dominating "below 50 GeV²" and does not say over which range its shares are taken."""


def shares_below(samples, upper_edges=SHARE_RANGES) -> dict:
    """Share of each background process (both halves) among the preselected events with
    M²_rec below each of ``upper_edges`` (GeV²): {edge: {process: share}}."""
    background = {k: np.concatenate([samples.background_train[k], samples.background_test[k]])
                  for k in ("recoil_mass_squared", "weight", "process")}
    shares = {}
    for edge in upper_edges:
        below = background["recoil_mass_squared"] < edge
        total = background["weight"][below].sum()
        shares[edge] = {name: background["weight"][below & (background["process"] == code)].sum() / total
                        for name, code in PROCESS_CODES.items()}
    return shares


def signal_efficiencies(samples, luminosity: float) -> np.ndarray:
    """Signal efficiency after preselection per hypothesis (both halves; weights are ε·L per event)."""
    return (samples.signal_train["weight"].sum(axis=1) + samples.signal_test["weight"].sum(axis=1)) / (2 * luminosity)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="shipped config name or TOML path (default: 79.7 fb⁻¹)")
    parser.add_argument("--quick", action="store_true", help="apply the [quick] overrides")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-bias", action="store_true", help="generate without importance sampling")
    parser.add_argument("--background-events", type=int, default=None, help="events per process (all three)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    from diffana.cache import enable_compilation_cache

    enable_compilation_cache()  # as the diffana command: generator programs compiled once per machine
    samples_overrides = {}
    if args.no_bias:
        samples_overrides["bias"] = False
    if args.background_events:
        samples_overrides.update(background_events=args.background_events, process_events={})
    config = load_config(args.config, quick=args.quick, overrides={"samples": samples_overrides} if samples_overrides else None)
    a, s = config.analysis, config.samples
    t0 = time.perf_counter()
    samples = make_samples(config, args.seed)
    seconds = time.perf_counter() - t0
    widths = recoil_mass_squared_resolution(samples.masses, a.resolution)
    statistics = mc_statistics(samples, samples.masses, widths, config.templates.window_bins, a.luminosity,
                               s.train_fraction)
    rows = composition_rows(statistics, a.luminosity)
    efficiency = signal_efficiencies(samples, a.luminosity)
    print(f"config {config.source}{' [quick]' if args.quick else ''}, seed {args.seed}, bias {s.bias}, "
          f"L = {a.luminosity} fb⁻¹; make_samples {seconds:.1f} s "
          f"(background generation + preselection: "
          + ", ".join(f"{p} {samples.generated[p]:,} events {samples.generated['seconds'].get(p, float('nan')):.1f} s"
                      for p in statistics["totals"]) + ")")
    print(f"{'process':8s} {'expected':>10s} {'share':>7s} {'PHYSICS.md':>10s} {'ratio':>6s} {'presel. eff.':>12s}")
    for r in rows:
        print(f"{r['process']:8s} {r['expected']:10.4g} {r['share']:7.1%} {r['published_share']:10.1%} "
              f"{r['share_ratio']:6.2f} {r['efficiency']:12.3e}")
    by_range = shares_below(samples)
    for edge, share in by_range.items():
        print(f"shares with M²_rec < {edge:g} GeV²: " + ", ".join(f"{p} {v:.1%}" for p, v in share.items()))
    print(format_table(statistics))
    print("signal efficiency after preselection: " + ", ".join(
        f"{m:.2f} GeV {e:.1%}" for m, e in zip(samples.masses, efficiency)))
    result = {"config": config.source, "quick": args.quick, "seed": args.seed, "bias": s.bias,
              "make_samples_seconds": seconds, "composition": rows,
              "shares_below_m2": {str(edge): share for edge, share in by_range.items()},
              "signal_preselection_efficiency": dict(zip(map(float, samples.masses), map(float, efficiency))),
              "mc_statistics": {k: v for k, v in statistics.items() if k != "windows"}}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1, default=float)
    return result


if __name__ == "__main__":
    main()
