"""Dense linear algebra for the small matrices of likelihood fits, without LAPACK.

A HistFactory fit has tens of parameters, so its Hessian is a small dense matrix.
``jnp.linalg`` would factorise it with LAPACK through a custom call, and under
``vmap`` (a scan of hypotheses) jaxlib's CPU LAPACK kernels split the batch over
XLA's intra-op thread pool and block until the pieces return (jaxlib 0.10,
``ParallelBatchMap``). When two such kernels run at once (e.g. the Cholesky of one
fit and of another, independent fit) each occupies a pool thread while waiting for
work queued behind the other: on a 2-core machine the program deadlocks at 0% CPU.
The Z'→invisible scan did exactly that.

The routines here are written in plain ``jax.numpy`` inside ``lax.fori_loop`` (one
step per column, each step a fused elementwise/reduction kernel), so they compile to
ordinary XLA loops, vectorise under ``vmap`` and cannot deadlock. For n ≲ 100 they
are as fast as the LAPACK calls they replace. All are differentiable, but the
solvers that use them define their own derivatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def solve_positive_definite(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``a x = b`` for a symmetric ``a`` and a vector ``b``, and say whether
    ``a`` is numerically positive definite.

    Gauss–Jordan elimination without pivoting: its pivots are the diagonal of the
    LDLᵀ factorisation, all positive exactly when ``a`` is positive definite, so one
    pass of n steps both solves and tests (a Cholesky factorisation followed by two
    triangular solves takes 3n steps). Where ``ok`` is false ``x`` is meaningless.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    n = a.shape[-1]
    index = jnp.arange(n)
    augmented = jnp.concatenate([a, b[:, None]], axis=1)

    def eliminate(k, state):
        m, ok = state
        pivot = m[k, k]
        ok = ok & (pivot > 0)
        # A non-positive pivot is replaced so that no NaN or infinity propagates.
        pivot_row = m[k] / jnp.where(pivot > 0, pivot, 1.0)
        factors = jnp.where(index == k, 0.0, m[:, k])
        m = m - factors[:, None] * pivot_row[None, :]
        return jnp.where((index == k)[:, None], pivot_row, m), ok

    reduced, ok = jax.lax.fori_loop(0, n, eliminate, (augmented, jnp.array(True)))
    x = reduced[:, n]
    return x, ok & jnp.all(jnp.isfinite(x))


def solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``a x = b`` for a square ``a`` and a vector ``b`` by Gauss–Jordan
    elimination with partial pivoting (any non-singular ``a``, symmetric or not)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    n = a.shape[-1]
    index = jnp.arange(n)
    augmented = jnp.concatenate([a, b[:, None]], axis=1)

    def eliminate(k, m):
        # Partial pivoting: bring the largest remaining entry of column k to row k.
        candidates = jnp.where(index >= k, jnp.abs(m[:, k]), -1.0)
        p = jnp.argmax(candidates)
        row_k, row_p = m[k], m[p]
        m = jnp.where((index == k)[:, None], row_p, jnp.where((index == p)[:, None], row_k, m))
        pivot_row = m[k] / m[k, k]
        factors = jnp.where(index == k, 0.0, m[:, k])
        m = m - factors[:, None] * pivot_row[None, :]
        return jnp.where((index == k)[:, None], pivot_row, m)

    reduced = jax.lax.fori_loop(0, n, eliminate, augmented)
    return reduced[:, n]

