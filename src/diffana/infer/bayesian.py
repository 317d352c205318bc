"""Bayesian upper limits on the parameter of interest, for any statistical model.

The posterior of the POI μ given the data is

    p(μ | data) ∝ π(μ) m(μ),      m(μ) = ∫ L(μ, θ | data) dθ,

with π(μ) flat on [max(0, POI lower bound), POI upper bound] (the bounds of the
model, or of ``FitSettings.par_bounds``) and the integral over the free nuisance
parameters θ within their bounds with a flat measure: the model's constraint terms
(its auxiliary-data factors) are part of L and so act as the priors of the
constrained nuisances, while unconstrained ones (free normalisations) get flat
priors over their bounds — as RooStats' ``BayesianCalculator`` does with a
HistFactory model. Parameters fixed by the model or the settings stay at their
start values. The upper limit μ_up at credibility ``cl`` solves
∫_lo^μ_up p dμ = cl.

How (details in docs/bayesian_limits.md):

1. A free fit (μ ≥ 0); the quadratic model of the profile −2 ln L at μ̂ gives a
   first POI range [lo, hi] where it has risen by 36 on each side (or the prior's
   bound, if that comes first).
2. At the Chebyshev–Lobatto nodes of [lo, hi] (``n_grid``), a conditional fit
   θ̂(μ) and the marginal m(μ) by Laplace, importance sampling or Gauss–Hermite
   quadrature around it (:mod:`diffana.infer.bayesian_marginal`).
3. The posterior density as a Chebyshev series on [lo, hi], integrated exactly; its
   CDF inverted at ``cl``.
4. From the node values, ends of the range where −2 ln m has risen too little are
   pushed out, ends where it has risen far too much moved in; 2–4 repeat until the
   range settles (at most six rounds). The posterior mass left beyond each end is
   estimated and reported.

Everything after the argument checks is one compiled function, ``vmap``-ed over the
members of a stacked model (``infer.stack_models``). No gradient of the limit is
defined (the result is not meant to be differentiated).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana.errors import ConfigError
from diffana.infer import bayesian_marginal as marginal
from diffana.infer import linalg
from diffana.infer.fit import minimize_deviance, poi_index
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, check_is_model, gradient_and_hessian, stack_size
from diffana.infer.settings import FitSettings, check_against_model, resolve_settings
from diffana.infer.toys import as_key

METHODS = ("importance", "laplace", "quadrature")
TAIL_TOLERANCE = 1e-6  # posterior mass outside [lo, hi] that counts as negligible
_RISE = 36.0  # rise of −2 ln m (and of the profile −2 ln L) from its minimum at the ends of the range
_ACCEPT = 2.5  # ... and a rise beyond _ACCEPT × _RISE makes the range needlessly long
_MAX_ROUNDS = 6
_MAX_QUADRATURE_DIMENSION = 3


class _Static(NamedTuple):
    """The call's static options (part of the compiled program)."""

    cl: float
    method: str  # one of METHODS, or "exact" when no nuisance is free
    n_samples: int
    n_batches: int
    n_grid: int
    quadrature_points: int
    nuisance_index: tuple  # free non-POI parameters of any member
    user_range: bool  # poi_max given: no automatic upper end, no extension
    solver: SolverOptions


class BayesianLimitResult(eqx.Module):
    """A Bayesian upper limit with its posterior and diagnostics (fields gain a
    leading member axis for a stacked model).

    ``poi_grid`` holds the Chebyshev–Lobatto nodes of [lo, hi] (increasing),
    ``posterior`` the normalised density there (per unit of POI) and ``cdf`` its
    integral from lo. ``log_marginal`` is ln m(μ) at the nodes, up to a constant.
    ``limit_error`` estimates the limit's numerical error: the Monte Carlo error
    (standard error from 8 batches of draws, importance sampling only) and the
    grid error (difference to the limit from every other node, an overestimate,
    plus the shift the mass estimated outside [lo, hi] would cause) added in
    quadrature. ``tail_mass`` (``head_mass``) is the estimated posterior
    mass above hi (below lo) that the likelihood would add there, relative to the
    mass in [lo, hi]; ``truncated`` says that hi is the POI's upper bound with such
    mass beyond it: the prior cuts the posterior off and the limit depends on that
    bound. ``valid`` is false when any warning applies (see :meth:`warnings`).
    """

    limit: jax.Array
    limit_error: jax.Array
    monte_carlo_error: jax.Array
    grid_error: jax.Array
    poi_grid: jax.Array
    posterior: jax.Array
    cdf: jax.Array
    log_marginal: jax.Array
    effective_sample_size: jax.Array  # smallest over the grid (importance; inf otherwise)
    tail_mass: jax.Array
    head_mass: jax.Array
    truncated: jax.Array
    range_complete: jax.Array  # the posterior outside [lo, hi] is negligible or cut by the prior
    fits_converged: jax.Array
    hessian_positive: jax.Array  # every conditional fit's Hessian was positive definite
    rounds: jax.Array
    valid: jax.Array
    cl: float = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def warnings(self) -> list[str]:
        """One line per reason to read the limit with care (single, concrete result)."""
        lines = []
        if not np.isfinite(float(self.limit)):
            lines.append("the limit is not finite: the marginal likelihood was NaN or zero on the whole POI range")
        if not bool(self.fits_converged):
            lines.append("a fit behind the posterior (the free fit or a conditional fit at a node) did not converge")
        if bool(self.truncated):
            lines.append(f"the POI's upper bound {float(self.poi_grid[-1]):.6g} cuts off a posterior mass "
                         f"≈{float(self.tail_mass):.2g}: the limit depends on that bound; widen it with "
                         "FitSettings(par_bounds=...) if the prior should extend further")
        elif not bool(self.range_complete):
            lines.append(f"the POI range [{float(self.poi_grid[0]):.6g}, {float(self.poi_grid[-1]):.6g}] leaves "
                         f"out a posterior mass ≈{float(self.tail_mass) + float(self.head_mass):.2g} "
                         f"(> {TAIL_TOLERANCE:g}); give a larger poi_max")
        if self.method == "laplace" and not bool(self.hessian_positive):
            lines.append("a conditional fit's Hessian was not positive definite: Laplace's approximation is poor there")
        if self.method == "importance" and float(self.effective_sample_size) < 100:
            lines.append(f"importance sampling's effective sample size fell to {float(self.effective_sample_size):.0f}; "
                         "use more samples or method='quadrature'")
        return lines


# --- the POI range --------------------------------------------------------------


class _Problem(NamedTuple):
    """One member's likelihood, bounds and free fit, shared by every stage."""

    model: StatisticalModel
    data: jax.Array
    lower: jax.Array  # (P,) with the POI's lower bound raised to ≥ 0
    upper: jax.Array
    fixed: jax.Array
    poi: int
    best: jax.Array  # (P,) the free fit
    best_deviance: jax.Array


def _conditional_fit(problem: _Problem, mu, start, solver):
    return minimize_deviance(problem.model, problem.data, start.at[problem.poi].set(mu), problem.lower,
                             problem.upper, problem.fixed.at[problem.poi].set(True), solver)


def _first_range(problem: _Problem, poi_max, static: _Static):
    """The first POI range: where the quadratic model of the profile −2 ln L at μ̂
    (slope and curvature from the free fit) has risen by ``_RISE`` on each side,
    within the prior's support; half of the room to a bound where that model is
    useless (flat or curving down)."""
    gradient, hessian = gradient_and_hessian(problem.model, problem.best, problem.data)
    free = ~problem.fixed
    unit = jnp.zeros_like(gradient).at[problem.poi].set(1.0)
    mask = free[:, None] & free[None, :]
    column = linalg.solve(jnp.where(mask, hessian, jnp.eye(hessian.shape[0])), unit)
    curvature = 1.0 / column[problem.poi]  # of the profile deviance in μ
    mu_hat = problem.best[problem.poi]
    prior_low, prior_high = problem.lower[problem.poi], problem.upper[problem.poi]

    def distance(direction, room):
        slope = jnp.maximum(direction * gradient[problem.poi], 0.0)
        d = 2.0 * _RISE / (slope + jnp.sqrt(slope**2 + 2.0 * curvature * _RISE))
        return jnp.minimum(jnp.where(jnp.isfinite(d) & (d > 0), d, 0.5 * room), room)

    lo = mu_hat - distance(-1.0, mu_hat - prior_low)
    hi = poi_max if static.user_range else mu_hat + distance(1.0, prior_high - mu_hat)
    lo = jnp.where(lo < hi, lo, prior_low)
    hi = jnp.where(hi > lo, hi, prior_high)  # a flat start (μ̂ at the top bound): the whole support
    return lo, hi


def _next_range(grid, log_marginal, problem: _Problem, static: _Static):
    """The next round's POI range from this round's ln m at the nodes, and whether
    this range is already right: at each end ln m has fallen by ``_RISE / 2``
    (−2 ln m by ``_RISE``) from its maximum but by less than ``_ACCEPT`` times
    that, or the end is the prior's bound. A short end is extended along the
    slope of ln m there (×1.5), a long one moved in to the first node beyond the
    mode where ln m has fallen far enough."""
    lo, hi = grid[0], grid[-1]
    width = hi - lo
    drop = 0.5 * _RISE
    r = log_marginal - jnp.max(log_marginal)
    index = jnp.arange(grid.shape[0])
    mode = jnp.argmax(log_marginal)
    far = r <= -drop

    top_short = (r[-1] > -drop) & (hi < problem.upper[problem.poi])
    top_slope = (log_marginal[-1] - log_marginal[-2]) / (grid[-1] - grid[-2])
    top_step = jnp.where(top_slope < 0, 1.5 * (drop + r[-1]) / -top_slope, width)
    top_extended = jnp.minimum(hi + jnp.clip(top_step, 0.25 * width, 4.0 * width), problem.upper[problem.poi])
    above = far & (index > mode)
    top_long = jnp.any(above) & (r[-1] < -_ACCEPT * drop)
    top_moved = grid[jnp.argmax(above)]
    bottom_short = (r[0] > -drop) & (lo > problem.lower[problem.poi])
    bottom_slope = (log_marginal[1] - log_marginal[0]) / (grid[1] - grid[0])
    bottom_step = jnp.where(bottom_slope > 0, 1.5 * (drop + r[0]) / bottom_slope, width)
    bottom_extended = jnp.maximum(lo - jnp.clip(bottom_step, 0.25 * width, 4.0 * width), problem.lower[problem.poi])
    below = far & (index < mode)
    bottom_long = jnp.any(below) & (r[0] < -_ACCEPT * drop)
    bottom_moved = grid[grid.shape[0] - 1 - jnp.argmax(below[::-1])]
    if static.user_range:  # the caller's upper end stays
        top_short = top_long = jnp.asarray(False)
    new_hi = jnp.where(top_short, top_extended, jnp.where(top_long, top_moved, hi))
    new_lo = jnp.where(bottom_short, bottom_extended, jnp.where(bottom_long, bottom_moved, lo))
    settled = ~(top_short | top_long | bottom_short | bottom_long)
    return new_lo, new_hi, settled


# --- the posterior on a range -----------------------------------------------------


class _Attempt(NamedTuple):
    """Everything one round computes on one POI range."""

    grid: jax.Array
    log_marginal: jax.Array
    density: jax.Array  # (n,) normalised posterior at the nodes
    posterior: marginal.Quantile
    monte_carlo_error: jax.Array
    grid_error: jax.Array
    effective_sample_size: jax.Array
    tail_mass: jax.Array
    head_mass: jax.Array
    fits_converged: jax.Array
    hessian_positive: jax.Array


def _node_marginals(problem: _Problem, grid, static: _Static, draws, rule):
    """Conditional fits at every node (one vmapped batch), then the marginal at
    each (``lax.map`` in groups of up to 8 nodes, which bounds the memory of the samples)."""
    starts = jnp.broadcast_to(problem.best, grid.shape + problem.best.shape)
    if static.method == "exact":
        # Nothing to fit: every parameter but the POI is fixed.
        pars = starts.at[:, problem.poi].set(grid)
        deviance = jax.vmap(lambda p: problem.model.deviance(p, problem.data))(pars)
        nodes = jax.vmap(marginal.exact_marginal)(deviance)
        return nodes, jnp.all(~jnp.isnan(deviance))
    fits = jax.vmap(lambda mu, start: _conditional_fit(problem, mu, start, static.solver))(grid, starts)
    index = jnp.asarray(static.nuisance_index, int)
    free = ~problem.fixed[index]

    def one(fit):
        pars, deviance = fit
        _, hessian = gradient_and_hessian(problem.model, pars, problem.data)
        common = (problem.model, problem.data, pars, deviance, hessian, index, free)
        if static.method == "laplace":
            return marginal.laplace_marginal(*common)
        if static.method == "importance":
            return marginal.importance_marginal(*common, problem.lower, problem.upper, draws, static.n_batches)
        return marginal.quadrature_marginal(*common, problem.lower, problem.upper, *rule)

    # Groups of a divisor of n_grid: lax.map compiles its body once more for a remainder.
    group = max(d for d in range(1, 9) if static.n_grid % d == 0)
    nodes = jax.lax.map(one, (fits.x, fits.value), batch_size=group)
    # A fit whose deviance stays +inf sits where the likelihood vanishes for every θ
    # (e.g. no expected events but some observed): m(μ) = 0 there, correctly.
    return nodes, jnp.all(fits.converged | (fits.value == jnp.inf))


def _end_mass(log_marginal, grid, density, end: int):
    """Posterior mass beyond node ``end`` (0 or −1) for a tail falling exponentially
    at the slope of ln m between the last two nodes: density / |slope|."""
    inner = 1 if end == 0 else -2
    slope_outwards = (log_marginal[end] - log_marginal[inner]) / jnp.abs(grid[end] - grid[inner])
    tail = jnp.where(slope_outwards < 0, density[end] / jnp.abs(slope_outwards), jnp.inf)
    return jnp.where(density[end] == 0, 0.0, tail)


def _attempt(problem: _Problem, lo, hi, static: _Static, draws, rule) -> _Attempt:
    """The posterior on [lo, hi]: fits and marginals at the nodes, the limit, its
    error estimates and the mass left outside."""
    tables = marginal.chebyshev_tables(static.n_grid)
    grid = lo + 0.5 * (hi - lo) * (jnp.asarray(tables.nodes) + 1.0)
    nodes, fits_ok = _node_marginals(problem, grid, static, draws, rule)
    log_m = jnp.where(jnp.isnan(nodes.log_marginal), jnp.inf, nodes.log_marginal)  # NaN → a non-finite limit
    n = static.n_grid
    # One vmapped quantile for the full series, the series through every other node
    # (its difference estimates the interpolation error) and each batch of draws.
    coarse = marginal.chebyshev_tables((n + 1) // 2)
    stack = jnp.concatenate([marginal.series(log_m, tables, n)[None], marginal.series(log_m[::2], coarse, n)[None],
                             jax.vmap(lambda lm: marginal.series(lm, tables, n))(nodes.batch_log_marginal.T)])
    every = jax.vmap(lambda a: marginal.quantile(a, tables.nodes, lo, hi, static.cl))(stack)
    posterior = jax.tree_util.tree_map(lambda x: x[0], every)
    density = jnp.exp(log_m - jnp.max(log_m)) / (posterior.total * 0.5 * (hi - lo))
    per_batch = every.limit[2:]
    # The standard error of the mean of the batch limits: the spread of the full
    # sample's limit (whose marginal is the mean of the batches' marginals).
    mc_error = jnp.std(per_batch, ddof=1) / jnp.sqrt(per_batch.shape[0]) if static.n_batches > 1 else 0.0
    tail = _end_mass(log_m, grid, density, -1)
    head = _end_mass(log_m, grid, density, 0)
    # Mass left outside the range shifts the limit by (tail·cl + head·(1 − cl)) / p(limit);
    # beyond the prior's bound there is none.
    outside = (jnp.where(hi >= problem.upper[problem.poi], 0.0, tail) * static.cl
               + jnp.where(lo <= problem.lower[problem.poi], 0.0, head) * (1.0 - static.cl))
    grid_error = jnp.abs(every.limit[1] - posterior.limit) + outside / posterior.density_at_limit
    return _Attempt(grid, log_m, density, posterior, jnp.asarray(mc_error), grid_error,
                    jnp.min(nodes.effective_sample_size), tail, head, fits_ok, jnp.all(nodes.hessian_positive))


def _empty_attempt(n: int) -> _Attempt:
    """Zeros shaped like an :class:`_Attempt` (the round loop's initial state)."""
    zero, vector, no = jnp.asarray(0.0), jnp.zeros(n), jnp.asarray(False)
    return _Attempt(vector, vector, vector, marginal.Quantile(zero, vector, zero, zero), zero, zero, zero, zero, zero, no, no)


def _range_complete(attempt: _Attempt, problem: _Problem):
    at_top = attempt.grid[-1] >= problem.upper[problem.poi]
    at_bottom = attempt.grid[0] <= problem.lower[problem.poi]
    return ((attempt.tail_mass < TAIL_TOLERANCE) | at_top) & ((attempt.head_mass < TAIL_TOLERANCE) | at_bottom)


class _Round(NamedTuple):
    """State of the loop over POI ranges."""

    rounds: jax.Array
    lo: jax.Array
    hi: jax.Array
    settled: jax.Array  # the last range needs no change
    attempt: _Attempt


def _member_limit(data, model, settings: FitSettings, poi_max, draws, rule, static: _Static) -> BayesianLimitResult:
    """The limit of one member (the function the stacked call vmaps)."""
    setup = settings.resolve(model.config)
    poi = model.config.poi_index
    lower = setup.lower.at[poi].set(jnp.maximum(setup.lower[poi], 0.0))
    start = jnp.clip(setup.init, lower, setup.upper)
    best = minimize_deviance(model, data, start, lower, setup.upper, setup.fixed, static.solver)
    problem = _Problem(model, data, lower, setup.upper, setup.fixed, poi, best.x, best.value)

    def body(state: _Round) -> _Round:
        attempt = _attempt(problem, state.lo, state.hi, static, draws, rule)
        lo, hi, settled = _next_range(attempt.grid, attempt.log_marginal, problem, static)
        return _Round(state.rounds + 1, lo, hi, settled, attempt)

    def more(state: _Round):
        return (state.rounds == 0) | (~state.settled & (state.rounds < _MAX_ROUNDS))

    lo, hi = _first_range(problem, poi_max, static)
    first = _Round(jnp.asarray(0), lo, hi, jnp.asarray(False), _empty_attempt(static.n_grid))
    final = jax.lax.while_loop(more, body, first)
    return _result(final.attempt, problem, best.converged, final.rounds, static)


def _result(attempt: _Attempt, problem: _Problem, free_converged, rounds, static: _Static) -> BayesianLimitResult:
    complete = _range_complete(attempt, problem)
    truncated = (attempt.grid[-1] >= problem.upper[problem.poi]) & (attempt.tail_mass >= TAIL_TOLERANCE)
    converged = attempt.fits_converged & free_converged
    limit = attempt.posterior.limit
    finite = jnp.all(jnp.isfinite(attempt.density)) & jnp.isfinite(limit)
    limit = jnp.where(finite, limit, jnp.inf)
    error = jnp.sqrt(attempt.monte_carlo_error**2 + attempt.grid_error**2)
    ess_ok = attempt.effective_sample_size >= 100 if static.method == "importance" else True
    hessian_ok = attempt.hessian_positive if static.method == "laplace" else True
    valid = finite & converged & complete & ~truncated & ess_ok & hessian_ok
    return BayesianLimitResult(
        limit=limit, limit_error=error, monte_carlo_error=attempt.monte_carlo_error, grid_error=attempt.grid_error,
        poi_grid=attempt.grid, posterior=attempt.density, cdf=attempt.posterior.cdf,
        log_marginal=attempt.log_marginal, effective_sample_size=attempt.effective_sample_size,
        tail_mass=attempt.tail_mass, head_mass=attempt.head_mass, truncated=truncated, range_complete=complete,
        fits_converged=converged, hessian_positive=attempt.hessian_positive, rounds=rounds, valid=valid,
        cl=static.cl, method=static.method)


@eqx.filter_jit
def _compiled(data, model, settings, poi_max, key, static: _Static, stacked: bool):
    k = len(static.nuisance_index)
    draws = _student_t_draws(key, static.n_samples, k) if static.method == "importance" else None
    rule = None
    if static.method == "quadrature":
        nodes, log_w = marginal.gauss_hermite_rule(static.quadrature_points, k)
        rule = (jnp.asarray(nodes), jnp.asarray(log_w))

    def one(d, m, top):
        return _member_limit(d, m, settings, top, draws, rule, static)

    if stacked:
        return eqx.filter_vmap(one)(data, model, poi_max)
    return one(data, model, poi_max)


def _student_t_draws(key, n: int, k: int):
    """n standard Student-t vectors in k dimensions, in antithetic pairs (z, −z)
    (consecutive, so that every batch of draws holds whole pairs)."""
    # χ² with an integer number of degrees of freedom as a sum of squared normals:
    # jax.random.gamma's rejection sampler would cost seconds of compile time.
    dof = int(marginal.PROPOSAL_DOF)
    normal = jax.random.normal(key, (n // 2, k + dof), jnp.float64)
    chi2 = jnp.sum(normal[:, k:] ** 2, axis=1)
    z = normal[:, :k] / jnp.sqrt(chi2 / dof)[:, None]
    return jnp.stack([z, -z], axis=1).reshape(n, k)


# --- the entry point ----------------------------------------------------------------


def bayesian_upper_limit(
    data,
    model: StatisticalModel,
    cl: float = 0.90,
    *,
    method: str = "importance",
    settings: FitSettings | None = None,
    key=0,
    n_samples: int = 4096,
    poi_max=None,
    n_grid: int = 65,
    quadrature_points: int = 32,
) -> BayesianLimitResult:
    """Bayesian upper limit on the POI at credibility ``cl`` (flat prior on μ ≥ 0).

    Args:
        data: main observations then auxiliary data; for a stacked model either one
            data set for every member or one row per member ``(N, ndata)``.
        model: any :class:`~diffana.infer.protocol.StatisticalModel` with a POI, or a
            stack of them (``infer.stack_models``): one compiled, vmapped call.
        cl: credibility level in (0, 1).
        method: how nuisances are integrated out: ``"importance"`` (Student-t
            proposal, ``n_samples`` draws), ``"laplace"`` or ``"quadrature"``
            (tensor Gauss–Hermite, ``quadrature_points`` per nuisance, at most 3
            free nuisances). Models without free nuisances are exact whatever the
            method (``result.method == "exact"``).
        settings: start values, bounds (the POI's bounds are the prior's support)
            and fixed parameters of the fits, and solver options.
        key: ``jax.random`` key or integer seed of the importance draws.
        n_samples: importance draws (even, a multiple of 16), shared by every POI
            value and member.
        poi_max: the upper end of the POI range (scalar or one per member); default:
            found automatically, where −2 ln m has risen by 36–90 from its minimum
            (the posterior there below e^-18 of its peak), or the POI's upper bound.
        n_grid: Chebyshev–Lobatto nodes on the POI range (odd, ≥ 9).
    """
    static, data, model, settings, poi_max, stacked = _checked(
        data, model, cl, method, settings, n_samples, poi_max, n_grid, quadrature_points)
    result = _compiled(data, model, settings, poi_max, as_key(key), static, stacked)
    _warn(result, stacked)
    return result


def _checked(data, model, cl, method, settings, n_samples, poi_max, n_grid, quadrature_points):
    """Every check that can run before tracing; returns the static options and the
    inputs as arrays."""
    check_is_model(model)
    poi = poi_index(model)
    settings = resolve_settings(settings)
    check_against_model(settings, model.config)
    if isinstance(cl, bool) or not isinstance(cl, (int, float, np.floating)) or not 0.0 < float(cl) < 1.0:
        raise ConfigError(f"cl must be a number in (0, 1), e.g. 0.90, got {cl!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    for name, value, rule, ok in (("n_samples", n_samples, "an even number >= 16 divisible by 16",
                                   lambda v: v >= 16 and v % 16 == 0),
                                  ("n_grid", n_grid, "an odd number >= 9", lambda v: v >= 9 and v % 2 == 1),
                                  ("quadrature_points", quadrature_points, "a number >= 2", lambda v: v >= 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not ok(int(value)):
            raise ConfigError(f"{name} must be {rule}, got {value!r}")
    n = stack_size(model)
    data = _checked_data(data, model, n)
    setup = settings.resolve(model.config)
    nuisance_index = _free_nuisances(setup.fixed, poi)
    if method == "quadrature" and len(nuisance_index) > _MAX_QUADRATURE_DIMENSION:
        raise ConfigError(f"method='quadrature' integrates at most {_MAX_QUADRATURE_DIMENSION} free nuisance "
                          f"parameters, this model has {len(nuisance_index)}; use method='importance'")
    poi_max = _checked_poi_max(poi_max, setup, poi, n)
    used = method if nuisance_index else "exact"
    static = _Static(cl=float(cl), method=used, n_samples=int(n_samples), n_batches=8 if used == "importance" else 1,
                     n_grid=int(n_grid), quadrature_points=int(quadrature_points), nuisance_index=nuisance_index,
                     user_range=poi_max is not None, solver=settings.solver)
    if poi_max is None:
        poi_max = jnp.zeros(() if n is None else (n,))
    return static, data, model, settings, poi_max, n is not None


def _checked_data(data, model, n):
    width = model.config.nmaindata + model.config.nauxdata
    array = np.asarray(data, dtype=np.float64) if not isinstance(data, jax.core.Tracer) else data
    if n is None:
        return model.check_data(data)
    if array.shape == (width,):
        array = np.broadcast_to(array, (n, width))
    if array.shape != (n, width):
        raise ValueError(f"data must be one data set ({width},) or one row per member ({n}, {width}); "
                         f"got {tuple(array.shape)}")
    if not isinstance(array, jax.core.Tracer):
        if not np.all(np.isfinite(array)):
            raise ValueError("data contain NaN or infinite values")
        if np.any(array[:, :model.config.nmaindata] < 0):
            raise ValueError("observed counts are negative")
    return jnp.asarray(array, jnp.float64)


def _free_nuisances(fixed, poi: int) -> tuple:
    """Indices of the non-POI parameters free in any member (static)."""
    if isinstance(fixed, jax.core.Tracer):
        free = np.ones(fixed.shape[-1], bool)
    else:
        free = ~np.asarray(fixed, bool)
        free = free.any(axis=0) if free.ndim == 2 else free
    free[poi] = False
    return tuple(int(i) for i in np.flatnonzero(free))


def _checked_poi_max(poi_max, setup, poi: int, n):
    if poi_max is None:
        return None
    value = np.asarray(poi_max, np.float64)
    low = np.maximum(np.asarray(setup.lower)[..., poi], 0.0)
    high = np.asarray(setup.upper)[..., poi]
    if not np.all(np.isfinite(value)) or np.any(value <= low) or np.any(value > high):
        raise ConfigError(f"poi_max must lie in (max(0, POI lower bound), POI upper bound] = "
                          f"({np.min(low):g}, {np.max(high):g}], got {poi_max!r}; the POI's bounds are the prior's "
                          "support: widen them with FitSettings(par_bounds=...)")
    return jnp.broadcast_to(jnp.asarray(value), () if n is None else (n,))


def _warn(result: BayesianLimitResult, stacked: bool) -> None:
    """A RuntimeWarning for every member whose limit should be read with care."""
    if isinstance(result.limit, jax.core.Tracer):
        return
    if not stacked:
        lines = result.warnings()
    else:
        lines = [f"member {i}: {line}" for i in np.flatnonzero(~np.asarray(result.valid))
                 for line in jax.tree_util.tree_map(lambda x, i=i: x[i], result).warnings()]
    for line in lines:
        warnings.warn(f"bayesian_upper_limit: {line}", RuntimeWarning, stacklevel=3)
