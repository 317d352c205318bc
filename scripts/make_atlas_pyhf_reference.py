"""pyhf reference numbers for the published ATLAS eRJR likelihood (/work/shared/data/atlas_erjr).

Reproduce the stored file (all 60 patches, two at a time; the timings are recorded
in the file, ~7 CPU-minutes per patch, most of it the limits):

    nice -n 10 python scripts/make_atlas_pyhf_reference.py --jobs 2

(``--jobs 1``, the default, computes one patch at a time.) Only the CLs steps
(``hypotest``, ``hypotest_tight``; ~10 CPU-seconds per patch), for patches without a
full entry:

    python scripts/make_atlas_pyhf_reference.py --cls-only --jobs 2
    python scripts/make_atlas_pyhf_reference.py --steps upper_limit_95   # limits only

A subset (mass points as in the patch file names, ``patch_C1N2_WZ_<point>.json``):

    python scripts/make_atlas_pyhf_reference.py 140p0_100p0 200p0_1p0

The output (``tests/data/atlas_erjr_pyhf_reference.json`` unless ``--output``) is
rewritten after every patch, so an interrupted run loses at most the patches in
progress; a rerun computes only what the file lacks (patches, or steps of a patch;
``--redo`` recomputes everything). ``--print-hypotests PATCH`` prints the two
hypotests of one patch, computed now, and writes nothing (tests/validation/test_atlas_published.py
compares them with the stored ones).

What is computed, per patch, with pyhf (numpy backend, default scipy/SLSQP optimizer):

* The workspace ``jsonpatch.apply_patch(bkg_only, patch)`` with ONE parameter fixed
  at 1: the shapesys (MC-statistics) gamma with the largest Poisson-constraint
  tau = (nominal / uncertainty)^2. On this likelihood that is the gamma of sample
  diboson3LISR in channel CRISR (uncertainty 0.001 on 435 events, tau = 1.9e11,
  width 2.3e-6): with it free, the likelihood is so ill-conditioned that its float64
  evaluation rounds off (lgamma(tau + 1) ~ 4.7e12) and SLSQP stops at the initial
  point reporting success. Fixing a parameter of width 2.3e-6 moves -2 ln L by an
  amount estimated here per patch (``gamma_fixed_shift_estimate``: g^2 / (4 tau),
  g the derivative of the main-measurement -2 ln L with respect to the gamma).
* ``hypotest``: asymptotic CLs at mu_SIG = 1, qtilde, observed and 5 expected.
* ``hypotest_tight``: the same with SLSQP's tolerance at 1e-10. pyhf's default
  tolerance leaves the expected CLs up to ~2e-4 (relative) away from the converged
  values on this likelihood (expected -2 sigma of 110p0_20p0: 9.0048e-7 at the
  default, 9.0031e-7 at 1e-10, 9.0032e-7 at 1e-12), more than the 1e-4 a
  comparison needs; pyhf's finite-difference gradients limit it to ~1e-5 below that.
* ``upper_limit_95``: 95% CL upper limits (CLs = 0.05), observed and 5 expected,
  with pyhf.infer.intervals.upper_limits.toms748_scan (rtol 1e-6, atol 1e-10) on a
  bracket inside the POI bounds [0, 10]. toms748_scan doubles the bracket's upper end
  while a CLs curve lies above 0.05 there, which raises in pyhf's fit-input
  validation once the tested mu leaves the POI bounds. A curve whose CLs at the POI
  upper bound still exceeds 0.05 is recorded as ``null`` with
  ``above_poi_bound: true``; the curves inside the bounds are then solved with
  scipy's toms748 exactly as toms748_scan does, but on [low, 10]. For information,
  such a patch also gets its OBSERVED limit with the POI bounds widened to
  [0, WIDENED_POI_UPPER] (``widened_poi_bounds``, same toms748 search on [10, 200]; this
  changes the free fit where the best-fit mu sits at 10, so it is not a reference
  for the bounded problem).
* ``fit_gamma_fixed``: -2 ln L at pyhf's free fit with the gamma fixed (scipy), with a
  Minuit cross-check of the same fit (``fit_gamma_fixed_minuit``).
* ``fit_gamma_free_scipy`` / ``fit_gamma_free_minuit``: the same free fit with the
  gamma free, as pyhf does by default, to document that it stops early: pyhf's
  reported success, iterations and -2 ln L.
* Wall time (and process CPU time, the machine being shared) of each step.

Any step whose scipy fit fails (pyhf raises FailedMinimization) is redone with
pyhf's Minuit optimizer, and the step records ``optimizer: "minuit"`` and why.
"""

from __future__ import annotations

import os

# Small arrays: one BLAS/OpenMP thread is faster, and the machine is shared. It also
# fixes the numbers: SLSQP with pyhf's finite-difference gradients follows a path that
# depends on rounding, and multi-threaded BLAS rounds differently (measured on patch
# 110p0_20p0: the default-tolerance expected CLs move by up to 1.2e-4 relative, 3e-6
# absolute, between 1 and 2 threads; the tolerance-1e-10 ones by up to 3e-5 relative).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jsonpatch  # noqa: E402
import numpy as np  # noqa: E402
import pyhf  # noqa: E402
import scipy  # noqa: E402
from scipy.optimize import toms748  # noqa: E402

DATA_DIR = Path("/work/shared/data/atlas_erjr")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "tests" / "data" / "atlas_erjr_pyhf_reference.json"

MU_TEST = 1.0
TEST_STAT = "qtilde"
CL = 0.95
LEVEL = 1.0 - CL
TIGHT_TOLERANCE = 1e-10  # SLSQP ftol of hypotest_tight
LIMIT_RTOL = 1e-6
LIMIT_ATOL = 1e-10
BRACKET_LOW = 0.1  # halved by toms748_scan while any CLs curve is below LEVEL there
WIDENED_POI_UPPER = 200.0
FIRST = ["140p0_100p0", "110p0_20p0"]
COMMAND = "nice -n 10 python scripts/make_atlas_pyhf_reference.py --jobs 2"
# pyhf logs every failed minimisation with the whole Minuit state (~1 MB per failed
# fit with 68 parameters); the failures are recorded in the output instead.
logging.getLogger("pyhf.optimize.mixins").setLevel(logging.CRITICAL)

CURVES = ["observed", "expected -2 sigma", "expected -1 sigma", "expected median",
          "expected +1 sigma", "expected +2 sigma"]


def patch_names(data_dir: Path = DATA_DIR) -> list[str]:
    return sorted(p.name[len("patch_C1N2_WZ_"):-len(".json")] for p in data_dir.glob("patch_C1N2_WZ_*.json"))


def load_workspace_spec(name: str, data_dir: Path = DATA_DIR) -> dict:
    bkg = json.loads((data_dir / "bkg_only.json").read_text())
    patch = json.loads((data_dir / f"patch_C1N2_WZ_{name}.json").read_text())
    return jsonpatch.apply_patch(bkg, patch)


def stiffest_shapesys(spec: dict) -> dict:
    """The shapesys modifier with the largest tau = (nominal / uncertainty)^2."""
    best = None
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            for modifier in sample["modifiers"]:
                if modifier["type"] != "shapesys":
                    continue
                for i, (nominal, sigma) in enumerate(zip(sample["data"], modifier["data"])):
                    tau = (nominal / sigma) ** 2 if sigma > 0 else float("inf")
                    if best is None or tau > best["tau"]:
                        best = {"modifier": modifier["name"], "bin": i, "channel": channel["name"],
                                "sample": sample["name"], "nominal": nominal, "uncertainty": sigma,
                                "tau": tau, "relative_width": sigma / nominal}
    if best is None:
        raise ValueError("no shapesys modifier in the workspace")
    return best


def model_and_data(spec: dict):
    ws = pyhf.Workspace(spec)
    model = ws.model()
    return model, ws.data(model)


def fixed_params_with_gamma(model, gamma: dict) -> list[bool]:
    fixed = list(model.config.suggested_fixed())
    index = model.config.par_slice(gamma["modifier"]).start + gamma["bin"]
    fixed[index] = True
    return fixed


def gamma_parameter_index(model, gamma: dict) -> int:
    return model.config.par_slice(gamma["modifier"]).start + gamma["bin"]


def set_optimizer(name: str, tolerance=None):
    """pyhf's numpy backend with its scipy (SLSQP; ``tolerance`` None is pyhf's default)
    or Minuit optimizer."""
    if name == "scipy":
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=tolerance))
    elif name == "minuit":
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer())
    else:
        raise ValueError(name)


class Timer:
    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = time.process_time() - self.cpu0


def with_fallback(step, tolerance=None):
    """Run ``step()`` with scipy; on FailedMinimization redo it with Minuit."""
    set_optimizer("scipy", tolerance)
    with Timer() as t:
        try:
            result = step()
            info = {"optimizer": "scipy"} if tolerance is None else {"optimizer": "scipy", "tolerance": tolerance}
        except pyhf.exceptions.FailedMinimization as err:
            scipy_error = str(err)
            set_optimizer("minuit")
            try:
                result = step()
                info = {"optimizer": "minuit", "scipy_failed": scipy_error}
            finally:
                set_optimizer("scipy")
    info.update(wall_s=t.wall_s, cpu_s=t.cpu_s)
    return result, info


def run_hypotest(model, data, fixed, tolerance=None):
    def step():
        return pyhf.infer.hypotest(MU_TEST, data, model, fixed_params=fixed, test_stat=TEST_STAT,
                                   return_expected_set=True)

    (obs, exp), info = with_fallback(step, tolerance)
    set_optimizer("scipy")
    return {"mu": MU_TEST, "test_stat": TEST_STAT, "cls_obs": float(obs), "cls_exp": [float(v) for v in exp], **info}


def _bounded_toms748_limits(model, data, fixed, low, high, curves=range(6), par_bounds=None):
    """toms748_scan's algorithm (same cache, brackets and toms748 arguments) for the
    CLs ``curves`` (0 observed, 1-5 expected -2...+2 sigma), without extending the
    bracket beyond ``high``: a curve whose CLs at ``high`` exceeds LEVEL gets ``None``."""
    cache = {}
    curves = list(curves)

    def values(poi):
        if poi not in cache:
            obs, exp = pyhf.infer.hypotest(poi, data, model, fixed_params=fixed, par_bounds=par_bounds,
                                           test_stat=TEST_STAT, return_expected_set=True)
            cache[poi] = np.array([float(obs)] + [float(v) for v in exp])
        return cache[poi]

    def f(poi, curve):
        return values(poi)[curve] - LEVEL

    while np.any(values(low)[curves] < LEVEL):
        low /= 2
    at_high = values(high)
    limits = []
    for curve in curves:
        if at_high[curve] > LEVEL:
            limits.append(None)
            continue
        ks = np.array(list(cache))
        vals = np.array([v[curve] - LEVEL for v in cache.values()])
        lower = ks[vals >= 0][np.argmin(vals[vals >= 0])]
        upper = ks[vals < 0][np.argmax(vals[vals < 0])]
        limits.append(float(toms748(f, lower, upper, args=(curve,), k=2, xtol=LIMIT_ATOL, rtol=LIMIT_RTOL)))
    return limits, len(cache)


def run_limits(model, data, fixed):
    poi = model.config.poi_index
    poi_bounds = [float(b) for b in model.config.suggested_bounds()[poi]]
    high = poi_bounds[1]

    def step():
        try:
            obs, exp, (scanned, _) = pyhf.infer.intervals.upper_limits.toms748_scan(
                data, model, BRACKET_LOW, high, level=LEVEL, atol=LIMIT_ATOL, rtol=LIMIT_RTOL,
                from_upper_limit_fn=True, fixed_params=fixed, test_stat=TEST_STAT)
            return [float(obs)] + [float(v) for v in exp], len(scanned), "pyhf toms748_scan"
        except ValueError as err:
            if "lies outside of its bounds" not in str(err):
                raise
            limits, n = _bounded_toms748_limits(model, data, fixed, BRACKET_LOW, high)
            return limits, n, "toms748_scan algorithm on a bracket ending at the POI upper bound"

    (limits, n_hypotests, method), info = with_fallback(step)
    above = [v is None for v in limits]
    result = {
        "cl": CL, "test_stat": TEST_STAT, "poi_bounds": poi_bounds, "bracket": [BRACKET_LOW, high],
        "rtol": LIMIT_RTOL, "atol": LIMIT_ATOL, "method": method,
        "observed": limits[0], "expected": limits[1:],
        "above_poi_bound": {"observed": above[0], "expected": above[1:]},
        "n_hypotests": n_hypotests, **info,
    }
    if above[0]:
        result["widened_poi_bounds"] = run_widened_limits(model, data, fixed, poi_bounds)
    return result


def run_widened_limits(model, data, fixed, poi_bounds):
    """The observed limit with the POI's upper bound raised to WIDENED_POI_UPPER
    (for information only), by the same toms748 search on [POI upper bound, WIDENED_POI_UPPER]."""
    poi = model.config.poi_index
    bounds = [list(b) for b in model.config.suggested_bounds()]
    bounds[poi] = [poi_bounds[0], WIDENED_POI_UPPER]

    def step():
        return _bounded_toms748_limits(model, data, fixed, poi_bounds[1], WIDENED_POI_UPPER, curves=[0],
                                       par_bounds=bounds)

    ([observed], n), info = with_fallback(step)
    set_optimizer("scipy")
    pars, twice_nll = pyhf.infer.mle.fit(data, model, fixed_params=fixed, par_bounds=bounds, return_fitted_val=True)
    return {"poi_bounds": bounds[poi], "observed": observed, "above_widened_bound": observed is None,
            "n_hypotests": n, "poi_hat": float(pars[poi]), "twice_nll_at_poi_hat": float(twice_nll),
            "note": "observed limit only; not the bounded problem's limit: widening the POI bounds changes "
                    "the free fit where the best-fit mu lies at the bound", **info}


def run_fit(model, data, fixed, optimizer: str, fallback: bool):
    """Free fit; record pyhf's reported status, -2 ln L and mu_hat (no exception)."""
    poi = model.config.poi_index

    def step():
        pars, twice_nll, res = pyhf.infer.mle.fit(data, model, fixed_params=fixed, return_fitted_val=True,
                                                  return_result_obj=True)
        return pars, twice_nll, res

    if fallback:
        (pars, twice_nll, res), info = with_fallback(step)
    else:
        set_optimizer(optimizer)
        with Timer() as t:
            try:
                pars, twice_nll, res = step()
                info = {"optimizer": optimizer}
            except pyhf.exceptions.FailedMinimization as err:  # record what pyhf reports
                res = err.result
                pars, twice_nll = None, float(res.fun)
                info = {"optimizer": optimizer, "raised": "FailedMinimization: " + str(err).splitlines()[0]}
        set_optimizer("scipy")
        info.update(wall_s=t.wall_s, cpu_s=t.cpu_s)
    out = {"twice_nll": float(twice_nll), "success": bool(res.success),
           "message": str(getattr(res, "message", "")), "nit": int(getattr(res, "nit", -1) or -1),
           "nfev": int(getattr(res, "nfev", -1) or -1),
           "poi_hat": None if pars is None else float(pars[poi]), **info}
    return out, pars


def gamma_shift_estimate(model, data, pars, gamma_index: int, tau: float) -> float:
    """Estimated drop of the minimum of -2 ln L when the fixed gamma is freed:
    g^2 / (4 tau + h) ~ g^2 / (4 tau), g = d(-2 ln L_main)/d gamma at the gamma-fixed
    best fit (central difference on the main measurement only; the constraint term
    has zero slope at gamma = 1 and curvature 2 tau)."""
    main = np.asarray(data[: model.config.nmaindata])
    step = 1e-5

    def twice_nll_main(g):
        p = np.array(pars, dtype=float)
        p[gamma_index] = g
        return -2.0 * float(np.sum(model.main_model.logpdf(main, p)))

    g = (twice_nll_main(1.0 + step) - twice_nll_main(1.0 - step)) / (2 * step)
    return g * g / (4.0 * tau)


CLS_STEPS = ("hypotest", "hypotest_tight")
STEPS = ["fit_gamma_fixed", "fit_gamma_fixed_minuit", "gamma_fixed_shift_estimate", "fit_gamma_free_scipy",
         "fit_gamma_free_minuit", "hypotest", "hypotest_tight", "upper_limit_95"]


def compute_patch(name: str, data_dir: Path = DATA_DIR, existing: dict | None = None,
                  steps: tuple = ()) -> dict:
    """Every step of ``steps`` (default STEPS) for one patch; with ``existing`` (a
    stored entry), only the steps it lacks."""
    steps = tuple(steps) or tuple(STEPS)
    spec = load_workspace_spec(name, data_dir)
    gamma = stiffest_shapesys(spec)
    model, data = model_and_data(spec)
    fixed = fixed_params_with_gamma(model, gamma)
    gamma_index = gamma_parameter_index(model, gamma)
    out = {"patch": name, "n_parameters": model.config.npars,
           "fixed_parameter": {"name": model.config.par_names[gamma_index], "tau": gamma["tau"]}}
    if existing:
        if existing["fixed_parameter"]["name"] != out["fixed_parameter"]["name"]:
            raise RuntimeError(f"{name}: stored entry fixed {existing['fixed_parameter']}, now {out['fixed_parameter']}")
        out.update({k: v for k, v in existing.items() if k in STEPS})
    missing = [step for step in steps if step not in out]
    pars_fixed = None
    if "fit_gamma_fixed" in missing or "gamma_fixed_shift_estimate" in missing:
        fit_fixed, pars_fixed = run_fit(model, data, fixed, "scipy", fallback=True)
        out.setdefault("fit_gamma_fixed", fit_fixed)
    if "fit_gamma_fixed_minuit" in missing:
        out["fit_gamma_fixed_minuit"], _ = run_fit(model, data, fixed, "minuit", fallback=False)
    if "gamma_fixed_shift_estimate" in missing:
        out["gamma_fixed_shift_estimate"] = gamma_shift_estimate(model, data, pars_fixed, gamma_index, gamma["tau"])
    if "fit_gamma_free_scipy" in missing:
        out["fit_gamma_free_scipy"], _ = run_fit(model, data, None, "scipy", fallback=False)
    if "fit_gamma_free_minuit" in missing:
        out["fit_gamma_free_minuit"], _ = run_fit(model, data, None, "minuit", fallback=False)
    if "hypotest" in missing:
        out["hypotest"] = run_hypotest(model, data, fixed)
    if "hypotest_tight" in missing:
        out["hypotest_tight"] = run_hypotest(model, data, fixed, tolerance=TIGHT_TOLERANCE)
    if "upper_limit_95" in missing:
        out["upper_limit_95"] = run_limits(model, data, fixed)
    done = [out[k] for k in STEPS if isinstance(out.get(k), dict)]
    widened = out.get("upper_limit_95", {}).get("widened_poi_bounds", {})
    out["wall_s"] = sum(v["wall_s"] for v in done) + widened.get("wall_s", 0.0)
    out["cpu_s"] = sum(v["cpu_s"] for v in done) + widened.get("cpu_s", 0.0)
    return out


def live_hypotests(name: str, data_dir: Path = DATA_DIR) -> dict:
    """``hypotest`` and ``hypotest_tight`` of one patch, computed now (for the test that
    checks the stored file against current pyhf; run it in a fresh process through
    ``--print-hypotests`` so that the thread settings above apply)."""
    spec = load_workspace_spec(name, data_dir)
    model, data = model_and_data(spec)
    gamma = stiffest_shapesys(spec)
    fixed = fixed_params_with_gamma(model, gamma)
    return {"patch": name, "pyhf": pyhf.__version__,
            "fixed_parameter": {"name": model.config.par_names[gamma_parameter_index(model, gamma)],
                                "tau": gamma["tau"]},
            "hypotest": run_hypotest(model, data, fixed),
            "hypotest_tight": run_hypotest(model, data, fixed, tolerance=TIGHT_TOLERANCE)}


def _compute_patch_job(args):
    return compute_patch(*args)


def metadata(spec: dict, gamma: dict) -> dict:
    import iminuit

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    model, _ = model_and_data(spec)
    return {
        "description": "pyhf reference for the ATLAS eRJR likelihood (/work/shared/data/atlas_erjr) with the "
                       "stiffest MC-statistics gamma fixed at 1; see scripts/make_atlas_pyhf_reference.py",
        "command": COMMAND,
        "versions": {"pyhf": pyhf.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "iminuit": iminuit.__version__, "python": platform.python_version()},
        "backend": "numpy", "default_optimizer": "scipy (SLSQP, pyhf defaults)",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": load, "platform": platform.platform(),
                    "note": "shared machine: wall times include contention; cpu_s is this process's CPU time"},
        "poi": model.config.poi_name,
        "poi_bounds": [float(b) for b in model.config.suggested_bounds()[model.config.poi_index]],
        "fixed_parameter": {
            "name": model.config.par_names[gamma_parameter_index(model, gamma)],
            "value": 1.0, "channel": gamma["channel"], "sample": gamma["sample"],
            "nominal": gamma["nominal"], "uncertainty": gamma["uncertainty"], "tau": gamma["tau"],
            "relative_width": gamma["relative_width"],
            "rule": "the shapesys parameter with the largest tau = (nominal / uncertainty)^2",
        },
        "settings": settings(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def settings() -> dict:
    return {"mu_test": MU_TEST, "test_stat": TEST_STAT, "cl": CL, "limit_rtol": LIMIT_RTOL,
            "limit_atol": LIMIT_ATOL, "bracket_low": BRACKET_LOW, "widened_poi_upper": WIDENED_POI_UPPER,
            "hypotest_tight_tolerance": TIGHT_TOLERANCE,
            "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
            "steps": {
                "hypotest": "CLs at mu_test, pyhf's default SLSQP tolerance",
                "hypotest_tight": "the same with SLSQP tolerance hypotest_tight_tolerance: pyhf's default "
                                  "tolerance leaves the expected CLs ~2e-4 (relative) from the minimum on this "
                                  "likelihood (e.g. expected -2 sigma of 110p0_20p0: 9.0048e-7 default, "
                                  "9.0031e-7 at 1e-10, 9.0032e-7 at 1e-12)",
                "upper_limit_95": "95% CL limits, default SLSQP tolerance, toms748 rtol limit_rtol"}}


def write_json(path: Path, content: dict):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patches", nargs="*", help="mass points (default: all patches in the data folder)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--redo", action="store_true", help="recompute patches already in the output")
    parser.add_argument("--print-hypotests", metavar="PATCH",
                        help="print hypotest and hypotest_tight of PATCH, computed now, as JSON; write nothing")
    parser.add_argument("--cls-only", action="store_true",
                        help=f"compute only the steps {CLS_STEPS} (patches lacking them)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, metavar="STEP",
                        help=f"compute only these steps (patches lacking them); choices {STEPS}")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes (each patch in one; the results are written by this process)")
    args = parser.parse_args(argv)
    if args.print_hypotests:
        print(json.dumps(live_hypotests(args.print_hypotests, args.data_dir)))
        return

    names = args.patches or patch_names(args.data_dir)
    # Those the tests run in CI first, so that an interrupted run has them.
    names = sorted(names, key=lambda name: (name not in FIRST, name))
    if args.output.exists():
        content = json.loads(args.output.read_text())
    else:
        spec = load_workspace_spec(names[0], args.data_dir)
        content = {"metadata": metadata(spec, stiffest_shapesys(spec)), "patches": {}}
    if content["metadata"]["versions"]["pyhf"] != pyhf.__version__:
        sys.exit(f"{args.output} was made with pyhf {content['metadata']['versions']['pyhf']}, "
                 f"this is {pyhf.__version__}: use another --output or remove it")
    content["metadata"]["command"] = COMMAND
    content["metadata"]["settings"] = settings()
    expected_fixed = content["metadata"]["fixed_parameter"]
    run_start = time.perf_counter()
    stored = {} if args.redo else content["patches"]
    steps = tuple(args.steps) if args.steps else CLS_STEPS if args.cls_only else tuple(STEPS)
    todo = [name for name in names if name not in stored or any(step not in stored[name] for step in steps)]
    for name in names:
        if name not in todo:
            print(f"{name}: already in {args.output}, skipped", flush=True)
    jobs = [(name, args.data_dir, stored.get(name), steps) for name in todo]
    if args.jobs > 1:
        import multiprocessing

        pool = multiprocessing.Pool(args.jobs, maxtasksperchild=1)
        results = pool.imap_unordered(_compute_patch_job, jobs)
    else:
        pool = None
        results = (compute_patch(*job) for job in jobs)
    for i, result in enumerate(results):
        name = result["patch"]
        if result["fixed_parameter"]["name"] != expected_fixed["name"]:
            raise RuntimeError(f"{name}: stiffest shapesys is {result['fixed_parameter']}, not {expected_fixed}")
        content["patches"][name] = result
        content["patches"] = dict(sorted(content["patches"].items()))
        content["metadata"]["total_wall_s"] = sum(p["wall_s"] for p in content["patches"].values())
        content["metadata"]["total_cpu_s"] = sum(p["cpu_s"] for p in content["patches"].values())
        write_json(args.output, content)
        line = (f"[{i + 1}/{len(todo)}] {name}: CLs_obs={result['hypotest']['cls_obs']:.6g} "
                f"hypotest {result['hypotest']['wall_s']:.1f}s")
        lim = result.get("upper_limit_95")
        if lim is not None:
            line += (f" limit_obs={lim['observed']} exp={[None if v is None else round(v, 5) for v in lim['expected']]}"
                     f" limits {lim['wall_s']:.1f}s ({lim['n_hypotests']} hypotests)")
        print(f"{line} total {result['wall_s']:.1f}s", flush=True)
    if pool is not None:
        pool.close()
        pool.join()
    elapsed = time.perf_counter() - run_start
    content["metadata"].setdefault("runs", []).append(
        {"patches": todo, "jobs": args.jobs, "wall_s": elapsed,
         "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    write_json(args.output, content)
    print(f"done in {elapsed:.0f} s -> {args.output}")


if __name__ == "__main__":
    main()
