"""Throughput of the fast Belle II generator (generation + detector + features).

For each background process: events per second of the jit-compiled pipeline
(``diffana.physics.simulate``, after compilation) against its peer measured in
the same run, the *same* function executed op by op without jit
(``jax.disable_jit``), which is what the pipeline costs without XLA fusion.
Prints the rate of each, their ratio, and the agreement of what both computed
(same PRNG key → same events).

    python benchmarks/bench_generator.py            # 2^15 events per call (generate's chunk), 2^18 per timing
    python benchmarks/bench_generator.py --quick    # smaller, for a smoke run

Run on an otherwise idle machine: the 1-minute load average is printed with the
rates, which fall with it (the compiled pipeline runs on one core).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.physics import simulate


def best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2**15, help="events per jitted call (generate's default chunk)")
    parser.add_argument("--calls", type=int, default=8, help="jitted calls per timing")
    parser.add_argument("--eager-events", type=int, default=2**13, help="events per un-jitted call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2^13 / 2^11 events, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.calls, args.eager_events, args.repeats = 2**13, 2, 2**11, 1

    print(f"jax {jax.__version__}, {os.cpu_count()} CPU(s) visible, devices {jax.devices()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'process':8s} {'compile s':>9s} {'jit ev/s':>12s} {'no-jit ev/s':>12s} {'ratio':>7s}  agreement")
    total_events, total_time = 0, 0.0
    for process in ("mumu", "tautau", "eemumu"):
        key = jax.random.key(0, impl="rbg")
        start = time.perf_counter()
        jax.block_until_ready(simulate(key, process, args.events))
        compile_s = time.perf_counter() - start
        keys = [jax.random.fold_in(key, i) for i in range(args.calls)]
        jit_s = best_time(lambda: [simulate(k, process, args.events) for k in keys], args.repeats)
        jit_rate = args.calls * args.events / jit_s
        total_events += args.calls * args.events
        total_time += jit_s

        small = simulate(key, process, args.eager_events)
        with jax.disable_jit():
            eager_s = best_time(lambda: simulate(key, process, args.eager_events), 1)
            eager = simulate(key, process, args.eager_events)
        eager_rate = args.eager_events / eager_s
        a = np.asarray(small["recoil_mass_squared"])
        b = np.asarray(eager["recoil_mass_squared"])
        agreement = f"max |ΔM²_rec| = {np.max(np.abs(a - b)):.1e} GeV²"
        print(
            f"{process:8s} {compile_s:9.1f} {jit_rate:12.3e} {eager_rate:12.3e} {jit_rate / eager_rate:7.1f}  {agreement}"
        )
    print(f"all backgrounds: {total_events / total_time:.3e} events/s (jit, after compilation; "
          f"load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
