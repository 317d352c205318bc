"""``diffana cls`` and ``diffana limit``: pyhf-style statistics on a workspace file.

    diffana cls WORKSPACE.json --poi-value 1.0 --test-stat qtilde
        -> {"CLs_exp": [5 values, −2σ…+2σ], "CLs_obs": ...}    (as ``pyhf cls``)
    diffana cls WORKSPACE.json --calctype toybased --ntoys 2000 --seed 0
    diffana limit WORKSPACE.json --cl 0.90
        -> {"exp": [5 values, −2σ…+2σ], "obs": ...}

Both read a pyhf JSON workspace, pick a measurement (the first unless
``--measurement`` names one) and use asymptotic formulae (``cls`` also
pseudo-experiments with ``--calctype toybased``). Bad input (malformed
JSON, a schema violation, a missing POI, …) is reported as one line with exit
code 2.
"""

from __future__ import annotations

import json
import math
import sys

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
        help="asymptotic CLs upper limits on the POI of a workspace",
        description="Observed and expected (−2σ…+2σ) CLs upper limits on the POI, "
        "printed as JSON.",
    )
    _add_model_options(limit_parser)
    limit_parser.add_argument("--cl", type=float, default=0.90,
                              help="confidence level (default 0.90)")
    limit_parser.add_argument("--test-stat", default="qtilde", choices=("qtilde", "q"),
                              help="test statistic (default qtilde)")
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


def _warn_unconverged(result, args) -> None:
    if not bool(result.converged):
        print(f"diffana {args.command}: warning: not every fit converged; "
              "treat the numbers with care", file=sys.stderr)


def run_cls(args) -> int:
    """Print ``{"CLs_obs": …, "CLs_exp": [5]}`` for the tested POI value."""
    from diffana import infer

    if not math.isfinite(args.poi_value):
        raise CommandError(f"--poi-value must be a finite number, got {args.poi_value}")
    _, model, data = _load(args)
    low, high = (float(v) for v in model.config.suggested_bounds()[model.config.poi_index])
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
        result = infer.hypotest(args.poi_value, data, model, test_stat=args.test_stat)
    _warn_unconverged(result, args)
    output = {
        "CLs_obs": _finite(result.cls_obs, "observed CLs"),
        "CLs_exp": [_finite(v, "expected CLs") for v in result.cls_exp],
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0


def run_limit(args) -> int:
    """Print ``{"obs": …, "exp": [5]}``, the upper limits on the POI at ``--cl``."""
    from diffana import infer

    if not 0.0 < args.cl < 1.0:
        raise CommandError(f"--cl must lie strictly between 0 and 1, got {args.cl}")
    _, model, data = _load(args)
    result = infer.upper_limit(data, model, cl=args.cl, test_stat=args.test_stat)
    _warn_unconverged(result, args)
    output = {
        "obs": _finite(result.observed, "observed limit"),
        "exp": [_finite(v, "expected limit") for v in result.expected],
    }
    print(json.dumps(output, indent=4, sort_keys=True))
    return 0
