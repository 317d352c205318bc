"""Selection (d)'s training loss of the Z'→invisible analysis, value and gradient
w.r.t. the network (``selections.limit_loss`` under ``equinox.filter_value_and_grad``,
as one step of ``fit_network`` differentiates it), with the background templates
dense (``window_local=False``: every training mass bins every window event; the
implementation before 2026-12-04, the peer) against window-local (``window_local=True``:
cumulative sums at the window edges), in the same run on the same synthetic events.

    python benchmarks/bench_limit_loss.py                     # full config: 8 and 32 training masses
    python benchmarks/bench_limit_loss.py --quick             # quick config: 5 and 16 training masses
    python benchmarks/bench_limit_loss.py --masses 16 --window-events 900000
    python benchmarks/bench_limit_loss.py --loss punzi        # (c)'s Punzi loss, the same way

The loss is built as the pipeline builds it (``pipeline.run_analysis``, step 3): the
training masses spread over the config's scan by ``training.hypothesis_spacing``, their
rows of the θ edges, ``templates.window_bins``, ``config.systematics``, its luminosity
uncertainty, ``analysis.cl``, ``training.limit_temperature``, the training pytree of
``selections.training_data`` closed over (its event columns concrete, which
window-local needs), the network of ``selections.make_network`` (untrained: a BCE
start is not needed to time the loss). The soft cut sits at the median logit of the
window background (the pipeline puts it at (b)'s chosen cut). ``sigma_ref``:
``templates.preselected_reference_cross_sections`` of the same synthetic events (the
pipeline takes the held-out half's).

Synthetic events (numpy, seed ``--seed``) instead of the physics samples, which take
minutes to generate. Window background: ``--window-events`` events, an equal share in
each training window (M²_rec uniform within ± ``training_window_half_width`` resolutions
of the centre, so overlapping windows share events), θ uniform in 0–180°, weights
exponential (mean 1), ``process`` 1 (μμ(γ)) / 2 / 3 with probabilities 0.13 / 0.29 /
0.58 (the shares of the shipped samples' MC events), the four Punzi features
exponential. Signal: ``samples.signal_events_per_mass × samples.train_fraction``
events per training mass, M²_rec normal around the centre with the resolution.

The default window-event counts are the training half's events inside the training
windows of the shipped samples: half the MC events the pipeline's ``mc_statistics.json``
counts in those windows (both halves; over the ``generated`` samples of seeds 1 and 2,
2026-12-04): full config 8 masses 934 300–934 600 → 467 000 (docs: "469 000 of 1.87
million"), 32 masses 2 886 000–2 890 000 summed over the windows, whose neighbours
overlap above ≈ 6 GeV; the union, with each window's events spread evenly over it,
≈ 2 728 000 → 1 364 000; quick config (every window apart) 5 masses 277 000–278 000 →
139 000, 16 masses 596 000–597 500 → 298 000 (the docs' 75 000 at 5 masses predate the
quick config's larger ``process_events``).

Prints per case the first call (compile + run) and the best of ``--repeat`` later calls
(run only) of each, the dense / window-local run-time ratio, and the relative
difference of the loss and of the gradient (largest |difference| over every gradient
entry / largest |dense gradient entry|).
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import samples, selections, templates
from diffana.analyses.zprime_invisible.config import load_config
from diffana.analyses.zprime_invisible.cuts import spread_hypotheses
from diffana.analyses.zprime_invisible.names import PUNZI_FEATURES

from _timing import first_and_best  # benchmarks/_timing.py (run as a script: its folder is on sys.path)

CONFIG = "belle2_2019_2020"
WINDOW_EVENTS = {(False, 8): 467_000, (False, 32): 1_364_000, (True, 5): 139_000, (True, 16): 298_000}
"""(quick, training masses) → training-half background events in the training windows (module docstring)."""
PROCESS_SHARES = (0.13, 0.29, 0.58)
"""MC-event shares of μμ(γ) (process 1), ττ (2), eeμμ (3) in the shipped samples."""


def synthetic_events(centres, widths, half_width, n_background, n_signal, luminosity, rng):
    """(window background (N,) columns, signal (M, n) columns) around the training windows."""
    m = centres.size
    window = rng.integers(0, m, n_background)
    background = {
        "recoil_mass_squared": centres[window] + half_width * widths[window] * rng.uniform(-1.0, 1.0, n_background),
        "recoil_theta_cm": rng.uniform(0.0, 180.0, n_background),
        "weight": rng.exponential(1.0, n_background),
        "process": rng.choice(np.arange(1, 4), size=n_background, p=PROCESS_SHARES),
    }
    background.update({name: rng.exponential(1.0, n_background) for name in PUNZI_FEATURES})
    signal = {
        "recoil_mass_squared": centres[:, None] + widths[:, None] * rng.normal(size=(m, n_signal)),
        "recoil_theta_cm": rng.uniform(20.0, 160.0, (m, n_signal)),
        "weight": np.full((m, n_signal), 0.3 * luminosity / n_signal),  # ε·L per event, ε = 0.3
    }
    signal.update({name: rng.exponential(2.0, (m, n_signal)) for name in PUNZI_FEATURES})
    return background, signal


def run_case(config, quick: bool, n_masses: int, n_window_events: int, repeat: int, seed: int,
             loss_name: str = "limit") -> None:
    a, t_cfg, tr, sy = config.analysis, config.templates, config.training, config.systematics
    masses = samples.mass_hypotheses(a.mass_min, a.mass_max, a.mass_step, a.n_masses, a.resolution)
    centres_all = masses**2
    widths_all = samples.recoil_mass_squared_resolution(masses, a.resolution)
    edges_all = templates.hypothesis_theta_edges(centres_all, t_cfg)
    n_window = t_cfg.window_bins
    rows = spread_hypotheses(masses, n_masses, tr.hypothesis_spacing)
    centres, widths, edges = centres_all[rows], widths_all[rows], edges_all[rows]
    half_width = selections.training_window_half_width(n_window, tr.punzi_window)
    n_signal = int(config.samples.signal_events_per_mass * config.samples.train_fraction)
    rng = np.random.default_rng(seed)
    background, signal = synthetic_events(centres, widths, half_width, n_window_events, n_signal, a.luminosity, rng)

    data = selections.training_data(background, signal, centres, widths, tr.max_events, seed,
                                    window_half_width=half_width, max_window_events=0)
    data["sigma_ref"] = jnp.asarray(templates.preselected_reference_cross_sections(
        centres, widths, signal, background, edges, n_window))
    net = selections.make_network(background, tr.hidden, seed)
    b_logit = np.asarray(net.logit({n: data["window_background"][n] for n in PUNZI_FEATURES}))
    cut_logit = float(np.median(b_logit))

    def value_and_grad(window_local: bool):
        def loss(n):
            if loss_name == "punzi":
                return selections.punzi_loss(n, data, a.luminosity, tr.punzi_window, tr.punzi_temperature,
                                             cut_logit, window_local=window_local)
            return selections.limit_loss(n, data, theta_edges=edges, n_window=n_window, systematics=sy,
                                         luminosity_uncertainty=sy.luminosity, cl=a.cl, cut_logit=cut_logit,
                                         temperature=tr.limit_temperature, window_local=window_local)

        step = eqx.filter_jit(eqx.filter_value_and_grad(loss))
        return lambda: step(net)

    n_events = data["window_background"]["weight"].shape[0]
    theta_bins = ",".join(str(int(k)) for k in (np.diff(edges, axis=1) > 0).sum(axis=1))
    print(f"{loss_name} loss, {'quick' if quick else 'full'} config, {n_masses} training masses "
          f"({masses[rows][0]:.2f}–{masses[rows][-1]:.2f} GeV, θ bins {theta_bins}), "
          f"{n_events} window background events, {n_signal} signal events per mass")
    dense = first_and_best(value_and_grad(False), repeat)
    print(f"  dense (peer):  first call {dense.first_s:.2f} s (compile + run), run {dense.best_s:.3f} s")
    local = first_and_best(value_and_grad(True), repeat)
    print(f"  window-local:  first call {local.first_s:.2f} s (compile + run), run {local.best_s:.3f} s")
    dense_value, dense_grad = dense.result
    local_value, local_grad = local.result
    dense_leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(eqx.filter(dense_grad, eqx.is_inexact_array))]
    local_leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(eqx.filter(local_grad, eqx.is_inexact_array))]
    grad_diff = max(np.max(np.abs(g - d)) for g, d in zip(local_leaves, dense_leaves))
    grad_scale = max(np.max(np.abs(d)) for d in dense_leaves)
    value_diff = abs(float(local_value) - float(dense_value)) / abs(float(dense_value))
    print(f"  ratio dense / window-local (run): {dense.best_s / local.best_s:.2f}×; loss {float(dense_value):.6f}, "
          f"relative difference {value_diff:.1e}; gradient max|Δ| / max|g| {grad_diff / grad_scale:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick config (default masses 5 16)")
    parser.add_argument("--masses", type=int, nargs="+", help="training masses per case (default 8 32; quick 5 16)")
    parser.add_argument("--window-events", type=int, nargs="+",
                        help="window background events per case (default: the shipped samples' count, docstring)")
    parser.add_argument("--loss", choices=("limit", "punzi"), default="limit",
                        help="(d)'s limit_loss (default) or (c)'s punzi_loss (window sums instead of templates)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = load_config(CONFIG, quick=args.quick)
    masses = args.masses or ([5, 16] if args.quick else [8, 32])
    if args.window_events is not None:
        if len(args.window_events) != len(masses):
            parser.error("--window-events needs one count per --masses entry")
        counts = args.window_events
    else:
        unknown = [m for m in masses if (args.quick, m) not in WINDOW_EVENTS]
        if unknown:
            parser.error(f"no default window-event count for {unknown} masses: give --window-events")
        counts = [WINDOW_EVENTS[(args.quick, m)] for m in masses]
    for n_masses, n_events in zip(masses, counts):
        run_case(config, args.quick, n_masses, n_events, args.repeat, args.seed, args.loss)


if __name__ == "__main__":
    main()
