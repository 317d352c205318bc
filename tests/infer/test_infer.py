"""Fits, CLs and upper limits: agreement with pyhf, implicit gradients against finite
differences, vmap consistency, and degenerate inputs.

Compiles are the cost here: every test uses the one model structure below (4 bins,
signal normsys + free background normfactor + per-bin shapesys, as in a mass-scan
window), and the compiled functions are shared through module-level jit caches.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq

import diffana  # noqa: F401
from diffana import infer
from diffana.model import Model

SIGNAL = jnp.array([2.0, 5.0, 3.0, 1.0])
BACKGROUND = jnp.array([20.0, 15.0, 10.0, 12.0])
OBSERVED = jnp.array([23.0, 18.0, 14.0, 11.0])


def window_spec(signal, background, relative_uncertainty=0.05):
    return {
        "channels": [
            {
                "name": "window",
                "samples": [
                    {
                        "name": "signal",
                        "data": signal,
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "signal_efficiency", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                        ],
                    },
                    {
                        "name": "background",
                        "data": background,
                        "modifiers": [
                            {"name": "background_norm", "type": "normfactor", "data": None},
                            {"name": "background_shape", "type": "shapesys", "data": relative_uncertainty * background},
                        ],
                    },
                ],
            }
        ]
    }


def window_model(signal, background):
    return Model.from_spec(window_spec(signal, background))


def data_for(model, observed):
    return jnp.concatenate([observed, model.config.auxdata])


@jax.jit
def limits_from_yields(signal, background, observed):
    model = window_model(signal, background)
    result = infer.upper_limit(data_for(model, observed), model, cl=0.90)
    return jnp.concatenate([result.observed[None], result.expected])


@jax.jit
def fitted_parameters(signal, background, observed):
    model = window_model(signal, background)
    return infer.fit(data_for(model, observed), model).bestfit


def pyhf_model(signal, background):
    spec = window_spec(np.asarray(signal), np.asarray(background))
    for sample in spec["channels"][0]["samples"]:
        sample["data"] = np.asarray(sample["data"]).tolist()
        for modifier in sample["modifiers"]:
            if modifier["type"] == "shapesys":
                modifier["data"] = np.asarray(modifier["data"]).tolist()
    return pyhf.Model(spec, poi_name="mu")


@pytest.fixture(scope="module")
def tight_pyhf():
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    yield
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())


def test_fit_reaches_at_least_pyhf_minimum(tight_pyhf):
    model = window_model(SIGNAL, BACKGROUND)
    data = data_for(model, OBSERVED)
    result = infer.fit(data, model)
    assert bool(result.converged)
    reference = pyhf_model(SIGNAL, BACKGROUND)
    ref_pars, ref_value = pyhf.infer.mle.fit(np.asarray(data), reference, return_fitted_val=True)
    assert float(result.twice_nll) <= float(ref_value) + 1e-9
    np.testing.assert_allclose(result.bestfit, ref_pars, atol=2e-4)


def test_hypotest_matches_converged_pyhf(tight_pyhf):
    model = window_model(SIGNAL, BACKGROUND)
    data = data_for(model, OBSERVED)
    reference = pyhf_model(SIGNAL, BACKGROUND)
    for mu in (0.5, 1.5, 3.0):
        ours = infer.hypotest(mu, data, model, test_stat="qtilde")
        obs, exp = pyhf.infer.hypotest(mu, np.asarray(data), reference, test_stat="qtilde", return_expected_set=True)
        np.testing.assert_allclose(ours.cls_obs, obs, rtol=1e-5)
        np.testing.assert_allclose(ours.cls_exp, np.ravel(exp), rtol=1e-5)


@pytest.mark.slow  # 58 s on 2 cores; limits against pyhf stay in CI (validation/test_atlas_published.py)
def test_upper_limits_match_pyhf_root_finding_at_90_percent(tight_pyhf):
    ours = np.asarray(limits_from_yields(SIGNAL, BACKGROUND, OBSERVED))
    model = window_model(SIGNAL, BACKGROUND)
    data = np.asarray(data_for(model, OBSERVED))
    reference = pyhf_model(SIGNAL, BACKGROUND)

    def cls(mu, which):
        obs, exp = pyhf.infer.hypotest(mu, data, reference, test_stat="qtilde", return_expected_set=True)
        return float(obs if which == 0 else np.ravel(exp)[which - 1]) - 0.10

    theirs = [brentq(cls, 0.05, 9.0, args=(k,), xtol=1e-10) for k in range(6)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_cls_at_the_limit_equals_one_minus_cl():
    limits = np.asarray(limits_from_yields(SIGNAL, BACKGROUND, OBSERVED))
    model = window_model(SIGNAL, BACKGROUND)
    data = data_for(model, OBSERVED)
    assert np.all(np.diff(limits[1:]) > 0), "expected band must be ordered -2σ..+2σ"
    np.testing.assert_allclose(infer.hypotest(limits[0], data, model).cls_obs, 0.10, rtol=1e-7)
    for k in range(5):
        np.testing.assert_allclose(infer.hypotest(limits[k + 1], data, model).cls_exp[k], 0.10, rtol=1e-7)
    # Every curve crossed the level: converged, no jump, nothing to report.
    result = infer.upper_limit(data, model, cl=0.90)
    assert result.curve_converged.tolist() == [True] * 6
    assert result.discontinuous.tolist() == [False] * 6
    assert result.unconverged_curves() == []


def test_limit_gradients_match_finite_differences():
    jacobian = jax.jit(jax.jacrev(limits_from_yields, argnums=(0, 1, 2)))
    analytic = [np.asarray(j) for j in jacobian(SIGNAL, BACKGROUND, OBSERVED)]
    eps = 1e-4
    for argnum, analytic_jac in enumerate(analytic):
        args = [SIGNAL, BACKGROUND, OBSERVED]
        for i in range(4):
            up = list(args)
            down = list(args)
            up[argnum] = args[argnum].at[i].add(eps)
            down[argnum] = args[argnum].at[i].add(-eps)
            numeric = (limits_from_yields(*up) - limits_from_yields(*down)) / (2 * eps)
            np.testing.assert_allclose(analytic_jac[:, i], numeric, rtol=1e-4, atol=1e-7)


def test_fit_gradients_match_finite_differences():
    analytic = np.asarray(jax.jit(jax.jacrev(fitted_parameters))(SIGNAL, BACKGROUND, OBSERVED))
    eps = 1e-5
    for i in range(4):
        numeric = (
            fitted_parameters(SIGNAL.at[i].add(eps), BACKGROUND, OBSERVED)
            - fitted_parameters(SIGNAL.at[i].add(-eps), BACKGROUND, OBSERVED)
        ) / (2 * eps)
        np.testing.assert_allclose(analytic[:, i], numeric, rtol=1e-4, atol=1e-7)


def test_vmap_over_a_stack_of_models_equals_one_by_one():
    scales = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda s: limits_from_yields(s * SIGNAL, BACKGROUND, OBSERVED))(scales)
    for k, scale in enumerate(scales):
        np.testing.assert_allclose(batched[k], limits_from_yields(scale * SIGNAL, BACKGROUND, OBSERVED), rtol=1e-9)
    # The limit on mu scales inversely with the signal yield.
    np.testing.assert_allclose(batched[0] / batched[1], 2.0, rtol=1e-6)


@pytest.mark.slow  # 50 s on 2 cores; zero bins stay in CI via test_bad_input (CLs, likelihood gradients)
def test_zero_background_bins_give_finite_limits_and_gradients():
    background = BACKGROUND.at[3].set(0.0)
    observed = OBSERVED.at[3].set(0.0)
    limits = limits_from_yields(SIGNAL, background, observed)
    assert np.all(np.isfinite(limits)) and np.all(limits > 0)
    gradient = jax.grad(lambda s: limits_from_yields(s, background, observed)[3])(SIGNAL)
    assert np.all(np.isfinite(gradient))


def test_no_poi_is_a_clear_error():
    model = Model.from_spec(window_spec(SIGNAL, BACKGROUND), poi_name=None)
    with pytest.raises(ValueError, match="no parameter of interest"):
        infer.upper_limit(data_for(model, OBSERVED), model)
    with pytest.raises(ValueError, match="no parameter of interest"):
        model.config.poi_bounds()


def test_check_converged_raises_on_failed_fit():
    model = window_model(SIGNAL, BACKGROUND)
    result = infer.fit(data_for(model, OBSERVED), model, options=infer.SolverOptions(max_iterations=1))
    assert not bool(result.converged)
    with pytest.raises(RuntimeError, match="did not converge"):
        infer.check_converged(result)
