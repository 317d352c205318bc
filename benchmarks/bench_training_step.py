"""Time one training step of a mass-parametrised selection optimised for its limits.

One step = value and gradient of ``mean over M masses of log(expected 90% CL upper
limit)`` for N simulated events, through: mass-parametrised MLP → hard-binned
histograms of the observable with soft (network) weights → HistFactory model →
asymptotic CLs limit (implicit differentiation). The M hypotheses are evaluated by one
``jax.vmap`` (blocks of masses via ``jax.lax.map`` when N × M would not fit in memory):
no Python loop over masses or events.

Toy problem: observable ``m`` (GeV) — signal a Gaussian peak at the hypothesis mass
(σ = 0.05 GeV + 1% of the mass) over an exponential background (slope 3 GeV) —
and a discriminant ``x`` (signal N(1.5, 1), background N(0, 1)). Each mass is fitted in
6 bins of ±3σ around it; the background carries a ±5% shape-free histosys.

Printed: the step time per (N, M) (median of repeats, after compilation), compile time
separately, the scaling exponents in N and in M, and the peer ratio — (time of a
Python loop over the M masses of the compiled single-mass step) / (time of the vmapped
M step), both timed in the same run — with the agreement of the two (vmapped gradient
vs the mean of the single-mass gradients).

    python benchmarks/bench_training_step.py --quick   # N ∈ {1e4, 1e5}, M ∈ {1, 10}
    python benchmarks/bench_training_step.py           # N ∈ {1e4,1e5,1e6}, M ∈ {1,10,100}
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import diffana  # noqa: F401  (float64)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana import objectives, soft
from diffana.events import Events
from diffana.model import Model
from diffana.selection import MassParametrisedMLP, Standardisation

MASS_RANGE = (1.0, 9.0)  # GeV
SIGNAL_YIELD = 20.0  # expected signal events before selection, per hypothesis
BACKGROUND_YIELD = 5000.0  # expected background events before selection
N_BINS = 6
#: memory budget for the per-(event, mass) network activations, bytes
ACTIVATION_BUDGET = 4e9


def make_toy(n_events: int, seed: int = 0):
    """Background events (shared by all masses) and a standard signal sample that is
    shifted to each hypothesis mass inside the step (fixed shapes under vmap)."""
    rng = np.random.default_rng(seed)
    n_sig = n_events // 5
    n_bkg = n_events - n_sig
    background = {"m": rng.exponential(3.0, n_bkg), "x": rng.normal(0.0, 1.0, n_bkg)}
    signal_unit = {"z": jnp.asarray(rng.normal(size=n_sig)), "x": jnp.asarray(rng.normal(1.5, 1.0, n_sig))}
    events = Events.from_samples({"background": background}, {"background": BACKGROUND_YIELD / n_bkg})
    return events, signal_unit


def mass_resolution(mass):
    return 0.05 + 0.01 * mass  # GeV


def per_mass_log_limit(net, events: Events, signal_unit, mass):
    """log expected 90% CL upper limit on μ for one hypothesis ``mass`` (GeV)."""
    width = mass_resolution(mass)
    edges = mass + width * jnp.linspace(-3.0, 3.0, N_BINS + 1)
    signal_features = {"m": mass + width * signal_unit["z"], "x": signal_unit["x"]}
    n_sig = signal_unit["z"].shape[0]
    signal = soft.hard_histogram(signal_features["m"], edges,
                                 net(signal_features, mass) * (SIGNAL_YIELD / n_sig))
    background = soft.hard_histogram(events.column("m"), edges,
                                     net(events, mass) * events.weight)
    spec = objectives.correlated_background_spec(signal, background, 1.05 * background,
                                                 0.95 * background)
    return jnp.log(objectives.expected_upper_limit(Model.from_spec(spec), cl=0.90))


def make_step(masses_per_block: int | None):
    @eqx.filter_jit
    def step(net, events, signal_unit, masses):
        def loss(net):
            per_mass = objectives.over_masses(
                lambda m: per_mass_log_limit(net, events, signal_unit, m), masses, masses_per_block
            )
            return jnp.mean(per_mass)

        return eqx.filter_value_and_grad(loss)(net)

    return step


def block_size(n_events: int, n_masses: int, hidden: int) -> int | None:
    per_mass = n_events * hidden * 8 * 6  # activations kept for the backward pass
    fit = max(1, int(ACTIVATION_BUDGET // per_mass))
    return None if fit >= n_masses else fit


def time_step(net, n_events, n_masses, repeats, hidden):
    events, signal_unit = make_toy(n_events)
    masses = jnp.linspace(1.5, 8.5, n_masses)
    block = block_size(n_events, n_masses, hidden)
    step = make_step(block)
    t0 = time.perf_counter()
    value, grad = step(net, events, signal_unit, masses)
    jax.block_until_ready(grad)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value, grad = step(net, events, signal_unit, masses)
        jax.block_until_ready(grad)
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    return {"value": float(value), "grad": grad, "step": steady, "compile": first - steady,
            "block": block, "events": events, "signal_unit": signal_unit, "masses": masses,
            "fn": step}


def exponent(xs, ts):
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N ∈ {1e4, 1e5}, M ∈ {1, 10}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=16, help="width of the 2 hidden layers")
    args = parser.parse_args(argv)
    ns = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    ms = [1, 10] if args.quick else [1, 10, 100]

    events0, _ = make_toy(1000)
    standardisation = Standardisation.fit(events0, ["m", "x"])
    net = MassParametrisedMLP(standardisation, MASS_RANGE, hidden=(args.hidden, args.hidden),
                              key=jax.random.PRNGKey(0))

    print(f"# one training step: value+grad of mean_M log(expected 90% UL), "
          f"{jax.devices()[0].platform.upper()} ({platform.processor() or platform.machine()}, "
          f"{jax.device_count()} device), float64, MLP 3-{args.hidden}-{args.hidden}-1")
    print()
    print("| N events | M masses | step [s] | per mass [ms] | compile [s] | mass block |")
    print("|---------:|---------:|---------:|--------------:|------------:|-----------:|")
    results = {}
    for n in ns:
        for m in ms:
            repeats = args.repeats if n * m <= 10_000_000 else 1
            r = time_step(net, n, m, repeats, args.hidden)
            results[(n, m)] = r
            block = "all (vmap)" if r["block"] is None else f"{r['block']} (lax.map)"
            print(f"| {n:>8.0e} | {m:>8d} | {r['step']:8.3f} | {1e3 * r['step'] / m:13.2f} "
                  f"| {r['compile']:11.1f} | {block:>10} |", flush=True)

    print()
    print("Scaling exponents (step time ∝ N^a at fixed M, ∝ M^b at fixed N):")
    for m in ms:
        print(f"  M = {m:>3}: a = {exponent(ns, [results[(n, m)]['step'] for n in ns]):.2f}")
    for n in ns:
        print(f"  N = {n:.0e}: b = {exponent(ms, [results[(n, m)]['step'] for m in ms]):.2f}")

    print()
    print("Peer: a Python loop over the M masses of the compiled single-mass step, timed in")
    print("this run, vs the vmapped M step; agreement of the two gradients (the loop's mean).")
    print("| N events | M | Python loop [s] | vmapped [s] | speed-up | max |Δgrad| / max |grad| |")
    print("|---------:|--:|----------------:|------------:|---------:|-------------------------:|")
    for n in ns:
        single = results[(n, 1)]
        for m in ms[1:]:
            r = results[(n, m)]
            t0 = time.perf_counter()
            loop_grads = []
            for i in range(m):  # the peer: one compiled single-mass step per hypothesis
                _, g = single["fn"](net, r["events"], r["signal_unit"], r["masses"][i:i + 1])
                loop_grads.append(g)
            jax.block_until_ready(loop_grads)
            loop_time = time.perf_counter() - t0
            flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)])  # noqa: E731
            mean_loop = sum(flat(g) for g in loop_grads) / m
            rel = float(jnp.max(jnp.abs(flat(r["grad"]) - mean_loop)) / jnp.max(jnp.abs(mean_loop)))
            print(f"| {n:>8.0e} | {m} | {loop_time:15.3f} | {r['step']:11.3f} | "
                  f"{loop_time / r['step']:7.1f}× | {rel:24.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
