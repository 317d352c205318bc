"""The four Z'→invisible selections over seeds, per mass range (issue #12, requirement 5).

Reads the ``limits.json`` of several ``diffana zprime-invisible --seed N --output DIR``
runs (one per seed, same config) and prints, per mass range (whole scan, < 1 GeV,
1–6 GeV, ≥ 6 GeV), each selection's geometric-mean median expected σ_UL per seed, the
geometric mean over seeds with its ×/÷ spread, and the paired per-seed ratio of (d) to
each other selection (:mod:`diffana.analyses.zprime_invisible.seeds`).

    for s in 1 2 3 4 5; do diffana zprime-invisible --quick --seed $s --no-plots --output q$s; done
    python scripts/zprime_seed_table.py q1 q2 q3 q4 q5
    python scripts/zprime_seed_table.py full1 full2 --json seeds.json
"""

from __future__ import annotations

import argparse
import json
import sys

from diffana.analyses.zprime_invisible.seeds import comparison_to_dict, compare_seeds, markdown_table, read_run
from diffana.errors import DiffanaError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="output folders (or limits.json files) of one run per seed")
    parser.add_argument("--json", help="also write the comparison as JSON to this file")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(path) for path in args.runs]
        comparisons = compare_seeds(runs)
    except DiffanaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seeds = [run.seed for run in runs]
    for comparison in comparisons:
        print(markdown_table(comparison, seeds), end="\n\n")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seeds": seeds, "runs": [run.source for run in runs],
                       "ranges": [comparison_to_dict(c) for c in comparisons]}, handle, indent=1, allow_nan=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
