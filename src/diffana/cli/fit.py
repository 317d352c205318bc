"""``diffana fit``: the maximum-likelihood fit of a workspace, and how good it is.

    diffana fit WORKSPACE.json
        -> {"free": {"twice_nll", "converged", "iterations", "bestfit": {label: value}}, ...}
    diffana fit WORKSPACE.json --poi-value 1.0       # also the fit with the POI fixed
    diffana fit WORKSPACE.json --compare-pyhf        # also pyhf's fits of the same model

``twice_nll`` is −2 ln L at the fitted point, normalised as pyhf's
``pyhf.infer.mle.twice_nll`` (dimensionless), so the numbers of both tools compare
directly. On some published likelihoods pyhf's default optimizer (scipy's SLSQP)
stops near its starting point and reports success; ``--compare-pyhf`` shows, for
pyhf's default optimizer and for Minuit (if iminuit is installed), pyhf's reported
success, its fitted parameters, −2 ln L at pyhf's fitted point as pyhf computes it
and as diffana computes it (the same likelihood, up to float64 rounding: the tools
differ in where their optimizers stop), and how far above diffana's minimum that
point lies. docs/fit_command.md shows it on a published ATLAS likelihood.

Bad input is reported as one line with exit code 2, as in ``diffana cls``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys

from diffana.cli import CommandError
from diffana.cli.stats import _add_model_options, _load

# pyhf's optimizers compared by --compare-pyhf: (name in the output, pyhf backend name).
PYHF_OPTIMIZERS = (("scipy", "scipy"), ("minuit", "minuit"))


def register(subparsers) -> None:
    """Add the ``fit`` sub-command."""
    parser = subparsers.add_parser(
        "fit",
        help="maximum-likelihood fit of a workspace: -2 ln L, convergence, parameters (optionally vs pyhf)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(parser)
    for action in parser._actions:
        if action.dest in ("patchset", "patch"):  # shared with cls/limit; refused by a fit
            action.help = argparse.SUPPRESS
    parser.add_argument("--poi-value", type=float, default=None,
                        help="also fit with the POI fixed at this value (default: only the free fit)")
    parser.add_argument("--compare-pyhf", action="store_true",
                        help="also fit with pyhf (default optimizer, and Minuit if iminuit is installed)")
    parser.set_defaults(func=run_fit)


def run_fit(args) -> int:
    """Print the fits as JSON: ``free`` and, with ``--poi-value``, ``fixed_poi``."""
    _check_options(args)
    workspace, model, data = _load(args)
    if args.poi_value is not None:
        _check_poi_value(model, args.poi_value)
    output = {
        "workspace": str(args.workspace),
        "measurement": workspace.get_measurement(args.measurement)["name"],
        "poi": model.config.poi_name,
        "free": _diffana_fit(model, data, None),
    }
    if args.poi_value is not None:
        output["fixed_poi"] = {"poi_value": args.poi_value, **_diffana_fit(model, data, args.poi_value)}
    fits = [output[key] for key in ("free", "fixed_poi") if key in output]
    if args.compare_pyhf:
        comparison = PyhfComparison(args, workspace, model, data, output["measurement"])
        for fit in fits:
            fit["pyhf"] = comparison.fits(fit.get("poi_value"), fit["twice_nll"])
    for key, fit in zip(("free", "fixed-POI"), fits):
        if not fit["converged"]:
            print(f"diffana fit: warning: the {key} fit did not converge; treat its numbers with care",
                  file=sys.stderr)
    print(json.dumps(output, indent=4))  # not sorted: parameters stay in the model's order
    return 0


def _check_options(args) -> None:
    """Option problems that need no workspace, as CommandErrors."""
    # The shared model options may offer --patchset/--patch (cls, limit); a fit
    # takes one workspace, and ignoring them silently would fit the wrong model.
    if getattr(args, "patchset", None) is not None or getattr(args, "patch", None):
        raise CommandError("diffana fit takes one workspace, not --patchset/--patch; apply the patch "
                           "(jsonpatch) and fit the patched workspace")
    if args.poi_value is not None and not math.isfinite(args.poi_value):
        raise CommandError(f"--poi-value must be a finite number, got {args.poi_value}")
    # Fail before the slow diffana fits, not after them.
    if args.compare_pyhf and importlib.util.find_spec("pyhf") is None:
        raise CommandError("--compare-pyhf needs pyhf, which is not installed (pip install pyhf)")


def _check_poi_value(model, value: float) -> None:
    low, high = model.config.poi_bounds()
    if not low <= value <= high:
        raise CommandError(f"--poi-value {value} lies outside the bounds [{low}, {high}] "
                           f"of the POI {model.config.poi_name!r}")


def _diffana_fit(model, data, poi_value: float | None) -> dict:
    """diffana's fit (free when ``poi_value`` is None): −2 ln L (dimensionless),
    convergence, Newton iterations and the fitted parameters by pyhf label."""
    from diffana import infer

    if poi_value is None:
        result = infer.fit(data, model)
    else:
        result = infer.fixed_poi_fit(poi_value, data, model)
    twice_nll = float(result.twice_nll)
    if not math.isfinite(twice_nll):
        raise CommandError(f"-2 ln L came out as {twice_nll}; the fit failed on this workspace")
    return {
        "twice_nll": twice_nll,
        "converged": bool(result.converged),
        "iterations": int(result.iterations),
        "bestfit": _by_label(model.config.par_names, result.bestfit),
    }


def _by_label(names, values) -> dict:
    """``{label: value}``; a non-finite value becomes ``null`` (JSON has no NaN)."""
    return {name: _number(value) for name, value in zip(names, [float(v) for v in values])}


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class PyhfComparison:
    """pyhf's fits of the same workspace, measurement and interpolation codes, and
    diffana's −2 ln L at pyhf's fitted points."""

    def __init__(self, args, workspace, model, data, measurement: str):
        import equinox as eqx
        import pyhf

        self.model, self.data = model, data
        try:
            pyhf_workspace = pyhf.Workspace(workspace.to_dict())
            self.pyhf_model = pyhf_workspace.model(
                measurement_name=measurement,  # named, so pyhf does not warn that it picks the first
                modifier_settings={"normsys": {"interpcode": args.normsys_interp},
                                   "histosys": {"interpcode": args.histosys_interp}},
            )
            self.pyhf_data = pyhf_workspace.data(self.pyhf_model)
        except Exception as error:  # pyhf's own exceptions have no common base
            raise CommandError(f"pyhf cannot build the model: {error}") from None
        # pyhf orders parameters as diffana does today; map by label so that a
        # difference in order could never pair up the wrong parameters.
        index = {name: i for i, name in enumerate(model.config.par_names)}
        pyhf_names = list(self.pyhf_model.config.par_names)
        if sorted(pyhf_names) != sorted(index):
            raise CommandError("pyhf and diffana name the model's parameters differently; cannot compare")
        self.pyhf_names = pyhf_names
        self.order = [index[name] for name in pyhf_names]
        # One compiled −2 ln L for every evaluation (eager evaluation of a large
        # model runs op by op, slower than compiling it once).
        self._diffana_twice_nll = eqx.filter_jit(lambda m, pars, d: m.twice_nll(pars, d))

    def fits(self, poi_value: float | None, diffana_twice_nll: float) -> dict:
        """One entry per pyhf optimizer (``{"skipped": why}`` when unavailable)."""
        return {name: self._fit_with(backend_name, poi_value, diffana_twice_nll)
                for name, backend_name in PYHF_OPTIMIZERS}

    def _fit_with(self, optimizer: str, poi_value: float | None, diffana_twice_nll: float) -> dict:
        if optimizer == "minuit" and importlib.util.find_spec("iminuit") is None:
            return {"skipped": "iminuit is not installed"}
        try:
            pars, result = _run_pyhf_fit(optimizer, self.pyhf_model, self.pyhf_data, poi_value)
        except Exception as error:  # report, do not abort: the diffana fit still stands
            return {"error": f"{type(error).__name__}: {error}"}
        if len(pars) != len(self.pyhf_names):
            return {"error": f"pyhf returned {len(pars)} parameters for {len(self.pyhf_names)}"}
        return self._describe(pars, result, optimizer, diffana_twice_nll)

    def _describe(self, pars, result, optimizer, diffana_twice_nll) -> dict:
        import numpy as np
        import pyhf

        pyhf_twice_nll = _number(np.ravel(pyhf.infer.mle.twice_nll(pars, self.pyhf_data, self.pyhf_model))[0])
        diffana_pars = np.empty(len(pars))
        diffana_pars[self.order] = pars
        at_pyhf_point = _number(self._diffana_twice_nll(self.model, diffana_pars, self.data))
        entry = {
            "optimizer": optimizer,
            "success": bool(result.success),
            "message": str(getattr(result, "message", "")),
            "function_calls": int(getattr(result, "nfev", -1)),
            "twice_nll": pyhf_twice_nll,
            "diffana_twice_nll_at_pyhf_bestfit": at_pyhf_point,
            # How far above diffana's minimum pyhf stopped (> 0: higher), both points
            # evaluated by diffana, so neither tool's float64 rounding of −2 ln L
            # enters (pyhf's moves in steps of 2⁻⁹ on likelihoods with ~10¹¹ counts).
            "twice_nll_above_diffana_minimum": None if at_pyhf_point is None else at_pyhf_point - diffana_twice_nll,
            "bestfit": _by_label(self.pyhf_names, pars),
        }
        if getattr(result, "minuit", None) is not None:
            entry["minuit_fmin"] = _minuit_fmin(result.minuit.fmin)
        return entry


def _minuit_fmin(fmin) -> dict:
    """Minuit's verdict on its minimum. pyhf's message is written after MIGRAD,
    its success flag after HESSE, so a minimum HESSE invalidates reads
    "terminated successfully" with success false; these flags say why."""
    flags = ("is_valid", "has_accurate_covar", "has_posdef_covar", "has_made_posdef_covar",
             "hesse_failed", "is_above_max_edm", "has_reached_call_limit")
    return {"edm": _number(fmin.edm), **{flag: bool(getattr(fmin, flag)) for flag in flags}}


def _run_pyhf_fit(optimizer: str, pyhf_model, pyhf_data, poi_value):
    """pyhf's fit with ``optimizer``'s default settings on the numpy backend.
    Returns (fitted parameters in pyhf's order, pyhf's result object with
    ``success``, ``message``, ``nfev``); a fit pyhf calls failed still returns
    where it stopped."""
    import logging

    import numpy as np
    import pyhf

    previous_backend = pyhf.get_backend()
    # pyhf logs a failed minimisation with a traceback at ERROR level; the
    # failure is reported in the JSON instead.
    pyhf_logger = logging.getLogger("pyhf")
    previous_level = pyhf_logger.level
    pyhf_logger.setLevel(logging.CRITICAL)
    try:
        pyhf.set_backend("numpy", optimizer)
        kwargs = {"return_result_obj": True}
        try:
            if poi_value is None:
                pars, result = pyhf.infer.mle.fit(pyhf_data, pyhf_model, **kwargs)
            else:
                pars, result = pyhf.infer.mle.fixed_poi_fit(poi_value, pyhf_data, pyhf_model, **kwargs)
        except pyhf.exceptions.FailedMinimization as failure:
            result = failure.result
            pars = result.x
        return np.asarray(pars, float), result
    finally:
        pyhf.set_backend(*previous_backend)
        pyhf_logger.setLevel(previous_level)
