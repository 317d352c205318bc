"""Upper limits on the parameter of interest at any confidence level.

The observed limit solves ``CLs_obs(μ) = 1 - CL``; each expected limit solves
``CLs_exp,k(μ) = 1 - CL`` for the band k (−2σ … +2σ). All six roots are found
together by a safeguarded Newton iteration in μ: the derivative of each test
statistic w.r.t. μ is free by the envelope theorem (∂(−2 ln L)/∂μ at the
conditional fit), and every step keeps a bracket, falling back to bisection.

Gradients of the limits w.r.t. the model's templates and the data come from the
implicit function theorem at the roots, ``dμ*/dx = −(∂h/∂x)/(∂h/∂μ)`` (a
``custom_vjp``), with ``∂h/∂x`` computed through the fits' own implicit gradients.
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from diffana.infer import linalg
from diffana.infer.asymptotics import (
    EXPECTED_NSIGMA,
    _check_test_stat,
    delta_test_statistic,
    expected_delta,
    log_cls_from_delta,
    prepare,
    safe_sqrt,
    test_statistics,
)
from diffana.infer.fit import _poi_index, twice_nll_objective
from diffana.infer.minimize import SolverOptions
from diffana.model import Model


CURVE_NAMES = ("observed", "expected -2 sigma", "expected -1 sigma", "expected median",
               "expected +1 sigma", "expected +2 sigma")
"""The six CLs curves in the order of ``UpperLimitResult.curve_converged``."""


class UpperLimitResult(eqx.Module):
    """Upper limits on the POI: observed, and expected for −2σ, −1σ, median, +1σ, +2σ.

    ``converged`` is true when every fit and every root converged. Per curve
    (observed first, then −2σ … +2σ, as :data:`CURVE_NAMES`): ``curve_converged``,
    and ``discontinuous``, true where the root bracket closed on a μ at which CLs
    jumps across ``1 - cl`` instead of crossing it, so that no root exists. That
    happens where the conditional fits switch between local minima of a
    non-convex likelihood as μ changes; the limit returned is then the position of
    the jump.
    """

    observed: jax.Array
    expected: jax.Array  # (5,)
    converged: jax.Array  # bool: every fit and root converged
    iterations: jax.Array
    curve_converged: jax.Array  # (6,) bool
    discontinuous: jax.Array  # (6,) bool
    outside_poi_bounds: jax.Array  # (6,) bool: the limit lies outside the POI's bounds
    poi_bounds: jax.Array  # (2,) the POI's (lower, upper) bounds

    def warnings(self) -> list[str]:
        """Every reason to read a limit with care, one line per curve and reason:
        :meth:`unconverged_curves` then :meth:`outside_bounds_curves` (for a single,
        concrete result)."""
        return self.unconverged_curves() + self.outside_bounds_curves()

    def outside_bounds_curves(self) -> list[str]:
        """One line per curve whose limit lies outside the POI's bounds. The root is
        still a root of CLs(μ) = 1 − CL, found with the POI held beyond the range the
        model declares (e.g. μ = 47 for a signal strength bounded at 10): quote it as
        such, or widen the bounds if the model is meant to extend there."""
        limits = [float(self.observed)] + [float(v) for v in self.expected]
        low, high = (float(v) for v in self.poi_bounds)
        lines = []
        for name, outside, limit in zip(CURVE_NAMES, self.outside_poi_bounds.tolist(), limits):
            if outside:
                side = "above the upper" if limit > high else "below the lower"
                bound = high if limit > high else low
                lines.append(f"{name}: the limit {limit:.6g} lies {side} bound {bound:g} of the POI; the fits "
                             "behind it hold the POI outside the range the model declares")
        return lines

    def unconverged_curves(self) -> list[str]:
        """One line per curve whose limit did not converge, saying why (for a
        single, concrete result; index a batched one first)."""
        limits = [float(self.observed)] + [float(v) for v in self.expected]
        lines = []
        for name, ok, jump, limit in zip(CURVE_NAMES, self.curve_converged.tolist(),
                                         self.discontinuous.tolist(), limits):
            if ok:
                continue
            if jump:
                lines.append(f"{name}: CLs jumps across the level at POI = {limit:.6g} instead of crossing it "
                             "(the conditional fits switch between local minima there); the limit given is "
                             "the jump's position")
            else:
                lines.append(f"{name}: the root or a fit behind it did not converge (limit given {limit:.6g})")
        return lines


class LimitSettings(eqx.Module):
    cl: float = eqx.field(static=True)
    test_stat: str = eqx.field(static=True)
    base_distribution: str = eqx.field(static=True)
    max_iterations: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    options: SolverOptions = eqx.field(static=True)
    warm_start: bool = eqx.field(static=True, default=False)


def _residuals_and_slopes(mus, prepared, settings: LimitSettings, starts):
    """log CLs − log(1 − CL) for the six curves at ``mus`` (obs, then the 5 expected),
    their derivatives w.r.t. μ, the fits' parameters and status."""
    test_stat = settings.test_stat
    poi = prepared.model.config.poi_index
    log_alpha = jnp.log1p(-settings.cl)
    data_start, asimov_starts = starts

    def grad_poi(pars, data):
        g = jax.grad(twice_nll_objective)(pars, (prepared.model, data))
        return g[poi]

    # Seven fits in one batch: the data at mus[0] (observed curve) and the Asimov
    # data at all six values (the observed curve needs q_A too).
    poi_values = jnp.concatenate([mus[:1], mus])
    on_asimov = jnp.arange(7) > 0
    fit_starts = jnp.concatenate([data_start[None], asimov_starts])
    values, fits = test_statistics(poi_values, on_asimov, prepared, test_stat, fit_starts, settings.options)
    datas = jnp.where(on_asimov[:, None], prepared.asimov_data, prepared.data)
    slopes = jax.vmap(grad_poi)(fits.x, datas)
    slopes = jnp.where(values > 0, slopes, 0.0)
    q, q_slope = values[0], slopes[0]
    qa, qa_slope = values[1:], slopes[1:]

    def observed_log_cls(q_value, qa_value):
        delta = delta_test_statistic(q_value, qa_value, test_stat)
        return log_cls_from_delta(delta, safe_sqrt(qa_value), settings.base_distribution)[2]

    def expected_log_cls(qa_value, nsigma):
        sqrt_qa = safe_sqrt(qa_value)
        delta = expected_delta(nsigma, sqrt_qa, settings.base_distribution)
        return log_cls_from_delta(delta, sqrt_qa, settings.base_distribution)[2]

    obs_value, (d_q, d_qa) = jax.value_and_grad(observed_log_cls, argnums=(0, 1))(q, qa[0])
    obs_slope = d_q * q_slope + d_qa * qa_slope[0]
    exp_value, d_exp = jax.vmap(jax.value_and_grad(expected_log_cls))(qa[1:], EXPECTED_NSIGMA)
    exp_slope = d_exp * qa_slope[1:]

    residual = jnp.concatenate([obs_value[None], exp_value]) - log_alpha
    slope = jnp.concatenate([obs_slope[None], exp_slope])
    # The observed curve needs the fit to the data and the Asimov fit at its μ;
    # expected curve k only the Asimov fit at its own μ.
    converged = fits.converged[1:].at[0].set(fits.converged[0] & fits.converged[1])
    return residual, slope, (fits.x[0], fits.x[1:]), converged


def _initial_guess(prepared, settings):
    """Limits from a Gaussian approximation: σ_μ from the Asimov Hessian."""
    model = prepared.model
    poi = model.config.poi_index
    h = model.twice_nll_hessian(prepared.asimov_pars, prepared.asimov_data)
    free = ~prepared.fixed
    h = jnp.where(free[:, None] & free[None, :], h, jnp.eye(h.shape[0]))
    # Variance of the POI: 2 (H^-1)_poi,poi, from one linear solve.
    variance = 2.0 * linalg.solve(h, jnp.zeros(h.shape[0]).at[poi].set(1.0))[poi]
    sigma = jnp.sqrt(jnp.abs(variance))
    sigma = jnp.where(jnp.isfinite(sigma) & (sigma > 0), sigma, 1.0)
    alpha = 1.0 - settings.cl
    # sqrt(q_A) that solves CLs_exp = alpha for each band (unclipped normal).
    targets = -ndtri(alpha * jax.scipy.special.ndtr(-EXPECTED_NSIGMA)) - EXPECTED_NSIGMA
    expected = sigma * targets
    muhat = jnp.maximum(prepared.free_fit.bestfit[poi], 0.0)
    observed = muhat + expected[2]
    return jnp.concatenate([observed[None], expected])


def _solve_limits(prepared, settings: LimitSettings):
    """Safeguarded Newton iteration for the six roots (no gradients here)."""
    n_pars = prepared.init.shape[0]
    mus = _initial_guess(prepared, settings)
    # Every conditional fit starts from the suggested initial values, as in
    # hypotest (and pyhf, ROOT): with a non-convex likelihood a warm start from the
    # previous μ can settle in another local minimum, and the root would then solve
    # a different CLs curve from the one hypotest reports (seen on a random model
    # with two background normalisations running to their bound). The final fits'
    # parameters are kept for the backward pass, whose fits then start at the minimum.
    # With ``warm_start`` each curve's fits start from its fits at the previous μ
    # instead: fewer fit iterations, at that risk.
    init_starts = (prepared.init, jnp.broadcast_to(prepared.init, (6, n_pars)))
    starts = init_starts
    lower = jnp.zeros(6)
    upper = jnp.full(6, jnp.inf)

    def body(state):
        mus, lower, upper, starts, iteration, _, _, _, _ = state
        fit_starts = starts if settings.warm_start else init_starts
        residual, slope, new_starts, fits_converged = _residuals_and_slopes(mus, prepared, settings, fit_starts)
        # CLs falls with μ: a positive residual means the root lies above.
        above = residual > 0
        lower = jnp.where(above, mus, lower)
        upper = jnp.where(above, upper, mus)
        newton = mus - residual / slope
        bracket_known = jnp.isfinite(upper)
        midpoint = jnp.where(bracket_known, 0.5 * (lower + upper), 4.0 * mus)
        # Closed bracket: a residual of exactly 0 makes μ the bracket's upper end
        # and the Newton step μ itself, which must be accepted (an open bracket
        # rejected it, and the curve crept to its root by 25 bisections).
        inside = jnp.isfinite(newton) & (newton >= lower) & (newton <= upper) & (newton < 8.0 * mus + 1e-300)
        new_mus = jnp.where(inside, newton, midpoint)
        step_small = jnp.abs(new_mus - mus) <= settings.rtol * jnp.abs(mus)
        done = step_small & (jnp.abs(residual) < 1e-6)
        # The fits behind the limits are those of the last iteration (at the roots);
        # a fit that failed at an intermediate μ of the search does not matter.
        return new_mus, lower, upper, new_starts, iteration + 1, done, fits_converged, residual, slope

    def cond(state):
        iteration, done = state[4], state[5]
        return (~jnp.all(done)) & (iteration < settings.max_iterations)

    init_state = (mus, lower, upper, starts, jnp.array(0), jnp.zeros(6, bool), jnp.ones(6, bool), jnp.ones(6), jnp.ones(6))
    mus, lower, upper, starts, iterations, done, fits_ok, residual, slope = jax.lax.while_loop(cond, body, init_state)
    curve_converged = done & fits_ok & prepared.converged
    # A bracket closed to rounding around a residual that does not vanish: CLs
    # jumps across the level there (|log CLs - log(1 - CL)| > 1e-3 is a jump of
    # at least 0.1% in CLs within a relative 1e-8 in μ).
    discontinuous = (~done & jnp.isfinite(upper) & (upper - lower <= 1e-8 * jnp.abs(upper))
                     & (jnp.abs(residual) > 1e-3))
    status = (jnp.all(curve_converged), curve_converged, discontinuous)
    return mus, starts, slope, status, iterations


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _limits(model, data, settings):
    prepared = prepare(data, model, settings.test_stat, options=settings.options)
    mus, _, _, status, iterations = _solve_limits(prepared, settings)
    return mus, status, iterations


def _limits_fwd(model, data, settings):
    prepared = prepare(data, model, settings.test_stat, options=settings.options)
    mus, starts, slope, status, iterations = _solve_limits(prepared, settings)
    return (mus, status, iterations), (model, data, mus, starts, slope)


def _limits_bwd(settings, residuals, cotangents):
    model, data, mus, starts, slope = residuals
    mus_bar = cotangents[0]
    weights = -mus_bar / slope  # implicit function theorem, one root at a time
    starts = jax.lax.stop_gradient(starts)
    mus = jax.lax.stop_gradient(mus)

    def residual_fn(model, data):
        prepared = prepare(data, model, settings.test_stat, options=settings.options)
        residual, _, _, _ = _residuals_and_slopes(mus, prepared, settings, starts)
        return residual

    _, vjp = jax.vjp(residual_fn, model, data)
    model_bar, data_bar = vjp(weights)
    return model_bar, data_bar


_limits.defvjp(_limits_fwd, _limits_bwd)
_compiled_limits = eqx.filter_jit(_limits)


def upper_limit(
    data,
    model: Model,
    cl: float = 0.90,
    test_stat: str = "qtilde",
    calc_base_dist: str = "normal",
    max_iterations: int = 60,
    rtol: float = 1e-10,
    options: SolverOptions = SolverOptions(),
    warm_start: bool = False,
) -> UpperLimitResult:
    """Asymptotic CLs upper limits on the POI at confidence level ``cl``.

    Args:
        data: observed main bins then auxiliary data (as for :func:`fit`).
        model: the statistical model; its POI is the quantity limited.
        cl: confidence level, e.g. 0.90 (Belle II) or 0.95 (LHC); the limit solves
            ``CLs = 1 - cl``.
        test_stat: ``"qtilde"`` (default) or ``"q"``.
        calc_base_dist: ``"normal"`` (pyhf's default) or ``"clipped_normal"``.
        warm_start: start each root-finding step's conditional fits from the previous
            step's (fewer fit iterations); off by default, because with a non-convex
            likelihood a warm start can settle in another local minimum than the
            fit from the suggested initial values that ``hypotest`` reports.

    Returns:
        :class:`UpperLimitResult` with ``observed``, ``expected`` (−2σ…+2σ), a
        ``converged`` flag and per-curve status (``warnings()`` says what to read
        with care, including limits outside the POI's bounds). Pure, jit-able and
        vmap-able; differentiable w.r.t. the model's templates and ``data`` by
        implicit differentiation.
    """
    _check_test_stat(test_stat, ("qtilde", "q"))
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl must lie strictly between 0 and 1, got {cl}")
    settings = LimitSettings(
        cl=float(cl),
        test_stat=test_stat,
        base_distribution=calc_base_dist,
        max_iterations=int(max_iterations),
        rtol=float(rtol),
        options=options,
        warm_start=bool(warm_start),
    )
    _poi_index(model)
    data = model.check_data(data)
    mus, (converged, curve_converged, discontinuous), iterations = _compiled_limits(model, data, settings)
    poi = model.config.poi_index
    poi_bounds = jnp.stack([model.config.lower[poi], model.config.upper[poi]])
    outside = (mus < poi_bounds[0]) | (mus > poi_bounds[1])
    return UpperLimitResult(observed=mus[0], expected=mus[1:], converged=converged, iterations=iterations,
                            curve_converged=curve_converged, discontinuous=discontinuous,
                            outside_poi_bounds=jax.lax.stop_gradient(outside),
                            poi_bounds=jax.lax.stop_gradient(poi_bounds))
