"""Traced programs kept across processes, so a repeated command skips tracing.

JAX's persistent compilation cache (:mod:`diffana.cache`) saves the XLA compilation
of a program, but finding a program in it needs the program first: every process
traces and lowers the Python function again. For a published likelihood with a few
hundred modifiers that alone takes 2–4 s per function (``hypotest``, ``upper_limit``),
more than ``pyhf cls`` takes in all. This module stores the lowered program itself
(``jax.export``, StableHLO with a stable serialisation) next to the compilation
cache, keyed by everything the trace depends on: the function's name, the model's
static structure and settings, the shapes and dtypes of the array arguments, and the
JAX version and diffana's source. A later process with the same key deserialises it and
calls it; its compilation then comes from the persistent cache.

Only the CLI uses it (a library user's functions are traced once per process
anyway). Any failure to read, write or export a stored program falls back to
calling the function directly: stored programs only save time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

FOLDER_NAME = "programs"

# XLA:CPU settings for the stored programs (likelihood fits: while loops of small
# dense algebra). Measured on the ATLAS eRJR likelihood (docs/published_likelihoods.md),
# 2-core machine: XLA's fusion emitters (the default code generator for fused loops)
# compile the hypotest program in 2.8 s, the classic emitters in 1.7 s, and the
# programs run equally fast (60-patch CLs 2.4 s both; limit 2.6 vs 2.7 s).
FAST_RUN = {"xla_cpu_use_fusion_emitters": False}
# For a program that runs once for a fraction of a second (one `diffana cls`), LLVM
# optimisation level 0 halves the compile again (1.0 s) for ~0.1 s more run time;
# a 60-patch batch runs 3x slower at level 0, so only single-model commands use it.
FAST_COMPILE = {**FAST_RUN, "xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """A digest of diffana's own source files: a stored program traced by other code
    (an edited checkout with an unchanged version number) is never reused."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def program_key(name: str, static_key: Any, arrays: Sequence[jax.Array]) -> str:
    """A hex digest naming one traced program: ``name``, the ``repr`` of
    ``static_key`` (everything static the function depends on), the arguments'
    shapes and dtypes, the JAX version and diffana's source."""
    signature = [(tuple(a.shape), str(a.dtype)) for a in arrays]
    text = repr((name, static_key, signature, jax.__version__, source_fingerprint(), jax.config.jax_enable_x64))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _store_folder() -> Path | None:
    from diffana.cache import cache_dir

    configured = jax.config.jax_compilation_cache_dir
    folder = Path(configured) if configured else cache_dir()
    return None if folder is None else folder / FOLDER_NAME


def _read(path: Path):
    try:
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # noqa: BLE001 - flatbuffers raises struct.error, IndexError, ...
        return None  # a damaged or stale file: export afresh


def _write(path: Path, exported) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed: a concurrent reader never
        # sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(exported.serialize())
        os.replace(handle.name, path)
    except OSError:
        pass


def _as_array(value) -> jax.Array:
    """A JAX array; host values go through numpy (``jnp.asarray`` of a Python float
    compiles a small conversion program; device_put compiles none)."""
    return value if isinstance(value, jax.Array) else jax.device_put(np.asarray(value))


def _compiled(function: Callable, arrays: Sequence[jax.Array], compiler_options: dict | None):
    """``jax.jit(function)`` compiled for ``arrays`` with XLA ``compiler_options``
    (CPU only: the options are XLA:CPU's)."""
    options = compiler_options if jax.default_backend() == "cpu" else None
    return jax.jit(function).lower(*arrays).compile(compiler_options=options or None)


def call_stored(name: str, function: Callable, static_key: Any, *arrays: jax.Array, folder: Path | None = None,
                compiler_options: dict | None = FAST_RUN):
    """``function(*arrays)``, through a stored program when one exists.

    Args:
        name: a label for the program (part of the key and of the file name).
        function: a pure function of ``arrays`` only (close over everything else)
            returning a pytree of arrays made of tuples, lists and dicts.
        static_key: everything ``function`` closes over that changes its trace, with
            a ``repr`` that is stable across processes (e.g. a model structure's
            key and the settings).
        arrays: the array arguments.
        folder: where programs are stored; default a ``programs`` folder in the
            compilation cache's (none, so no storing, when the cache is off).
        compiler_options: XLA options for compiling the program on CPU
            (:data:`FAST_RUN`, :data:`FAST_COMPILE`, or ``None`` for XLA's defaults).
    """
    arrays = tuple(_as_array(a) for a in arrays)
    folder = _store_folder() if folder is None else Path(folder)
    if folder is None:
        return _compiled(function, arrays, compiler_options)(*arrays)
    path = folder / f"{name}-{program_key(name, static_key, arrays)}.jaxexport"
    exported = _read(path) if path.exists() else None
    if exported is None:
        try:
            exported = jax.export.export(jax.jit(function))(*arrays)
        except Exception:  # noqa: BLE001 - an unexportable program still runs
            return _compiled(function, arrays, compiler_options)(*arrays)
        _write(path, exported)
    return _compiled(exported.call, arrays, compiler_options)(*arrays)


def call_with_model(name: str, compute: Callable, result_type: type, model, *arrays: jax.Array,
                    settings: Any = (), folder: Path | None = None, compiler_options: dict | None = FAST_RUN):
    """``compute(model, *arrays)`` through a stored program (:func:`call_stored`).

    ``compute`` returns an instance of ``result_type``, an equinox Module of arrays
    (e.g. ``infer.HypotestResult``): its fields are what the stored program returns,
    so a later process rebuilds the result without tracing ``compute``. The key is
    ``name``, ``settings`` (everything else ``compute`` depends on, e.g. the test
    statistic and the confidence level), the model's static structure and the
    shapes of its arrays (a stacked model has a leading member axis).
    ``compiler_options`` as for :func:`call_stored`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(model)
    fields = [field.name for field in dataclasses.fields(result_type)]

    def function(*flat):
        member_model = jax.tree_util.tree_unflatten(treedef, flat[len(arrays):])
        result = compute(member_model, *flat[: len(arrays)])
        return {field: getattr(result, field) for field in fields}

    static_key = (settings, model.structure._key, result_type.__name__)
    outputs = call_stored(name, function, static_key, *arrays, *leaves, folder=folder,
                          compiler_options=compiler_options)
    return result_type(**outputs)
