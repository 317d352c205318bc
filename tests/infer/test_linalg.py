"""The LAPACK-free dense solvers of the likelihood fits (diffana.infer.linalg)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffana.infer import linalg


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_positive_definite_solve_matches_numpy(n):
    rng = np.random.default_rng(n)
    m = rng.normal(size=(n, n))
    a = m @ m.T + 0.1 * np.eye(n)
    b = rng.normal(size=n)
    x, ok = linalg.solve_positive_definite(a, b)
    assert bool(ok)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


def test_indefinite_matrix_is_reported_without_nan():
    a = np.array([[2.0, 0.5, 0.0], [0.5, -1.0, 0.2], [0.0, 0.2, 3.0]])
    x, ok = linalg.solve_positive_definite(a, np.ones(3))
    assert not bool(ok)
    assert np.all(np.isfinite(np.asarray(x)))


def test_smallest_pivot_tells_semidefinite_from_indefinite():
    """A rank-deficient Gram matrix (a flat likelihood direction) has a smallest
    relative pivot ~0 (rounding either way); an indefinite one a clearly negative one."""
    rng = np.random.default_rng(3)
    m = rng.normal(size=(6, 4))
    singular = m @ m.T * 1e4  # rank 4 of 6
    _, ok, smallest = linalg.solve_positive_definite(singular, np.ones(6), return_smallest_pivot=True)
    assert abs(float(smallest)) < 1e-12
    indefinite = singular - 1e-3 * np.eye(6) * np.max(np.diag(singular))
    _, ok, smallest = linalg.solve_positive_definite(indefinite, np.ones(6), return_smallest_pivot=True)
    assert not bool(ok) and float(smallest) < -1e-4
    definite = singular + np.eye(6)
    x, ok, smallest = linalg.solve_positive_definite(definite, np.ones(6), return_smallest_pivot=True)
    assert bool(ok) and float(smallest) > 0
    np.testing.assert_allclose(x, np.linalg.solve(definite, np.ones(6)), rtol=1e-8)


@pytest.mark.parametrize("n", [2, 3, 25])
def test_general_solve_pivots(n):
    rng = np.random.default_rng(10 + n)
    a = rng.normal(size=(n, n))
    a[0, 0] = 0.0  # elimination without pivoting would divide by zero
    b = rng.normal(size=n)
    np.testing.assert_allclose(linalg.solve(a, b), np.linalg.solve(a, b), rtol=1e-9, atol=1e-12)


def test_batched_solves_compile_to_plain_xla_without_library_calls():
    """Under vmap the solvers must not become LAPACK custom calls: jaxlib's batched
    CPU LAPACK kernels block on XLA's thread pool and two running at once deadlock."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 6, 6))
    a = m @ np.swapaxes(m, 1, 2) + np.eye(6)
    b = rng.normal(size=(5, 6))
    batched = jax.jit(jax.vmap(lambda a, b: (linalg.solve_positive_definite(a, b)[0], linalg.solve(a, b),
                                             linalg.solve_modified(a, b))))
    assert "custom_call" not in batched.lower(a, b).as_text()
    x_pd, x_general, x_modified = batched(a, b)
    np.testing.assert_allclose(x_modified, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-8)
    expected = np.linalg.solve(a, b[..., None])[..., 0]
    np.testing.assert_allclose(x_pd, expected, rtol=1e-10)
    np.testing.assert_allclose(x_general, expected, rtol=1e-10)
    # The reason for the module: jnp.linalg does lower to a custom call.
    assert "custom_call" in jax.jit(jax.vmap(jnp.linalg.solve)).lower(a, b).as_text()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_modified_solve_is_an_exact_solve_of_a_positive_definite_shift(seed):
    rng = np.random.default_rng(seed)
    n = 12
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = rng.uniform(0.1, 5.0, n) * np.where(rng.random(n) < 0.4, -1.0, 1.0)
    a = (q * eigenvalues) @ q.T  # symmetric, indefinite
    b = rng.normal(size=n)
    x = np.asarray(linalg.solve_modified(jnp.asarray(a), jnp.asarray(b)))
    # (a + diag(e)) x = b with e >= 0 and a + diag(e) positive definite: then -x is
    # a descent direction for a quadratic with gradient b (b.x > 0).
    e = (b - a @ x) / x
    assert np.all(e > -1e-9 * np.abs(e).max())
    assert np.linalg.eigvalsh(a + np.diag(np.maximum(e, 0.0))).min() > 0
    assert b @ x > 0


def test_modified_solve_leaves_a_positive_definite_matrix_alone():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(8, 8))
    a = m @ m.T + 8 * np.eye(8)
    b = rng.normal(size=8)
    np.testing.assert_allclose(np.asarray(linalg.solve_modified(jnp.asarray(a), jnp.asarray(b))),
                               np.linalg.solve(a, b), rtol=1e-10)
