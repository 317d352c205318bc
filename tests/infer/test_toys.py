"""Pseudo-experiments: sampling, toy-based CLs and the look-elsewhere effect.

The toy-based reference case from ROOT/pyhf's validation suite is checked in
tests/validation/test_pyhf_validation.py; here: the sampler's moments, toy CLs against the
asymptotic formulae where both must hold, and global p-values from toys against
the Gross–Vitells formula.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from diffana import infer
from diffana.infer import lee, toys
from diffana.model import Model


# ---------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def constrained_model():
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": [5.0, 10.0], "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "lumi", "data": None}]},
        {"name": "background", "data": [50.0, 40.0], "modifiers": [
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {"name": "uncorr", "type": "shapesys", "data": [5.0, 8.0]},
            {"name": "lumi", "type": "lumi", "data": None}]}]}]}
    parameters = [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.05], "bounds": [[0.5, 1.5]], "inits": [1.0]}]
    return Model.from_spec(spec, poi_name="mu", parameters=parameters)


def test_sample_toys_has_the_likelihoods_moments(constrained_model):
    model = constrained_model
    pars = np.asarray(model.config.init).copy()
    names = model.config.par_names
    pars[names.index("mu")] = 2.0
    pars[names.index("bkg_norm")] = 0.5
    pars[names.index("lumi")] = 1.02
    n = 40000
    sample = np.asarray(toys.sample_toys(7, model, pars, n))
    expected = np.asarray(model.expected_data(jnp.asarray(pars)))
    n_main = model.config.nmaindata
    assert sample.shape == (n, n_main + model.config.nauxdata)
    mean, std = sample.mean(axis=0), sample.std(axis=0)
    # The mean of every data entry is where its term peaks at ``pars``.
    np.testing.assert_allclose(mean, expected, atol=5 * std.max() / np.sqrt(n))
    # Main bins: Poisson (variance = mean) and integer.
    np.testing.assert_allclose(std[:n_main] ** 2, expected[:n_main], rtol=0.05)
    assert np.all(sample[:, :n_main] == np.round(sample[:, :n_main]))
    # Auxiliary data: lumi and normsys are Gaussian with their sigma; shapesys is
    # Poisson with rate gamma * tau (integers, variance = mean).
    aux = sample[:, n_main:]
    aux_expected = expected[n_main:]
    poisson = np.all(aux == np.round(aux), axis=0)
    assert poisson.sum() == 2  # the two shapesys bins
    np.testing.assert_allclose(aux.std(axis=0)[poisson] ** 2, aux_expected[poisson], rtol=0.05)
    gaussian_std = np.sort(aux.std(axis=0)[~poisson])
    np.testing.assert_allclose(gaussian_std, [0.05, 1.0], rtol=0.03)


def test_same_key_same_toys(constrained_model):
    a = toys.sample_toys(3, constrained_model, constrained_model.config.init, 5)
    b = toys.sample_toys(3, constrained_model, constrained_model.config.init, 5)
    c = toys.sample_toys(4, constrained_model, constrained_model.config.init, 5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ------------------------------------------------------------ toys vs asymptotics


@pytest.fixture(scope="module")
def large_sample():
    """Three bins of ~100 events: the asymptotic formulae hold to a few per cent."""
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": [10.0, 20.0, 10.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [100.0, 100.0, 100.0], "modifiers": [
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
            {"name": "stat", "type": "staterror", "data": [5.0, 5.0, 5.0]}]}]}]}
    model = Model.from_spec(spec, poi_name="mu")
    data = jnp.concatenate([jnp.array([104.0, 112.0, 98.0]), model.config.auxdata])
    return model, data


N_TOYS = 8000


# 42-54 s each on 2 cores: slow; toys against a reference stay in CI (test_pyhf_validation's toy case)
@pytest.mark.slow
@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_toy_cls_agrees_with_asymptotics_in_the_large_sample_limit(large_sample, mu):
    model, data = large_sample
    toy = toys.hypotest_toys(mu, data, model, key=11, n_toys=N_TOYS)
    asymptotic = infer.hypotest(mu, data, model)
    assert bool(toy.converged) and int(toy.n_failed_fits) == 0
    assert abs(float(toy.cls_obs) - float(asymptotic.cls_obs)) < 4 * float(toy.cls_obs_error)
    # Expected band: the asymptotic median within the toys' Monte Carlo error, and
    # the reported median is the median of the CLs values the alternative toys give.
    assert abs(float(toy.cls_exp[2]) - float(asymptotic.cls_exp[2])) < 4 * float(toy.cls_exp_error[2])
    assert 0.0 < float(toy.cls_exp_error[2]) < 0.05
    alt = jnp.asarray(toy.test_statistics_alt)
    cls_values = (toys.tail_fraction(jnp.sort(jnp.asarray(toy.test_statistics_null)), alt)
                  / toys.tail_fraction(jnp.sort(alt), alt))
    np.testing.assert_allclose(float(toy.cls_exp[2]), np.median(np.asarray(cls_values)), rtol=1e-12)


def test_toy_p_values_are_tail_fractions():
    samples = jnp.sort(jnp.array([0.0, 0.0, 1.0, 2.0, 3.0]))
    np.testing.assert_allclose(toys.tail_fraction(samples, jnp.array([0.0, 0.5, 3.0, 4.0])), [1.0, 0.6, 0.2, 0.0])


def test_bad_toy_input(large_sample):
    model, data = large_sample
    with pytest.raises(ValueError, match="n_toys"):
        toys.hypotest_toys(1.0, data, model, n_toys=0)
    with pytest.raises(ValueError, match="test_stat"):
        toys.hypotest_toys(1.0, data, model, test_stat="qq")
    with pytest.raises(ValueError, match="shape"):
        toys.toy_test_statistics(1.0, jnp.zeros((3, 2)), model)


# ------------------------------------------------------------- look-elsewhere


N_BINS, WIDTH = 30, 1.5


def bump_hunt_model(mass):
    """A Gaussian signal (width 1.5 bins) at ``mass`` over a falling background."""
    x = np.arange(N_BINS) + 0.5
    background = 100.0 * np.exp(-x / 30.0)
    signal = 20.0 * np.exp(-0.5 * ((x - mass) / WIDTH) ** 2)
    spec = {"channels": [{"name": "mass", "samples": [
        {"name": "signal", "data": signal.tolist(), "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": background.tolist(), "modifiers": [
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]}]}]}
    return Model.from_spec(spec, poi_name="mu"), background


@pytest.fixture(scope="module")
def bump_hunt():
    masses = np.linspace(2.0, 28.0, 27)
    models = lee.stack_models([bump_hunt_model(m)[0] for m in masses])
    background = bump_hunt_model(0.0)[1]
    data = jnp.concatenate([jnp.asarray(np.random.default_rng(1).poisson(background), float),
                            models.config.auxdata[0]])
    scan_toys = lee.scan_max_q0_toys(5, data, models, n_toys=1500)
    return models, data, scan_toys


def test_scan_q0_matches_single_hypothesis_q0(bump_hunt):
    models, data, _ = bump_hunt
    q0, converged = lee.scan_q0(data, models)
    assert bool(np.all(converged)) and q0.shape == (27,)
    for index in (0, 13):
        single = bump_hunt_model(np.linspace(2.0, 28.0, 27)[index])[0]
        np.testing.assert_allclose(float(q0[index]), float(infer.q0(data, single)), rtol=1e-8, atol=1e-10)


def test_global_p_value_from_toys_agrees_with_gross_vitells(bump_hunt):
    _, _, scan_toys = bump_hunt
    assert int(scan_toys.n_failed_fits) == 0
    q0 = np.asarray(scan_toys.q0)
    reference = 1.0
    mean_upcrossings = float(np.mean(lee.upcrossings(q0, reference)))
    assert mean_upcrossings > 0.5  # several effective trials across 27 hypotheses
    # A 3 sigma local excess: the global p-value is an order of magnitude larger.
    threshold = 9.0
    p_toys, error = lee.global_p_value_from_toys(scan_toys.max_q0, threshold)
    p_gv = float(lee.gross_vitells(threshold, reference, mean_upcrossings))
    assert abs(float(p_toys) - p_gv) < 3 * float(error), (float(p_toys), float(error), p_gv)
    p_local = float(lee.local_p_value(threshold))
    assert float(lee.trials_factor(p_toys, p_local)) > 5.0
    # Each toy's largest local statistic is at least its value at any one hypothesis.
    assert np.all(np.asarray(scan_toys.max_q0) >= q0[:, 0])


def test_lee_helpers():
    np.testing.assert_array_equal(lee.upcrossings(jnp.array([[0.0, 2.0, 0.5, 3.0, 4.0], [2.0, 2.0, 0.0, 0.0, 0.0]]), 1.0), [2, 0])
    np.testing.assert_allclose(lee.local_p_value(9.0), 1.349898031630e-3, rtol=1e-9)
    np.testing.assert_allclose(lee.significance_from_p_value(1.349898031630e-3), 3.0, rtol=1e-9)
    # With no up-crossings the global p-value is the local one.
    np.testing.assert_allclose(lee.gross_vitells(9.0, 1.0, 0.0), lee.local_p_value(9.0), rtol=1e-12)


def test_stack_models_rejects_different_structures():
    a = bump_hunt_model(5.0)[0]
    spec = {"channels": [{"name": "c", "samples": [
        {"name": "s", "data": [1.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}]}]}
    with pytest.raises(ValueError, match="structure"):
        lee.stack_models([a, Model.from_spec(spec, poi_name="mu")])
    with pytest.raises(ValueError, match="stack"):
        lee.scan_q0(jnp.zeros(31), a)


def test_stack_models_is_the_same_eager_and_traced():
    models = [bump_hunt_model(m)[0] for m in (5.0, 9.0)]
    eager = lee.stack_models(models)  # concrete leaves: stacked on the host
    traced = jax.jit(lambda a, b: lee.stack_models([a, b]))(*models)
    for one, other in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(traced)):
        assert isinstance(one, jax.Array) and one.shape[0] == 2
        np.testing.assert_array_equal(np.asarray(one), np.asarray(other))
