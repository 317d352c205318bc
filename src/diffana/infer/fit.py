"""Maximum-likelihood fits: unconditional and with the parameter of interest fixed.

pyhf's function names and argument order (``fit(data, model)``,
``fixed_poi_fit(poi_value, data, model)``). The objective is ``-2 log L``; the
minimiser is a projected Newton method with implicit-differentiation gradients
(:mod:`diffana.infer.minimize`), so fitted parameters are differentiable w.r.t. the
model's templates and the data.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from diffana.infer.minimize import SolverOptions, minimize
from diffana.model import Model


class FitResult(eqx.Module):
    """Best-fit parameters, ``-2 log L`` there (pyhf's normalisation), and whether
    the fit converged."""

    bestfit: jax.Array
    twice_nll: jax.Array
    converged: jax.Array
    iterations: jax.Array


def twice_nll_objective(pars, args):
    """The fits' objective with ``args = (model, data)``: the deviance, i.e.
    ``-2 log L(pars | data)`` less a constant of the data (exact in float64 where
    ``-2 log L`` itself rounds off; see ``Model.deviance``)."""
    model, data = args
    return model.deviance(pars, data)


def _fit_result(result, model, data) -> FitResult:
    """A minimisation of the deviance as a FitResult carrying ``-2 log L``."""
    twice_nll = result.value + model.saturated_twice_nll(data)
    return FitResult(result.x, twice_nll, result.converged, result.iterations)


def twice_nll_gradient_and_hessian(pars, args):
    """Gradient and exact Hessian of :func:`twice_nll_objective` (one linearisation,
    structurally sparse, cheap)."""
    model, data = args
    return model.deviance_gradient_and_hessian(pars, data)


def _fit_settings(model: Model, init_pars, par_bounds, fixed_params):
    config = model.config
    init = config.init if init_pars is None else jnp.asarray(init_pars, jnp.float64)
    if par_bounds is None:
        lower, upper = config.lower, config.upper
    else:
        bounds = jnp.asarray(par_bounds, jnp.float64)
        lower, upper = bounds[:, 0], bounds[:, 1]
    fixed = config.fixed if fixed_params is None else jnp.asarray(fixed_params, bool) | config.fixed
    return init, lower, upper, fixed


def fit(
    data,
    model: Model,
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    options: SolverOptions = SolverOptions(),
) -> FitResult:
    """Unconditional maximum-likelihood fit of ``model`` to ``data``.

    Args:
        data: main bins followed by auxiliary data (``model.config.nmaindata +
            model.config.nauxdata`` values, event counts).
        model: the statistical model.
        init_pars, par_bounds, fixed_params: as in pyhf; default to the model's
            suggested values. Parameters the model itself fixes (e.g. shapesys bins
            with no uncertainty) stay fixed.
    """
    data = model.check_data(data)
    return _fit(data, model, *as_arrays(init_pars, par_bounds, fixed_params), options)


@eqx.filter_jit
def _fit(data, model, init_pars, par_bounds, fixed_params, options):
    init, lower, upper, fixed = _fit_settings(model, init_pars, par_bounds, fixed_params)
    result = minimize(twice_nll_objective, (model, data), init, lower, upper, fixed, options, twice_nll_gradient_and_hessian)
    return _fit_result(result, model, data)


def as_arrays(init_pars, par_bounds, fixed_params):
    """User-supplied fit settings as arrays (lists would be static, unhashable jit keys)."""
    return (
        None if init_pars is None else jnp.asarray(init_pars, jnp.float64),
        None if par_bounds is None else jnp.asarray(par_bounds, jnp.float64),
        None if fixed_params is None else jnp.asarray(fixed_params, bool),
    )


def fixed_poi_fit(
    poi_value,
    data,
    model: Model,
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    options: SolverOptions = SolverOptions(),
) -> FitResult:
    """Fit with the parameter of interest held at ``poi_value`` (profiling the rest)."""
    _poi_index(model)
    data = model.check_data(data)
    poi_value = jnp.asarray(poi_value, jnp.float64)
    return _fixed_poi_fit(poi_value, data, model, *as_arrays(init_pars, par_bounds, fixed_params), options)


@eqx.filter_jit
def _fixed_poi_fit(poi_value, data, model, init_pars, par_bounds, fixed_params, options):
    poi = model.config.poi_index
    init, lower, upper, fixed = _fit_settings(model, init_pars, par_bounds, fixed_params)
    init = init.at[poi].set(poi_value)
    fixed = fixed.at[poi].set(True)
    result = minimize(twice_nll_objective, (model, data), init, lower, upper, fixed, options, twice_nll_gradient_and_hessian)
    return _fit_result(result, model, data)


def _poi_index(model: Model) -> int:
    if model.config.poi_index is None:
        raise ValueError(
            "this model has no parameter of interest; build it with poi_name=... "
            "(profile-likelihood test statistics need one)"
        )
    return model.config.poi_index


def asimov_data(model: Model, poi_value=0.0, pars=None, include_auxdata: bool = True) -> jax.Array:
    """Asimov data set: the expected data at ``pars`` (default: the suggested
    initial values, i.e. the nominal "pre-fit" model) with the POI set to
    ``poi_value``. Main bins then auxiliary data, as a data vector for the fits."""
    poi = _poi_index(model)
    pars = model.config.init if pars is None else jnp.asarray(pars, jnp.float64)
    pars = pars.at[poi].set(jnp.asarray(poi_value, jnp.float64))
    return model.expected_data(pars, include_auxdata=include_auxdata)


def fitted_asimov_data(poi_value, data, model: Model, init_pars=None, par_bounds=None, fixed_params=None):
    """pyhf's ``generate_asimov_data``: expected data at the nuisance parameters
    fitted to ``data`` with the POI fixed at ``poi_value``. Returns (data, parameters)."""
    result = fixed_poi_fit(poi_value, data, model, init_pars, par_bounds, fixed_params)
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
