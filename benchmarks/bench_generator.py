"""Throughput of the fast Belle II generator (generation + detector + features).

For each background process: events per second of the jit-compiled pipeline
(``diffana.physics.simulate``, after compilation) against its peer measured in
the same run, the *same* function executed op by op without jit
(``jax.disable_jit``), which is what the pipeline costs without XLA fusion.
Prints the rate of each, their ratio, and the agreement of what both computed
(same PRNG key → same events). Also the rate of ``diffana.physics.generate``, the
user-facing call, which adds copying the chunks into numpy arrays and the
luminosity weights (``gen ev/s``, same number of events as the jit timing).

    python benchmarks/bench_generator.py            # 2^15 events per call (generate's chunk), 2^18 per timing
    python benchmarks/bench_generator.py --quick    # smaller, for a smoke run

Run on an otherwise idle machine: the 1-minute load average is printed with the
rates, which fall with it (XLA spreads the compiled pipeline over both cores of
the 2-core machine: ≈1.9 cores busy).
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.physics import generate, simulate

from _timing import best_seconds, wall_seconds  # benchmarks/_timing.py (run as a script: its folder is on sys.path)

TARGET = 1e6  # background events per second (issue #4)


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
    print(f"{'process':8s} {'compile s':>9s} {'jit ev/s':>12s} {'gen ev/s':>12s} {'no-jit ev/s':>12s} {'ratio':>7s}  "
          "agreement")
    total_events, total_time, total_generate_time = 0, 0.0, 0.0
    for process in ("mumu", "tautau", "eemumu"):
        key = jax.random.key(0, impl="rbg")
        compile_s, _ = wall_seconds(lambda: simulate(key, process, args.events))
        keys = [jax.random.fold_in(key, i) for i in range(args.calls)]
        jit_s = best_seconds(lambda: [simulate(k, process, args.events) for k in keys], args.repeats)
        jit_rate = args.calls * args.events / jit_s
        total_events += args.calls * args.events
        total_time += jit_s
        generate(process, n_events=args.events)  # compiles generate's own call signature
        generate_s = best_seconds(lambda: generate(process, n_events=args.calls * args.events), args.repeats)
        generate_rate = args.calls * args.events / generate_s
        total_generate_time += generate_s

        small = simulate(key, process, args.eager_events)
        with jax.disable_jit():
            eager_s = best_seconds(lambda: simulate(key, process, args.eager_events), 1)
            eager = simulate(key, process, args.eager_events)
        eager_rate = args.eager_events / eager_s
        a = np.asarray(small["recoil_mass_squared"])
        b = np.asarray(eager["recoil_mass_squared"])
        agreement = f"max |ΔM²_rec| = {np.max(np.abs(a - b)):.1e} GeV²"
        print(
            f"{process:8s} {compile_s:9.1f} {jit_rate:12.3e} {generate_rate:12.3e} {eager_rate:12.3e} "
            f"{jit_rate / eager_rate:7.1f}  {agreement}"
        )
    rate, generate_rate = total_events / total_time, total_events / total_generate_time
    print(f"all backgrounds: {rate:.3e} events/s simulate, {generate_rate:.3e} events/s generate "
          f"(after compilation; load average {os.getloadavg()[0]:.2f}); target {TARGET:.0e}: "
          f"{'met' if min(rate, generate_rate) >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
