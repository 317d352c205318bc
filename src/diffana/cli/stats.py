"""``diffana cls`` and ``diffana limit``: pyhf-style statistics on a workspace file.

    diffana cls WORKSPACE.json --poi-value 1.0 --test-stat qtilde
        -> {"CLs_exp": [5 values, −2σ…+2σ], "CLs_obs": ...}    (as ``pyhf cls``)
    diffana cls WORKSPACE.json --calctype toybased --ntoys 2000 --seed 0
    diffana limit WORKSPACE.json --cl 0.90
        -> {"exp": [5 values, −2σ…+2σ], "obs": ...}
    diffana limit WORKSPACE.json --calctype toybased --ntoys 2000 --scan 0.5,5,10
        -> also "obs_error", "exp_error" (Monte Carlo) and the "scan"
    diffana cls BKG.json --patchset FILE [FILE ...] [--patch NAME ...]
        -> {"NAME": {"CLs_obs": ..., "CLs_exp": [5], "converged": bool}, ...}
    diffana limit BKG.json --cl 0.95 --patchset FILE [FILE ...] [--patch NAME ...]
        -> {"NAME": {"obs": ..., "exp": [5], "converged": bool, "warnings": [...]}, ...}

Both read a pyhf JSON workspace, pick a measurement (the first unless
``--measurement`` names one) and use asymptotic formulae (``cls`` also
pseudo-experiments with ``--calctype toybased``). With ``--patchset`` the
workspace is a background-only one and every patch of the pyhf patchset or plain
JSON-patch files is computed, harmonised into groups of one model structure, each
group in one compiled, vmapped call (:mod:`diffana.model.patchset`); asymptotics
only. Bad input (malformed JSON, a schema violation, a missing POI, a patch that
does not apply, …) is reported as one line with exit code 2.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from diffana.cli import CommandError

NORMSYS_CODES = ("code1", "code4")
HISTOSYS_CODES = ("code0", "code4p")


def _add_model_options(parser) -> None:
    parser.add_argument("workspace", metavar="WORKSPACE.json", help="pyhf JSON workspace")
    parser.add_argument(
        "--measurement", default=None, metavar="NAME",
        help="measurement to use (default: the first in the workspace, as pyhf)",
    )
    parser.add_argument(
        "--normsys-interp", default="code4", choices=NORMSYS_CODES,
        help="normsys interpolation code (default: code4, as pyhf)",
    )
    parser.add_argument(
        "--histosys-interp", default="code4p", choices=HISTOSYS_CODES,
        help="histosys interpolation code (default: code4p, as pyhf)",
    )
    parser.add_argument(
        "--patchset", nargs="+", default=None, metavar="FILE",
        help="treat WORKSPACE.json as background-only and compute every patch of these pyhf "
        "patchset or plain JSON-patch files (asymptotics only); output keyed by patch name",
    )
    parser.add_argument(
        "--patch", nargs="+", action="extend", default=None, metavar="NAME",
        help="with --patchset: only these patches (a plain JSON-patch file's name is its stem)",
    )


def register(subparsers) -> None:
    """Add the ``cls`` and ``limit`` sub-commands."""
    cls_parser = subparsers.add_parser(
        "cls",
        help="asymptotic CLs of a workspace at one POI value (like `pyhf cls`)",
        description="Asymptotic CLs (observed and the five expected values, −2σ…+2σ) "
        "for the hypothesis POI = --poi-value, printed as JSON.",
    )
    _add_model_options(cls_parser)
    cls_parser.add_argument("--poi-value", type=float, default=1.0,
                            help="tested POI value (default 1.0)")
    cls_parser.add_argument("--test-stat", default="qtilde", choices=("qtilde", "q", "q0"),
                            help="test statistic (default qtilde); q0 reports discovery p-values")
    cls_parser.add_argument("--calctype", default="asymptotics", choices=("asymptotics", "toybased"),
                            help="asymptotic formulae (default) or pseudo-experiments, as pyhf")
    cls_parser.add_argument("--ntoys", type=int, default=2000,
                            help="pseudo-experiments per hypothesis with --calctype toybased (default 2000)")
    cls_parser.add_argument("--seed", type=int, default=0,
                            help="random seed of the pseudo-experiments (default 0)")
    cls_parser.set_defaults(func=run_cls)

    limit_parser = subparsers.add_parser(
        "limit",
        help="CLs upper limits on the POI of a workspace (asymptotic or toy-based)",
        description="Observed and expected (−2σ…+2σ) CLs upper limits on the POI, "
        "printed as JSON.",
    )
    _add_model_options(limit_parser)
    limit_parser.add_argument("--cl", type=float, default=0.90,
                              help="confidence level (default 0.90)")
    limit_parser.add_argument("--test-stat", default="qtilde", choices=("qtilde", "q"),
                              help="test statistic (default qtilde)")
    limit_parser.add_argument("--calctype", default="asymptotics",
                              choices=("asymptotics", "toybased", "bayesian", "feldman-cousins"),
                              help="asymptotic CLs (default), toy-based CLs on a scan, a Bayesian "
                              "credibility limit (flat prior on the POI >= 0, nuisances marginalised) "
                              "or a Feldman-Cousins interval (Neyman construction by toys)")
    limit_parser.add_argument("--ntoys", type=int, default=2000,
                              help="pseudo-experiments per hypothesis and scan point with "
                              "--calctype toybased or feldman-cousins (default 2000)")
    limit_parser.add_argument("--method", default="importance", choices=("importance", "laplace", "quadrature"),
                              help="how --calctype bayesian integrates out the nuisance parameters "
                              "(default importance sampling)")
    limit_parser.add_argument("--seed", type=int, default=0,
                              help="random seed of the pseudo-experiments (default 0)")
    limit_parser.add_argument("--scan", default=None, metavar="START,STOP,N",
                              help="POI values tested with --calctype toybased, as numpy.linspace "
                              "arguments (default: 12 points from half the smallest to twice the "
                              "largest asymptotic limit)")
    limit_parser.add_argument("--both-starts", action="store_true",
                              help="asymptotic limits: fit each conditional fit from the suggested start and "
                              "from the previous root step's fit, keeping the lower minimum (for a limit "
                              "reported as a jump of CLs across the level)")
    limit_parser.set_defaults(func=run_limit)


def _load(args):
    """Workspace, model and observed data, with every input problem as a CommandError."""
    from diffana.model.model import InvalidModel
    from diffana.model.workspace import WorkspaceError, load_workspace

    try:
        workspace = load_workspace(args.workspace)
        model = workspace.model(
            args.measurement,
            normsys_interp=args.normsys_interp,
            histosys_interp=args.histosys_interp,
        )
        data = workspace.data(model)
    except (WorkspaceError, InvalidModel) as error:
        raise CommandError(str(error)) from None
    if model.config.poi_index is None:
        raise CommandError(f"{args.workspace}: the model has no parameter of interest")
    return workspace, model, data


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise CommandError(f"the {what} came out as {value}; the fit failed on this workspace")
    return value


# Up to this many models in one CLs call, its program is compiled for compile speed
# (programs.FAST_COMPILE: 0.8 s less to compile on the ATLAS eRJR likelihood, ~0.09 s
# more to run per model), beyond it for run speed (break-even ≈ 9 models).
FAST_COMPILE_MAX_MODELS = 4


def _stored_hypotest(args, model, data, hypotest=None, n_models: int = 1):
    """``hypotest(--poi-value, data, model)`` (default ``infer.hypotest``; the stacked
    one for patchsets, ``n_models`` members) through a stored program
    (``diffana.programs``): a repeated command on a model of the same structure
    skips tracing as well as compiling. A few models' CLs run in a fraction of a
    second, so their program is compiled for compile speed, a larger patchset's for
    run speed (:data:`FAST_COMPILE_MAX_MODELS`)."""
    from diffana import infer, programs

    few = n_models <= FAST_COMPILE_MAX_MODELS
    options = programs.FAST_COMPILE if few else programs.FAST_RUN
    hypotest = hypotest or infer.hypotest
    test_stat = args.test_stat

    def compute(model, poi_value, data):
        return hypotest(poi_value, data, model, test_stat=test_stat)

    name = f"cli-{hypotest.__name__}"
    return programs.call_with_model(name, compute, infer.HypotestResult, model, args.poi_value, data,
                                    settings=(test_stat,), compiler_options=options)


def _stored_upper_limit(args, model, data, upper_limit=None):
    """``upper_limit(data, model, --cl, --test-stat)`` through a stored program."""
    from diffana import infer, programs

    upper_limit = upper_limit or infer.upper_limit
    cl, test_stat, both_starts = args.cl, args.test_stat, bool(getattr(args, "both_starts", False))

    def compute(model, data):
        return upper_limit(data, model, cl=cl, test_stat=test_stat, both_starts=both_starts)

    name = f"cli-{upper_limit.__name__}"
    return programs.call_with_model(name, compute, infer.UpperLimitResult, model, data,
                                    settings=(cl, test_stat, both_starts))


def _warn_unconverged(result, args) -> None:
    if not bool(result.converged):
        print(f"diffana {args.command}: warning: not every fit converged; "
              "treat the numbers with care", file=sys.stderr)


def run_cls(args) -> int:
    """Print ``{"CLs_obs": …, "CLs_exp": [5]}`` for the tested POI value."""
    from diffana import infer

    if not math.isfinite(args.poi_value):
        raise CommandError(f"--poi-value must be a finite number, got {args.poi_value}")
    if _check_patchset_options(args):
        return _run_patchset_cls(args)
    _, model, data = _load(args)
    low, high = model.config.poi_bounds()
    if not low <= args.poi_value <= high:
        raise CommandError(
            f"--poi-value {args.poi_value} lies outside the bounds [{low}, {high}] "
            f"of the POI {model.config.poi_name!r}"
        )
    if args.calctype == "toybased":
        if args.ntoys < 1:
            raise CommandError(f"--ntoys must be positive, got {args.ntoys}")
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = infer.hypotest_toys(args.poi_value, data, model, key=args.seed, n_toys=args.ntoys,
                                         test_stat=args.test_stat)
        for warning in caught:
            print(f"diffana cls: warning: {warning.message}", file=sys.stderr)
    else:
        result = _stored_hypotest(args, model, data)
    _warn_unconverged(result, args)
    output = {
        "CLs_obs": _finite(result.cls_obs, "observed CLs"),
        "CLs_exp": [_finite(v, "expected CLs") for v in np.asarray(result.cls_exp)],
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def run_limit(args) -> int:
    """Print ``{"obs": …, "exp": [5]}``, the upper limits on the POI at ``--cl``
    (with ``--calctype toybased`` also their Monte Carlo errors and the scan)."""
    from diffana import infer

    if not 0.0 < args.cl < 1.0:
        raise CommandError(f"--cl must lie strictly between 0 and 1, got {args.cl}")
    if args.both_starts and args.calctype != "asymptotics":
        raise CommandError(f"--both-starts applies to asymptotic limits, not --calctype {args.calctype}")
    if _check_patchset_options(args):
        return _run_patchset_limit(args)
    _, model, data = _load(args)
    if args.calctype == "toybased":
        return _run_toy_limit(args, model, data)
    if args.calctype == "bayesian":
        return _run_bayesian_limit(args, model, data)
    if args.calctype == "feldman-cousins":
        return _run_feldman_cousins(args, model, data)
    result = _stored_upper_limit(args, model, data)
    for line in result.warnings():
        print(f"diffana limit: warning: {line}", file=sys.stderr)
    output = {
        "obs": _finite(result.observed, "observed limit"),
        "exp": [_finite(v, "expected limit") for v in result.expected],
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def _parse_scan(text):
    import numpy as np

    try:
        start, stop, n = text.split(",")
        scan = np.linspace(float(start), float(stop), int(n))
    except ValueError:
        raise CommandError(f"--scan must be START,STOP,N (e.g. 0.5,5,10), got {text!r}") from None
    if scan.size < 2 or not np.all(np.isfinite(scan)) or not np.all(np.diff(scan) > 0):
        raise CommandError(f"--scan {text} must give at least two increasing finite POI values")
    return scan


def _run_toy_limit(args, model, data) -> int:
    import warnings

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from diffana import infer

    if args.ntoys < 1:
        raise CommandError(f"--ntoys must be positive, got {args.ntoys}")
    scan = None if args.scan is None else _parse_scan(args.scan)
    if scan is not None:
        low, high = model.config.poi_bounds()
        if scan[0] < low or scan[-1] > high:
            raise CommandError(f"--scan [{scan[0]:g}, {scan[-1]:g}] leaves the bounds [{low:g}, {high:g}] "
                               f"of the POI {model.config.poi_name!r}")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeRemainingColumn(), console=_stderr_console(), transient=True)
    task = progress.add_task(f"toys ({args.ntoys} per point)", total=None)
    with warnings.catch_warnings(record=True) as caught, progress:
        warnings.simplefilter("always")
        result = infer.upper_limit_toys(
            data, model, cl=args.cl, scan=scan, key=args.seed, n_toys=args.ntoys, test_stat=args.test_stat,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for warning in caught:
        print(f"diffana limit: warning: {warning.message}", file=sys.stderr)
    _warn_unconverged(result, args)
    output = {
        "obs": _finite(result.observed, "observed limit (toys; see the warning)"),
        "exp": [_finite(v, "expected limit (toys; see the warning)") for v in result.expected],
        "obs_error": float(result.observed_error),
        "exp_error": [float(v) for v in result.expected_error],
        "scan": [float(v) for v in result.poi_values],
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def _print_caught(caught, args) -> None:
    for warning in caught:
        print(f"diffana {args.command}: warning: {warning.message}", file=sys.stderr)


def _run_bayesian_limit(args, model, data) -> int:
    """``{"obs": …, "obs_error": …}``: the Bayesian upper limit at credibility --cl
    and its numerical error (no expected limits: they would need toys)."""
    import warnings

    from diffana.infer.bayesian import bayesian_upper_limit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = bayesian_upper_limit(data, model, cl=args.cl, method=args.method, key=args.seed)
        except ValueError as error:  # e.g. quadrature with more than 3 free nuisances
            raise CommandError(str(error)) from None
    _print_caught(caught, args)
    output = {
        "obs": _finite(result.limit, "Bayesian limit (see the warning)"),
        "obs_error": float(result.limit_error),
        "method": result.method,
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def _run_feldman_cousins(args, model, data) -> int:
    """``{"obs": upper end, "interval": [lower, upper]}``: the Feldman–Cousins
    interval at --cl, by toys."""
    import warnings

    from diffana.infer.feldman_cousins import feldman_cousins_interval

    if args.ntoys < 1:
        raise CommandError(f"--ntoys must be positive, got {args.ntoys}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = feldman_cousins_interval(data, model, cl=args.cl, n_toys=args.ntoys, key=args.seed)
        except ValueError as error:  # e.g. too few toys for the confidence level
            raise CommandError(str(error)) from None
    _print_caught(caught, args)
    lower = _finite(result.lower, "lower end of the Feldman-Cousins interval (see the warning)")
    upper = _finite(result.upper, "upper end of the Feldman-Cousins interval (see the warning)")
    output = {"obs": upper, "interval": [lower, upper]}
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


# ------------------------------------------------------------------- patchsets


def _check_patchset_options(args) -> bool:
    """Whether this is a patchset run; option combinations it cannot honour are errors."""
    if args.patchset is None:
        if args.patch:
            raise CommandError("--patch selects patches of a --patchset; give the patchset file(s) too")
        return False
    if args.calctype != "asymptotics":
        raise CommandError("--patchset supports --calctype asymptotics only; for toys, apply one patch "
                           "(jsonpatch) and run on that workspace")
    return True


def _load_groups(args):
    """The patched workspaces harmonised into groups of one structure; every input
    problem as a CommandError."""
    from diffana.model import InvalidModel, PatchError, WorkspaceError, load_patchset

    try:
        patched = load_patchset(args.workspace, args.patchset, args.patch)
        groups = patched.stack(args.measurement, normsys_interp=args.normsys_interp,
                               histosys_interp=args.histosys_interp)
    except (PatchError, WorkspaceError, InvalidModel) as error:
        raise CommandError(str(error)) from None
    if groups[0].model.config.poi_index is None:
        raise CommandError(f"{args.workspace}: the patched models have no parameter of interest")
    print(f"diffana {args.command}: {len(patched.workspaces)} patches form {len(groups)} group(s) "
          "of one model structure", file=sys.stderr)
    return groups


def _check_poi_value_in_bounds(args, group) -> None:
    poi = group.model.config.poi_index
    lower, upper = group.model.config.lower[:, poi].tolist(), group.model.config.upper[:, poi].tolist()
    for name, low, high in zip(group.names, lower, upper):
        if not low <= args.poi_value <= high:
            raise CommandError(f"--poi-value {args.poi_value} lies outside the bounds [{low}, {high}] "
                               f"of the POI {group.model.config.poi_name!r} of patch {name!r}")


def _each_group(args, groups, compute):
    """Run ``compute(group)`` per group with progress on stderr; yields (group, result)."""
    import jax

    for number, group in enumerate(groups, start=1):
        print(f"diffana {args.command}: group {number}/{len(groups)}: {len(group)} workspaces, "
              f"{group.model.config.npars} parameters: compiling and fitting ...", file=sys.stderr)
        start = time.perf_counter()
        result = jax.block_until_ready(compute(group))
        print(f"diffana {args.command}: group {number}/{len(groups)} done in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        yield group, result


def _member_value(value, name: str, what: str, args):
    """A finite float, or None (JSON null) with a warning naming the patch."""
    value = float(value)
    if math.isfinite(value):
        return value
    print(f"diffana {args.command}: warning: {name}: the {what} came out as {value}; "
          "the fit failed on this workspace", file=sys.stderr)
    return None


def _run_patchset_cls(args) -> int:
    """Print ``{NAME: {"CLs_obs", "CLs_exp": [5], "converged"}}`` for every patch."""
    from diffana.infer.patchsets import stacked_hypotest, unstack

    groups = _load_groups(args)
    for group in groups:
        _check_poi_value_in_bounds(args, group)
    output = {}

    def compute(group):
        return _stored_hypotest(args, group.model, group.data, stacked_hypotest, n_models=len(group.names))

    for group, results in _each_group(args, groups, compute):
        for name, result in zip(group.names, unstack(results)):
            if not bool(result.converged):
                print(f"diffana cls: warning: {name}: not every fit converged; treat the numbers with care",
                      file=sys.stderr)
            output[name] = {
                "CLs_obs": _member_value(result.cls_obs, name, "observed CLs", args),
                "CLs_exp": [_member_value(v, name, "expected CLs", args) for v in result.cls_exp],
                "converged": bool(result.converged),
            }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def _run_patchset_limit(args) -> int:
    """Print ``{NAME: {"obs", "exp": [5], "converged", "warnings"}}`` for every patch."""
    from diffana.infer.patchsets import stacked_upper_limit, unstack

    groups = _load_groups(args)
    output = {}

    def compute(group):
        return _stored_upper_limit(args, group.model, group.data, stacked_upper_limit)

    for group, results in _each_group(args, groups, compute):
        for name, result in zip(group.names, unstack(results)):
            lines = result.warnings()  # as diffana limit on one workspace: unconverged or out-of-bounds curves
            for line in lines:
                print(f"diffana limit: warning: {name}: {line}", file=sys.stderr)
            output[name] = {
                "obs": _member_value(result.observed, name, "observed limit", args),
                "exp": [_member_value(v, name, "expected limit", args) for v in result.expected],
                "converged": bool(result.converged),
                "warnings": lines,
            }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0
