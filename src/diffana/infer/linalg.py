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
ordinary XLA loops, vectorise under ``vmap`` and cannot deadlock. The price:
a batched solve is 1.8–3.9× slower than LAPACK's (``benchmarks/bench_linalg.py``,
20–46 parameters, 96–500 solves at once), one of several costs of a Newton
iteration besides the gradient, the Hessian and the line search. All are
differentiable, but the solvers that use them define their own derivatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _augmented(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    return jnp.concatenate([a, b[:, None]], axis=1), jnp.arange(a.shape[-1])


def _eliminate_column(m, k, pivot, index):
    """One Gauss–Jordan step: divide row k of the augmented matrix ``m`` by
    ``pivot`` and clear column k from every other row."""
    pivot_row = m[k] / pivot
    factors = jnp.where(index == k, 0.0, m[:, k])
    m = m - factors[:, None] * pivot_row[None, :]
    return jnp.where((index == k)[:, None], pivot_row, m)


def solve_positive_definite(a: jax.Array, b: jax.Array, return_smallest_pivot: bool = False):
    """Solve ``a x = b`` for a symmetric ``a`` and a vector ``b``, and say whether
    ``a`` is numerically positive definite.

    Gauss–Jordan elimination without pivoting: its pivots are the diagonal of the
    LDLᵀ factorisation, all positive exactly when ``a`` is positive definite, so one
    pass of n steps both solves and tests (a Cholesky factorisation followed by two
    triangular solves takes 3n steps). Where ``ok`` is false ``x`` is meaningless.

    With ``return_smallest_pivot`` also returns the smallest pivot relative to the
    largest diagonal entry of ``a``: slightly negative (≳ −1e-12) for a positive
    *semi*definite matrix whose null direction is lost in rounding (a likelihood
    that is flat along some combination of parameters), clearly negative for an
    indefinite one. (A zero pivot of a semidefinite matrix comes with a zero row,
    so replacing it does not disturb the later pivots.)
    """
    augmented, index = _augmented(a, b)
    n = index.shape[0]
    scale = jnp.maximum(jnp.max(jnp.abs(jnp.diagonal(jnp.asarray(a)))), jnp.finfo(augmented.dtype).tiny)

    def eliminate(k, state):
        m, ok, smallest = state
        pivot = m[k, k]
        # A non-positive pivot is replaced so that no NaN or infinity propagates.
        m = _eliminate_column(m, k, jnp.where(pivot > 0, pivot, 1.0), index)
        return m, ok & (pivot > 0), jnp.minimum(smallest, pivot / scale)

    reduced, ok, smallest = jax.lax.fori_loop(
        0, n, eliminate, (augmented, jnp.array(True), jnp.array(jnp.inf, augmented.dtype)))
    x = reduced[:, n]
    ok = ok & jnp.all(jnp.isfinite(x))
    return (x, ok, smallest) if return_smallest_pivot else (x, ok)


def solve_modified(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``(a + e) x = b`` for a symmetric, possibly indefinite ``a``, with the
    diagonal ``e ≥ 0`` that makes ``a + e`` safely positive definite.

    The modified-Newton step of Gill, Murray and Wright (Practical Optimization,
    §4.4.2.2): the same Gauss–Jordan pass as :func:`solve_positive_definite`, each
    pivot ``d_k`` replaced by ``max(|d_k|, θ_k²/β², δ)`` with ``θ_k`` the largest
    entry below it in its column, ``β² = max(γ, ξ/√(n² − 1))`` from the largest
    diagonal (γ) and off-diagonal (ξ) entries of ``a``, and ``δ = 1e-10 (γ + ξ)``.
    Changing the pivot of step k changes only ``a[k, k]``, so the result solves the
    modified system exactly; a negative pivot contributes its magnitude, which
    turns directions of negative curvature into descent directions (like the
    |eigenvalue| "saddle-free" Newton step, without an eigendecomposition). For a
    well-conditioned positive definite ``a`` usually ``e = 0``.
    """
    a = jnp.asarray(a)
    augmented, index = _augmented(a, b)
    n = index.shape[0]
    diagonal = jnp.abs(jnp.diagonal(a))
    gamma = jnp.max(diagonal)
    xi = jnp.max(jnp.abs(a - jnp.diag(jnp.diagonal(a))))
    beta2 = jnp.maximum(jnp.maximum(gamma, xi / jnp.sqrt(jnp.maximum(n * n - 1.0, 1.0))), 1e-15)
    delta = 1e-10 * jnp.maximum(gamma + xi, 1.0)

    def eliminate(k, m):
        theta = jnp.max(jnp.where(index > k, jnp.abs(m[:, k]), 0.0))
        pivot = jnp.maximum(jnp.maximum(jnp.abs(m[k, k]), theta**2 / beta2), delta)
        return _eliminate_column(m, k, pivot, index)

    reduced = jax.lax.fori_loop(0, n, eliminate, augmented)
    return reduced[:, n]


def solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``a x = b`` for a square ``a`` and a vector ``b`` by Gauss–Jordan
    elimination with partial pivoting (any non-singular ``a``, symmetric or not)."""
    augmented, index = _augmented(a, b)
    n = index.shape[0]

    def eliminate(k, m):
        # Partial pivoting: bring the largest remaining entry of column k to row k.
        candidates = jnp.where(index >= k, jnp.abs(m[:, k]), -1.0)
        p = jnp.argmax(candidates)
        row_k, row_p = m[k], m[p]
        m = jnp.where((index == k)[:, None], row_p, jnp.where((index == p)[:, None], row_k, m))
        return _eliminate_column(m, k, m[k, k], index)

    reduced = jax.lax.fori_loop(0, n, eliminate, augmented)
    return reduced[:, n]
