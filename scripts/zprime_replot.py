"""Redraw the limit figures of a finished ``diffana zprime-invisible`` run from its
``limits.json``, without rerunning it (a full run takes ≈ 17 min).

Writes ``zprime_brazil.png``, ``zprime_coupling.png`` and ``zprime_selections.png``
(:func:`diffana.analyses.zprime_invisible.plots.limit_figures`) into ``--output``
(default: the run's folder). The spectrum and training figures need the samples and
histories of the run itself and are not redrawn.

    python scripts/zprime_replot.py full1                      # into full1/
    python scripts/zprime_replot.py full1 --output docs/figures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffana.analyses.zprime_invisible import plots
from diffana.analyses.zprime_invisible.outputs import limits_from_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="output folder of the run (or its limits.json)")
    parser.add_argument("--output", type=Path, help="folder for the figures (default: the run's folder)")
    args = parser.parse_args(argv)
    path = args.run / "limits.json" if args.run.is_dir() else args.run
    if not path.is_file():
        print(f"error: {path}: no limits.json (give the output folder of a diffana zprime-invisible run)",
              file=sys.stderr)
        return 2
    try:
        masses, limits = limits_from_rows(json.loads(path.read_text())["rows"])
    except (KeyError, ValueError, json.JSONDecodeError) as error:
        print(f"error: {path}: not a diffana zprime-invisible limits.json ({error})", file=sys.stderr)
        return 2
    output = args.output or path.parent
    output.mkdir(parents=True, exist_ok=True)
    for figure in plots.limit_figures(masses, limits, output):
        print(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
