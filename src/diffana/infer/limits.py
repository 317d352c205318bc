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
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from diffana._util import safe_sqrt
from diffana.infer import linalg
from diffana.infer.asymptotics import (
    EXPECTED_NSIGMA,
    _check_test_stat,
    delta_test_statistic,
    expected_delta,
    log_cls_from_delta,
    prepare,
    test_statistics,
)
from diffana.infer.fit import deviance_objective, prepare_call
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, gradient_and_hessian
from diffana.infer.settings import FitSettings, resolve_settings

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
                             "the jump's position (upper_limit(both_starts=True) fits from two starts and keeps "
                             "the lower minimum)")
            else:
                lines.append(f"{name}: the root or a fit behind it did not converge (limit given {limit:.6g})")
        return lines


class LimitSettings(eqx.Module):
    """Static settings of the limit search (hashable: part of the compiled program)."""

    cl: float = eqx.field(static=True)
    test_stat: str = eqx.field(static=True)
    base_distribution: str = eqx.field(static=True)
    max_iterations: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    fit_starts: str = eqx.field(static=True, default="cold")
    """Where each root-finding step's conditional fits start (:data:`FIT_STARTS`)."""


FIT_STARTS = ("cold", "warm", "both")
"""``"cold"``: from the suggested initial values, as hypotest, pyhf and ROOT (default);
``"warm"``: from the same curve's fits at the previous μ (fewer fit iterations);
``"both"``: from both, keeping the fit of lower deviance (twice the fits; for a
likelihood whose conditional fits have two minima, where a cold start alone lands in
the higher one at some μ and CLs jumps across the level there)."""


# A root is accepted when the Newton step is below rtol·μ and |log CLs − log α|
# below this (a relative 1e-6 in CLs).
_RESIDUAL_TOLERANCE = 1e-6
# With no upper bracket yet, an out-of-range Newton step is replaced by μ × this
# (CLs falls steeply in μ, so a few expansions bracket any root) ...
_EXPANSION = 4.0
# ... and a Newton step is trusted only below μ × this.
_LARGEST_STEP_RATIO = 8.0
# A bracket this narrow (relative) around a residual above _JUMP_RESIDUAL is a jump
# of CLs across the level, not a root: |Δ log CLs| > 1e-3 is ≥ 0.1% in CLs within
# a relative 1e-8 in μ.
_CLOSED_BRACKET = 1e-8
_JUMP_RESIDUAL = 1e-3
_N_CURVES = 6  # observed, then expected −2σ … +2σ (CURVE_NAMES)


class CurveStarts(NamedTuple):
    """Start parameters of each curve's conditional fits: ``observed`` (P,) for the
    fit to the data, ``asimov`` (6, P) for the Asimov fits of the six curves."""

    observed: jax.Array
    asimov: jax.Array


class CurvePoint(NamedTuple):
    """The six curves evaluated at their current μ."""

    residual: jax.Array  # (6,) log CLs − log(1 − CL)
    slope: jax.Array  # (6,) its derivative w.r.t. μ
    fitted: CurveStarts  # the conditional fits' parameters there
    fits_converged: jax.Array  # (6,) bool: every fit behind the curve converged


class RootSearch(NamedTuple):
    """State of the safeguarded Newton search for the six roots."""

    mus: jax.Array  # (6,) current POI values
    lower: jax.Array  # (6,) bracket: CLs above the level here
    upper: jax.Array  # (6,) bracket: CLs below the level here (inf until found)
    starts: CurveStarts  # where the next conditional fits start (warm start)
    iteration: jax.Array
    done: jax.Array  # (6,) bool: root found to tolerance
    point: CurvePoint  # the curves at the last evaluated μ


def _fit_batch(mus, starts: CurveStarts):
    """(μ (7,), on Asimov data (7,), starts (7, P)) of the seven conditional fits
    behind the six curves: the data at mus[0] (the observed curve) and the Asimov
    data at each of the six μ (the observed curve needs q_A at its μ too)."""
    poi_values = jnp.concatenate([mus[:1], mus])
    on_asimov = jnp.arange(_N_CURVES + 1) > 0
    return poi_values, on_asimov, jnp.concatenate([starts.observed[None], starts.asimov])


def _curve_point(mus, prepared, settings: LimitSettings, solver, starts: CurveStarts) -> CurvePoint:
    """The six curves' residuals and slopes at ``mus``, from the seven conditional
    fits of :func:`_fit_batch` in one batch, started at ``starts``."""
    poi_values, on_asimov, fit_starts = _fit_batch(mus, starts)
    values, fits = test_statistics(poi_values, on_asimov, prepared, settings.test_stat, fit_starts, solver)
    return _point_from_fits(values, fits, prepared, settings)


def _best_of_two_point(mus, prepared, settings: LimitSettings, solver, cold: CurveStarts,
                       warm: CurveStarts) -> CurvePoint:
    """:func:`_curve_point` with each of the seven fits run from ``cold`` and from
    ``warm`` in one batch of fourteen, keeping per fit the converged one of lower
    deviance (the cold one on a tie or when the warm one did not converge)."""
    poi_values, on_asimov, cold_starts = _fit_batch(mus, cold)
    _, _, warm_starts = _fit_batch(mus, warm)
    twice = lambda a: jnp.concatenate([a, a])  # noqa: E731
    values, fits = test_statistics(twice(poi_values), twice(on_asimov), prepared, settings.test_stat,
                                   jnp.concatenate([cold_starts, warm_starts]), solver)
    n = poi_values.shape[0]
    use_warm = fits.converged[n:] & (fits.value[n:] < fits.value[:n])

    def pick(leaf):
        return jnp.where(use_warm.reshape((n,) + (1,) * (leaf.ndim - 1)), leaf[n:], leaf[:n])

    return _point_from_fits(pick(values), jax.tree_util.tree_map(pick, fits), prepared, settings)


def _point_from_fits(values, fits, prepared, settings: LimitSettings) -> CurvePoint:
    """The six curves' residuals log CLs − log(1 − CL) and their slopes in μ from the
    seven conditional fits' test statistics ``values`` and results ``fits``."""
    test_stat = settings.test_stat
    poi = prepared.model.config.poi_index
    log_alpha = jnp.log1p(-settings.cl)

    def grad_poi(pars, data):
        return jax.grad(deviance_objective)(pars, (prepared.model, data))[poi]

    on_asimov = jnp.arange(_N_CURVES + 1) > 0
    datas = jnp.where(on_asimov[:, None], prepared.asimov_data, prepared.data)
    # d(−2 ln λ)/dμ is the conditional fit's ∂(deviance)/∂μ (envelope theorem).
    slopes = jnp.where(values > 0, jax.vmap(grad_poi)(fits.x, datas), 0.0)
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

    # The observed curve needs the fit to the data and the Asimov fit at its μ;
    # expected curve k only the Asimov fit at its own μ.
    converged = fits.converged[1:].at[0].set(fits.converged[0] & fits.converged[1])
    return CurvePoint(
        residual=jnp.concatenate([obs_value[None], exp_value]) - log_alpha,
        slope=jnp.concatenate([obs_slope[None], exp_slope]),
        fitted=CurveStarts(observed=fits.x[0], asimov=fits.x[1:]),
        fits_converged=converged,
    )


def poi_sigma(model, pars, data, fixed):
    """σ_μ, the POI's Gaussian standard deviation from the Hessian of the deviance at
    ``pars`` on ``data`` (the Asimov point: the expected uncertainty), with the
    ``fixed`` parameters held; 1 where the Hessian gives no finite positive value
    (the root finders only use it as a starting scale)."""
    poi = model.config.poi_index
    _, h = gradient_and_hessian(model, pars, data)
    free = ~fixed
    h = jnp.where(free[:, None] & free[None, :], h, jnp.eye(h.shape[0]))
    # Variance of the POI: 2 (H^-1)_poi,poi (the deviance is -2 ln L), one linear solve.
    variance = 2.0 * linalg.solve(h, jnp.zeros(h.shape[0]).at[poi].set(1.0))[poi]
    sigma = jnp.sqrt(jnp.abs(variance))
    return jnp.where(jnp.isfinite(sigma) & (sigma > 0), sigma, 1.0)


def _initial_guess(prepared, settings):
    """Limits from a Gaussian approximation: σ_μ from the Asimov Hessian."""
    model = prepared.model
    poi = model.config.poi_index
    sigma = poi_sigma(model, prepared.asimov_pars, prepared.asimov_data, prepared.setup.fixed)
    alpha = 1.0 - settings.cl
    # sqrt(q_A) that solves CLs_exp = alpha for each band (unclipped normal).
    targets = -ndtri(alpha * jax.scipy.special.ndtr(-EXPECTED_NSIGMA)) - EXPECTED_NSIGMA
    expected = sigma * targets
    muhat = jnp.maximum(prepared.free_fit.bestfit[poi], 0.0)
    observed = muhat + expected[2]
    return jnp.concatenate([observed[None], expected])


def _next_mus(state: RootSearch, point: CurvePoint, rtol: float):
    """One safeguarded Newton step for each curve: the bracket narrowed by the new
    point, then the Newton step where it stays inside, else bisection (or an
    expansion while no upper end is known). Returns (mus, lower, upper, done)."""
    mus = state.mus
    # CLs falls with μ: a positive residual means the root lies above.
    above = point.residual > 0
    lower = jnp.where(above, mus, state.lower)
    upper = jnp.where(above, state.upper, mus)
    newton = mus - point.residual / point.slope
    bracket_known = jnp.isfinite(upper)
    midpoint = jnp.where(bracket_known, 0.5 * (lower + upper), _EXPANSION * mus)
    # Closed bracket: a residual of exactly 0 makes μ the bracket's upper end
    # and the Newton step μ itself, which must be accepted (an open bracket
    # rejected it, and the curve crept to its root by 25 bisections).
    inside = (jnp.isfinite(newton) & (newton >= lower) & (newton <= upper)
              & (newton < _LARGEST_STEP_RATIO * mus + 1e-300))
    new_mus = jnp.where(inside, newton, midpoint)
    step_small = jnp.abs(new_mus - mus) <= rtol * jnp.abs(mus)
    done = step_small & (jnp.abs(point.residual) < _RESIDUAL_TOLERANCE)
    return new_mus, lower, upper, done


def _bracket_closed(lower, upper):
    """(6,) bool: the root bracket is known and narrower than :data:`_CLOSED_BRACKET` (relative)."""
    return jnp.isfinite(upper) & (upper - lower <= _CLOSED_BRACKET * jnp.abs(upper))


def _solve_limits(prepared, settings: LimitSettings, solver):
    """Safeguarded Newton iteration for the six roots (no gradients here).
    Returns the roots, the fits' parameters at them, the slopes, a LimitStatus
    and the number of iterations."""
    n_pars = prepared.setup.init.shape[0]
    # Every conditional fit starts from the suggested initial values, as in
    # hypotest (and pyhf, ROOT): with a non-convex likelihood a warm start from the
    # previous μ can settle in another local minimum, and the root would then solve
    # a different CLs curve from the one hypotest reports (seen on a random model
    # with two background normalisations running to their bound). The final fits'
    # parameters are kept for the backward pass, whose fits then start at the minimum.
    # With ``fit_starts = "warm"`` each curve's fits start from its fits at the
    # previous μ instead: fewer fit iterations, at that risk; with ``"both"`` from
    # both, keeping the lower minimum (:data:`FIT_STARTS`).
    cold = CurveStarts(prepared.setup.init, jnp.broadcast_to(prepared.setup.init, (_N_CURVES, n_pars)))

    def evaluate(state: RootSearch) -> CurvePoint:
        if settings.fit_starts == "both":
            return _best_of_two_point(state.mus, prepared, settings, solver, cold, state.starts)
        starts = state.starts if settings.fit_starts == "warm" else cold
        return _curve_point(state.mus, prepared, settings, solver, starts)

    def body(state: RootSearch) -> RootSearch:
        point = evaluate(state)
        mus, lower, upper, done = _next_mus(state, point, settings.rtol)
        # The fits behind the limits are those of the last iteration (at the roots);
        # a fit that failed at an intermediate μ of the search does not matter.
        return RootSearch(mus, lower, upper, point.fitted, state.iteration + 1, done, point)

    def cond(state: RootSearch):
        # a curve whose bracket has closed without a root (a jump) cannot move on:
        # waiting for max_iterations would only hold up the other curves (and the
        # vmapped batch)
        finished = state.done | _bracket_closed(state.lower, state.upper)
        return (~jnp.all(finished)) & (state.iteration < settings.max_iterations)

    ones = jnp.ones(_N_CURVES)
    start = RootSearch(
        mus=_initial_guess(prepared, settings), lower=jnp.zeros(_N_CURVES), upper=jnp.full(_N_CURVES, jnp.inf),
        starts=cold, iteration=jnp.array(0), done=jnp.zeros(_N_CURVES, bool),
        point=CurvePoint(residual=ones, slope=ones, fitted=cold, fits_converged=jnp.ones(_N_CURVES, bool)),
    )
    final = jax.lax.while_loop(cond, body, start)
    curve_converged = final.done & final.point.fits_converged & prepared.converged
    discontinuous = (~final.done & _bracket_closed(final.lower, final.upper)
                     & (jnp.abs(final.point.residual) > _JUMP_RESIDUAL))
    status = LimitStatus(converged=jnp.all(curve_converged), curve_converged=curve_converged,
                         discontinuous=discontinuous)
    return final.mus, final.starts, final.point.slope, status, final.iteration


class LimitStatus(NamedTuple):
    """Convergence of the search: all curves, per curve, and per-curve jumps."""

    converged: jax.Array
    curve_converged: jax.Array  # (6,)
    discontinuous: jax.Array  # (6,)


def _zero_cotangent(leaf):
    """A zero cotangent for a non-differentiable input (float0 for integer/bool leaves)."""
    if jnp.issubdtype(leaf.dtype, jnp.inexact):
        return jnp.zeros_like(leaf)
    return np.zeros(leaf.shape, dtype=jax.dtypes.float0)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _limits(model, data, fit_settings, settings):
    prepared = prepare(data, model, settings.test_stat, fit_settings)
    mus, _, _, status, iterations = _solve_limits(prepared, settings, fit_settings.solver)
    return mus, status, iterations


def _limits_fwd(model, data, fit_settings, settings):
    prepared = prepare(data, model, settings.test_stat, fit_settings)
    mus, starts, slope, status, iterations = _solve_limits(prepared, settings, fit_settings.solver)
    return (mus, status, iterations), (model, data, fit_settings, mus, starts, slope)


def _limits_bwd(settings, residuals, cotangents):
    """Implicit function theorem at each root: dμ*/dx = −(∂h/∂x)/(∂h/∂μ)."""
    model, data, fit_settings, mus, starts, slope = residuals
    weights = -cotangents[0] / slope
    starts = jax.lax.stop_gradient(starts)
    mus = jax.lax.stop_gradient(mus)

    def residual_fn(model, data):
        prepared = prepare(data, model, settings.test_stat, fit_settings)
        return _curve_point(mus, prepared, settings, fit_settings.solver, starts).residual

    _, vjp = jax.vjp(residual_fn, model, data)
    model_bar, data_bar = vjp(weights)
    # Start values, bounds and fixed masks do not move the roots (to first order).
    return model_bar, data_bar, jax.tree_util.tree_map(_zero_cotangent, fit_settings)


_limits.defvjp(_limits_fwd, _limits_bwd)
_compiled_limits = eqx.filter_jit(_limits)


def upper_limit(
    data,
    model: StatisticalModel,
    cl: float = 0.90,
    test_stat: str = "qtilde",
    calc_base_dist: str = "normal",
    max_iterations: int = 60,
    rtol: float = 1e-10,
    options: SolverOptions | None = None,
    warm_start: bool = False,
    *,
    both_starts: bool = False,
    settings: FitSettings | None = None,
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
        both_starts: fit from the suggested initial values *and* from the previous
            step's fits, keeping the lower minimum (twice the fits). For a
            likelihood with two minima whose cold-started fit lands in the higher one
            at some μ, so that CLs jumps across the level there (``discontinuous``):
            rerun such a limit with it. Excludes ``warm_start``.
        options, settings: the fits' solver options, or all fit settings (start
            values, bounds, fixed parameters, solver) as one :class:`FitSettings`.

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
    if warm_start and both_starts:
        raise ValueError("warm_start and both_starts exclude each other (both_starts already fits from the warm start)")
    fit_settings = resolve_settings(settings, options=options)
    limit_settings = LimitSettings(
        cl=float(cl),
        test_stat=test_stat,
        base_distribution=calc_base_dist,
        max_iterations=int(max_iterations),
        rtol=float(rtol),
        fit_starts="both" if both_starts else ("warm" if warm_start else "cold"),
    )
    data = prepare_call(model, data, fit_settings)
    mus, status, iterations = _compiled_limits(model, data, fit_settings, limit_settings)
    poi = model.config.poi_index
    poi_bounds = jnp.stack([model.config.lower[poi], model.config.upper[poi]])
    outside = (mus < poi_bounds[0]) | (mus > poi_bounds[1])
    return UpperLimitResult(observed=mus[0], expected=mus[1:], converged=status.converged, iterations=iterations,
                            curve_converged=status.curve_converged, discontinuous=status.discontinuous,
                            outside_poi_bounds=jax.lax.stop_gradient(outside),
                            poi_bounds=jax.lax.stop_gradient(poi_bounds))
