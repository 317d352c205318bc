"""Time one training step of a selection optimised for its limits: window-local
evaluation (diffana.windows) against the dense evaluation, measured in the same run.

One step = value and gradient of ``mean over M masses of log(expected 90% CL upper
limit)`` for N simulated background events plus each hypothesis' own signal sample,
through: MLP → hard-binned histograms of the observable with soft (network) weights →
HistFactory model → asymptotic CLs limit (implicit differentiation).

Toy problem: observable ``m`` (GeV) — background exponential (slope 3 GeV), signal of
hypothesis k a Gaussian peak at its mass (σ = 0.05 GeV + 1% of the mass, 1000 MC events
per hypothesis) — and a discriminant ``x`` (signal N(1.5, 1), background N(0, 1)).
Each mass is fitted in 6 bins of ±3σ around it; the background carries a ±5%
shape-free histosys.

Two networks:

* ``independent`` — MLP(m, x), the same weight for every hypothesis (the Z'→invisible
  analysis' network). Dense: the network once, then every event into every
  hypothesis' histogram (O(N·M)). Window-local: cumulative sums over the events
  sorted by m (O(N + M·bins)).
* ``parametrised`` — MLP(m, x, mass). Dense: every event through the network for
  every mass (O(N·M)). Window-local: each mass evaluates only a fixed-size slice of
  the sorted events holding its window (O(N·k), k windows per event).

Printed: step time per (N, M) and method (median of repeats, after compilation;
compile time separately), the scaling exponents in N and M, the speed-up of the
window-local step over the dense one and the agreement of the two values and
gradients (max |Δgrad| / max |grad|); first, the limit solver alone: 100 vmapped
median expected limits by ``infer.expected_upper_limits`` (Asimov-only, the
objective used here) against the full ``infer.upper_limit`` (the previous objective).

    python benchmarks/bench_training_step.py --quick   # N ∈ {1e4, 1e5}, M ∈ {1, 10}
    python benchmarks/bench_training_step.py           # N ∈ {1e4,1e5,1e6}, M ∈ {1,10,100}
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time

import diffana  # noqa: F401  (float64)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana import objectives, soft, windows
from diffana._util import map_in_blocks
from diffana.model import Model
from diffana.selection import MLP, MassParametrisedMLP, Standardisation

MASS_RANGE = (1.0, 9.0)  # GeV
SIGNAL_YIELD = 20.0  # expected signal events before selection, per hypothesis
BACKGROUND_YIELD = 5000.0  # expected background events before selection
SIGNAL_EVENTS_PER_MASS = 1000  # MC events of each hypothesis' signal sample
N_BINS = 6
HALF_WIDTH = 3.0  # window half-width in resolutions
#: memory budget for the per-(event, mass) network activations, bytes
ACTIVATION_BUDGET = 4e9


# --------------------------------------------------------------------------- toy
@dataclasses.dataclass
class Toy:
    """Background events sorted by m (dict of (N,) columns) and per-mass signal samples."""

    background: dict
    signal: dict  # (M, n) columns "m", "x", "weight"
    masses: jax.Array  # (M,) GeV
    edges: jax.Array  # (M, N_BINS + 1) GeV


def mass_resolution(mass):
    return 0.05 + 0.01 * mass  # GeV


def make_toy(n_events: int, n_masses: int, seed: int = 0) -> Toy:
    rng = np.random.default_rng(seed)
    masses = np.linspace(1.5, 8.5, n_masses)
    width = mass_resolution(masses)
    edges = masses[:, None] + width[:, None] * np.linspace(-HALF_WIDTH, HALF_WIDTH, N_BINS + 1)
    background = {"m": rng.exponential(3.0, n_events), "x": rng.normal(0.0, 1.0, n_events),
                  "weight": np.full(n_events, BACKGROUND_YIELD / n_events)}
    shape = (n_masses, SIGNAL_EVENTS_PER_MASS)
    signal = {"m": masses[:, None] + width[:, None] * rng.normal(size=shape), "x": rng.normal(1.5, 1.0, shape),
              "weight": np.full(shape, SIGNAL_YIELD / SIGNAL_EVENTS_PER_MASS)}
    as_jax = lambda d: {k: jnp.asarray(v) for k, v in d.items()}  # noqa: E731
    return Toy(background=as_jax(windows.sort_events(background, "m")), signal=as_jax(signal),
               masses=jnp.asarray(masses), edges=jnp.asarray(edges))


def log_limit(signal, background):
    spec = objectives.correlated_background_spec(signal, background, 1.05 * background, 0.95 * background)
    return jnp.log(objectives.expected_upper_limit(Model.from_spec(spec), cl=0.90))


# --------------------------------------------------------------------------- steps
def independent_dense(net, toy: Toy, block):
    weights = net(toy.background) * toy.background["weight"]

    def per_mass(edges, signal):
        s = soft.hard_histogram(signal["m"], edges, net(signal) * signal["weight"])
        return log_limit(s, soft.hard_histogram(toy.background["m"], edges, weights))

    return map_in_blocks(per_mass, (toy.edges, toy.signal), block)


def independent_windowed(net, toy: Toy, block):
    weights = net(toy.background) * toy.background["weight"]
    backgrounds = windows.window_histograms(toy.background["m"], weights, toy.edges)

    def per_mass(edges, signal, background):
        return log_limit(soft.hard_histogram(signal["m"], edges, net(signal) * signal["weight"]), background)

    return map_in_blocks(per_mass, (toy.edges, toy.signal, backgrounds), block)


def parametrised_dense(net, toy: Toy, block):
    def per_mass(mass, edges, signal):
        s = soft.hard_histogram(signal["m"], edges, net(signal, mass) * signal["weight"])
        b = soft.hard_histogram(toy.background["m"], edges, net(toy.background, mass) * toy.background["weight"])
        return log_limit(s, b)

    return map_in_blocks(per_mass, (toy.masses, toy.edges, toy.signal), block)


def parametrised_windowed(net, toy: Toy, block, plan: windows.WindowPlan):
    def per_window(events, mass, edges, signal):
        s = soft.hard_histogram(signal["m"], edges, net(signal, mass) * signal["weight"])
        b = soft.hard_histogram(events["m"], edges, net(events, mass) * events["weight"])
        return log_limit(s, b)

    return windows.map_windows(per_window, toy.background, plan, toy.masses, toy.edges, toy.signal,
                               batch_size=block)


METHODS = {
    ("independent", "dense"): independent_dense,
    ("independent", "window-local"): independent_windowed,
    ("parametrised", "dense"): parametrised_dense,
    ("parametrised", "window-local"): parametrised_windowed,
}


def make_step(evaluate):
    @eqx.filter_jit
    def step(net, toy_arrays, block, *extra):
        toy = Toy(**toy_arrays)
        return eqx.filter_value_and_grad(lambda n: jnp.mean(evaluate(n, toy, block, *extra)))(net)

    return step


def block_size(events_per_mass: int, n_masses: int, hidden: int) -> int | None:
    per_mass = events_per_mass * hidden * 8 * 6  # activations kept for the backward pass
    fit = max(1, int(ACTIVATION_BUDGET // per_mass))
    return None if fit >= n_masses else fit


# --------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Timing:
    value: float
    grad: object
    step: float  # s, median after compilation
    compile: float  # s, first call minus a steady call


def time_step(step, net, toy: Toy, block, repeats: int, *extra) -> Timing:
    arrays = dataclasses.asdict(toy)
    t0 = time.perf_counter()
    value, grad = jax.block_until_ready(step(net, arrays, block, *extra))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value, grad = jax.block_until_ready(step(net, arrays, block, *extra))
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    return Timing(float(value), grad, steady, first - steady)


def relative_gradient_difference(a, b) -> float:
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)])  # noqa: E731
    return float(jnp.max(jnp.abs(flat(a) - flat(b))) / jnp.max(jnp.abs(flat(b))))


def make_networks(hidden: int):
    toy = make_toy(1000, 1)
    standardisation = Standardisation.fit(toy.background, ["m", "x"])
    key = jax.random.PRNGKey(0)
    return {"independent": MLP(standardisation, hidden=(hidden, hidden), key=key),
            "parametrised": MassParametrisedMLP(standardisation, MASS_RANGE, hidden=(hidden, hidden), key=key)}


def run_cell(kind: str, net, n: int, m: int, repeats: int, hidden: int, with_dense: bool):
    toy = make_toy(n, m)
    results = {}
    for method in ("window-local", "dense"):
        if method == "dense" and not with_dense:
            continue
        extra = ()
        events_per_mass = n
        if kind == "parametrised" and method == "window-local":
            plan = windows.plan_windows(toy.background["m"], toy.edges[:, 0], toy.edges[:, -1])
            extra, events_per_mass = (plan,), plan.size
        if kind == "independent":
            events_per_mass = SIGNAL_EVENTS_PER_MASS + (n if method == "dense" else 0)
        block = block_size(events_per_mass, m, hidden)
        step = make_step(METHODS[(kind, method)])
        results[method] = time_step(step, net, toy, block, repeats, *extra)
    return results


# --------------------------------------------------------------------------- limit solvers
def full_log_limit(signal, background):
    """The previous objective: the full upper_limit (observed + six curves) on Asimov data."""
    from diffana import infer

    spec = objectives.correlated_background_spec(signal, background, 1.05 * background, 0.95 * background)
    model = Model.from_spec(spec)
    return jnp.log(infer.upper_limit(infer.asimov_data(model, 0.0), model, cl=0.90).expected[2])


def compare_limit_solvers(n_masses: int, repeats: int) -> None:
    """Value + gradient of the mean log median expected limit of ``n_masses`` 6-bin
    models, vmapped: the Asimov-only solver against the full upper_limit."""
    rng = np.random.default_rng(1)
    signal = jnp.asarray(rng.uniform(1.0, 10.0, (n_masses, N_BINS)))
    background = jnp.asarray(rng.uniform(20.0, 200.0, (n_masses, N_BINS)))
    rows = {}
    for name, per_mass in (("Asimov-only (infer.expected_upper_limits)", log_limit), ("full upper_limit", full_log_limit)):
        step = jax.jit(jax.value_and_grad(lambda s, b, f=per_mass: jnp.mean(jax.vmap(f)(s, b)), argnums=(0, 1)))
        t0 = time.perf_counter()
        first = jax.block_until_ready(step(signal, background))
        compile_time = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(step(signal, background))
            times.append(time.perf_counter() - t0)
        rows[name] = (statistics.median(times), compile_time, first)
    (new, new_c, new_v), (old, old_c, old_v) = rows.values()
    print(f"\n## limit solver: {n_masses} vmapped median expected limits, value + gradient\n")
    print("| solver | run [ms] | compile + first call [s] |\n|---|---:|---:|")
    for name, (run, comp, _) in rows.items():
        print(f"| {name} | {1e3 * run:.1f} | {comp:.1f} |")
    dv = abs(float(new_v[0] - old_v[0]))
    dg = relative_gradient_difference(new_v[1], old_v[1])
    print(f"\nspeed-up {old / new:.1f}× (run), {old_c / new_c:.1f}× (compile); |Δvalue| {dv:.1e}, "
          f"max|Δgrad|/max|grad| {dg:.1e}", flush=True)


def exponent(xs, ts):
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N ∈ {1e4, 1e5}, M ∈ {1, 10}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=16, help="width of the 2 hidden layers")
    parser.add_argument("--network", choices=["independent", "parametrised", "both"], default="both")
    parser.add_argument("--no-dense", action="store_true", help="time the window-local step only")
    parser.add_argument("--events", type=int, nargs="+", help="N values (overrides the grid)")
    parser.add_argument("--masses", type=int, nargs="+", help="M values (overrides the grid)")
    parser.add_argument("--no-solver-comparison", action="store_true",
                        help="skip the Asimov-only vs full upper_limit comparison")
    args = parser.parse_args(argv)
    ns = args.events or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    ms = args.masses or ([1, 10] if args.quick else [1, 10, 100])
    kinds = ["independent", "parametrised"] if args.network == "both" else [args.network]
    nets = make_networks(args.hidden)

    print(f"# one training step: value+grad of mean_M log(expected 90% UL), "
          f"{jax.devices()[0].platform.upper()} ({platform.processor() or platform.machine()}, "
          f"{jax.device_count()} device), float64, MLP 16-16, {SIGNAL_EVENTS_PER_MASS} signal MC events per mass")
    if not args.no_solver_comparison:
        compare_limit_solvers(100, args.repeats)
    for kind in kinds:
        print(f"\n## {kind} network\n")
        print("| N events | M masses | window-local [s] | compile [s] | dense [s] | compile [s] | speed-up "
              "| Δvalue | max|Δgrad|/max|grad| |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        table = {}
        for n in ns:
            for m in ms:
                repeats = args.repeats if n * m <= 10_000_000 else 1
                r = run_cell(kind, nets[kind], n, m, repeats, args.hidden, not args.no_dense)
                table[(n, m)] = r
                w = r["window-local"]
                if "dense" in r:
                    d = r["dense"]
                    dense = (f"{d.step:.3f} | {d.compile:.1f} | {d.step / w.step:.1f}× | {abs(w.value - d.value):.1e} | "
                             f"{relative_gradient_difference(w.grad, d.grad):.1e}")
                else:
                    dense = "– | – | – | – | –"
                print(f"| {n:.0e} | {m} | {w.step:.3f} | {w.compile:.1f} | {dense} |", flush=True)
        print("\nScaling exponents of the window-local step (time ∝ N^a at fixed M, ∝ M^b at fixed N):")
        for m in ms:
            print(f"  M = {m:>3}: a = {exponent(ns, [table[(n, m)]['window-local'].step for n in ns]):.2f}")
        for n in ns:
            print(f"  N = {n:.0e}: b = {exponent(ms, [table[(n, m)]['window-local'].step for m in ms]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
