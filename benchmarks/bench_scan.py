"""Mass-scan benchmark: observed and expected 90% CL limits for many signal
hypotheses in one compiled call, against pyhf on the same models.

Each model is a 20-bin spectrum in a mass-like variable m (0–10 GeV): a falling
background (exponential, ~2000 events in total) with a 5% uncorrelated per-bin
shapesys and a free normalisation (normfactor ``background_norm``), plus a Gaussian
signal peak at the hypothesised mass (resolution 0.1 GeV + 2% of the mass), whose
strength is the POI ``mu`` and which carries a 10% normsys ``signal_efficiency``.
The peak moves across the spectrum from 0.8 to 9.2 GeV over the models; the
observed spectrum is one fixed Poisson draw of the background (seeded), shared by
all hypotheses as in a real scan. Everything is deterministic.

diffana: ``jax.jit(jax.vmap(limits))`` over the stack of signal templates, the
model rebuilt inside from the (traced) templates; the whole-scan compile time is
measured separately (ahead-of-time ``lower().compile()``) from the run time.

pyhf 0.7.6 (numpy backend, SLSQP): the same models, the limits found by pyhf's own
TOMS748 root finder (``pyhf.infer.intervals.upper_limits.toms748_scan``) at the
same level 1 − CL (``upper_limit(scan=None)`` would ignore ``level``) and relative
tolerance 1e-6, on an evenly spaced subset of models; its time is extrapolated
linearly to the full scan.

Prints: both times, the ratio, and the largest relative difference between the two
sets of limits on the subset.

    python benchmarks/bench_scan.py               # 500 models, 5 pyhf models
    python benchmarks/bench_scan.py --quick       # 50 models, 1 pyhf model
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

N_BINS = 20
MASS_RANGE_GEV = (0.0, 10.0)
BACKGROUND_EVENTS = 2000.0
BACKGROUND_SLOPE_GEV = 3.0
SIGNAL_EVENTS = 60.0
SHAPESYS_FRACTION = 0.05
SIGNAL_NORMSYS = 0.10
DATA_SEED = 20261121


def bin_edges_gev() -> np.ndarray:
    """Bin edges of the mass-like variable, GeV."""
    return np.linspace(*MASS_RANGE_GEV, N_BINS + 1)


def background_template() -> np.ndarray:
    """Expected background events per bin: exponential in m, slope 3 GeV."""
    from scipy.stats import expon

    edges = bin_edges_gev()
    cdf = expon.cdf(edges, scale=BACKGROUND_SLOPE_GEV)
    shape = np.diff(cdf) / (cdf[-1] - cdf[0])
    return BACKGROUND_EVENTS * shape


def signal_masses_gev(n_models: int) -> np.ndarray:
    """Hypothesised signal masses, GeV, evenly spaced inside the spectrum."""
    return np.linspace(0.8, 9.2, n_models)


def signal_templates(n_models: int) -> np.ndarray:
    """Expected signal events per bin (mu = 1), shape (n_models, N_BINS): a Gaussian
    peak at each mass with resolution 0.1 GeV + 2% of m, binned exactly; the
    floor of 1e-3 events keeps every template strictly positive."""
    from scipy.stats import norm

    edges = bin_edges_gev()
    masses = signal_masses_gev(n_models)[:, None]
    resolution = 0.1 + 0.02 * masses
    fractions = np.diff(norm.cdf(edges[None, :], loc=masses, scale=resolution), axis=1)
    return SIGNAL_EVENTS * fractions + 1e-3


def observed_counts() -> np.ndarray:
    """The observed spectrum: one seeded Poisson draw of the background, events."""
    return np.random.default_rng(DATA_SEED).poisson(background_template()).astype(float)


def model_spec(signal, background=None) -> dict:
    """The pyhf model spec of one mass hypothesis (signal may be a JAX array)."""
    background = background_template() if background is None else background
    return {
        "channels": [
            {
                "name": "spectrum",
                "samples": [
                    {
                        "name": "signal",
                        "data": signal,
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "signal_efficiency", "type": "normsys",
                             "data": {"hi": 1.0 + SIGNAL_NORMSYS, "lo": 1.0 - SIGNAL_NORMSYS}},
                        ],
                    },
                    {
                        "name": "background",
                        "data": background,
                        "modifiers": [
                            {"name": "background_norm", "type": "normfactor", "data": None},
                            {"name": "background_uncorrelated", "type": "shapesys",
                             "data": SHAPESYS_FRACTION * np.asarray(background)},
                        ],
                    },
                ],
            }
        ]
    }


# ------------------------------------------------------------------------ diffana


def diffana_scan(signals: np.ndarray, cl: float):
    """Limits for every mass with one vmapped, jitted call.

    Returns (observed (n,), expected (n, 5), converged (n,), compile_s, run_s)."""
    import jax
    import jax.numpy as jnp

    import diffana  # noqa: F401  (float64)
    from diffana import infer
    from diffana.model import Model

    background = jnp.asarray(background_template())
    observed = jnp.asarray(observed_counts())

    def limits(signal):
        model = Model.from_spec(model_spec(signal, background), poi_name="mu")
        data = jnp.concatenate([observed, model.config.auxdata])
        result = infer.upper_limit(data, model, cl=cl)
        return result.observed, result.expected, result.converged

    scan = jax.jit(jax.vmap(limits))
    signals = jnp.asarray(signals)
    start = time.perf_counter()
    compiled = scan.lower(signals).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    observed_limits, expected_limits, converged = jax.block_until_ready(compiled(signals))
    run_s = time.perf_counter() - start
    return (np.asarray(observed_limits), np.asarray(expected_limits), np.asarray(converged),
            compile_s, run_s)


# --------------------------------------------------------------------------- pyhf


def pyhf_limits(signal: np.ndarray, cl: float, tolerance: float | None):
    """pyhf's observed and expected limits for one model (TOMS748 at level 1 − cl)."""
    import pyhf
    from pyhf.infer.intervals.upper_limits import toms748_scan

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=tolerance))
    spec = model_spec(signal.tolist())
    spec["channels"][0]["samples"][1]["modifiers"][1]["data"] = (
        SHAPESYS_FRACTION * background_template()).tolist()
    spec["channels"][0]["samples"][1]["data"] = background_template().tolist()
    model = pyhf.Model(spec, poi_name="mu")
    data = observed_counts().tolist() + model.config.auxdata
    low, high = model.config.suggested_bounds()[model.config.poi_index]
    # pyhf's CLs at exactly mu = 0 is 0/0 (NaN) for some of these models and
    # TOMS748 refuses a NaN end point; CLs(1e-4) is ~1, so the bracket still holds
    low = max(low, 1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed, expected = toms748_scan(data, model, low, high, level=1.0 - cl,
                                          rtol=1e-6, test_stat="qtilde")
    return float(observed), np.asarray(expected, float).ravel()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-models", type=int, default=500, help="mass hypotheses (default 500)")
    parser.add_argument("--pyhf-subset", type=int, default=5,
                        help="models also run through pyhf, evenly spaced (default 5)")
    parser.add_argument("--cl", type=float, default=0.90, help="confidence level (default 0.90)")
    parser.add_argument("--pyhf-tolerance", type=float, default=1e-10,
                        help="SLSQP tolerance for pyhf's fits (default 1e-10; pyhf's own "
                        "default stops early enough to move limits by ~1e-4)")
    parser.add_argument("--quick", action="store_true",
                        help="small run: 50 models, 1 pyhf model (well under 2 minutes)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_models, args.pyhf_subset = 50, 1
    if args.n_models < 1 or not 0 <= args.pyhf_subset <= args.n_models:
        parser.error("need --n-models >= 1 and 0 <= --pyhf-subset <= --n-models")

    signals = signal_templates(args.n_models)
    masses = signal_masses_gev(args.n_models)
    print(f"mass scan: {args.n_models} models x {N_BINS} bins, {args.cl:.0%} CL limits "
          f"(observed + expected ±1σ/±2σ), masses {masses[0]:.2f}–{masses[-1]:.2f} GeV")

    observed, expected, converged, compile_s, run_s = diffana_scan(signals, args.cl)
    print(f"diffana: compile {compile_s:.1f} s (whole scan, once); run {run_s:.3f} s "
          f"for {args.n_models} models ({1e3 * run_s / args.n_models:.2f} ms/model); "
          f"{int(converged.sum())}/{args.n_models} converged")

    report = {"n_models": args.n_models, "cl": args.cl, "diffana_compile_s": compile_s,
              "diffana_run_s": run_s, "diffana_converged": int(converged.sum())}
    if args.pyhf_subset:
        subset = np.unique(np.linspace(0, args.n_models - 1, args.pyhf_subset).round().astype(int))
        start = time.perf_counter()
        reference = [pyhf_limits(signals[i], args.cl, args.pyhf_tolerance) for i in subset]
        pyhf_s = time.perf_counter() - start
        pyhf_total = pyhf_s / len(subset) * args.n_models
        ours = np.concatenate([observed[subset, None], expected[subset]], axis=1)
        theirs = np.array([[obs, *exp] for obs, exp in reference])
        difference = float(np.max(np.abs(ours / theirs - 1.0)))
        ratio = pyhf_total / run_s
        print(f"pyhf:    {pyhf_s:.1f} s for {len(subset)} models "
              f"({pyhf_s / len(subset):.1f} s/model) -> {pyhf_total:.0f} s extrapolated to "
              f"{args.n_models}")
        print(f"speed-up (pyhf extrapolated / diffana run): {ratio:.0f}x "
              f"(including diffana's compile: {pyhf_total / (run_s + compile_s):.0f}x)")
        print(f"largest relative difference of the limits on the {len(subset)} shared models: "
              f"{difference:.2e}")
        for row, i in enumerate(subset):
            print(f"  m = {masses[i]:.2f} GeV: diffana obs {ours[row, 0]:.5f} "
                  f"exp[median] {ours[row, 3]:.5f} | pyhf obs {theirs[row, 0]:.5f} "
                  f"exp[median] {theirs[row, 3]:.5f}")
        report.update(pyhf_subset=len(subset), pyhf_s=pyhf_s, pyhf_extrapolated_s=pyhf_total,
                      ratio=ratio, largest_relative_difference=difference)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
