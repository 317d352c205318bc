"""Expected CLs upper limits from the background-only Asimov data alone.

The objective of a selection trained for its limit is the *median expected* limit
(sometimes its ±1σ, ±2σ band): :func:`~diffana.infer.upper_limit` on the Asimov data
of POI = 0 computes it, but also the observed curve, the fit to the data, the Asimov
generating fit and, per root-search step, seven conditional fits, and its gradient
refits the seven. On background-only Asimov data none of that is needed:

* the data are the model's expectation at the nominal parameters θ₀ (POI = 0), so
  θ₀ is the unconditional minimum (the deviance is saturated there) — no free fit;
* expected CLs of band n depends on μ only through q_A(μ) = deviance(μ, θ̂_μ) −
  deviance(θ₀), and CLs_exp,n = 1 − cl solves in closed form for
  √q_A = Φ⁻¹(1 − α·Φ(−n)) − n, α = 1 − cl (pyhf's asymptotic formulae, normal base
  distribution; q_A and q̃_A coincide since μ̂ = 0);
* so each limit is the root of one profile curve, found by
  :func:`~diffana.infer.profile_root.solve_profile_root` with one fit per step;
* its gradient by the implicit function theorem, dμ*/dx = −(∂q_A/∂x)/(∂q_A/∂μ), needs
  only the deviance at the fitted point (envelope theorem: the profiled θ̂ do not
  move q_A to first order) — no fit in the backward pass.

Equal to ``upper_limit(asimov_data(model, 0), model, cl).expected`` to the root
tolerance (tests/infer/test_expected_limits.py), at 1/7 of the fits per step.
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

from diffana.infer.fit import poi_index
from diffana.infer.limits import (  # one rule for non-differentiable inputs, one σ_μ
    _zero_cotangent,
    poi_sigma,
)
from diffana.infer.profile_root import solve_profile_root
from diffana.infer.protocol import StatisticalModel, check_is_model
from diffana.infer.settings import FitSettings, check_against_model, resolve_settings

__all__ = ["ExpectedLimits", "expected_upper_limits", "MEDIAN", "BAND"]

MEDIAN = (0.0,)
"""The median expected limit alone."""
BAND = (2.0, 1.0, 0.0, -1.0, -2.0)
"""pyhf's order of the expected band: −2σ (lowest limit) … +2σ, as ``upper_limit(...).expected``."""


class ExpectedLimits(eqx.Module):
    """Expected upper limits on the POI (POI units), one per requested band.

    ``limits``: (K,) in the order of ``nsigma``; ``converged``: (K,) bool, the root
    found to tolerance with converged fits; ``iterations``: (K,) fits per root;
    ``outside_poi_bounds``: (K,) bool, the limit lies beyond the POI's bounds (it is
    still the root: a training objective needs its true value and slope there, but a
    quoted limit there says the model's POI range is too small).
    """

    limits: jax.Array
    converged: jax.Array
    iterations: jax.Array
    outside_poi_bounds: jax.Array


def expected_upper_limits(model: StatisticalModel, cl: float = 0.90, nsigma=MEDIAN, *,
                          settings: FitSettings | None = None) -> ExpectedLimits:
    """Expected CLs upper limits on the POI at confidence level ``cl`` from the
    background-only Asimov data of ``model`` (nominal parameters, POI = 0).

    ``nsigma``: the bands, e.g. :data:`MEDIAN` (default) or :data:`BAND`; n is the
    b-only quantile in Gaussian σ as in pyhf (n = 2 gives the −2σ, lowest limit).
    ``settings``: start values (the nominal point θ₀), bounds, fixed parameters and
    solver of the fits. Pure, jit-able, vmap-able over models built inside the
    vmapped function, differentiable w.r.t. the model's templates (implicit).
    """
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl must lie strictly between 0 and 1, got {cl}")
    nsigma = np.atleast_1d(np.asarray(nsigma, dtype=float))
    if nsigma.ndim != 1 or not np.all(np.isfinite(nsigma)):
        raise ValueError(f"nsigma must be a 1D list of finite numbers, got {nsigma!r}")
    settings = resolve_settings(settings)
    check_is_model(model)
    poi_index(model)
    check_against_model(settings, model.config)
    return _expected_limits(model, float(cl), tuple(nsigma.tolist()), settings)


def _targets(cl: float, nsigma) -> jax.Array:
    """√q_A at which expected CLs of band n equals 1 − cl (normal base distribution)."""
    n = jnp.asarray(nsigma)
    return -ndtri((1.0 - cl) * ndtr(-n)) - n


def _nominal_point(model, settings: FitSettings):
    """(setup, θ₀ with POI = 0, Asimov data there, deviance there)."""
    setup = settings.resolve(model.config)
    poi = model.config.poi_index
    nominal = setup.init.at[poi].set(0.0)
    data = model.expected_data(nominal)
    return setup, nominal, data, model.deviance(nominal, data)


def _gaussian_guess(model, nominal, data, setup, z):
    """z·σ_μ with σ_μ from the Asimov Hessian at the nominal point."""
    return z * poi_sigma(model, nominal, data, setup.fixed)


def _solve(model, cl: float, nsigma, settings: FitSettings):
    setup, nominal, data, reference = _nominal_point(model, settings)
    z = _targets(cl, nsigma)
    guess = _gaussian_guess(model, nominal, data, setup, z)

    def one(z_k, guess_k):
        return solve_profile_root(model, data, reference, z_k, guess_k, 0.0, nominal, setup, settings.solver)

    return jax.vmap(one)(z, guess)


def _result(model, roots, settings: FitSettings) -> ExpectedLimits:
    setup = settings.resolve(model.config)
    poi = model.config.poi_index
    outside = (roots.poi < setup.lower[poi]) | (roots.poi > setup.upper[poi])
    return ExpectedLimits(roots.poi, roots.converged, roots.iteration, outside)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _limits(model, cl, nsigma, settings):
    roots = _solve(jax.lax.stop_gradient(model), cl, nsigma, settings)
    return _result(model, roots, settings)


def _limits_fwd(model, cl, nsigma, settings):
    roots = _solve(jax.lax.stop_gradient(model), cl, nsigma, settings)
    return _result(model, roots, settings), (model, settings, roots.poi, roots.pars, roots.slope)


def _limits_bwd(cl, nsigma, residuals, cotangent: ExpectedLimits):
    """Implicit function theorem at each root μ*: q_A(μ*; x) = z² ⇒
    dμ*/dx = −(∂q_A/∂x)/(∂q_A/∂μ), with θ̂ held at the fit (envelope theorem) and the
    Asimov data and the reference moving with the model."""
    model, settings, limits, pars, slope = residuals
    weights = -cotangent.limits / slope

    def q_asimov(model):
        _, _, data, reference = _nominal_point(model, settings)
        deviance = jax.vmap(lambda p: model.deviance(p, data))(jax.lax.stop_gradient(pars))
        return deviance - reference

    _, vjp = jax.vjp(q_asimov, model)
    (model_bar,) = vjp(weights)
    return model_bar, jax.tree_util.tree_map(_zero_cotangent, settings)


_limits.defvjp(_limits_fwd, _limits_bwd)


@eqx.filter_jit
def _expected_limits(model, cl, nsigma, settings):
    return _limits(model, cl, nsigma, settings)
