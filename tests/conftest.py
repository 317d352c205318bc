"""Shared test configuration.

Compiled JAX functions are expensive on CI's two cores: share them through
session-scoped fixtures rather than recompiling per test.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Commands called in-process (diffana.cli.main) would turn on the persistent
# compilation cache in ~/.cache for the rest of the worker; tests that check the
# cache give it a folder of their own.
os.environ.setdefault("DIFFANA_JAX_CACHE", "off")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
