"""Experiment: is (d)'s gain its objective or its training recipe?

Runs ``diffana zprime-invisible --quick`` with selection (c) trained like (d): the
Punzi loss on the soft cut sigmoid((logit − logit c_b)/T), T = 0.25, at (b)'s chosen
cut c_b, for ``limit_steps`` steps, instead of Punzi-net's sigmoid(logit/0.1). Only
(c) changes; compare its line with a plain ``--quick`` run of the same seed.

    python scripts/zprime_punzi_recipe_experiment.py --seed 1 --output out

Result (2026-12-03, quick seeds 1–3, quick MC counts before 2026-12-03): (c) 28.1,
20.5, 18.2 fb against its own 25.3, 26.0, 18.9 and (d)'s 3.6, 4.4, 3.8 fb
(docs/tutorial_zprime_invisible.md, §6); with the shipped quick MC, seed 1: (c) 29.6 fb
against its own 23.2 and (d)'s 2.57. It patches two module functions for the
run (an experiment, not an option of the analysis).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax.numpy as jnp
from scipy.special import logit

from diffana import objectives
from diffana.analyses.zprime_invisible import cuts
from diffana.analyses.zprime_invisible import selections as sel
from diffana.analyses.zprime_invisible.config import load_config
from diffana.analyses.zprime_invisible.pipeline import run_analysis

TEMPERATURE = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default="punzi-recipe-experiment")
    args = parser.parse_args()

    chosen_cuts = []  # every selection's chosen cut, in pipeline order: (a), (b), ...
    choose_cut = cuts.choose_cut

    def recording_choose_cut(*a, **k):
        scan = choose_cut(*a, **k)
        chosen_cuts.append(scan.best)
        return scan

    def punzi_loss_at_bce_cut(net, data, luminosity, window, temperature=TEMPERATURE):
        cut_logit = float(logit(chosen_cuts[1]))  # (b) is evaluated before (c) trains
        s_sel = sel.soft_cut_weights(net, data["signal"], cut_logit, temperature)
        b_sel = sel.soft_cut_weights(net, data["window_background"], cut_logit, temperature)
        efficiency, background = sel.punzi_window_yields(s_sel, b_sel, data, luminosity, window)
        return jnp.log(objectives.punzi_sensitivity(efficiency, background, luminosity)).mean()

    cuts.choose_cut = recording_choose_cut
    sel.punzi_loss = punzi_loss_at_bce_cut
    config = load_config("belle2_2019_2020", quick=True)
    config = dataclasses.replace(config, training=dataclasses.replace(
        config.training, punzi_steps=config.training.limit_steps))
    run_analysis(config, args.output, seed=args.seed, make_plots=False)


if __name__ == "__main__":
    main()
