"""The Z'→invisible limit scan at full size: 582 hypotheses × 20 M² bins × 1–5 θ bins
(the shipped rule), synthetic templates, ``fit.scan_limits`` with the shipped
``"grouped"`` structure; its peer is the ``"padded"`` structure (one program at 5 θ
bins) timed on a sample of hypotheses and extrapolated per hypothesis.

    python benchmarks/bench_zprime_scan.py                 # full size, grouped; padded on 12
    python benchmarks/bench_zprime_scan.py --padded 0      # grouped only

Prints, per structure group, the first call (compile + run) and a second call (run only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import fit, samples, templates
from diffana.analyses.zprime_invisible.config import load_config


def synthetic_templates(masses, config, seed: int = 1) -> tuple[dict, np.ndarray]:
    """Templates of every hypothesis in the padded layout (zero in padding bins) and
    Poisson pseudo-data: a flat background of ≈100 events per bin and a Gaussian
    signal peak of one bin width."""
    t_cfg = config.templates
    edges = templates.hypothesis_theta_edges(masses**2, t_cfg)
    mask = templates.bin_mask(edges, t_cfg.window_bins)
    rng = np.random.default_rng(seed)
    n, bins = mask.shape
    background = rng.gamma(2.0, 50.0, (n, bins)) * mask
    peak = np.exp(-0.5 * (np.arange(t_cfg.window_bins) - t_cfg.window_bins / 2 + 0.5) ** 2)
    signal = np.repeat(peak, t_cfg.theta_bins)[None, :] * 5.0 * mask
    t = {"signal": signal, "signal_up": 0.95 * signal, "signal_down": 1.05 * signal,
         "background": background, "background_mumu": 0.1 * background,
         "signal_efficiency": np.full(n, 0.027), "background_shape": np.full((n, bins), 0.032),
         "photon_veto": np.full((n, bins), 0.05), "sigma_ref": np.ones(n), "bin_mask": mask}
    return t, rng.poisson(background).astype(float)


def timed(label: str, function):
    start = time.perf_counter()
    out = function()
    print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--padded", type=int, default=12, help="hypotheses timed with the padded structure (0: none)")
    args = parser.parse_args()
    config = load_config("belle2_2019_2020")
    a = config.analysis
    masses = samples.mass_hypotheses(a.mass_min, a.mass_max, a.mass_step, 0, a.resolution)
    t, data = synthetic_templates(masses, config)
    groups = fit.structure_groups(t["bin_mask"])
    print(f"{masses.size} hypotheses × {config.templates.window_bins} M² bins × {config.templates.theta_bins} θ bins "
          f"(padded); groups: " + ", ".join(f"{len(b)} bins × {len(r)}" for r, b in groups), flush=True)
    total = {}
    for rows, bins in groups:
        group = {k: (v[rows][:, bins] if v.ndim == 2 else v[rows]) for k, v in t.items()}
        label = f"grouped, {len(bins)} bins, {len(rows)} hypotheses"
        first = time.perf_counter()
        timed(f"{label}: first call (compile + run)", lambda: fit.scan_limits(group, data[rows][:, bins], 0.01, 0.9))
        second = time.perf_counter()
        out = timed(f"{label}: second call (run)", lambda: fit.scan_limits(group, data[rows][:, bins], 0.01, 0.9))
        total[len(bins)] = (second - first, time.perf_counter() - second, int(out[2].sum()), len(rows))
    run = sum(v[1] for v in total.values())
    print(f"grouped, all {masses.size} hypotheses: run {run:.1f} s, first calls {sum(v[0] for v in total.values()):.1f} s "
          f"(converged {sum(v[2] for v in total.values())}/{masses.size})", flush=True)
    if args.padded:
        rows = np.arange(args.padded)
        sample = {k: v[rows] for k, v in t.items()}
        timed(f"padded, {args.padded} hypotheses: first call", lambda: fit.scan_limits(sample, data[rows], 0.01, 0.9,
                                                                                       structure="padded"))
        start = time.perf_counter()
        fit.scan_limits(sample, data[rows], 0.01, 0.9, structure="padded")
        per = (time.perf_counter() - start) / args.padded
        print(f"padded: {per * 1e3:.0f} ms per hypothesis → {per * masses.size:.0f} s for all {masses.size} "
              f"(grouped: {run:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
