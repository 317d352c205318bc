"""The held-out background histograms of the full Z'→invisible scan: every hypothesis
window (582, 20 M² bins × the shipped 1–5 θ bins) over ≈1.8·10⁶ events, window-local
(``templates.window_local_histograms``: cumulative sums at the window edges) against
its peer, the dense ``templates.shared_event_histograms`` (every hypothesis bins
every event; the implementation before 2026-12-04), in the same run on the same
synthetic events.

    python benchmarks/bench_window_templates.py                   # 1.8·10⁶ events
    python benchmarks/bench_window_templates.py --events 200000

Prints the first call (compile + run) and the best of ``--repeat`` later calls (run
only) of each, their ratio, and the largest relative bin difference.
"""

from __future__ import annotations

import argparse

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import samples, templates
from diffana.analyses.zprime_invisible.config import load_config

from _timing import first_and_best  # benchmarks/_timing.py (run as a script: its folder is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_800_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    config = load_config("belle2_2019_2020")
    a = config.analysis
    masses = samples.mass_hypotheses(a.mass_min, a.mass_max, a.mass_step, a.n_masses, a.resolution)
    centres = masses**2
    widths = samples.recoil_mass_squared_resolution(masses, a.resolution)
    edges = templates.hypothesis_theta_edges(centres, config.templates)
    n_window = config.templates.window_bins
    rng = np.random.default_rng(1)
    # held-out-like events: M²_rec over the scan's range, ordered as make_samples orders them
    m2 = np.sort(rng.uniform(-5.0, 80.0, args.events))
    theta, weight = rng.uniform(0.0, 180.0, args.events), rng.exponential(1.0, args.events)

    def local():
        return templates.window_local_histograms(centres, widths, m2, theta, weight, edges, n_window)

    def dense():
        return templates.shared_event_histograms(centres, widths, m2, theta, weight, edges, n_window)

    local_timing = first_and_best(local, args.repeat)
    dense_timing = first_and_best(dense, args.repeat)
    local_h, dense_h = np.asarray(local_timing.result), np.asarray(dense_timing.result)
    filled = dense_h != 0
    worst = np.max(np.abs(local_h - dense_h)[filled] / np.abs(dense_h[filled]))
    print(f"{masses.size} windows × {dense_h.shape[1]} bins (padded), {args.events} events")
    print(f"window-local: first call {local_timing.first_s:.2f} s (compile + run), run {local_timing.best_s:.2f} s")
    print(f"dense (peer): first call {dense_timing.first_s:.2f} s (compile + run), run {dense_timing.best_s:.2f} s")
    print(f"ratio dense / window-local (run): {dense_timing.best_s / local_timing.best_s:.1f}×; "
          f"largest relative bin difference {worst:.1e}")


if __name__ == "__main__":
    main()
