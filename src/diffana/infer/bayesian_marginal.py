"""The pieces of :func:`diffana.infer.bayesian.bayesian_upper_limit` that do not
depend on how the POI range is chosen: the marginal likelihood of the POI at a set
of POI values (nuisance parameters integrated out), and the Chebyshev interpolant
of the posterior density that gives its CDF and quantiles.

Marginal likelihood, ``m(μ) = ∫ L(μ, θ | data) dθ`` over the free nuisance
parameters θ within their bounds (flat measure: the model's constraint terms are
part of ``L`` and act as the priors of the constrained nuisances). Every method
starts from the conditional fit θ̂(μ) and the Hessian ``H`` of the deviance
``D = −2 ln L + const`` in θ there, so that ``L ≈ L̂ exp(−¼ δᵀ H δ)``:

- ``laplace``: ``ln m = −½ D(μ, θ̂) − ½ ln det H`` (+ a constant of μ);
- ``importance``: ``m = E_q[L / q]`` with ``q`` a Student-t (5 degrees of freedom)
  of centre θ̂ and scale matrix ``2 H⁻¹``, from one set of standard draws shared
  by every μ (common random numbers: the curve ``m(μ)`` is smooth);
- ``quadrature``: tensor Gauss–Hermite in the same whitened coordinates.

All linear algebra is plain ``jax.numpy`` in ``fori_loop`` (as
:mod:`diffana.infer.linalg`, which explains why: LAPACK kernels under ``vmap``
deadlock on two cores).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

PROPOSAL_DOF = 5  # Student-t degrees of freedom of the importance proposal
# Hessian pivots below this fraction of the largest diagonal entry are raised to it
# (a flat or curving-down direction still gets a proposal of finite width).
_PIVOT_FLOOR = 1e-10


class Whitening(NamedTuple):
    """The map θ = θ̂ + A z to whitened coordinates z around a conditional fit:
    ``A = √2 L⁻ᵀ`` with ``L Lᵀ = H_θθ`` (so that ``L ≈ L̂ exp(−½|z|²)``)."""

    cholesky: jax.Array  # (k, k) lower-triangular L of the free-parameter Hessian
    log_det: jax.Array  # ln |det A| over the member's free parameters
    positive: jax.Array  # bool: H_θθ was positive definite (no pivot raised)


class NodeMarginal(NamedTuple):
    """The log marginal likelihood at one POI value, with diagnostics."""

    log_marginal: jax.Array  # () ln m(μ) up to a constant of μ
    batch_log_marginal: jax.Array  # (B,) the same from each batch of draws (importance)
    effective_sample_size: jax.Array  # () (Σw)²/Σw² (inf for deterministic methods)
    hessian_positive: jax.Array  # bool


def cholesky(a, free):
    """Lower-triangular L with L Lᵀ = a on the ``free`` rows/columns (identity
    elsewhere); pivots below ``_PIVOT_FLOOR`` × the largest diagonal are raised to
    it. Returns (L, all pivots positive)."""
    n = a.shape[0]
    eye = jnp.eye(n, dtype=a.dtype)
    a = jnp.where(free[:, None] & free[None, :], a, eye)
    index = jnp.arange(n)
    floor = _PIVOT_FLOOR * jnp.maximum(jnp.max(jnp.abs(jnp.diagonal(a)), initial=0.0), jnp.finfo(a.dtype).tiny)

    def column(j, state):
        low, ok = state
        col = a[:, j] - low @ low[j, :]
        pivot = col[j]
        ok = ok & (pivot > floor)
        root = jnp.sqrt(jnp.maximum(pivot, floor))
        values = jnp.where(index > j, col / root, jnp.where(index == j, root, 0.0))
        return low.at[:, j].set(values), ok

    return jax.lax.fori_loop(0, n, column, (jnp.zeros_like(a), jnp.array(True)))


def solve_upper(low, z):
    """x = L⁻ᵀ z for lower-triangular L and a matrix z (k, n) (back substitution)."""
    n = low.shape[0]

    def row(step, x):
        i = n - 1 - step
        value = (z[i] - low[:, i] @ x) / low[i, i]  # x's rows > i are final, rows ≤ i still 0
        return x.at[i].set(value)

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(z))


def whitening(hessian, free) -> Whitening:
    """The whitening map from the deviance's Hessian in the free parameters."""
    low, positive = cholesky(hessian, free)
    log_det = jnp.sum(jnp.where(free, 0.5 * jnp.log(2.0) - jnp.log(jnp.diagonal(low)), 0.0))
    return Whitening(low, log_det, positive)


def _log_likelihoods(model, data, centre, displacement, nuisance_index, lower, upper):
    """−½ deviance at θ̂ + displacement (n, k) on the nuisances; −inf outside the
    bounds (the flat priors and the constraints end there)."""
    theta = centre[nuisance_index][None, :] + displacement
    inside = jnp.all((theta >= lower[nuisance_index]) & (theta <= upper[nuisance_index]), axis=1)
    pars = jnp.broadcast_to(centre, (theta.shape[0],) + centre.shape).at[:, nuisance_index].set(theta)
    values = -0.5 * jax.vmap(lambda p: model.deviance(p, data))(pars)
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)
    return jnp.where(inside, values, -jnp.inf)


def exact_marginal(deviance) -> NodeMarginal:
    """No free nuisance: the marginal is the likelihood itself."""
    value = -0.5 * deviance
    return NodeMarginal(value, value[None], jnp.asarray(jnp.inf), jnp.asarray(True))


def laplace_marginal(model, data, pars, deviance, hessian, nuisance_index, free) -> NodeMarginal:
    """Laplace's approximation: −½ D(θ̂) + ln |det A| (exact for a Gaussian L in θ)."""
    white = whitening(hessian[jnp.ix_(nuisance_index, nuisance_index)], free)
    value = -0.5 * deviance + white.log_det
    return NodeMarginal(value, value[None], jnp.asarray(jnp.inf), white.positive)


def importance_marginal(model, data, pars, deviance, hessian, nuisance_index, free, lower, upper,
                        draws, n_batches: int) -> NodeMarginal:
    """Importance sampling from a Student-t around θ̂(μ); ``draws`` are standard
    Student-t vectors (n, k) shared by every μ. Weights L/q, zero outside bounds."""
    white = whitening(hessian[jnp.ix_(nuisance_index, nuisance_index)], free)
    z = jnp.where(free[None, :], draws, 0.0)
    displacement = jnp.sqrt(2.0) * solve_upper(white.cholesky, z.T).T
    k = jnp.sum(free)
    # ln q(z) of the standard Student-t up to constants of μ; + ln|det A| for θ.
    log_q = -0.5 * (PROPOSAL_DOF + k) * jnp.log1p(jnp.sum(z**2, axis=1) / PROPOSAL_DOF)
    log_w = _log_likelihoods(model, data, pars, displacement, nuisance_index, lower, upper) - log_q + white.log_det
    n = draws.shape[0]
    value = logsumexp(log_w) - jnp.log(n)
    batches = logsumexp(log_w.reshape(n_batches, -1), axis=1) - jnp.log(n // n_batches)
    normalised = jnp.exp(log_w - jnp.max(log_w))
    ess = jnp.sum(normalised) ** 2 / jnp.sum(normalised**2)
    return NodeMarginal(value, batches, ess, white.positive)


def quadrature_marginal(model, data, pars, deviance, hessian, nuisance_index, free, lower, upper,
                        nodes, log_weights) -> NodeMarginal:
    """Tensor Gauss–Hermite: ``nodes`` (m^k, k) are √2·x, ``log_weights`` the
    matching ln Π(√2 w e^{x²}) — the rule for ∫ g(z) dz in whitened coordinates."""
    white = whitening(hessian[jnp.ix_(nuisance_index, nuisance_index)], free)
    # A member's pinned nuisances are not moved: their axes of the tensor rule then
    # only contribute a constant factor, the same at every μ.
    z = jnp.where(free[None, :], nodes, 0.0)
    displacement = jnp.sqrt(2.0) * solve_upper(white.cholesky, z.T).T
    log_f = _log_likelihoods(model, data, pars, displacement, nuisance_index, lower, upper)
    value = logsumexp(log_f + log_weights) + white.log_det
    return NodeMarginal(value, value[None], jnp.asarray(jnp.inf), white.positive)


def gauss_hermite_rule(points_per_dimension: int, dimension: int):
    """Nodes (m^k, k) and log weights (m^k,) of the tensor Gauss–Hermite rule for
    ∫ g(z) dz over R^k (weight function removed: w·e^{x²}, z = √2 x)."""
    x, w = np.polynomial.hermite.hermgauss(points_per_dimension)
    grids = np.meshgrid(*([x] * dimension), indexing="ij")
    nodes = np.sqrt(2.0) * np.stack([g.ravel() for g in grids], axis=1)
    one_dim = np.log(w) + x**2 + 0.5 * np.log(2.0)
    log_w = sum(np.meshgrid(*([one_dim] * dimension), indexing="ij")).ravel() if dimension else np.zeros(1)
    return nodes.reshape(-1, dimension), np.asarray(log_w, np.float64)


# --- the posterior as a Chebyshev series ------------------------------------------


class ChebyshevTables(NamedTuple):
    """Static tables of the Chebyshev–Lobatto rule with ``n`` nodes on [−1, 1]."""

    nodes: np.ndarray  # (n,) increasing, −cos(πk/(n−1))
    to_coefficients: np.ndarray  # (n, n) values at the nodes → coefficients a_j of Σ a_j T_j


def chebyshev_tables(n: int) -> ChebyshevTables:
    """Nodes and the (DCT-I) matrix from node values to Chebyshev coefficients."""
    angles = np.pi * np.arange(n) / (n - 1)
    nodes = -np.cos(angles)
    # T_j(nodes_k) = cos(j (π − angle_k)) = (−1)^j cos(j angle_k)
    t = np.cos(np.outer(np.arange(n), np.pi - angles))
    ends = np.ones(n)
    ends[[0, -1]] = 0.5
    matrix = (2.0 / (n - 1)) * t * ends[None, :]
    matrix[[0, -1]] *= 0.5
    return ChebyshevTables(nodes, matrix)


def _integral_coefficients(a):
    """Coefficients (n+1,) of the antiderivative of Σ a_j T_j vanishing at −1."""
    n = a.shape[0]
    padded = jnp.concatenate([a, jnp.zeros(2, a.dtype)])
    j = jnp.arange(1, n + 1)
    previous = jnp.where(j == 1, 2.0 * padded[0], padded[j - 1])
    c = (previous - padded[j + 1]) / (2.0 * j)
    c0 = -jnp.sum(c * (-1.0) ** j)
    return jnp.concatenate([c0[None], c])


def _chebyshev_sum(c, x):
    """Σ c_j T_j(x) at x (scalar or array) in [−1, 1]."""
    angle = jnp.arccos(jnp.clip(x, -1.0, 1.0))
    return jnp.cos(jnp.multiply.outer(angle, jnp.arange(c.shape[0]))) @ c


def series(log_values, tables: ChebyshevTables, size: int):
    """Chebyshev coefficients (``size``,) of exp(ln m − max ln m) interpolated at
    the nodes of ``tables`` (zeros above its degree: the same polynomial in a
    longer series)."""
    values = jnp.exp(log_values - jnp.max(log_values))
    a = jnp.asarray(tables.to_coefficients) @ values
    return jnp.concatenate([a, jnp.zeros(size - a.shape[0], a.dtype)])


class Quantile(NamedTuple):
    """The posterior of a Chebyshev series on [lo, hi] and its quantile."""

    limit: jax.Array  # () the POI value below which a fraction cl of the mass lies
    cdf: jax.Array  # (n,) the CDF at the nodes
    total: jax.Array  # () ∫ series dx over [−1, 1]
    density_at_limit: jax.Array  # () normalised density at the limit (per unit of POI)


def quantile(a, nodes, lo, hi, cl: float) -> Quantile:
    """Integrate the density series ``a`` exactly and invert its CDF at ``cl`` by
    bisection in x ∈ [−1, 1] (to 2⁻⁶⁰)."""
    c = _integral_coefficients(a)
    cumulative = _chebyshev_sum(c, jnp.asarray(nodes))
    total = _chebyshev_sum(c, jnp.asarray(1.0))
    level = cl * total

    def bisect(_, bracket):
        left, right = bracket
        middle = 0.5 * (left + right)
        below = _chebyshev_sum(c, middle) < level
        return jnp.where(below, middle, left), jnp.where(below, right, middle)

    left, right = jax.lax.fori_loop(0, 60, bisect, (jnp.asarray(-1.0), jnp.asarray(1.0)))
    x = 0.5 * (left + right)
    half_width = 0.5 * (hi - lo)
    at_limit = _chebyshev_sum(a, x) / (total * half_width)
    return Quantile(lo + half_width * (x + 1.0), cumulative / total, total, at_limit)
