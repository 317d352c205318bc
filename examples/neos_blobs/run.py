"""neos on Gaussian blobs: train a selection for the limit it will set.

The problem of Simpson & Heinrich, "neos: End-to-End-Optimised Summary Statistics for
High Energy Physics" (arXiv:2203.05570), in diffana:

* 2D Gaussian blobs: signal, nominal background, and background shifted "up" and
  "down" — the two shifted samples define a histosys (shape) uncertainty.
* A small MLP maps (x, y) to a score in (0, 1); the score of every sample is
  histogrammed in a few bins (kernel-smoothed while training, hard for evaluation);
  the histograms build a HistFactory model (signal × μ, background with histosys).
* Three trainings of the same network:
    (a) ``bce``   — a classifier (balanced BCE, signal vs nominal background), bins
                    fixed afterwards: blind to the systematic;
    (b) ``neos``  — minimise the expected CLs at μ = 1;
    (c) ``limit`` — minimise the log of the median expected 95% CL upper limit on μ.
* Each is evaluated on a held-out sample with hard bins: expected CLs(μ=1) and the
  expected upper limit with its ±1σ band.

Run ``python examples/neos_blobs/run.py`` (about two minutes on two CPU cores);
``--steps`` sets the training length, ``--out`` where the training-curve plot goes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import diffana  # noqa: F401  (float64 first)
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffana import objectives, soft
from diffana.events import Events
from diffana.model import Model
from diffana.selection import MLP, Standardisation
from diffana.train import train

#: blob centres in the (x, y) plane (unit-covariance Gaussians). Signal and nominal
#: background as in neos; the background's systematic is a ±0.5 shift along y, so
#: that y separates signal from background but is uncertain, while x is safe but
#: separates less — the trade-off a classifier cannot see and neos can.
MEANS = {
    "signal": (-1.0, 1.0),
    "background": (1.0, -1.0),
    "background_up": (1.0, -0.5),
    "background_down": (1.0, -1.5),
}
#: expected events of each sample in the analysis (a fixed luminosity): a small
#: signal on a large background, where the systematic matters and CLs(μ=1) ~ 0.1
YIELDS = {"signal": 20.0, "background": 2000.0, "background_up": 2000.0,
          "background_down": 2000.0}
BIN_EDGES = jnp.linspace(0.0, 1.0, 5)  # 4 bins of the network score
CL = 0.95


def make_blobs(n_per_sample: int, seed: int) -> Events:
    """``n_per_sample`` simulated events per sample, weighted to ``YIELDS``."""
    rng = np.random.default_rng(seed)
    samples = {
        name: dict(zip(("x", "y"), rng.normal(mean, 1.0, size=(n_per_sample, 2)).T))
        for name, mean in MEANS.items()
    }
    weights = {name: YIELDS[name] / n_per_sample for name in MEANS}
    return Events.from_samples(samples, weights)


def histograms(net, events: Events, bandwidth=None):
    """(4, B) yields of signal, background, up, down: soft (bandwidth) or hard bins."""
    score = net(events)
    if bandwidth is None:
        # hard bins for evaluation; a score of exactly 1 is kept in the last bin
        return soft.process_histograms(events, score, BIN_EDGES, overflow="clip")
    return soft.process_histograms(events, score, BIN_EDGES, bandwidth=bandwidth,
                                   reflect_infinities=True)


def model_from(hists) -> Model:
    signal, background, up, down = hists
    return Model.from_spec(objectives.correlated_background_spec(signal, background, up, down))


def bce_loss(net, events: Events):
    """(a): balanced BCE of signal vs nominal background (shifted samples ignored)."""
    nominal = (events.process == 0) | (events.process == 1)
    label = (events.process == 0).astype(float)
    return objectives.binary_cross_entropy(
        net.logit(events), label, events.weight * nominal, balanced=True, from_logits=True
    )


BANDWIDTH = soft.linear_anneal(0.25, 0.08, 150)  # score units; smooth early, sharp late


def neos_loss(net, events: Events, step):
    """(b): expected CLs at μ = 1 of the soft-histogram model."""
    return objectives.expected_cls(model_from(histograms(net, events, BANDWIDTH(step))), 1.0)


def limit_loss(net, events: Events, step):
    """(c): log of the median expected upper limit on μ at 95% CL."""
    model = model_from(histograms(net, events, BANDWIDTH(step)))
    return jnp.log(objectives.expected_upper_limit(model, cl=CL))


@jax.jit
def evaluate(net, events: Events):
    """Held-out, hard bins: (expected CLs at μ=1, expected UL −1σ, median, +1σ)."""
    model = model_from(histograms(net, events))
    cls = objectives.expected_cls(model, 1.0)
    band = objectives.expected_upper_limit(model, cl=CL, band=True)
    return jnp.concatenate([cls[None], band])


def run(steps: int = 200, n_train: int = 4000, n_test: int = 20000, seed: int = 0,
        progress: bool = True):
    """Train (a), (b), (c) from the same initial network; return results per method."""
    train_events = make_blobs(n_train, seed)
    test_events = make_blobs(n_test, seed + 1)
    standardisation = Standardisation.fit(train_events, ["x", "y"])
    init = MLP(standardisation, hidden=(16, 16), key=jax.random.PRNGKey(seed))
    losses = {"bce": bce_loss, "neos": neos_loss, "limit": limit_loss}
    results = {}
    for name, loss in losses.items():
        t0 = time.perf_counter()
        # BCE pre-trains in its own steps; neos/limit start from the same random network
        res = train(loss, init, train_events, n_steps=steps,
                    optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, steps, 0.1)),
                    seed=seed, progress=progress)
        metrics = np.asarray(evaluate(res.params, test_events))
        results[name] = {"result": res, "metrics": metrics, "seconds": time.perf_counter() - t0}
    return results


def table(results) -> str:
    """The comparison table (held-out sample, hard bins)."""
    rows = [
        "| training      | expected CLs (μ=1) | expected 95% UL on μ | −1σ   | +1σ   | train time |",
        "|---------------|--------------------|----------------------|-------|-------|------------|",
    ]
    labels = {"bce": "(a) BCE", "neos": "(b) neos CLs", "limit": "(c) UL"}
    for name, r in results.items():
        cls, lo, med, hi = r["metrics"]
        rows.append(f"| {labels[name]:<13} | {cls:18.4f} | {med:20.3f} | {lo:5.3f} | {hi:5.3f} "
                    f"| {r['seconds']:8.1f} s |")
    return "\n".join(rows)


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    titles = {"bce": "(a) balanced BCE", "neos": "(b) expected CLs at μ=1",
              "limit": "(c) log expected 95% UL"}
    for ax, (name, r) in zip(axes, results.items()):
        r["result"].history.plot(ax=ax, label=name)
        ax.set_title(titles[name])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/neos_blobs_training.png"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.steps, seed=args.seed, progress=not args.no_progress)
    print(table(results))
    plot(results, args.out)
    print(f"training curves: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
