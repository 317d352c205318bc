"""Train a selection on a ROOT file many times larger than a memory cap, streamed in
chunks (diffana.streaming), and in memory: peak memory, time per step, agreement.

The sample (written to a temporary directory, deleted afterwards): a mass ``m`` (GeV) —
signal a Gaussian peak at 5 GeV (σ 0.3 GeV), background exponential (slope 3 GeV) — and
three discriminants ``x1..x3`` (signal shifted by +0.8 each), 10% signal events. The loss
is minus the Asimov significance (5% background uncertainty) of 10 bins of ``m`` in
[4, 6] GeV weighted by an MLP(16, 16) on (m, x1, x2, x3); Adam, full-batch steps.

The memory cap is ``chunk_size × bytes_per_event`` (float64 features and weight, int32
label — what the source holds per chunk, ``memory_cap`` is checked against it); the file
holds ``n_events / chunk_size`` times that. Each run happens in a fresh subprocess,
which reports its *peak resident set size* (``resource.getrusage(RUSAGE_SELF).ru_maxrss``:
the most physical memory the process ever held — Python, JAX/XLA runtime, compiled
code, data and activations together). Three runs:

* ``streamed`` on the full file, and on a file 4x smaller: their peaks should agree
  (memory O(chunk), independent of the file size);
* ``in memory`` on the full file (read_sample, one jitted step on all events).

Time per step: median of the steps after the first (the first one compiles). The
final parameters of the streamed and in-memory runs are compared (max |Δ| / max |p|).

    python benchmarks/bench_streamed_training.py --quick   # 200k events, chunks of 25k
    python benchmarks/bench_streamed_training.py           # 2M events, chunks of 100k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FEATURES = ("m", "x1", "x2", "x3")
PROCESSES = ("signal", "background")
SIGNAL_FRACTION = 0.1
SIGNAL_YIELD = 200.0  # expected events before selection
BACKGROUND_YIELD = 20000.0
WRITE_BATCH = 50_000  # events per TTree basket: ROOT reads whole baskets, keep them < a chunk


# --------------------------------------------------------------------------- the file
def write_file(path: str, n_events: int, seed: int = 0) -> None:
    """Write the toy sample to ``path`` in batches of WRITE_BATCH events (one basket each)."""
    import uproot

    rng = np.random.default_rng(seed)
    dtypes = {**{name: np.float64 for name in FEATURES}, "weight": np.float64, "process": np.int32}
    n_signal_total = int(SIGNAL_FRACTION * n_events)
    with uproot.recreate(path) as file:
        tree = file.mktree("events", dtypes)
        for start in range(0, n_events, WRITE_BATCH):
            n = min(WRITE_BATCH, n_events - start)
            is_signal = rng.random(n) < SIGNAL_FRACTION
            m = np.where(is_signal, rng.normal(5.0, 0.3, n), rng.exponential(3.0, n))
            shift = 0.8 * is_signal
            columns = {"m": m, **{f"x{i}": rng.normal(shift, 1.0) for i in (1, 2, 3)}}
            columns["weight"] = np.where(is_signal, SIGNAL_YIELD / n_signal_total,
                                         BACKGROUND_YIELD / (n_events - n_signal_total))
            columns["process"] = np.where(is_signal, 0, 1).astype(np.int32)
            tree.extend(columns)


# --------------------------------------------------------------------------- the loss
def make_loss():
    import jax.numpy as jnp

    from diffana.objectives import asimov_significance
    from diffana.soft import process_histograms
    from diffana.streaming import StreamedLoss

    edges = jnp.linspace(4.0, 6.0, 11)  # GeV

    def histograms(net, chunk):
        return process_histograms(chunk, chunk.features["m"], edges, selection_weight=net(chunk))

    def objective(net, yields):
        return -asimov_significance(yields[0], yields[1] + 1e-3, 0.05 * yields[1])

    return StreamedLoss(histograms, objective)


def make_network():
    import jax

    from diffana.selection import MLP, Standardisation

    # fixed standardisation (not fitted on the data: the same network in every run)
    scaling = Standardisation(FEATURES, (3.0, 0.1, 0.1, 0.1), (3.0, 1.0, 1.0, 1.0))
    return MLP(scaling, hidden=(16, 16), activation=jax.numpy.tanh, key=jax.random.PRNGKey(0))


# --------------------------------------------------------------------------- one run (subprocess)
def run(mode: str, path: str, chunk_size: int, n_steps: int, result_path: str) -> None:
    import diffana  # noqa: F401  (float64)
    import jax
    import optax

    from diffana.streaming import ChunkedSource, bytes_per_event
    from diffana.train import train

    loss, net = make_loss(), make_network()
    optimizer = optax.adam(3e-2)
    stamps = []
    callback = lambda step, params, value: stamps.append(time.perf_counter())  # noqa: E731
    start = time.perf_counter()
    if mode == "streamed":
        source = ChunkedSource.from_root(path, features=FEATURES, process_names=PROCESSES,
                                         chunk_size=chunk_size,
                                         memory_cap=chunk_size * bytes_per_event(len(FEATURES)))
        result = train(loss, net, source, n_steps=n_steps, optimizer=optimizer, progress=False,
                       callback=callback)
    else:
        from diffana import io
        from diffana.events import Events

        sample = io.read_sample(path, branches=[*FEATURES, "weight", "process"])
        events = Events({k: jax.numpy.asarray(sample[k]) for k in FEATURES},
                        jax.numpy.asarray(sample["weight"]), jax.numpy.asarray(sample["process"]),
                        PROCESSES)
        del sample

        def in_memory(params, batch):
            return loss.objective(params, loss.histograms(params, batch))

        result = train(in_memory, net, events, n_steps=n_steps, optimizer=optimizer,
                       progress=False, callback=callback)
    step_times = np.diff([start, *stamps])
    params = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(result.params)]
    with open(result_path, "w") as f:
        json.dump({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "first_step_s": float(step_times[0]),
                   "step_s": float(statistics.median(step_times[1:])),
                   "loss": result.history.loss, "params": params}, f)


def run_in_subprocess(mode, path, chunk_size, n_steps, workdir):
    result_path = os.path.join(workdir, f"{mode}-{os.path.basename(path)}.json")
    command = [sys.executable, __file__, "--run", mode, "--path", path,
               "--chunk-size", str(chunk_size), "--steps", str(n_steps), "--result", result_path]
    subprocess.run(command, check=True)
    with open(result_path) as f:
        return json.load(f)


def max_relative_difference(a, b):
    a = np.concatenate([np.ravel(x) for x in a])
    b = np.concatenate([np.ravel(x) for x in b])
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k events, chunks of 25k")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--run", choices=("streamed", "in_memory"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run(args.run, args.path, args.chunk_size, args.steps, args.result)

    n_events = args.events or (200_000 if args.quick else 2_000_000)
    chunk_size = args.chunk_size or (25_000 if args.quick else 100_000)
    from diffana.streaming import bytes_per_event

    cap = chunk_size * bytes_per_event(len(FEATURES))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{n_events} events, chunks of {chunk_size}, {args.steps} Adam steps, MLP(16, 16)")
    with tempfile.TemporaryDirectory() as workdir:
        full = os.path.join(workdir, "full.root")
        quarter = os.path.join(workdir, "quarter.root")
        t0 = time.perf_counter()
        write_file(full, n_events)
        write_file(quarter, n_events // 4, seed=1)
        print(f"wrote {os.path.getsize(full) / 1e6:.1f} MB (+ a quarter-size file) in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"memory cap {cap / 1e6:.2f} MB = {chunk_size} events x {bytes_per_event(len(FEATURES))} B; "
              f"the file's arrays hold {n_events * bytes_per_event(len(FEATURES)) / 1e6:.1f} MB "
              f"= {n_events / chunk_size:.0f}x the cap")
        runs = {
            "streamed, quarter file": run_in_subprocess("streamed", quarter, chunk_size, args.steps, workdir),
            "streamed, full file": run_in_subprocess("streamed", full, chunk_size, args.steps, workdir),
            "in memory, full file": run_in_subprocess("in_memory", full, chunk_size, args.steps, workdir),
        }
    print(f"{'run':<24}{'peak RSS':>12}{'step':>10}{'first step':>12}")
    for name, r in runs.items():
        print(f"{name:<24}{r['peak_rss_bytes'] / 2**20:>9.0f} MiB{r['step_s']:>8.2f} s"
              f"{r['first_step_s']:>10.2f} s")
    streamed, in_memory = runs["streamed, full file"], runs["in memory, full file"]
    print(f"final parameters, streamed vs in memory: max |diff| / max |p| = "
          f"{max_relative_difference(streamed['params'], in_memory['params']):.1e}; "
          f"loss per step streamed {[f'{x:.10g}' for x in streamed['loss']]}, "
          f"in memory {[f'{x:.10g}' for x in in_memory['loss']]}")


if __name__ == "__main__":
    main()
