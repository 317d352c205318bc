"""The likelihood is exact in float64 at extreme counts and constraint widths.

A published ATLAS likelihood has an MC-statistics shapesys of 0.001 on 435 events:
its Poisson constraint has τ = (435/0.001)² = 1.9e11. The textbook form
n log λ − λ − lgamma(n + 1) is then a difference of terms of order 10¹² and moves
in steps of 2⁻⁹ whatever the parameter does. The references here are computed with
50-digit arithmetic (mpmath).
"""

import math

import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.model import Model
from diffana.model.model import _poisson_log_ratio, _poisson_saturated_logpdf

mpmath.mp.dps = 50
TAU = (435.0 / 0.001) ** 2


def exact_log_poisson(n, rate):
    n, rate = mpmath.mpf(n), mpmath.mpf(rate)
    if n == 0:
        return -rate
    return n * mpmath.log(rate) - rate - mpmath.loggamma(n + 1)


@pytest.mark.parametrize("n, rate", [
    (0.0, 3.0), (1.0, 1e-3), (5.0, 5.0), (435.0, 430.0), (TAU, TAU), (TAU, TAU * (1 + 2.3e-6)),
    (TAU, TAU * (1 - 1e-9)), (4.7e12, 4.7e12 * (1 + 1e-7)), (2.5, 1e6),
])
def test_poisson_terms_match_fifty_digit_arithmetic(n, rate):
    ratio = float(_poisson_log_ratio(jnp.asarray(n), jnp.asarray(rate)))
    saturated = float(_poisson_saturated_logpdf(jnp.asarray(n)))
    exact_ratio = exact_log_poisson(n, rate) - (exact_log_poisson(n, n) if n > 0 else 0)
    exact_saturated = exact_log_poisson(n, n) if n > 0 else 0
    assert ratio == pytest.approx(float(exact_ratio), rel=1e-12, abs=1e-12)
    assert saturated == pytest.approx(float(exact_saturated), rel=1e-13, abs=1e-13)


def test_poisson_log_ratio_edges():
    assert float(_poisson_log_ratio(jnp.asarray(3.0), jnp.asarray(0.0))) == -math.inf
    assert float(_poisson_log_ratio(jnp.asarray(0.0), jnp.asarray(0.0))) == 0.0


def extreme_shapesys_model():
    """One bin, a background with the ATLAS workspace's extreme MC-statistics error."""
    spec = {"channels": [{"name": "CRISR", "samples": [
        {"name": "signal", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "diboson", "data": [435.0], "modifiers": [
            {"name": "mcstat", "type": "shapesys", "data": [0.001]},
            {"name": "syst", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
    ]}]}
    model = Model.from_spec(spec)
    data = jnp.concatenate([jnp.array([450.0]), model.config.auxdata])
    return model, data


def test_deviance_resolves_tiny_moves_of_an_extremely_constrained_gamma():
    model, data = extreme_shapesys_model()
    gamma = model.config.par_slice("mcstat").start
    pars = model.config.init
    step = 1e-7  # 0.04 standard deviations of the constraint (width 2.3e-6)
    moved = pars.at[gamma].set(1.0 + step)
    change = float(model.deviance(moved, data) - model.deviance(pars, data))
    # -2 × the change of the Poisson constraint plus the main term's, to first order
    tau = float(model.config.auxdata[-1])  # normsys aux first, then shapesys
    exact = -2 * float(exact_log_poisson(tau, tau * (1 + step)) - exact_log_poisson(tau, tau))
    main = -2 * float(exact_log_poisson(450.0, 5.0 + 435.0 * (1 + step)) - exact_log_poisson(450.0, 440.0))
    assert change == pytest.approx(exact + main, rel=1e-7)
    # -2 ln L is the deviance plus a constant: the same change, to its own rounding
    twice_nll_change = float(model.twice_nll(moved, data) - model.twice_nll(pars, data))
    assert twice_nll_change == pytest.approx(change, abs=1e-3)


def test_twice_nll_matches_fifty_digit_arithmetic():
    model, data = extreme_shapesys_model()
    pars = model.config.init.at[model.config.poi_index].set(1.3)
    tau = float(model.config.auxdata[-1])  # normsys aux first, then shapesys
    gaussian = 0.5 * math.log(2 * math.pi)  # normsys constraint at its aux value
    exact = -2 * (exact_log_poisson(450.0, 5.0 * 1.3 + 435.0) + exact_log_poisson(tau, tau) - gaussian)
    assert float(model.twice_nll(pars, data)) == pytest.approx(float(exact), abs=1e-9)


def test_fit_converges_in_few_iterations_with_an_extreme_constraint():
    """With -2 ln L rounding in steps of 2^-9 the fit stalled at round-off; on the
    deviance it converges like any well-posed fit."""
    model, data = extreme_shapesys_model()
    result = infer.fit(data, model)
    assert bool(result.converged)
    assert int(result.iterations) < 20
    gamma = model.config.par_slice("mcstat").start
    assert abs(float(result.bestfit[gamma]) - 1.0) < 1e-4
    # 5 signal events at mu = 1 absorb the excess of 10: mu = 3
    assert float(result.bestfit[model.config.poi_index]) == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(float(result.twice_nll), float(model.twice_nll(result.bestfit, data)), atol=1e-9)
