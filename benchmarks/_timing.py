"""Wall-clock timing shared by the benchmarks.

JAX dispatches work asynchronously, so every timed call is followed by
``jax.block_until_ready`` on its result (any pytree of arrays): the clock stops when
the numbers exist, not when the call returns. The first call of a jitted function
compiles it; benchmarks report it apart from the repeated calls (compile time stated
separately).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jax


@dataclass(frozen=True)
class Timing:
    """Seconds of the first call (compilation + one run) and of the fastest repeat."""

    first_s: float
    best_s: float
    result: Any
    """What the first call returned (block-until-ready'd)."""


def wall_seconds(function: Callable[[], Any]) -> tuple[float, Any]:
    """(s, result) of one call of ``function()``, waiting for its arrays."""
    start = time.perf_counter()
    result = jax.block_until_ready(function())
    return time.perf_counter() - start, result


def best_seconds(function: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``function()`` (s); no call is set apart."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    return min(wall_seconds(function)[0] for _ in range(repeats))


def first_and_best(function: Callable[[], Any], repeats: int) -> Timing:
    """Time the first call of ``function()`` apart, then the best of ``repeats`` more."""
    first_s, result = wall_seconds(function)
    return Timing(first_s=first_s, best_s=best_seconds(function, repeats), result=result)
