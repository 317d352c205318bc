"""Toy-based CLs: diffana's vmapped pseudo-experiments against pyhf's ToyCalculator.

The model is a 5-bin search: a Gaussian signal (POI ``mu``) over a flat background
of 50 events per bin with a 10% uncorrelated shapesys per bin (Poisson
constraints, so the auxiliary data are sampled too) and a 5% signal normsys. The
observed data are the background expectation. Both tools compute the toy-based
q̃_μ CLs at μ = 1 (observed and the five expected values) with ``--toys``
pseudo-experiments per hypothesis.

diffana: ``infer.hypotest_toys`` — all toys and their fits in one compiled call;
the compile time is measured separately (first call) from the run time (second
call, different seed). pyhf 0.7.6, numpy backend: ``pyhf.infer.hypotest(...,
calctype="toybased")``, which fits one toy at a time in Python, on
``--pyhf-toys`` toys; its time is linear in the number of toys and extrapolated.

Prints both times, the ratio, and the two CLs sets with diffana's Monte Carlo
errors (the two ensembles are independent, so they agree only within those).

    python benchmarks/bench_toys.py              # 10,000 toys; pyhf on 500, extrapolated
    python benchmarks/bench_toys.py --quick      # 2,000 toys; pyhf on 100
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

N_BINS = 5
BACKGROUND_PER_BIN = 50.0
SHAPESYS_FRACTION = 0.10


def workspace_spec():
    x = np.arange(N_BINS)
    signal = 12.0 * np.exp(-0.5 * ((x - 2.0) / 1.0) ** 2)
    background = np.full(N_BINS, BACKGROUND_PER_BIN)
    return {"channels": [{"name": "search", "samples": [
        {"name": "signal", "data": signal.tolist(), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "signal_efficiency", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
        {"name": "background", "data": background.tolist(), "modifiers": [
            {"name": "background_uncorrelated", "type": "shapesys",
             "data": (SHAPESYS_FRACTION * background).tolist()}]}]}]}, background


def run_diffana(n_toys):
    import jax.numpy as jnp

    import diffana  # noqa: F401  (float64)
    from diffana import infer
    from diffana.model import Model

    spec, background = workspace_spec()
    model = Model.from_spec(spec, poi_name="mu")
    data = jnp.concatenate([jnp.asarray(background), model.config.auxdata])
    start = time.perf_counter()
    infer.hypotest_toys(1.0, data, model, key=1, n_toys=n_toys).cls_obs.block_until_ready()
    compile_and_run = time.perf_counter() - start
    start = time.perf_counter()
    result = infer.hypotest_toys(1.0, data, model, key=2, n_toys=n_toys)
    result.cls_obs.block_until_ready()
    run = time.perf_counter() - start
    return run, compile_and_run - run, result


def run_pyhf(n_toys):
    import pyhf
    from pyhf.tensor.numpy_backend import numpy_backend

    # pyhf 0.7.6 calls numpy.percentile(interpolation=...), removed in numpy 2.
    numpy_backend.percentile = (
        lambda self, t, q, axis=None, interpolation="linear": np.percentile(t, q, axis=axis, method=interpolation)
    )
    pyhf.set_backend("numpy")
    spec, background = workspace_spec()
    model = pyhf.Model(spec, poi_name="mu")
    data = background.tolist() + model.config.auxdata
    np.random.seed(0)
    start = time.perf_counter()
    obs, exp = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", calctype="toybased",
                                   ntoys=n_toys, return_expected_set=True, track_progress=False)
    return time.perf_counter() - start, float(obs), np.asarray(exp, float)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toys", type=int, default=10000, help="toys per hypothesis for diffana")
    parser.add_argument("--pyhf-toys", type=int, default=500, help="toys per hypothesis for pyhf (extrapolated)")
    parser.add_argument("--quick", action="store_true", help="2000 diffana toys, 100 pyhf toys")
    args = parser.parse_args(argv)
    if args.quick:
        args.toys, args.pyhf_toys = 2000, 100
    warnings.simplefilter("ignore")

    run, compile_time, result = run_diffana(args.toys)
    pyhf_time, pyhf_obs, pyhf_exp = run_pyhf(args.pyhf_toys)
    pyhf_extrapolated = pyhf_time * args.toys / args.pyhf_toys

    print(f"model: {N_BINS} bins, shapesys {SHAPESYS_FRACTION:.0%} per bin, signal normsys; q~mu CLs at mu = 1")
    print(f"diffana: {args.toys} toys per hypothesis in {run:.2f} s (compile {compile_time:.1f} s, stated apart)")
    print(f"pyhf:    {args.pyhf_toys} toys in {pyhf_time:.1f} s -> {pyhf_extrapolated:.1f} s for {args.toys} (linear)")
    print(f"speed-up: {pyhf_extrapolated / run:.0f}x (run time); "
          f"{pyhf_extrapolated / (run + compile_time):.0f}x including diffana's compile")
    print(f"CLs_obs  diffana {float(result.cls_obs):.4f} +- {float(result.cls_obs_error):.4f}   pyhf {pyhf_obs:.4f}")
    print("CLs_exp  diffana " + " ".join(f"{v:.4f}" for v in np.asarray(result.cls_exp)))
    print("         +-      " + " ".join(f"{v:.4f}" for v in np.asarray(result.cls_exp_error)))
    print("         pyhf    " + " ".join(f"{v:.4f}" for v in pyhf_exp))
    print(f"failed toy fits: diffana {int(result.n_failed_fits)}")


if __name__ == "__main__":
    main()
