"""Maximum-likelihood fits: unconditional and with the parameter of interest fixed.

pyhf's function names and argument order (``fit(data, model)``,
``fixed_poi_fit(poi_value, data, model)``). The objective is ``-2 log L``; the
minimiser is a projected Newton method with implicit-differentiation gradients
(:mod:`diffana.infer.minimize`), so fitted parameters are differentiable w.r.t. the
model's templates and the data.

All fits go through :func:`minimize_deviance`; every entry point takes its start
values, bounds, fixed parameters and solver options as one :class:`FitSettings`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from diffana.infer.minimize import SolverOptions, minimize
from diffana.infer.protocol import StatisticalModel, check_is_model, gradient_and_hessian
from diffana.infer.settings import FitSettings, check_against_model, resolve_settings


class FitResult(eqx.Module):
    """Best-fit parameters, ``-2 log L`` there (pyhf's normalisation), and whether
    the fit converged."""

    bestfit: jax.Array
    twice_nll: jax.Array
    converged: jax.Array
    iterations: jax.Array


def deviance_objective(pars, args):
    """The fits' objective with ``args = (model, data)``: the deviance, i.e.
    ``-2 log L(pars | data)`` less a constant of the data (exact in float64 where
    ``-2 log L`` itself rounds off; see ``Model.deviance``)."""
    model, data = args
    return model.deviance(pars, data)


def deviance_gradient_and_hessian(pars, args):
    """Gradient and exact Hessian of :func:`deviance_objective` (the model's own
    structured method where it has one, see :func:`protocol.gradient_and_hessian`)."""
    model, data = args
    return gradient_and_hessian(model, pars, data)


def minimize_deviance(model: StatisticalModel, data, start, lower, upper, pinned, solver: SolverOptions):
    """Minimise ``model``'s deviance on ``data`` from ``start`` within the bounds,
    holding the ``pinned`` parameters at their start values: the one fit every
    entry point of :mod:`diffana.infer` runs. Returns a ``MinimizeResult``."""
    return minimize(deviance_objective, (model, data), start, lower, upper, pinned, solver,
                    deviance_gradient_and_hessian)


def _fit_result(result, model, data) -> FitResult:
    """A minimisation of the deviance as a FitResult carrying ``-2 log L``."""
    twice_nll = result.value + model.saturated_twice_nll(data)
    return FitResult(result.x, twice_nll, result.converged, result.iterations)


def prepare_call(model: StatisticalModel, data, settings: FitSettings, needs_poi: bool = True):
    """The checks every entry point runs outside ``jit``: the model follows the
    protocol, has a POI (if ``needs_poi``), the data and settings fit it.
    Returns the data as a float64 array."""
    check_is_model(model)
    if needs_poi:
        poi_index(model)
    check_against_model(settings, model.config)
    return model.check_data(data)


def fit(
    data,
    model: StatisticalModel,
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    options: SolverOptions | None = None,
    *,
    settings: FitSettings | None = None,
) -> FitResult:
    """Unconditional maximum-likelihood fit of ``model`` to ``data``.

    Args:
        data: main observations followed by auxiliary data (``model.config.nmaindata
            + model.config.nauxdata`` values, event counts).
        model: the statistical model (any :class:`~diffana.infer.protocol.StatisticalModel`).
        init_pars, par_bounds, fixed_params, options: as in pyhf; or
        settings: all of them as one :class:`FitSettings`. Parameters the model
            itself fixes (e.g. shapesys bins with no uncertainty) stay fixed.
    """
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    data = prepare_call(model, data, settings, needs_poi=False)
    return _fit(data, model, settings)


@eqx.filter_jit
def _fit(data, model, settings):
    setup = settings.resolve(model.config)
    result = minimize_deviance(model, data, setup.init, setup.lower, setup.upper, setup.fixed, settings.solver)
    return _fit_result(result, model, data)


def fixed_poi_fit(
    poi_value,
    data,
    model: StatisticalModel,
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    options: SolverOptions | None = None,
    *,
    settings: FitSettings | None = None,
) -> FitResult:
    """Fit with the parameter of interest held at ``poi_value`` (profiling the rest)."""
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    data = prepare_call(model, data, settings)
    return _fixed_poi_fit(jnp.asarray(poi_value, jnp.float64), data, model, settings)


@eqx.filter_jit
def _fixed_poi_fit(poi_value, data, model, settings):
    poi = model.config.poi_index
    setup = settings.resolve(model.config)
    result = minimize_deviance(model, data, setup.init.at[poi].set(poi_value), setup.lower, setup.upper,
                               setup.fixed.at[poi].set(True), settings.solver)
    return _fit_result(result, model, data)


def poi_index(model: StatisticalModel) -> int:
    """The model's POI index; a one-line error if it has none."""
    if model.config.poi_index is None:
        raise ValueError(
            "this model has no parameter of interest; build it with poi_name=... "
            "(profile-likelihood test statistics need one)"
        )
    return model.config.poi_index


def asimov_data(model: StatisticalModel, poi_value=0.0, pars=None, include_auxdata: bool = True) -> jax.Array:
    """Asimov data set: the expected data at ``pars`` (default: the suggested
    initial values, i.e. the nominal "pre-fit" model) with the POI set to
    ``poi_value``. Main bins then auxiliary data, as a data vector for the fits."""
    poi = poi_index(model)
    pars = model.config.init if pars is None else jnp.asarray(pars, jnp.float64)
    pars = pars.at[poi].set(jnp.asarray(poi_value, jnp.float64))
    return model.expected_data(pars, include_auxdata=include_auxdata)


def fitted_asimov_data(poi_value, data, model: StatisticalModel, init_pars=None, par_bounds=None, fixed_params=None,
                       options: SolverOptions | None = None, *, settings: FitSettings | None = None):
    """pyhf's ``generate_asimov_data``: expected data at the nuisance parameters
    fitted to ``data`` with the POI fixed at ``poi_value``. Returns (data, fit result)."""
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    result = fixed_poi_fit(poi_value, data, model, settings=settings)
    return model.expected_data(result.bestfit), result


def check_converged(result, what: str = "fit"):
    """Raise if an eagerly computed result did not converge (no-op under tracing)."""
    converged = result.converged
    if isinstance(converged, jax.core.Tracer):
        return result
    if not bool(jnp.all(converged)):
        raise RuntimeError(
            f"the {what} did not converge; check the model for parameters without "
            "constraint or data, or start values far from the minimum"
        )
    return result
