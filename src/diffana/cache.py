"""JAX's persistent compilation cache, shared by every ``diffana`` command.

Compiling a fit or a CLs computation takes seconds to tens of seconds (XLA on CPU),
far longer than running it. With the persistent cache a second run of the same
command on a model of the same structure loads the compiled programs from disk
instead of compiling them again.

Location and switches (read by :func:`enable_compilation_cache`):

- ``$DIFFANA_JAX_CACHE`` — the cache folder.
- ``DIFFANA_JAX_CACHE=off`` — diffana turns no cache on (every run compiles afresh,
  unless JAX's own ``JAX_COMPILATION_CACHE_DIR`` asks JAX for one).
- Without ``$DIFFANA_JAX_CACHE``: the folder already set in JAX
  (``JAX_COMPILATION_CACHE_DIR``), else ``~/.cache/diffana/jax``.

Entries are keyed by the compiled program, the JAX/jaxlib version and the device,
so an upgrade or another machine never reuses a stale entry; the folder may be
deleted at any time. JAX does not bound its size.

Nothing happens at import: ``diffana.cli.main`` calls :func:`enable_compilation_cache`
once before running a command, and library users call it themselves if they want it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "DIFFANA_JAX_CACHE"
DISABLED = "off"

# Seconds of compilation below which JAX does not write a program to the cache
# (JAX's default is 1 s). A fit or CLs program compiles in seconds on a 2-core CPU,
# but a small model's may take under 1 s on a faster machine and would then be
# compiled afresh every run; 0.1 s keeps those while leaving out the dozens of one-op
# programs (a few ms each) that eager array code compiles. Measured on the ATLAS
# eRJR fit (docs/fit_command.md): 0, 0.1 and 1 s gave the same warm-cache time
# within the noise of a loaded 2-core machine (12–21 s, against 42–58 s without cache).
MIN_COMPILE_TIME_S = 0.1


def cache_dir() -> Path | None:
    """The folder :func:`enable_compilation_cache` uses by default, or ``None`` when
    ``$DIFFANA_JAX_CACHE`` is ``off``: ``$DIFFANA_JAX_CACHE`` if set, else a folder
    already configured in JAX (``JAX_COMPILATION_CACHE_DIR``), else ``~/.cache/diffana/jax``."""
    import jax

    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() == DISABLED:
        return None
    if value:
        return Path(value).expanduser()
    configured = jax.config.jax_compilation_cache_dir
    return Path(configured) if configured else Path.home() / ".cache" / "diffana" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache; return its folder (``None`` if off).

    Args:
        path: the cache folder; default :func:`cache_dir`.

    Call it before the first compilation: JAX opens the cache folder once, at the
    first program it compiles after a folder is set, and keeps it for the process.

    A folder that cannot be created (read-only home, say) is reported on stderr and
    the command runs without a cache: the cache only saves time, so it must never
    stop a computation.
    """
    import jax

    folder = Path(path).expanduser() if path is not None else cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"diffana: warning: no compilation cache ({error}); set {ENV_VAR}=off "
              "to silence this", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return folder
