"""Feldman–Cousins confidence intervals: the Neyman construction with the
likelihood-ratio ordering (Feldman & Cousins, PRD 57, 3873 (1998)).

Two constructions, both in JAX and float64 (see docs/feldman_cousins.md):

- :func:`feldman_cousins_poisson`: the paper's exact construction for a counting
  experiment with a known background ``b`` — for every signal mean μ on a grid the
  counts n are ranked by ``R(n) = P(n | μ + b) / P(n | μ_best + b)``,
  ``μ_best = max(0, n − b)``, and added in decreasing R until their summed
  probability reaches ``cl``; the interval is the set of μ whose acceptance region
  contains the observed count. One vectorised program over the μ grid × a range
  of n; the ends are refined by bisection.
- :func:`feldman_cousins_interval`: the same construction by pseudo-experiments for
  any :class:`~diffana.infer.protocol.StatisticalModel` (HistFactory ``Model``,
  ``CountingModel``, a user's model), with nuisance parameters profiled ("profile
  construction", PDG Statistics review, §40.4.2): the ordering statistic is
  ``t_μ = −2 ln [L(μ, θ̂_μ) / L(μ̂, θ̂)]`` with μ̂ restricted to the physical region
  ``μ̂ ≥ max(POI lower bound, 0)``; toys are drawn at ``(μ, θ̂_μ)`` fitted to the
  observed data; μ is accepted where ``t_μ(observed) ≤ t_c(μ)``, the ``cl``
  quantile of the toys' ``t_μ``. Every toy at every grid point is fitted in one
  compiled, batched call.

Neither construction is differentiable (acceptance is a step function of the
model); use :func:`diffana.infer.upper_limit` inside gradients.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from diffana.infer.fit import minimize_deviance, prepare_call
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, stack_size
from diffana.infer.settings import FitSettings, ParameterSetup, resolve_settings
from diffana.infer.toys import as_key, sample_toys

__all__ = [
    "FeldmanCousinsResult",
    "PoissonInterval",
    "feldman_cousins_interval",
    "feldman_cousins_poisson",
    "poisson_acceptance",
]

# Two values of t_μ closer than this are the same value (a tie): fits of the same
# discrete data set agree to ~1e-10, distinct discrete outcomes differ by far more.
TIE_TOLERANCE = 1e-6
# Bisection steps refining each end of the exact Poisson interval: the grid step
# over 2**50 is below float64 resolution at any μ of interest.
_BISECTION_STEPS = 50


def _check_cl(cl) -> float:
    cl = float(cl)
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl must lie strictly between 0 and 1, got {cl}")
    return cl


# ============================================================ exact Poisson construction


class PoissonInterval(NamedTuple):
    """A Feldman–Cousins interval for the signal mean μ of a counting experiment.

    ``lower`` and ``upper`` (events of signal) are the smallest and largest μ whose
    acceptance region contains the observed count. ``connected`` is false where the
    set of such μ has a gap (it happens by discreteness, e.g. n = 0 with b = 3.5 at
    90% CL: the set is [0, 0.745] ∪ [1.035, 1.055]); the interval is then the hull,
    as in the paper's tables (see docs/feldman_cousins.md).
    """

    lower: float
    upper: float
    connected: bool


def _log_ratio(n_values, mu, background):
    """ln R(n) = ln P(n | μ + b) − ln P(n | μ_best + b), μ_best = max(0, n − b)
    (the n! cancel). xlogy keeps 0·ln 0 = 0, and gives −inf for n > 0 at rate 0."""
    rate = mu + background
    best = jnp.maximum(n_values, background)  # μ_best + b
    return xlogy(n_values, rate) - rate - (xlogy(n_values, best) - best)


def poisson_acceptance(mu, background, n_values, cl):
    """The Feldman–Cousins acceptance region at signal mean ``mu``: a bool mask over
    ``n_values`` (0, 1, …, n_max — enough counts to hold ≥ cl of the probability).

    Counts are ranked by decreasing R(n) and taken until their summed probability
    reaches ``cl``: n is accepted when the counts ranked strictly before it hold
    less than ``cl``. Ties in R (measure zero in μ) are broken by n, smaller first.
    Jittable and vmappable in ``mu`` and ``background``.
    """
    n_values = jnp.asarray(n_values, jnp.float64)
    rate = mu + background
    log_p = xlogy(n_values, rate) - rate - gammaln(n_values + 1.0)
    order = jnp.argsort(-_log_ratio(n_values, mu, background), stable=True)
    p_sorted = jnp.exp(log_p)[order]
    before = jnp.cumsum(p_sorted) - p_sorted  # probability ranked strictly before
    accepted_sorted = before < cl
    return jnp.zeros(n_values.shape, bool).at[order].set(accepted_sorted)


def _contains(mu, background, n_values, n_observed, cl):
    """Whether the acceptance region at ``mu`` contains the count ``n_observed``
    (an index into ``n_values``): the counts ranked before it — larger R, or equal
    R and smaller n, as in :func:`poisson_acceptance` — hold less than ``cl``.
    One pass over the counts, no sort."""
    n_values = jnp.asarray(n_values, jnp.float64)
    rate = mu + background
    log_ratio = _log_ratio(n_values, mu, background)
    own = log_ratio[n_observed]
    before = (log_ratio > own) | ((log_ratio == own) & (n_values < n_values[n_observed]))
    log_p = xlogy(n_values, rate) - rate - gammaln(n_values + 1.0)
    return jnp.sum(jnp.where(before, jnp.exp(log_p), 0.0)) < cl


def _poisson_interval(mu_grid, background, n_values, n_observed, cl, batch_size):
    """Acceptance of ``n_observed`` on ``mu_grid`` and the ends refined by bisection.
    Returns (lower, upper, connected, number accepted, last grid point accepted)."""
    accepted = jax.lax.map(lambda mu: _contains(mu, background, n_values, n_observed, cl), mu_grid,
                           batch_size=batch_size)
    size = mu_grid.shape[0]
    index = jnp.arange(size)
    first = jnp.min(jnp.where(accepted, index, size))
    last = jnp.max(jnp.where(accepted, index, -1))
    n_accepted = jnp.sum(accepted)
    connected = (n_accepted == last - first + 1) & (n_accepted > 0)

    def refine(inside, outside):
        """The switch of acceptance between an accepted and a rejected μ."""
        def step(_, ends):
            a, b = ends
            middle = 0.5 * (a + b)
            keep = _contains(middle, background, n_values, n_observed, cl)
            return jnp.where(keep, middle, a), jnp.where(keep, b, middle)

        a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, step, (inside, outside))
        return 0.5 * (a + b)

    safe_first = jnp.clip(first, 0, size - 1)
    safe_last = jnp.clip(last, 0, size - 1)
    lower = jnp.where(first > 0, refine(mu_grid[safe_first], mu_grid[jnp.maximum(safe_first - 1, 0)]),
                      mu_grid[0])
    upper = refine(mu_grid[safe_last], mu_grid[jnp.minimum(safe_last + 1, size - 1)])
    return lower, upper, connected, n_accepted, last == size - 1


@eqx.filter_jit
def _poisson_interval_jit(mu_grid, background, n_values, n_observed, cl, batch_size):
    return _poisson_interval(mu_grid, background, n_values, n_observed, cl, batch_size)


@eqx.filter_jit
def _largest_upper_end(mu_grid, backgrounds, n_values, n_observed, cl, batch_size):
    """The largest upper end over ``backgrounds`` (one interval per background)."""
    def upper(background):
        return _poisson_interval(mu_grid, background, n_values, n_observed, cl, batch_size)[1]

    return jnp.max(jax.lax.map(upper, backgrounds))


def _default_mu_max(n_observed: int, cl: float) -> float:
    """A μ above the interval: the Poisson mean at which seeing ≤ n_observed has
    probability (1 − cl)/10 (the background only lowers the interval)."""
    # Imported here: scipy.special costs 0.2 s of import, paid only by this helper.
    from scipy import special as scipy_special

    return float(scipy_special.gammainccinv(n_observed + 1, (1.0 - cl) / 10.0))


def _bucket(count: int, minimum: int = 64) -> int:
    """``count`` rounded up to a power of two: grids of nearby sizes share one
    compiled program (the extra points only extend the grid)."""
    return max(minimum, 1 << (int(count) - 1).bit_length())


def _mu_grid(top: float, step: float) -> np.ndarray:
    """μ = 0, step, 2·step, … reaching at least ``top`` (a power-of-two count)."""
    return step * np.arange(_bucket(math.ceil(top / step) + 1), dtype=np.float64)


def _n_values(rate_max: float, n_observed: int) -> np.ndarray:
    """Counts 0 … n_max with P(n > n_max) negligible (< 1e-12) at every rate on the
    grid (padded to a multiple of 64 to share compiled programs)."""
    needed = int(max(n_observed, rate_max + 10.0 * math.sqrt(rate_max) + 30.0)) + 1
    return np.arange(64 * math.ceil(needed / 64), dtype=np.float64)


# Backgrounds scanned above b for ``nonincreasing_in_background`` (events).
BACKGROUND_SCAN_SPAN = 10.0
BACKGROUND_SCAN_STEP = 0.01
BACKGROUND_SCAN_MU_STEP = 0.005


def feldman_cousins_poisson(
    n_observed,
    background,
    cl: float = 0.90,
    *,
    mu_step: float | None = None,
    mu_max: float | None = None,
    nonincreasing_in_background: bool = False,
    batch_size: int = 1024,
) -> PoissonInterval:
    """The exact Feldman–Cousins interval for a Poisson signal mean with a known
    background (Feldman & Cousins 1998, Sec. IV.B).

    Args:
        n_observed: the observed count n0 (a non-negative integer).
        background: the known mean background b (events, ≥ 0).
        cl: confidence level (0.90: the paper's Table IV).
        mu_step: spacing of the μ grid on which the acceptance regions are built
            (events); default 0.001 (0.001·μ_max/20 above μ_max = 20). The ends are
            then refined by bisection to float64 precision, so the step only
            decides which gaps of the accepted set are seen (pieces narrower than
            the step can be missed).
        mu_max: top of the grid; default the mean at which ≤ n0 counts have
            probability (1 − cl)/10. Doubled until the interval lies inside it.
        nonincreasing_in_background: raise the upper end to the largest upper end
            at any background in [b, b + 10] (steps of 0.01, μ grid step 0.005),
            so that it never increases with b. Discreteness makes the plain
            construction's upper end a saw-tooth in b (n0 = 0 at 90% CL: 1.08 at
            b = 2, 1.18 at b = 2.5); this reproduces the n0 = 0 row of the paper's
            Table IV (see docs/feldman_cousins.md). Conservative; off by default.
        batch_size: grid points ranked at once (memory ∝ batch_size × n range).

    Returns:
        :class:`PoissonInterval`: ``lower``, ``upper`` (signal events) and whether
        the accepted set is ``connected``.
    """
    cl = _check_cl(cl)
    if isinstance(n_observed, bool) or not float(n_observed).is_integer() or n_observed < 0:
        raise ValueError(f"n_observed must be a non-negative integer count, got {n_observed!r}")
    n_observed = int(n_observed)
    background = float(background)
    if not (math.isfinite(background) and background >= 0):
        raise ValueError(f"background must be a finite mean count >= 0, got {background!r}")
    top = _default_mu_max(n_observed, cl) if mu_max is None else float(mu_max)
    if not (math.isfinite(top) and top > 0):
        raise ValueError(f"mu_max must be a finite positive signal mean, got {mu_max!r}")
    if mu_step is not None and not (math.isfinite(float(mu_step)) and float(mu_step) > 0):
        raise ValueError(f"mu_step must be a finite positive step, got {mu_step!r}")
    while True:
        step = float(mu_step) if mu_step is not None else 1e-3 * max(1.0, top / 20.0)
        mu_grid = _mu_grid(top, step)
        n_values = _n_values(float(mu_grid[-1]) + background, n_observed)
        lower, upper, connected, n_accepted, at_top = _poisson_interval_jit(
            jnp.asarray(mu_grid), jnp.float64(background), jnp.asarray(n_values), jnp.int32(n_observed), cl,
            min(batch_size, mu_grid.size))
        if int(n_accepted) == 0:
            raise RuntimeError(f"no signal mean on the grid [0, {mu_grid[-1]:g}] accepts n0 = {n_observed} "
                               f"with b = {background:g}; pass a finer mu_step")
        if not bool(at_top):
            break
        top = 2.0 * float(mu_grid[-1])
    upper = float(upper)
    if nonincreasing_in_background:
        upper = max(upper, _largest_upper_at_larger_background(n_observed, background, cl, float(mu_grid[-1]),
                                                               batch_size))
    return PoissonInterval(float(lower), upper, bool(connected))


def _largest_upper_at_larger_background(n_observed, background, cl, top, batch_size) -> float:
    """The largest upper end over backgrounds b' in (b, b + BACKGROUND_SCAN_SPAN]."""
    backgrounds = background + BACKGROUND_SCAN_STEP * np.arange(
        1, round(BACKGROUND_SCAN_SPAN / BACKGROUND_SCAN_STEP) + 1)
    mu_grid = _mu_grid(top, BACKGROUND_SCAN_MU_STEP)
    n_values = _n_values(float(mu_grid[-1]) + float(backgrounds[-1]), n_observed)
    return float(_largest_upper_end(jnp.asarray(mu_grid), jnp.asarray(backgrounds), jnp.asarray(n_values),
                                    jnp.int32(n_observed), cl, min(batch_size, mu_grid.size)))


# ============================================================ Neyman construction by toys


class FeldmanCousinsResult(eqx.Module):
    """A Feldman–Cousins interval on the POI from a Neyman construction by toys.

    Attributes (for a stacked model every field has a leading member axis):
        interval: (2,) lower and upper end (POI units): the smallest and largest
            accepted grid point, each moved towards its rejected neighbour to where
            the linear interpolation of ``t_obs − t_c`` crosses 0. NaN if no grid
            point is accepted.
        poi_values: (G,) the POI grid.
        observed_statistic: (G,) t_μ on the observed data.
        critical_values: (G,) t_c(μ), the ``cl`` quantile of t_μ over the toys.
        accepted: (G,) bool, ``t_obs ≤ t_c`` (ties within ``TIE_TOLERANCE`` accepted).
        converged: (G,) bool, the observed data's free fit and conditional fit at μ
            converged.
        n_failed_toys: (G,) toys at μ with a fit that did not converge (kept).
        bestfit_poi: () μ̂ on the observed data, in the physical region.
        lower_at_grid_start / upper_at_grid_end: bool, the first / last grid point is
            accepted — the interval may extend beyond the grid there (the start is
            no problem when it is the physical bound itself, see
            ``lower_at_physical_bound``).
        lower_at_physical_bound: bool, the grid starts at the physical lower bound
            of the POI (max(lower bound, 0)) and that point is accepted: the
            interval's lower end is that bound (an upper limit).
        connected: bool, the accepted grid points are one block (else the interval
            is their hull).
    """

    interval: jax.Array
    poi_values: jax.Array
    observed_statistic: jax.Array
    critical_values: jax.Array
    accepted: jax.Array
    converged: jax.Array
    n_failed_toys: jax.Array
    bestfit_poi: jax.Array
    lower_at_grid_start: jax.Array
    upper_at_grid_end: jax.Array
    lower_at_physical_bound: jax.Array
    connected: jax.Array

    @property
    def lower(self) -> jax.Array:
        return self.interval[..., 0]

    @property
    def upper(self) -> jax.Array:
        return self.interval[..., 1]


def _physical_setup(setup: ParameterSetup, poi: int) -> ParameterSetup:
    """The fits' setup with the POI's lower bound raised to 0 (μ̂ in the physical
    region) and its start value moved inside the bounds."""
    lower = setup.lower.at[poi].max(0.0)
    init = setup.init.at[poi].set(jnp.clip(setup.init[poi], lower[poi], setup.upper[poi]))
    return ParameterSetup(init=init, lower=lower, upper=setup.upper, fixed=setup.fixed)


def _fits(model, data, starts, pinned, setup: ParameterSetup, solver: SolverOptions):
    """Fits of one data set from ``starts`` (K, P) holding the ``pinned`` (K, P)
    parameters at their start values: one vmapped fit loop, so that a program
    compiles a single loop however many kinds of fit it runs."""
    def one(start, pin):
        return minimize_deviance(model, data, start, setup.lower, setup.upper, pin, solver)

    return jax.vmap(one)(starts, pinned)


def _free_and_conditional(model, data, start, poi_values, setup: ParameterSetup, solver: SolverOptions):
    """The free fit (index 0) and the fits with the POI held at each of
    ``poi_values`` (indices 1…), all from ``start``, in one batch."""
    poi = model.config.poi_index
    k = poi_values.shape[0]
    starts = jnp.concatenate([start[None], jnp.broadcast_to(start, (k,) + start.shape).at[:, poi].set(poi_values)])
    pinned = jnp.concatenate([setup.fixed[None], jnp.broadcast_to(setup.fixed.at[poi].set(True),
                                                                  (k,) + setup.fixed.shape)])
    return _fits(model, data, starts, pinned, setup, solver)


def _toy_statistic(model, poi_value, data, start, setup: ParameterSetup, solver: SolverOptions):
    """t_μ on one toy (free and conditional fit from the generating parameters
    ``start``), and whether both fits converged."""
    fits = _free_and_conditional(model, data, start, poi_value[None], setup, solver)
    t = jnp.maximum(fits.value[1] - fits.value[0], 0.0)
    return t, jnp.all(fits.converged)


def critical_value(statistics, cl):
    """The smallest value t_c with empirical P(t ≤ t_c) ≥ cl: the k-th smallest of
    the n toys' statistics, k = ⌈cl·n⌉ (ties — equal t from equal discrete data —
    all count as ≤ t_c, so acceptance {t ≤ t_c} holds ≥ cl of the toys)."""
    n = statistics.shape[-1]
    k = max(1, math.ceil(cl * n - 1e-9))
    return jnp.sort(statistics, axis=-1)[..., k - 1]


def _interval_from_scan(poi_values, distance, accepted):
    """Ends of the accepted set, each interpolated linearly in ``distance`` =
    t_obs − t_c towards its rejected neighbour. Returns (lower, upper, first, last)."""
    size = poi_values.shape[0]
    index = jnp.arange(size)
    first = jnp.min(jnp.where(accepted, index, size))
    last = jnp.max(jnp.where(accepted, index, -1))
    any_accepted = last >= 0

    def crossing(inside, outside):
        # distance[inside] <= 0 < distance[outside]: the zero of the line between them.
        d_in, d_out = distance[inside], distance[outside]
        fraction = jnp.clip(d_in / jnp.where(d_in - d_out != 0, d_in - d_out, -1.0), 0.0, 1.0)
        return poi_values[inside] + fraction * (poi_values[outside] - poi_values[inside])

    f = jnp.clip(first, 0, size - 1)
    l = jnp.clip(last, 0, size - 1)
    lower = jnp.where(f > 0, crossing(f, jnp.maximum(f - 1, 0)), poi_values[0])
    upper = jnp.where(l < size - 1, crossing(l, jnp.minimum(l + 1, size - 1)), poi_values[-1])
    lower = jnp.where(any_accepted, lower, jnp.nan)
    upper = jnp.where(any_accepted, upper, jnp.nan)
    return lower, upper, first, last


def _construct(data, model, poi_values, key, cl, n_toys, settings: FitSettings, batch_size):
    """The whole construction for one model: observed fits on the grid, toys at every
    grid point, their fits (one batched loop), critical values and the interval."""
    poi = model.config.poi_index
    setup = _physical_setup(settings.resolve(model.config), poi)
    solver = settings.solver
    fits = _free_and_conditional(model, data, setup.init, poi_values, setup, solver)
    free = jax.tree_util.tree_map(lambda leaf: leaf[0], fits)
    conditional = jax.tree_util.tree_map(lambda leaf: leaf[1:], fits)
    # The conditional fits are points of the physical region too: if one is lower
    # than the free fit, the free fit missed the global minimum.
    best = jnp.minimum(free.value, jnp.min(conditional.value))
    observed = jnp.maximum(conditional.value - best, 0.0)
    bestfit_poi = jnp.where(free.value <= best, free.x[poi], poi_values[jnp.argmin(conditional.value)])

    # Toys at (μ, θ̂_μ); the same key at every μ (common random numbers: the
    # toy-to-toy noise is correlated along the grid, so t_c(μ) is smooth).
    generating = conditional.x  # (G, P), POI = μ
    toys = jax.vmap(lambda pars: sample_toys(key, model, pars, n_toys))(generating)  # (G, T, D)
    grid_size = poi_values.shape[0]
    flat_mu = jnp.repeat(poi_values, n_toys)
    flat_start = jnp.repeat(generating, n_toys, axis=0)
    flat_toys = toys.reshape(grid_size * n_toys, -1)

    def one(args):
        mu, toy, start = args
        return _toy_statistic(model, mu, toy, start, setup, solver)

    statistics, ok = jax.lax.map(one, (flat_mu, flat_toys, flat_start), batch_size=min(batch_size, flat_mu.shape[0]))
    statistics = statistics.reshape(grid_size, n_toys)
    critical = critical_value(statistics, cl)
    accepted = observed <= critical + TIE_TOLERANCE
    lower, upper, first, last = _interval_from_scan(poi_values, observed - critical, accepted)
    n_accepted = jnp.sum(accepted)
    physical_lower = setup.lower[poi]
    return FeldmanCousinsResult(
        interval=jnp.stack([lower, upper]),
        poi_values=poi_values,
        observed_statistic=observed,
        critical_values=critical,
        accepted=accepted,
        converged=free.converged & conditional.converged,
        n_failed_toys=jnp.sum(~ok.reshape(grid_size, n_toys), axis=1),
        bestfit_poi=bestfit_poi,
        lower_at_grid_start=accepted[0] & (poi_values[0] > physical_lower),
        upper_at_grid_end=accepted[-1],
        lower_at_physical_bound=accepted[0] & (poi_values[0] <= physical_lower),
        connected=(n_accepted == last - first + 1) & (n_accepted > 0),
    )


@eqx.filter_jit
def _construct_jit(data, model, poi_values, key, cl, n_toys, settings, batch_size):
    return _construct(data, model, poi_values, key, cl, n_toys, settings, batch_size)


@eqx.filter_jit
def _construct_stacked(data, model, poi_values, key, cl, n_toys, settings, batch_size):
    def one(data, model, poi_values):
        return _construct(data, model, poi_values, key, cl, n_toys, settings, batch_size)

    return eqx.filter_vmap(one)(data, model, poi_values)


# ---------------------------------------------------------------- default grid


def _grid_top_and_bottom(data, model, settings: FitSettings, threshold, n_candidates: int = 256):
    """Where the observed t_μ rises above ``threshold`` on either side of μ̂: the
    largest candidate below μ̂ and the smallest above it (the physical lower bound
    and the POI's upper bound where it never does). Candidates span the physical
    range, half evenly spaced, half geometric from its lower end (fine steps near
    the bound, where small signals sit); one batch of fits with the free fit."""
    poi = model.config.poi_index
    setup = _physical_setup(settings.resolve(model.config), poi)
    low, high = setup.lower[poi], setup.upper[poi]
    half = n_candidates // 2
    candidates = jnp.concatenate([jnp.linspace(low, high, half),
                                  low + (high - low) * jnp.geomspace(1e-6, 1.0, n_candidates - half)])
    fits = _free_and_conditional(model, data, setup.init, candidates, setup, settings.solver)
    mu_hat = fits.x[0, poi]
    t = fits.value[1:] - jnp.min(fits.value)
    far = t >= threshold
    bottom = jnp.max(jnp.where(far & (candidates < mu_hat), candidates, low))
    top = jnp.min(jnp.where(far & (candidates > mu_hat), candidates, high))
    return bottom, top


@eqx.filter_jit
def _default_grid(data, model, settings, threshold, n_points):
    bottom, top = _grid_top_and_bottom(data, model, settings, threshold)
    return jnp.linspace(bottom, top, n_points)


@eqx.filter_jit
def _chi2_one_dof_quantile(probability: float) -> float:
    """The χ²(1 dof) quantile, (Φ⁻¹((1 + p)/2))²: no scipy.stats import (0.4 s) at
    ``import diffana`` for it."""
    return statistics.NormalDist().inv_cdf(0.5 * (1.0 + probability)) ** 2


def _default_grid_stacked(data, model, settings, threshold, n_points):
    return eqx.filter_vmap(lambda d, m: _default_grid(d, m, settings, threshold, n_points))(data, model)


def default_poi_grid(data, model: StatisticalModel, cl: float = 0.90, n_points: int = 40,
                     settings: FitSettings | None = None) -> jax.Array:
    """The default POI grid of :func:`feldman_cousins_interval`: ``n_points`` evenly
    spaced values over the range where the observed t_μ stays below the χ²(1 dof)
    quantile at 1 − (1 − cl)/100 (10.8 for cl = 0.90, against the asymptotic
    critical value 2.71 — room for the larger critical values of small counts),
    clipped to [max(POI lower bound, 0), POI upper bound]."""
    cl = _check_cl(cl)
    settings = resolve_settings(settings)
    data, stacked = _checked_call(data, model, settings)
    threshold = _chi2_one_dof_quantile(1.0 - (1.0 - cl) / 100.0)
    if stacked:
        return _default_grid_stacked(data, model, settings, threshold, int(n_points))
    return _default_grid(data, model, settings, threshold, int(n_points))


# ---------------------------------------------------------------- entry point


def _checked_call(data, model, settings):
    """Protocol, POI and data checks; returns (data as float64, whether stacked).
    A stacked model takes one data row per member or one row shared by all."""
    size = stack_size(model) if hasattr(model, "config") else None
    if size is None:
        return prepare_call(model, data, settings), False
    width = model.config.nmaindata + model.config.nauxdata
    data = jnp.asarray(data, jnp.float64)
    if data.shape == (width,):
        data = jnp.broadcast_to(data, (size, width))
    if data.shape != (size, width):
        raise ValueError(f"data for a stack of {size} models must have shape ({width},) or ({size}, {width}); "
                         f"got {tuple(data.shape)}")
    first = jax.tree_util.tree_map(lambda leaf: leaf[0], model)
    prepare_call(first, data[0], settings)
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError("data contain NaN or infinite values")
    return data, True


def _physical_bounds(model) -> tuple[float, float]:
    """The POI's physical range [max(lower, 0), upper] (the widest over a stack)."""
    poi = model.config.poi_index
    lower = np.atleast_1d(np.asarray(model.config.lower[..., poi], float))
    upper = np.atleast_1d(np.asarray(model.config.upper[..., poi], float))
    return max(float(lower.max()), 0.0), float(upper.min())


def _checked_grid(poi_grid, bounds, size) -> jax.Array:
    """``poi_grid`` as float64 (G,) or (N, G), with one-line errors."""
    grid = np.asarray(poi_grid, dtype=np.float64)
    if grid.ndim not in (1, 2) or grid.shape[-1] < 1 or (grid.ndim == 2 and grid.shape[0] != size):
        raise ValueError(f"poi_grid must be one row of POI values (or one row per member of a stack), "
                         f"got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("poi_grid contains NaN or infinite values")
    if np.any(grid < 0):
        raise ValueError(f"poi_grid contains negative values (smallest {grid.min():g}): Feldman–Cousins "
                         "intervals live in the physical region POI >= 0")
    if np.any(np.diff(grid, axis=-1) <= 0):
        raise ValueError("poi_grid must be strictly increasing")
    low, high = bounds
    if grid.min() < low or grid.max() > high:
        raise ValueError(f"poi_grid [{grid.min():g}, {grid.max():g}] leaves the POI's physical range "
                         f"[{low:g}, {high:g}]")
    return jnp.asarray(grid)


def minimum_toys(cl: float) -> int:
    """The fewest toys per grid point: at least 10 toys above the cl quantile."""
    return math.ceil(10.0 / (1.0 - cl) - 1e-9)


def feldman_cousins_interval(
    data,
    model: StatisticalModel,
    cl: float = 0.90,
    *,
    poi_grid=None,
    n_points: int = 40,
    n_toys: int = 2000,
    key=0,
    batch_size: int = 4096,
    settings: FitSettings | None = None,
    options: SolverOptions | None = None,
) -> FeldmanCousinsResult:
    """A Feldman–Cousins interval on the POI by a Neyman construction with toys,
    nuisance parameters profiled (see the module docstring and
    docs/feldman_cousins.md).

    Args:
        data: observed main bins followed by auxiliary data (for a stacked model:
            one row per member, or one row shared by all).
        model: any :class:`~diffana.infer.protocol.StatisticalModel` with a POI, or
            a stack of them (``infer.stack_models``, a patchset group's model): the
            construction is vmapped over the members.
        cl: confidence level, in (0, 1).
        poi_grid: strictly increasing POI values ≥ max(POI lower bound, 0) and ≤ its
            upper bound (one row per member allowed for a stack); default
            :func:`default_poi_grid` with ``n_points`` points.
        n_toys: pseudo-experiments per grid point, ≥ 10/(1 − cl) (100 at cl = 0.9).
        key: ``jax.random`` key or integer seed; the same toys' random numbers at
            every grid point (and every member of a stack).
        batch_size: toys fitted at once (memory ∝ batch_size × npars²).
        settings / options: start values, bounds, fixed parameters and solver
            options of every fit (:class:`FitSettings`).

    Returns:
        :class:`FeldmanCousinsResult`. Warns when the interval reaches an end of
        the grid (other than the physical bound), when no grid point is accepted,
        or when fits failed.
    """
    cl = _check_cl(cl)
    settings = resolve_settings(settings, options=options)
    data, stacked = _checked_call(data, model, settings)
    if isinstance(n_toys, bool) or int(n_toys) != n_toys or n_toys < minimum_toys(cl):
        raise ValueError(f"n_toys must be an integer >= {minimum_toys(cl)} at cl = {cl:g} "
                         f"(10 toys above the {cl:g} quantile), got {n_toys!r}")
    if isinstance(n_points, bool) or int(n_points) != n_points or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    size = stack_size(model)
    bounds = _physical_bounds(model)
    if poi_grid is None:
        grid = default_poi_grid(data, model, cl, int(n_points), settings)
    else:
        grid = _checked_grid(poi_grid, bounds, size)
        if stacked and grid.ndim == 1:
            grid = jnp.broadcast_to(grid, (size, grid.shape[0]))
    construct = _construct_stacked if stacked else _construct_jit
    result = construct(data, model, grid, as_key(key), cl, int(n_toys), settings, int(batch_size))
    _warn_if_unreliable(result, int(n_toys))
    return result


def _warn_if_unreliable(result: FeldmanCousinsResult, n_toys: int) -> None:
    if np.any(np.asarray(result.upper_at_grid_end)):
        warnings.warn("the last POI grid point is accepted: the interval may extend above the grid; "
                      "extend poi_grid", stacklevel=3)
    if np.any(np.asarray(result.lower_at_grid_start)):
        warnings.warn("the first POI grid point (above the physical bound) is accepted: the interval may extend "
                      "below the grid; start poi_grid at the POI's physical lower bound", stacklevel=3)
    if np.any(np.isnan(np.asarray(result.interval))):
        warnings.warn("no POI grid point is accepted: the interval is NaN; check poi_grid covers the best fit",
                      stacklevel=3)
    failed = int(np.sum(np.asarray(result.n_failed_toys)))
    if failed:
        warnings.warn(f"{failed} toys had a fit that did not converge (kept)", stacklevel=3)
    if not bool(np.all(np.asarray(result.converged))):
        warnings.warn("a fit to the observed data did not converge", stacklevel=3)
