"""The ``diffana`` command.

Each module in this package that defines ``register(subparsers)`` adds its own
sub-commands; ``main`` discovers them, so a new command is a new module and nothing
else changes. A sub-command's parser sets ``func`` (called with the parsed
arguments, returning an exit code).

Every command runs with JAX's persistent compilation cache (``diffana.cache``:
``~/.cache/diffana/jax``, ``$DIFFANA_JAX_CACHE`` to move it, ``DIFFANA_JAX_CACHE=off``
to go without), so a repeated command skips most of its compile time.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from diffana.errors import CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffana",
        description="Differentiable, end-to-end physics analysis in JAX.",
        epilog="Compiled programs are cached in ~/.cache/diffana/jax (set DIFFANA_JAX_CACHE to "
        "another folder, or to 'off' for no cache).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):  # __main__ runs the command on import
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 1
    # After parsing (--help and usage errors need no JAX) and before the command
    # compiles anything: JAX opens the cache folder at its first compilation.
    from diffana.cache import enable_compilation_cache

    enable_compilation_cache()
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"diffana {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
