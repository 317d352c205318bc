"""Bump-hunt benchmark: the four-muon search's scan — a binned fit in a sliding
window at every mass hypothesis — in one compiled call, against a loop of iminuit
fits of the same windows in the same run.

The spectrum: the reduced mass m_R of the Belle II four-muon search (PHYSICS.md):
one hypothesis per 1 MeV from 0 to 9787 MeV (9788), signal resolution σ(m) from
2 MeV at 0 to 10 MeV at 9.787 GeV (linear), fit range m ± 25σ. The spectrum is
binned in bins of σ(m)/2, so that every window of 100 bins spans ±25σ around its
hypothesis (windows move inwards at the ends of the spectrum; several 1 MeV
hypotheses share a window at high mass, each with its own signal mean). Background:
a smooth falling density (12 + 48·e^(−m/3 GeV) events per MeV), one seeded Poisson
draw, the same for both tools. Signal model per window: a double-sided Crystal Ball
(α_low = 1.2, n_low = 3, α_high = 1.6, n_high = 4) on a cubic Bernstein background
with free non-negative coefficients; the POI is the signal yield (events in the
window).

Per hypothesis both tools compute: the free fit (ŝ), its error from the curvature,
the background-only fit (s = 0), the signed local significance
sign(ŝ)·√(2 ln L_s+b/L_b), and the one-sided 90% CL profile-likelihood upper limit
(q̃(s) = Φ⁻¹(0.9)² = 1.642).

- diffana: ``diffana.model.sliding_windows`` then ``diffana.infer.bump_hunt.bump_hunt``;
  the first call's time (compile + run) and a second call's (run) are printed
  separately.
- iminuit (+ numba-stats' ``crystalball_ex`` CDF for the signal bin fractions,
  precomputed per window since no shape parameter floats): the same −2 ln L (Poisson
  deviance) minimised by MIGRAD (strategy 1, errordef 1, tol 1e-6), the error from
  HESSE, a second MIGRAD with s fixed at 0, and the limit from MINOS at cl = 0.8
  (two-sided 80% = one-sided 90%) where ŝ ≥ 0, else a brentq root of the profiled
  q̃ over fixed-s MIGRAD fits — on an evenly spaced subset of windows, its time
  extrapolated linearly to the whole scan.

Prints both times, the ratio, and the largest differences of fitted yield (in units
of its error) and of the limit over the subset.

    python benchmarks/bench_bump_scan.py               # 9788 windows, 100 iminuit windows
    python benchmarks/bench_bump_scan.py --quick       # 500 windows, 20 iminuit windows
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

BIN_WIDTH_GEV = 0.001
FIRST_MASS_GEV = 0.25
BINS_PER_WINDOW = 100
BACKGROUND_DEGREE = 3
CL = 0.90
DATA_SEED = 20261202
TAIL = dict(alpha_low=1.2, n_low=3.0, alpha_high=1.6, n_high=4.0)


def resolution_gev(mass):
    """Signal mass resolution σ(m), GeV: 2 MeV at 0 to 10 MeV at 9.787 GeV."""
    return 0.002 + 0.008 * mass / 9.787


def spectrum(n_hypotheses: int):
    """(edges (M+1,), observed counts (M,), hypothesis masses (H,)), GeV: bins of
    σ(m)/2 from m_R = 0 (the windows of the lowest masses start there) to 50 bins
    above the last hypothesis."""
    masses = 0.001 * np.arange(n_hypotheses)
    edges = [0.0]
    while edges[-1] < masses[-1] + BINS_PER_WINDOW // 2 * 0.5 * resolution_gev(masses[-1]):
        edges.append(edges[-1] + 0.5 * resolution_gev(edges[-1]))
    edges = np.array(edges)
    density = lambda m: (12.0 + 48.0 * np.exp(-m / 3.0)) * 1000.0  # events per GeV
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = density(centres) * np.diff(edges)
    counts = np.random.default_rng(DATA_SEED).poisson(expected).astype(float)
    return edges, counts, masses


# --- diffana ---------------------------------------------------------------------

def run_diffana(edges, counts, masses):
    import jax

    from diffana.infer.bump_hunt import bump_hunt
    from diffana.model.parametric import sliding_windows
    from diffana.shapes import DoubleCrystalBall

    def signal_at(mass, lower, upper):
        return DoubleCrystalBall(mass, resolution_gev(mass), TAIL["alpha_low"], TAIL["n_low"], TAIL["alpha_high"],
                                 TAIL["n_high"], lower, upper)

    start = time.perf_counter()
    windows = sliding_windows(edges, counts, masses, BINS_PER_WINDOW, signal_at, background_degree=BACKGROUND_DEGREE)
    jax.block_until_ready(windows.data)
    build = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(bump_hunt(windows.data, windows.models, cl=CL))
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(bump_hunt(windows.data, windows.models, cl=CL))
    run = time.perf_counter() - start
    return windows, result, build, first, run


# --- iminuit ---------------------------------------------------------------------

def _window_templates(edges, mass):
    """Signal bin fractions (numba-stats' double-sided CB, normalised on the window)
    and the Bernstein basis fractions I_bk (each column sums to 1)."""
    from numba_stats import crystalball_ex
    from scipy.special import betainc

    lower, upper = edges[0], edges[-1]
    sigma = resolution_gev(mass)
    cdf = crystalball_ex.cdf(edges, TAIL["alpha_low"], TAIL["n_low"], sigma, TAIL["alpha_high"], TAIL["n_high"],
                             sigma, mass)
    signal = np.diff(cdf) / (cdf[-1] - cdf[0])
    t = (edges - lower) / (upper - lower)
    n = BACKGROUND_DEGREE
    # ∫_0^t b_{k,n} = I_t(k+1, n−k+1)/(n+1): the regularised incomplete beta.
    basis = np.stack([np.diff(betainc(k + 1, n - k + 1, t)) for k in range(n + 1)], axis=1)
    return signal, basis


def _deviance_function(counts, signal, basis):
    from scipy.special import xlogy

    def deviance(s, c0, c1, c2, c3):
        rate = s * signal + basis @ np.array([c0, c1, c2, c3])
        rate = np.maximum(rate, 1e-12)
        return 2.0 * np.sum(rate - counts + xlogy(counts, counts / rate))

    return deviance


def _iminuit_window(edges, counts, mass, z2):
    from iminuit import Minuit
    from scipy.optimize import brentq

    signal, basis = _window_templates(edges, mass)
    deviance = _deviance_function(counts, signal, basis)
    background = counts.sum() / (BACKGROUND_DEGREE + 1)
    minuit = Minuit(deviance, s=0.0, c0=background, c1=background, c2=background, c3=background)
    minuit.errordef = Minuit.LEAST_SQUARES
    minuit.strategy = 1
    minuit.tol = 1e-6
    bound = 5.0 * np.sqrt(counts.sum()) + 10.0
    minuit.limits["s"] = (-bound, 10.0 * bound)
    for name in ("c0", "c1", "c2", "c3"):
        minuit.limits[name] = (0.0, None)
    minuit.migrad()
    minuit.hesse()
    s_hat, error, best = minuit.values["s"], minuit.errors["s"], minuit.fval
    best_values = minuit.values.to_dict()

    def profiled(s):
        minuit.values["s"] = s
        minuit.fixed["s"] = True
        minuit.migrad()
        value = minuit.fval
        minuit.fixed["s"] = False
        return value

    null = profiled(0.0)
    significance = np.sign(s_hat) * np.sqrt(max(null - best, 0.0))
    if s_hat >= 0:
        for name, value in best_values.items():
            minuit.values[name] = value
        minuit.migrad()
        minuit.minos("s", cl=2 * CL - 1)
        limit = s_hat + minuit.merrors["s"].upper
    else:
        limit = brentq(lambda s: profiled(s) - null - z2, 0.0, 20.0 * error + 10.0, xtol=1e-8)
    return s_hat, error, significance, limit


def run_iminuit(edges, counts, masses, indices, first_bins):
    from scipy.stats import norm

    z2 = norm.ppf(CL) ** 2
    results = []
    _window_templates(edges[: BINS_PER_WINDOW + 1], masses[0])  # numba's compilation, not timed
    start = time.perf_counter()
    for i in indices:
        first = int(first_bins[i])  # window i covers spectrum bins first … first + BINS_PER_WINDOW − 1
        window_edges = edges[first: first + BINS_PER_WINDOW + 1]
        window_counts = counts[first: first + BINS_PER_WINDOW]
        results.append(_iminuit_window(window_edges, window_counts, masses[i], z2))
    elapsed = time.perf_counter() - start
    return np.array(results), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 windows, 20 iminuit windows")
    parser.add_argument("--hypotheses", type=int, default=None)
    parser.add_argument("--iminuit-windows", type=int, default=None)
    args = parser.parse_args()
    n_hypotheses = args.hypotheses or (500 if args.quick else 9788)
    n_peer = args.iminuit_windows or (20 if args.quick else 100)

    import diffana  # noqa: F401  (float64)

    edges, counts, masses = spectrum(n_hypotheses)
    windows, result, build, first, run = run_diffana(edges, counts, masses)
    fits, limits = result.fits, result.limits
    print(f"{n_hypotheses} hypotheses, windows of {BINS_PER_WINDOW} bins ±25σ (spectrum of {len(counts)} bins) (double CB + cubic Bernstein), 90% CL limits")
    print(f"diffana: build {build:.2f} s, first call {first:.1f} s (compile + run), run {run:.2f} s "
          f"({run / n_hypotheses * 1e3:.3f} ms per window)")
    print(f"  fits converged {int(np.sum(fits.converged))}/{n_hypotheses}, limits converged "
          f"{int(np.sum(limits.converged))}/{n_hypotheses}; max |S| {float(np.max(np.abs(fits.local_significance))):.2f}")

    indices = np.unique(np.linspace(0, n_hypotheses - 1, n_peer).round().astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer, elapsed = run_iminuit(edges, counts, masses, indices, np.asarray(windows.first_bin))
    per_window = elapsed / len(indices)
    extrapolated = per_window * n_hypotheses
    print(f"iminuit: {len(indices)} windows in {elapsed:.1f} s ({per_window * 1e3:.1f} ms per window), "
          f"extrapolated to {n_hypotheses}: {extrapolated:.0f} s")
    print(f"ratio (iminuit loop / diffana run): {extrapolated / run:.0f}x; "
          f"including diffana's compile: {extrapolated / first:.1f}x")

    ours = np.stack([np.asarray(fits.signal_yield)[indices], np.asarray(fits.yield_error)[indices],
                     np.asarray(fits.local_significance)[indices], np.asarray(limits.limit)[indices]], axis=1)
    yield_diff = np.abs(ours[:, 0] - peer[:, 0]) / peer[:, 1]
    error_diff = np.abs(ours[:, 1] / peer[:, 1] - 1)
    significance_diff = np.abs(ours[:, 2] - peer[:, 2])
    limit_diff = np.abs(ours[:, 3] / peer[:, 3] - 1)
    print(f"largest differences on the subset: yield {np.max(yield_diff):.2e} σ(ŝ), "
          f"yield error {np.max(error_diff):.2e} relative, significance {np.max(significance_diff):.2e}, "
          f"limit {np.max(limit_diff):.2e} relative")


if __name__ == "__main__":
    main()
