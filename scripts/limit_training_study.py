"""Does (d)'s end-to-end training generalise? Its limit loss on events and masses it never saw.

Trains (b)'s BCE network as the pipeline does, then trains (d) on the expected-limit
loss (``selections.limit_loss``, the pipeline's soft cut at (b)'s chosen cut) and, every
``--every`` steps, evaluates the same loss on four sets: the training half at the
training hypotheses (what (d) minimises), the held-out half at the training
hypotheses (new events), and both halves at ``--other-masses`` hypotheses spread over the
scan away from the training ones (new masses). A training loss that keeps falling while
the held-out ones rise is overfitting, in events or in masses.

    python scripts/limit_training_study.py --quick --seed 2 --bce-cut 0.62
    python scripts/limit_training_study.py --seed 2 --bce-cut 0.7508 --steps 600
    python scripts/limit_training_study.py --seed 2 --bce-cut 0.7508 --set training.n_masses=32 --window-local

``--bce-cut`` is (b)'s chosen hard cut (score in (0, 1); ``limits.json`` of a pipeline run
with the same config and seed, ``rows``/``mlp_bce``/``cut``): the cut scan that finds it
costs a minute at full scale, and the same seed trains the same network.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import logit

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import cuts
from diffana.analyses.zprime_invisible import selections as sel
from diffana.analyses.zprime_invisible.config import config_from_options
from diffana.analyses.zprime_invisible.samples import make_samples, recoil_mass_squared_resolution
from diffana.analyses.zprime_invisible.templates import hypothesis_theta_edges, preselected_reference_cross_sections
from diffana.cli.zprime import add_config_options
from diffana.errors import ConfigError
from diffana.train import train


def other_hypotheses(n_scan: int, n: int, training_rows) -> np.ndarray:
    """Up to ``n`` scan indices evenly spread, none of them a training hypothesis."""
    free = np.setdiff1d(np.arange(n_scan), training_rows)
    return free[np.unique(np.linspace(0, free.size - 1, min(n, free.size)).round().astype(int))]


def loss_set(samples_half, rows, centres, widths, sigma_ref, tr, seed, window_bins) -> dict:
    """The training pytree of ``selections.training_data`` for one half and ``rows``."""
    signal = {k: np.asarray(v)[rows] for k, v in samples_half["signal"].items()}
    data = sel.training_data(samples_half["background"], signal, centres[rows], widths[rows], tr.max_events, seed,
                             window_half_width=sel.training_window_half_width(window_bins, tr.punzi_window),
                             max_window_events=tr.max_window_events)
    data["sigma_ref"] = jnp.asarray(sigma_ref[rows])
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_options(parser, default="belle2_2019_2020")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bce-cut", type=float, required=True, help="(b)'s chosen cut, a score in (0, 1)")
    parser.add_argument("--steps", type=int, default=None, help="(d)'s steps (default: training.limit_steps)")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--other-masses", type=int, default=24)
    parser.add_argument("--window-local", action="store_true",
                        help="window-local background templates (limit_loss(window_local=True)): cheaper from "
                             "≈ 16 training masses on (full config, one loss and gradient: 8 masses 0.27 s dense, "
                             "0.45 s window-local; 32 masses 5.3 s against 2.0 s)")
    args = parser.parse_args(argv)
    try:
        config = config_from_options(args)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    tr, sy, t_cfg = config.training, config.systematics, config.templates
    steps = tr.limit_steps if args.steps is None else args.steps

    t0 = time.perf_counter()
    samples = make_samples(config, args.seed)
    masses = samples.masses
    centres, widths = masses**2, recoil_mass_squared_resolution(masses, config.analysis.resolution)
    edges, n_window = hypothesis_theta_edges(centres, t_cfg), t_cfg.window_bins
    sigma_ref = preselected_reference_cross_sections(centres, widths, samples.signal_test, samples.background_test,
                                                     edges, n_window)

    training_rows = cuts.spread_hypotheses(masses, tr.n_masses, tr.hypothesis_spacing)
    new_rows = other_hypotheses(masses.size, args.other_masses, training_rows)
    halves = {"train": {"signal": samples.signal_train, "background": samples.background_train},
              "held-out": {"signal": samples.signal_test, "background": samples.background_test}}
    sets = {f"{half} events, {label} masses": (loss_set(halves[half], rows, centres, widths, sigma_ref, tr,
                                                        args.seed, n_window), rows)
            for half in halves for label, rows in (("training", training_rows), ("other", new_rows))}
    cut_logit = float(logit(args.bce_cut))

    def loss_on(data, rows):
        """(d)'s loss, as the pipeline trains it, on one set (its events closed over)."""
        return lambda net: sel.limit_loss(net, data, theta_edges=edges[rows], n_window=n_window, systematics=sy,
                                          luminosity_uncertainty=sy.luminosity, cl=config.analysis.cl,
                                          cut_logit=cut_logit, temperature=tr.limit_temperature,
                                          window_local=args.window_local)

    losses = {name: eqx.filter_jit(loss_on(data, rows)) for name, (data, rows) in sets.items()}
    net = sel.make_network(samples.background_train, tr.hidden, args.seed)
    net_bce, _ = sel.fit_network(sel.bce_loss, net, sets["train events, training masses"][0], tr.bce_steps,
                                 tr.learning_rate, args.seed)
    print(f"samples, sets and BCE {time.perf_counter() - t0:.0f} s; {masses.size} masses; training rows "
          f"{training_rows.tolist()}, other rows {new_rows.tolist()}; soft cut at logit {cut_logit:.4g}, "
          f"T {tr.limit_temperature}")
    names = list(losses)
    print(f"{'step':>5} " + " ".join(f"{n:>32}" for n in names))
    def report(step, net):
        values = [float(losses[n](net)) for n in names]
        print(f"{step:5d} " + " ".join(f"{v:32.4f}" for v in values), flush=True)

    report(0, net_bce)
    loss_d = loss_on(*sets["train events, training masses"])
    train(lambda params, _: loss_d(params), net_bce, jnp.zeros(1), n_steps=steps,
          optimizer=optax.adam(tr.learning_rate), seed=args.seed, progress=False,
          callback=lambda step, params, loss: report(step, params) if step % args.every == 0 else None)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
