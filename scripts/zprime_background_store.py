"""Fill a store of extra Z'→invisible background MC, one independent chunk per seed.

Each chunk is every background process of the config generated and preselected at one
seed, as ``make_samples`` does (``background_store``); chunks already in the directory
are kept, so the store can be filled over several runs. Choose seeds no compared sample
was made from (the analysis and the Punzi-net scripts use --seed 1, 2, …).

    python scripts/zprime_background_store.py --dir store_full --seeds 1001-1016
    python scripts/zprime_background_store.py --dir store_quick --quick --seeds 1001-1004

Time and disk per chunk (shipped 79.7 fb⁻¹ config): ≈ 2 min on 2 cores, ≈ 280 MB.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible.background_store import fill_store, parse_seeds
from diffana.analyses.zprime_invisible.config import config_from_options
from diffana.cli.zprime import add_config_options
from diffana.errors import ConfigError


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="the store's directory (created if needed)")
    parser.add_argument("--seeds", required=True, help="chunk seeds, N or N-M (inclusive)")
    add_config_options(parser, default="belle2_2019_2020")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def report(seed: int, generated: bool) -> None:
        print(f"chunk {seed}: {'generated' if generated else 'already there'} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    try:  # a bad config, seed range or stored chunk: one line, not a traceback
        return fill_store(config_from_options(args), args.dir, parse_seeds(args.seeds), report)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
