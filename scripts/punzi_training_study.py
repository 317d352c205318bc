"""Does Punzi-net's fine-tuning reach its objective's optimum? Variants of the schedule.

Trains (b)'s BCE network exactly as the pipeline does, then fine-tunes (c) on the
Punzi loss with each variant (soft-cut temperature T, the soft cut's position, steps,
learning rate) and prints, per variant, the training loss along the way and the
Punzi-net paper's comparison on the held-out half (``punzi.punzi_comparison``): the
geometric mean over 1–6 GeV of Punzi-net's one cut against the BCE network's best
cut per mass (the issue's ≤ 1.1 target), and Punzi-net's one-cut s_min itself.

    python scripts/punzi_training_study.py --quick --seed 2
    python scripts/punzi_training_study.py --seed 2 --variant 0.1:0:150:0.01 --variant 0.1:0:600:0.01

A variant is ``T:CUT:STEPS:LR``; CUT is a logit or ``bce``, the logit of the BCE
network's own one cut of the paper's comparison (chosen on the training half). The
default variants: the shipped one (0.1:0:<punzi_steps>:<learning_rate>), 4× the
steps, 3× the learning rate, and (d)'s soft cut (0.25:bce).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import punzi
from diffana.analyses.zprime_invisible import selections as sel
from diffana.analyses.zprime_invisible.config import config_from_options
from diffana.analyses.zprime_invisible.samples import make_samples, recoil_mass_squared_resolution
from diffana.cli.zprime import add_config_options
from diffana.errors import ConfigError


def parse_variant(text: str) -> dict:
    """``T:CUT:STEPS:LR`` → dict(temperature, cut, steps, learning_rate); CUT a float or "bce"."""
    try:
        temperature, cut, steps, rate = text.split(":")
        return {"temperature": float(temperature), "cut": cut if cut == "bce" else float(cut),
                "steps": int(steps), "learning_rate": float(rate)}
    except ValueError:
        raise SystemExit(f"error: --variant {text!r} is not T:CUT:STEPS:LR (e.g. 0.1:0:150:0.01)") from None


def default_variants(training) -> list[dict]:
    steps, rate = training.punzi_steps, training.learning_rate
    return [parse_variant(v) for v in (f"0.1:0:{steps}:{rate}", f"0.1:0:{4 * steps}:{rate}",
                                       f"0.1:0:{steps}:{3 * rate}", f"0.25:bce:{steps}:{rate}")]


def loss_milestones(loss) -> str:
    """The loss at the start, 1/4, 1/2, 3/4 of the steps and at the end."""
    loss = np.asarray(loss)
    picks = sorted({0, len(loss) // 4, len(loss) // 2, 3 * len(loss) // 4, len(loss) - 1})
    return " → ".join(f"{loss[i]:.3f}" for i in picks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_options(parser, default="belle2_2019_2020")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", action="append", default=None, help="T:CUT:STEPS:LR (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = config_from_options(args)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    tr, resolution = config.training, config.analysis.resolution
    variants = [parse_variant(v) for v in args.variant] if args.variant else default_variants(tr)

    t0 = time.perf_counter()
    samples = make_samples(config, args.seed)
    masses = samples.masses
    centres, widths = masses**2, recoil_mass_squared_resolution(masses, resolution)
    data = sel.hypothesis_training_data(samples, tr, centres, widths, args.seed, config.templates.window_bins).data
    net = sel.make_network(samples.background_train, tr.hidden, args.seed)
    net_bce, _ = sel.fit_network(sel.bce_loss, net, data, tr.bce_steps, tr.learning_rate, args.seed)
    bce_score = lambda ev: punzi.logit_scores(net_bce, ev)  # noqa: E731
    reference = punzi.punzi_comparison(samples, bce_score, bce_score, tr.punzi_window, resolution=resolution)
    print(f"samples and BCE training {time.perf_counter() - t0:.0f} s; {masses.size} masses, "
          f"BCE one cut at logit {reference.bce_cut:.4g}; the BCE network itself as '(c)': "
          f"one cut / best per mass {reference.geometric_mean(reference.ratio):.3f} (1–6 GeV)")
    print(f"{'T':>5} {'cut':>7} {'steps':>5} {'lr':>6}  {'Punzi loss (start → end)':<44} {'one cut/BCE best':>16} "
          f"{'worst':>6} {'one-cut s_min (fb, 1–6 GeV)':>27} {'s':>4}")
    for v in variants:
        t1 = time.perf_counter()
        cut_logit = reference.bce_cut if v["cut"] == "bce" else v["cut"]
        net_c, history = sel.fit_network(
            lambda n, d: sel.punzi_loss(n, d, samples.luminosity, tr.punzi_window, v["temperature"], cut_logit),  # noqa: B023
            net_bce, data, v["steps"], v["learning_rate"], args.seed)
        c = punzi.punzi_comparison(samples, bce_score, lambda ev: punzi.logit_scores(net_c, ev),  # noqa: B023
                                   tr.punzi_window, resolution=resolution)
        inside = c.in_range(1.0, 6.0)
        one_cut = np.exp(np.mean(np.log(c.punzi_one_cut[inside])))
        print(f"{v['temperature']:5.2f} {cut_logit:7.3f} {v['steps']:5d} {v['learning_rate']:6.3f}  "
              f"{loss_milestones(history.loss):<44} {c.geometric_mean(c.ratio):16.3f} {c.worst_ratio():6.3f} "
              f"{one_cut:27.4g} {time.perf_counter() - t1:4.0f}")


if __name__ == "__main__":
    main()
