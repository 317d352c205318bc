"""diffana.infer against its protocol: a model written from scratch (not the
HistFactory Model) goes through fits, hypotest, limits and toys, and agrees with
the same likelihood built as a HistFactory model; FitSettings is one object for
every entry point."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffana import infer
from diffana.infer.protocol import StatisticalModel, gradient_and_hessian
from diffana.model import Model
from diffana.model.model import _poisson_log_ratio, _poisson_saturated_logpdf


class _Config(eqx.Module):
    init: jax.Array
    lower: jax.Array
    upper: jax.Array
    fixed: jax.Array
    poi_index: int = eqx.field(static=True, default=0)

    @property
    def npars(self):
        return 2

    @property
    def par_names(self):
        return ["mu", "alpha"]

    @property
    def nmaindata(self):
        return 1

    @property
    def nauxdata(self):
        return 1

    @property
    def auxdata(self):
        return jnp.zeros(1)


class OneBinModel(eqx.Module):
    """One Poisson count of rate μ·s + b·(1 + σ_b α), α ~ N(0, 1): the smallest
    model with a POI and a constrained nuisance (no structured Hessian, so the
    protocol's autodiff fallback is exercised)."""

    signal: jax.Array
    background: jax.Array
    relative_uncertainty: jax.Array
    config: _Config

    def __init__(self, signal, background, relative_uncertainty):
        self.signal = jnp.asarray(signal, jnp.float64)
        self.background = jnp.asarray(background, jnp.float64)
        self.relative_uncertainty = jnp.asarray(relative_uncertainty, jnp.float64)
        self.config = _Config(jnp.array([1.0, 0.0]), jnp.array([0.0, -5.0]), jnp.array([10.0, 5.0]),
                              jnp.zeros(2, bool))

    def _rate(self, pars):
        return pars[0] * self.signal + self.background * (1.0 + self.relative_uncertainty * pars[1])

    def expected_data(self, pars, include_auxdata=True):
        main = self._rate(pars)[None]
        return jnp.concatenate([main, pars[1:2]]) if include_auxdata else main

    def deviance(self, pars, data):
        log_ratio = _poisson_log_ratio(data[0], self._rate(pars)) - 0.5 * (data[1] - pars[1]) ** 2
        return -2.0 * log_ratio

    def saturated_twice_nll(self, data):
        return -2.0 * (_poisson_saturated_logpdf(data[0]) - 0.5 * jnp.log(2 * jnp.pi))

    def sample_data(self, key, pars, n_toys):
        key_main, key_aux = jax.random.split(key)
        main = jax.random.poisson(key_main, self._rate(pars), (n_toys,)).astype(jnp.float64)
        aux = pars[1] + jax.random.normal(key_aux, (n_toys,), jnp.float64)
        return jnp.stack([main, aux], axis=1)

    def check_data(self, data):
        data = jnp.asarray(data, jnp.float64)
        if data.shape != (2,):
            raise ValueError(f"data must be [count, auxiliary datum], got shape {data.shape}")
        return data


SIGNAL, BACKGROUND, UNCERTAINTY, OBSERVED = 5.0, 10.0, 0.1, 12.0


@pytest.fixture(scope="module")
def models():
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": [SIGNAL], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [BACKGROUND], "modifiers": [
            {"name": "alpha", "type": "histosys",
             "data": {"hi_data": [BACKGROUND * (1 + UNCERTAINTY)], "lo_data": [BACKGROUND * (1 - UNCERTAINTY)]}}]},
    ]}]}
    # code0: linear in alpha, as OneBinModel
    histfactory = Model.from_spec(spec, histosys_interp="code0",
                                  parameters=[{"name": "mu", "bounds": [[0.0, 10.0]]}])
    return OneBinModel(SIGNAL, BACKGROUND, UNCERTAINTY), histfactory


def test_a_model_from_scratch_follows_the_protocol(models):
    own, histfactory = models
    assert isinstance(own, StatisticalModel) and isinstance(histfactory, StatisticalModel)
    # the HistFactory model orders parameters by modifier type: histosys first
    assert histfactory.config.par_names == ["alpha", "mu"]


def _swap(pars):
    return jnp.asarray(pars)[..., ::-1]


def test_fit_hypotest_and_limits_agree_with_the_histfactory_model(models):
    own, histfactory = models
    data = jnp.array([OBSERVED, 0.0])
    own_fit, hf_fit = infer.fit(data, own), infer.fit(data, histfactory)
    np.testing.assert_allclose(own_fit.bestfit, _swap(hf_fit.bestfit), atol=1e-8)
    np.testing.assert_allclose(own_fit.twice_nll, hf_fit.twice_nll, rtol=1e-12)
    own_test, hf_test = infer.hypotest(1.5, data, own), infer.hypotest(1.5, data, histfactory)
    np.testing.assert_allclose(own_test.cls_obs, hf_test.cls_obs, rtol=1e-9)
    np.testing.assert_allclose(own_test.cls_exp, hf_test.cls_exp, rtol=1e-9)
    own_limit, hf_limit = infer.upper_limit(data, own), infer.upper_limit(data, histfactory)
    assert bool(own_limit.converged)
    np.testing.assert_allclose(own_limit.observed, hf_limit.observed, rtol=1e-8)
    np.testing.assert_allclose(own_limit.expected, hf_limit.expected, rtol=1e-8)


def test_autodiff_hessian_fallback_is_exact(models):
    own, _ = models
    pars, data = jnp.array([0.7, 0.3]), jnp.array([OBSERVED, 0.2])
    gradient, hessian = gradient_and_hessian(own, pars, data)
    np.testing.assert_allclose(gradient, jax.grad(own.deviance)(pars, data), rtol=1e-12)
    np.testing.assert_allclose(hessian, jax.hessian(own.deviance)(pars, data), rtol=1e-12)


def test_toys_run_on_a_model_from_scratch(models):
    own, _ = models
    data = jnp.array([OBSERVED, 0.0])
    toys = infer.hypotest_toys(1.5, data, own, key=1, n_toys=400)
    asymptotic = infer.hypotest(1.5, data, own)
    # moderate counts: toys and asymptotics agree within a few Monte Carlo errors
    assert abs(float(toys.cls_obs) - float(asymptotic.cls_obs)) < 4 * float(toys.cls_obs_error) + 0.02
    sample = np.asarray(infer.sample_toys(2, own, own.config.init, 4000))
    np.testing.assert_allclose(sample.mean(axis=0), [SIGNAL + BACKGROUND, 0.0], atol=4 * np.sqrt(15 / 4000) + 0.05)


def test_fit_settings_equal_pyhf_keywords(models):
    _, histfactory = models
    data = jnp.array([OBSERVED, 0.0])
    fixed = np.array([True, False])  # hold alpha at its start value
    init = np.array([0.5, 1.0])
    by_keywords = infer.fit(data, histfactory, init_pars=init, fixed_params=fixed)
    settings = infer.FitSettings(init_pars=init, fixed_params=fixed)
    by_settings = infer.fit(data, histfactory, settings=settings)
    np.testing.assert_array_equal(by_keywords.bestfit, by_settings.bestfit)
    assert float(by_settings.bestfit[0]) == 0.5  # alpha held
    # the same object drives hypotest and the limit: holding alpha tightens the limit
    free = infer.upper_limit(data, histfactory).observed
    held = infer.upper_limit(data, histfactory, settings=infer.FitSettings(fixed_params=[True, False])).observed
    assert float(held) < float(free)


def test_fit_settings_errors_name_the_problem(models):
    _, histfactory = models
    data = jnp.array([OBSERVED, 0.0])
    with pytest.raises(ValueError, match="either settings=FitSettings"):
        infer.fit(data, histfactory, init_pars=[0.0, 1.0], settings=infer.FitSettings())
    with pytest.raises(ValueError, match="init_pars has shape \\(3,\\), but the model has 2 parameters"):
        infer.hypotest(1.0, data, histfactory, settings=infer.FitSettings(init_pars=[0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="is not a statistical model: it lacks"):
        infer.fit(data, object())
