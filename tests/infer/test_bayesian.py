"""Bayesian upper limits (``infer.bayesian.bayesian_upper_limit``).

References:

* Known background, no nuisance: Helene's formula, 1 − CL = Γ(n+1, s+b) / Γ(n+1, b)
  (regularised upper incomplete gamma), solved by brentq, and the published table
  (90%: b = 0, n = 0…5 and b = 3, n = 0…7).
* One log-normal background nuisance: the 2-D integral over (μ, α) by
  ``scipy.integrate.quad``; the limit must approach Helene's as the width → 0.
* Importance sampling against Gauss–Hermite quadrature within the Monte Carlo error
  that importance sampling itself states.

Every call is a stacked one of one structure, so each (structure, method) compiles
once (module-scoped fixtures).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import brentq
from scipy.special import gammaincc
from scipy.stats import norm

import diffana  # noqa: F401  (float64)
from diffana.errors import ConfigError
from diffana.infer.bayesian import bayesian_upper_limit
from diffana.infer.lee import stack_models
from diffana.model import CountingModel, LogNormalNuisance, Model

CL = 0.90
POI_TOP = 60.0
HELENE_TABLE = {  # 90% credibility, signal events (b, n) → s_up
    0.0: [2.303, 3.890, 5.322, 6.681, 7.994, 9.275],
    3.0: [2.303, 2.839, 3.523, 4.362, 5.345, 6.437, 7.599, 8.796],
}
CASES = [(b, n) for b, limits in HELENE_TABLE.items() for n in range(len(limits))]
WIDTHS = (0.3, 0.1, 0.01, 0.001)  # relative background uncertainties, κ = 1 + width
N_OBSERVED, BACKGROUND = 5, 3.0


def helene(n: int, b: float, cl: float = CL) -> float:
    """Helene's upper limit on s for n events over a known background b."""
    return brentq(lambda s: gammaincc(n + 1, s + b) / gammaincc(n + 1, b) - (1 - cl), 0.0, 100.0, xtol=1e-14)


def one_bin_model(b: float) -> Model:
    """One bin: signal 1 event × normfactor mu (bounds [0, 60]), background b, no modifiers."""
    spec = {"channels": [{"name": "bin", "samples": [
        {"name": "signal", "data": [1.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [b], "modifiers": []},
    ]}]}
    return Model.from_spec(spec, poi_name="mu", parameters=[{"name": "mu", "bounds": [[0.0, POI_TOP]]}])


def counting_model(width: float, poi_top: float = POI_TOP) -> CountingModel:
    """Signal 1 event per unit of μ over a background of 3 events known up to a
    log-normal factor κ^α, κ = 1 + width (b0 fixed: one nuisance, α)."""
    return CountingModel.build(signal_per_poi=1.0, background=BACKGROUND, background_fixed=True,
                               nuisances=[LogNormalNuisance("background", background_kappa=1.0 + width)],
                               poi_bounds=(0.0, poi_top))


@pytest.fixture(scope="module")
def helene_limits():
    models = stack_models([one_bin_model(b) for b, _ in CASES])
    data = np.array([[float(n)] for _, n in CASES])
    return bayesian_upper_limit(data, models, CL)


@pytest.fixture(scope="module")
def counting_stack():
    models = stack_models([counting_model(w) for w in WIDTHS])
    return models, counting_model(WIDTHS[0]).observed_data(N_OBSERVED, BACKGROUND)


@pytest.fixture(scope="module")
def by_quadrature(counting_stack):
    models, data = counting_stack
    return bayesian_upper_limit(data, models, CL, method="quadrature")


@pytest.fixture(scope="module")
def by_importance(counting_stack):
    models, data = counting_stack
    return bayesian_upper_limit(data, models, CL, method="importance", key=7)


def test_known_background_matches_helene(helene_limits):
    assert helene_limits.method == "exact"  # no nuisance parameter: the marginal is L itself
    for i, (b, n) in enumerate(CASES):
        limit = float(helene_limits.limit[i])
        assert bool(helene_limits.valid[i]), (b, n)
        assert limit == pytest.approx(helene(n, b), rel=1e-4), (b, n)
        assert round(limit, 3) == HELENE_TABLE[b][n], (b, n)
        # The stated numerical error covers the actual one.
        assert abs(limit - helene(n, b)) <= max(3 * float(helene_limits.limit_error[i]), 1e-9 * limit), (b, n)


def test_posterior_is_normalised(helene_limits):
    i = CASES.index((3.0, 5))
    grid, density, cdf = (np.asarray(x[i]) for x in (helene_limits.poi_grid, helene_limits.posterior,
                                                     helene_limits.cdf))
    assert cdf[0] == pytest.approx(0.0, abs=1e-15) and cdf[-1] == pytest.approx(1.0, abs=1e-12)
    # The known-background posterior: (s + b)^n e^-(s+b) normalised on s ≥ 0.
    exact = (grid + 3.0) ** 5 * np.exp(-(grid + 3.0)) / (math.gamma(6) * gammaincc(6, 3.0))
    np.testing.assert_allclose(density, exact, rtol=1e-6, atol=1e-12)


def test_limit_tends_to_helene_as_uncertainty_vanishes(by_quadrature):
    reference = helene(N_OBSERVED, BACKGROUND)
    distances = np.abs(np.asarray(by_quadrature.limit) - reference) / reference
    assert np.all(np.diff(distances) < 0), distances
    assert distances[0] > 1e-3  # a 30% uncertainty does move the limit
    assert distances[-1] < 1e-5
    assert np.all(np.asarray(by_quadrature.valid))


def _brute_force_limit(width: float) -> float:
    """The 90% limit of the 2-D posterior p(μ, α) ∝ Pois(n | μ + b κ^α) φ(α) by
    scipy.integrate, μ flat on [0, 60], α ∈ [−5, 5] (the pull's bounds). The μ
    integral of the Poisson density is done in closed form,
    ∫_0^t Pois(n | μ + B) dμ = Q(n+1, B) − Q(n+1, B + t), the α integral by quad."""
    log_kappa = math.log1p(width)

    def mass(top):
        def integrand(a):
            b = BACKGROUND * math.exp(a * log_kappa)
            return (gammaincc(N_OBSERVED + 1, b) - gammaincc(N_OBSERVED + 1, b + top)) * norm.pdf(a)
        return integrate.quad(integrand, -5.0, 5.0, epsabs=0, epsrel=1e-13, limit=200)[0]

    total = mass(POI_TOP)
    return brentq(lambda top: mass(top) / total - CL, 1.0, 30.0, xtol=1e-13)


def test_one_nuisance_matches_scipy_double_integral(by_quadrature):
    expected = _brute_force_limit(WIDTHS[0])
    assert float(by_quadrature.limit[0]) == pytest.approx(expected, rel=1e-6)


def test_importance_sampling_agrees_with_quadrature(by_importance, by_quadrature):
    error = np.asarray(by_importance.monte_carlo_error)
    limits = np.asarray(by_importance.limit)
    assert np.all(error < 1e-4 * limits)  # the stated error is small enough to test something
    assert np.all(error > 0)
    difference = np.abs(limits - np.asarray(by_quadrature.limit))
    allowed = 4 * np.hypot(error, np.asarray(by_importance.grid_error) + np.asarray(by_quadrature.grid_error))
    assert np.all(difference <= allowed), (difference, allowed)
    assert np.all(np.asarray(by_importance.effective_sample_size) > 1000)


def test_stacked_call_equals_a_loop(helene_limits):
    for i in (0, 4, 9, 13):
        b, n = CASES[i]
        single = bayesian_upper_limit(np.array([float(n)]), one_bin_model(b), CL)
        assert float(single.limit) == pytest.approx(float(helene_limits.limit[i]), rel=1e-8, abs=0)
        np.testing.assert_allclose(single.posterior, helene_limits.posterior[i], rtol=1e-8, atol=1e-14)


@pytest.mark.slow
def test_stacked_importance_sampling_equals_a_loop(counting_stack, by_importance):
    models, data = counting_stack
    for i, width in enumerate(WIDTHS[:3]):
        single = bayesian_upper_limit(data, counting_model(width), CL, method="importance", key=7)
        assert float(single.limit) == pytest.approx(float(by_importance.limit[i]), rel=1e-8, abs=0)
        np.testing.assert_allclose(single.posterior, by_importance.posterior[i], rtol=1e-8, atol=1e-14)


def test_prior_bound_that_cuts_the_posterior_is_reported(counting_stack):
    models = stack_models([counting_model(w, poi_top=6.0) for w in WIDTHS])
    with pytest.warns(RuntimeWarning, match="upper bound 6 cuts off"):
        result = bayesian_upper_limit(counting_stack[1], models, CL, method="quadrature")
    assert np.all(np.asarray(result.truncated)) and not np.any(np.asarray(result.valid))
    assert np.all(np.asarray(result.limit) < 6.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"cl": 1.5}, r"cl must be a number in \(0, 1\)"),
    ({"cl": 0.0}, r"cl must be a number in \(0, 1\)"),
    ({"method": "mcmc"}, "method must be one of"),
    ({"n_grid": 64}, "n_grid must be an odd number"),
    ({"n_samples": 1000}, "n_samples must be"),
    ({"poi_max": 80.0}, r"poi_max must lie in .* = \(0, 60\]"),
    ({"poi_max": -1.0}, r"poi_max must lie in"),
])
def test_bad_arguments(kwargs, match):
    model = counting_model(0.3)
    arguments = {"cl": CL, **kwargs}
    cl = arguments.pop("cl")
    with pytest.raises(ConfigError, match=match):
        bayesian_upper_limit(model.observed_data(5, 3), model, cl, **arguments)


def test_bad_data_and_models():
    model = counting_model(0.3)
    with pytest.raises(ValueError, match="data has shape"):
        bayesian_upper_limit(jnp.array([5.0, 3.0]), model)
    with pytest.raises(ValueError, match="negative"):
        bayesian_upper_limit(jnp.array([-1.0, 3.0, 0.0]), model)
    spec = one_bin_model(1.0)
    no_poi = Model.from_spec({"channels": [{"name": "bin", "samples": [
        {"name": "background", "data": [1.0], "modifiers": [{"name": "b", "type": "normfactor", "data": None}]}]}]},
        poi_name=None)
    with pytest.raises(ValueError, match="no parameter of interest"):
        bayesian_upper_limit(jnp.array([1.0]), no_poi)
    many = CountingModel.build(signal_per_poi=1.0, background=3.0, background_fixed=True,
                               nuisances=[LogNormalNuisance(f"n{i}", background_kappa=1.1) for i in range(4)])
    with pytest.raises(ConfigError, match="at most 3 free nuisance"):
        bayesian_upper_limit(many.observed_data(5, 3), many, method="quadrature")
    stacked = stack_models([spec, spec])
    with pytest.raises(ValueError, match="one row per member"):
        bayesian_upper_limit(np.ones((3, 1)), stacked)
