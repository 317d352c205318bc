"""The Punzi-net paper's comparison (its Fig. 7) on the analysis samples.

For every mass hypothesis, Punzi's s_min (fb) on the held-out half of
(i) the BCE network (selection (b)) with its best cut per mass, scanned on the
held-out events, and (ii) Punzi-net (selection (c)) with one cut for all masses,
chosen on the training half; both networks trained exactly as the pipeline does.
Also (i') the BCE network's best cut per mass chosen on the training half, like
(ii)'s one cut (the per-mass optimum on the same footing).
Prints the table, writes docs/figures/punzi_net_reproduction.png.

    python scripts/punzi_net_reproduction.py --quick --seed 1
    python scripts/punzi_net_reproduction.py --seed 1          # full config (long)
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import time
from pathlib import Path

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import punzi
from diffana.analyses.zprime_invisible.config import config_from_options
from diffana.analyses.zprime_invisible.samples import at_luminosity, make_samples
from diffana.cli.zprime import add_config_options
from diffana.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def load_samples(config, seed: int, cache: Path | None):
    """make_samples(config, seed), or the pickled samples at ``cache`` (written there
    on the first call) so that a rerun skips the generation."""
    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())
    samples = make_samples(config, seed)
    if cache is not None:
        cache.write_bytes(pickle.dumps(samples))
    return samples


def scaled_background_mc(config, factor: float):
    """``config`` with ``factor`` × its generated background events for every process."""
    from diffana.analyses.zprime_invisible.config import BACKGROUND_PROCESSES
    from diffana.analyses.zprime_invisible.samples import background_event_count

    events = {p: int(round(factor * background_event_count(config, p))) for p in BACKGROUND_PROCESSES}
    return dataclasses.replace(config, samples=dataclasses.replace(config.samples, process_events=events))


def print_table(c: punzi.PunziComparison) -> None:
    print(f"{'M (GeV)':>8} {'BCE best/mass':>14} {'MC':>4} {'Punzi 1 cut':>12} {'MC':>4} {'ratio':>7} "
          f"{'BCE/mass (train)':>17} {'MC':>4} {'ratio':>7} {'Punzi best/mass':>16} {'BCE 1 cut':>10}")
    for k, m in enumerate(c.masses):
        print(f"{m:8.3f} {c.bce_best[k]:14.4g} {c.bce_best_mc[k]:4d} {c.punzi_one_cut[k]:12.4g} "
              f"{c.punzi_one_cut_mc[k]:4d} {c.ratio[k]:7.3f} {c.bce_per_mass_out_of_sample[k]:17.4g} "
              f"{c.bce_per_mass_out_of_sample_mc[k]:4d} {c.ratio_out_of_sample[k]:7.3f} {c.punzi_best[k]:16.4g} "
              f"{c.bce_one_cut[k]:10.4g}")
    inside = c.in_range(1.0, 6.0)
    print(f"s_min in fb (held-out half); MC = background MC events left in the window. Punzi-net cut "
          f"logit > {c.punzi_cut:.6g}, BCE one cut logit > {c.bce_cut:.6g}")
    print(f"1–6 GeV ({int(inside.sum())} masses), geometric means (target ≤ 1.1):")
    print(f"  Punzi one cut / BCE best per mass chosen on the held-out events: {c.geometric_mean(c.ratio):.3f} "
          f"(median {np.median(c.ratio[inside]):.3f}, worst {c.worst_ratio():.3f}; "
          f"{np.mean(c.bce_best_mc[inside] == 0):.0%} of these optima leave no background MC)")
    print(f"  Punzi one cut / BCE best per mass chosen on the training events: "
          f"{c.geometric_mean(c.ratio_out_of_sample):.3f} (median {np.median(c.ratio_out_of_sample[inside]):.3f}, "
          f"worst {np.max(c.ratio_out_of_sample[inside]):.3f})")
    print(f"  BCE one cut / BCE best per mass (held-out): {c.geometric_mean(c.bce_one_cut / c.bce_best):.3f}; "
          f"Punzi-net best per mass / BCE best per mass: {c.geometric_mean(c.punzi_best / c.bce_best):.3f}")


def plot(c: punzi.PunziComparison, path: Path, title: str) -> None:
    """s_min per mass (top) and Punzi-net one cut / BCE best per mass (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(c.masses, c.bce_best, "o-", label="(b) BCE, best cut per mass (chosen on the held-out events)")
    ax.plot(c.masses, c.bce_per_mass_out_of_sample, "^-", color="C2", ms=3, lw=0.8,
            label="(b) BCE, best cut per mass chosen on training half")
    ax.plot(c.masses, c.punzi_one_cut, "s-", label="(c) Punzi-net, one cut (chosen on training half)")
    ax.plot(c.masses, c.punzi_best, ":", color="C1", label="(c) Punzi-net, best cut per mass")
    ax.plot(c.masses, c.bce_one_cut, "--", color="C0", alpha=0.6, label="(b) BCE, one cut (chosen like (c)'s)")
    empty = c.bce_best_mc == 0
    ax.plot(c.masses[empty], c.bce_best[empty], "o", mfc="none", mec="k", ms=10,
            label="no background MC event left in the window")
    ax.set_yscale("log")
    ax.set_ylabel("Punzi s_min (fb), lower is better")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    axr.axhspan(0.0, 1.1, color="g", alpha=0.1)
    axr.axhline(1.1, color="g", lw=1, ls="--", label="target 1.1")
    axr.axvspan(1.0, 6.0, color="grey", alpha=0.1, label="1–6 GeV")
    axr.plot(c.masses, c.ratio, "s-", color="C1", label="/ (b) best per mass (held-out)")
    axr.plot(c.masses, c.ratio_out_of_sample, "^-", color="C2", ms=3, lw=0.8, label="/ (b) per mass (training half)")
    gone = ~np.isfinite(c.punzi_one_cut)
    if gone.any():  # the one cut removes all of these masses' signal: s_min = ∞, drawn at the top
        axr.plot(c.masses[gone], np.full(gone.sum(), axr.get_ylim()[1]), "v", color="C1", clip_on=False,
                 label="s_min = ∞ (no signal kept)")
    axr.set_yscale("log")
    axr.set_ylabel("(c) one cut / (b) per mass")
    axr.set_xlabel("M_Z' (GeV)")
    axr.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> punzi.PunziComparison:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_options(parser, default="belle2_2019_2020")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "figures" / "punzi_net_reproduction.png")
    parser.add_argument("--samples-cache", type=Path, default=None,
                        help="pickle of the samples: read if it exists, else written (skips regeneration)")
    parser.add_argument("--punzi-temperature", type=float, default=None,
                        help="T of the Punzi loss' soft efficiencies (default: the pipeline's, 0.1)")
    parser.add_argument("--mc-scale", type=float, default=1.0,
                        help="generate this many times the config's background MC events per process (narrows the "
                             "MC-statistical bracket of the per-mass optimum; time and memory scale with it). At the "
                             "same --seed the scaled sample repeats the 1× sample's generation batches: it is not "
                             "independent of it (independent extra MC: scripts/zprime_background_store.py)")
    parser.add_argument("--hypothesis-spacing", choices=("scan", "mass"), default=None,
                        help="training hypotheses evenly in scan index or in mass (default: the config's; "
                             "shorthand for --set training.hypothesis_spacing='\"mass\"')")
    parser.add_argument("--luminosity", type=float, default=None,
                        help="rescale the samples' weights to this luminosity (fb⁻¹; same MC events, so the "
                             "MC-to-data ratio grows as it falls): the comparison's dependence on the background level")
    args = parser.parse_args(argv)
    spacing = [f'training.hypothesis_spacing="{args.hypothesis_spacing}"'] if args.hypothesis_spacing else []
    try:  # a bad override or config value: one line, not a traceback
        config = config_from_options(args, spacing)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    if args.mc_scale != 1.0:
        config = scaled_background_mc(config, args.mc_scale)
    t0 = time.perf_counter()
    samples = load_samples(config, args.seed, args.samples_cache)
    if args.luminosity is not None:
        samples = at_luminosity(samples, args.luminosity)
    t1 = time.perf_counter()
    resolution = config.analysis.resolution
    nets = punzi.train_networks(samples, config.training, args.seed, resolution, config.templates.window_bins,
                                punzi_temperature=args.punzi_temperature)
    t2 = time.perf_counter()
    comparison = punzi.punzi_comparison(
        samples, lambda ev: punzi.logit_scores(nets.bce, ev), lambda ev: punzi.logit_scores(nets.punzi, ev),
        config.training.punzi_window, resolution=resolution)
    print(f"samples {t1 - t0:.0f} s, training {t2 - t1:.0f} s, comparison {time.perf_counter() - t2:.0f} s; "
          f"window ±{config.training.punzi_window} resolutions, a = {punzi.PUNZI_A}, b = {punzi.PUNZI_B}, "
          f"L = {samples.luminosity} fb⁻¹")
    print_table(comparison)
    luminosity = f", L = {args.luminosity:g} fb⁻¹" if args.luminosity is not None else ""
    plot(comparison, args.plot, f"{args.config}{' --quick' if args.quick else ''}, seed {args.seed}{luminosity}")
    print(f"wrote {args.plot}")
    return comparison


if __name__ == "__main__":
    main()
