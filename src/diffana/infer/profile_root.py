"""The POI value where a profile-likelihood ratio reaches a level: q(μ) = z².

Every asymptotic limit without a CLs division in the way reduces to this root:

* the profile-likelihood upper limit of a bump hunt (q̃(s) = Φ⁻¹(cl)²);
* the expected CLs limits on background-only Asimov data, where CLs of band n is a
  function of q_A alone and the root of CLs = 1 − cl is √q_A(μ) = Φ⁻¹(1 − α·Φ(−n)) − n
  (see :mod:`diffana.infer.expected_limits`).

q(μ) = deviance(μ, θ̂_μ) − reference, one fit with the POI held per step. Its slope
dq/dμ is the POI component of the deviance gradient at that fit (envelope theorem:
the profiled parameters sit at their minimum), so Newton's step costs no extra fit.
The step is taken on r(μ) = √q(μ) − z, nearly linear in μ (exactly so for a Gaussian
likelihood), hence 2–5 steps from a Gaussian guess, kept inside the bracket known so
far; bisection (or moving up while no upper end is known) where Newton would leave it.
Each fit starts from the previous one's parameters (warm start).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffana.infer.fit import minimize_deviance
from diffana.infer.protocol import gradient_and_hessian
from diffana.infer.settings import ParameterSetup

__all__ = ["ProfileRoot", "solve_profile_root", "Q_TOLERANCE", "MAX_ITERATIONS"]

#: stop when q(μ) is within this of z² (q is −2 ln λ, of order 1–10; 1e-9 moves a
#: 90% limit by ~1e-9 of its Gaussian error)
Q_TOLERANCE = 1e-9
MAX_ITERATIONS = 30


class ProfileRoot(NamedTuple):
    """Result (and loop state) of the search for q(μ) = z².

    ``poi``: the next POI value to try (in the result: the root); ``tried``: the POI
    of the last fit; ``low`` / ``high``: the bracket (largest POI with q < z²,
    smallest with q > z², inf while unknown); ``pars``: the last fit's parameters;
    ``residual``: q − z² there; ``slope``: dq/dμ there; ``fits_converged``: every fit
    converged; ``iteration``: fits done.
    """

    poi: jax.Array
    tried: jax.Array
    low: jax.Array
    high: jax.Array
    pars: jax.Array
    residual: jax.Array
    slope: jax.Array
    fits_converged: jax.Array
    iteration: jax.Array

    @property
    def converged(self) -> jax.Array:
        """The root was found to :data:`Q_TOLERANCE` with converged fits."""
        return (jnp.abs(self.residual) <= Q_TOLERANCE) & self.fits_converged


def _next_poi(state: ProfileRoot, q, slope, z):
    """Newton's step on √q − z inside the bracket, else bisection or a move upwards."""
    root_q = jnp.sqrt(jnp.maximum(q, 1e-300))
    derivative = slope / (2.0 * root_q)
    newton = state.tried - (root_q - z) / derivative
    inside = jnp.isfinite(newton) & (newton > state.low) & (newton < state.high) & (derivative > 0)
    fallback = jnp.where(jnp.isfinite(state.high), 0.5 * (state.low + state.high),
                         state.low + 2.0 * (state.tried - state.low) + 1.0)
    return jnp.where(inside, newton, fallback)


def solve_profile_root(model, data, reference, z, guess, low, start_pars, setup: ParameterSetup,
                       solver, highest=jnp.inf) -> ProfileRoot:
    """The POI μ > ``low`` where deviance(μ, θ̂_μ) − ``reference`` = ``z``² on ``data``.

    ``guess``: first POI value to try; ``low``: a POI known to lie below the root
    (q(low) < z², e.g. the best fit); ``start_pars``: the first fit's start;
    ``setup``: start values, bounds and fixed mask; ``solver``: the fits'
    :class:`~diffana.infer.SolverOptions`. The slope comes from the model's
    structured gradient where it has one (:func:`~diffana.infer.protocol.gradient_and_hessian`;
    the unused Hessian is dropped by the compiler). POI values are capped at the POI's upper bound. Pure, vmappable, not differentiated
    (callers apply the implicit function theorem at the root).
    """
    poi = model.config.poi_index
    pinned = setup.fixed.at[poi].set(True)
    def body(state: ProfileRoot) -> ProfileRoot:
        poi_value = jnp.minimum(state.poi, highest)
        fit = minimize_deviance(model, data, state.pars.at[poi].set(poi_value), setup.lower, setup.upper,
                                pinned, solver)
        q = fit.value - reference
        slope = gradient_and_hessian(model, fit.x, data)[0][poi]
        residual = q - z**2
        low = jnp.where(residual < 0, poi_value, state.low)
        high = jnp.where(residual > 0, poi_value, state.high)
        searched = state._replace(tried=poi_value, low=low, high=high)
        return ProfileRoot(poi=_next_poi(searched, q, slope, z), tried=poi_value, low=low, high=high,
                           pars=fit.x, residual=residual, slope=slope,
                           fits_converged=state.fits_converged & fit.converged, iteration=state.iteration + 1)

    def searching(state: ProfileRoot):
        return (jnp.abs(state.residual) > Q_TOLERANCE) & (state.iteration < MAX_ITERATIONS)

    guess = jnp.asarray(guess, dtype=float)
    start = ProfileRoot(poi=guess, tried=guess, low=jnp.asarray(low, dtype=float), high=jnp.array(jnp.inf),
                        pars=start_pars, residual=jnp.array(jnp.inf), slope=jnp.array(jnp.nan),
                        fits_converged=jnp.array(True), iteration=jnp.array(0))
    final = jax.lax.while_loop(searching, body, start)
    # the root is the last POI fitted (within tolerance of q = z² there)
    return final._replace(poi=final.tried)
