"""Shared test configuration.

Compiled JAX functions are expensive on CI's two cores: share them through
session-scoped fixtures rather than recompiling per test.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
