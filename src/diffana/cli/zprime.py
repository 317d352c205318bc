"""``diffana zprime-invisible``: the Belle II Z'→invisible search, end to end.

    diffana zprime-invisible --quick                       # ~minutes, coarse scan
    diffana zprime-invisible --config belle2_2018_pilot    # shipped config by name
    diffana zprime-invisible --config my.toml --output out --seed 3
    diffana zprime-invisible --quick --set training.n_masses=24   # override one config value

Validates the whole config first (unknown keys, mass range, ROOT files and branches);
a bad config exits with code 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse

from diffana.cli import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "zprime-invisible",
        help="Belle II Z' -> invisible search: samples, four selections, limits, plots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(parser)
    parser.add_argument("--output", default="diffana-output/zprime-invisible", help="output folder")
    parser.add_argument("--seed", type=int, default=1, help="random seed (samples, split, pseudo-data, networks)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)


def add_config_options(parser, default: str | None = None) -> None:
    """The options that pick a config, the same in this command and in the study
    scripts (``scripts/``): ``--config`` (a TOML file or a shipped name, ``default``
    when absent), ``--quick`` (the ``[quick]`` table) and ``--set SECTION.KEY=VALUE``
    (repeatable). Read them back with ``config.config_from_options``. Here, not in
    the analysis package, so that ``diffana --help`` imports no JAX."""
    parser.add_argument("--config", default=default,
                        help="TOML file or shipped name (belle2_2019_2020, belle2_2018_pilot)")
    parser.add_argument("--quick", action="store_true", help="apply the config's [quick] table (coarse, fast)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (TOML syntax), e.g. training.n_masses=24 or "
                             "training.hypothesis_spacing='\"mass\"'; repeatable")


def run(args) -> int:
    from diffana.analyses.zprime_invisible.config import ConfigError, config_from_options

    try:
        config = config_from_options(args)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    from pathlib import Path

    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise CommandError(f"--output {args.output!r} exists and is not a folder")
    if args.seed < 0:
        raise CommandError(f"--seed must be non-negative, got {args.seed}")
    from diffana.analyses.zprime_invisible.pipeline import run_analysis

    if not args.no_plots:
        _draw_to_files_only()
    # diffana.cli.main has turned on the persistent compilation cache.
    run_analysis(config, args.output, seed=args.seed, make_plots=not args.no_plots)
    return 0


def _draw_to_files_only() -> None:
    """Select matplotlib's Agg backend: this command only writes PNG files, and Agg
    needs no display (an interactive backend would start a GUI toolkit for nothing).
    Done here, not at the import of diffana.plot, so a notebook keeps its backend."""
    import matplotlib

    matplotlib.use("Agg")
