"""Expected limits from the Asimov data alone equal the full upper_limit's expected
band, with gradients by the implicit function theorem."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana import infer, objectives
from diffana.model import Model
from diffana.model.workspace import load_workspace, to_workspace

CASES = json.loads((Path(__file__).parents[1] / "data" / "pyhf_validation_cases.json").read_text())
# every modifier type (shapesys, lumi, normsys, histosys, shapefactor): slow
# (each compiles the full upper_limit, ~20 s on CI; test_band_equals_upper_limit stays in CI)
ASYMPTOTIC = [pytest.param(c, id=c["id"], marks=pytest.mark.slow)
              for c in CASES if c["calctype"] == "asymptotics" and c["test_stat"] != "q0"]
BACKGROUND = jnp.array([50.0, 40.0, 30.0, 20.0])


def correlated_model(signal):
    b = BACKGROUND
    return Model.from_spec(objectives.correlated_background_spec(signal, b, 1.05 * b, 0.95 * b))


def shapesys_model(signal):
    return Model.from_spec(objectives.uncorrelated_background_spec(signal, BACKGROUND, 0.1 * BACKGROUND))


def full_band(model, cl):
    return infer.upper_limit(infer.asimov_data(model, 0.0), model, cl=cl).expected


@pytest.mark.parametrize(("build", "cl"), [(correlated_model, 0.90),
                                           pytest.param(shapesys_model, 0.95, marks=pytest.mark.slow)])
def test_band_equals_upper_limit(build, cl):
    model = build(jnp.array([1.0, 4.0, 6.0, 2.0]))
    ours = infer.expected_upper_limits(model, cl, infer.BAND)
    assert bool(jnp.all(ours.converged))
    np.testing.assert_allclose(ours.limits, full_band(model, cl), rtol=1e-8)
    assert int(jnp.max(ours.iterations)) <= 6


@pytest.mark.parametrize("case", ASYMPTOTIC)
def test_validation_models(case):
    """Every HistFactory modifier type (shapesys, lumi, normsys, histosys, shapefactor)."""
    spec = case["spec"]
    document = to_workspace({"channels": spec["channels"]}, case["observations"], poi_name="mu",
                            parameters=spec.get("parameters", []))
    workspace = load_workspace(document)
    model = workspace.model(normsys_interp=case["normsys_interpcode"], histosys_interp="code0")
    ours = infer.expected_upper_limits(model, 0.95, infer.BAND)
    assert bool(jnp.all(ours.converged))
    np.testing.assert_allclose(ours.limits, full_band(model, 0.95), rtol=1e-7)


def test_gradient_is_the_implicit_one():
    signal = jnp.array([1.0, 4.0, 6.0, 2.0])

    @jax.jit  # one compile for the gradient's forward pass and the 8 differences
    def ours(s):
        return infer.expected_upper_limits(correlated_model(s), 0.90).limits[0]

    gradient = jax.grad(ours)(signal)
    step = 1e-5
    central = [(ours(signal.at[i].add(step)) - ours(signal.at[i].add(-step))) / (2 * step) for i in range(4)]
    np.testing.assert_allclose(gradient, central, rtol=1e-6)
    # through the background templates too (the Asimov data and the reference move)
    @jax.jit
    def by_background(b):
        spec = objectives.correlated_background_spec(signal, b, 1.05 * b, 0.95 * b)
        return infer.expected_upper_limits(Model.from_spec(spec), 0.90).limits[0]

    g_b = jax.grad(by_background)(BACKGROUND)
    central_b = [(by_background(BACKGROUND.at[i].add(1e-4)) - by_background(BACKGROUND.at[i].add(-1e-4))) / 2e-4
                 for i in range(4)]
    np.testing.assert_allclose(g_b, central_b, rtol=1e-5)


@pytest.mark.slow  # 17 s on CI; vmapped stacks are what the training step uses (bench_training_step)
def test_vmapped_stack_equals_loop():
    signals = jnp.array([[1.0, 4.0, 6.0, 2.0], [0.5, 0.5, 8.0, 1.0], [3.0, 1.0, 1.0, 3.0]])
    stacked = jax.vmap(lambda s: infer.expected_upper_limits(correlated_model(s), 0.90).limits[0])(signals)
    loop = [float(infer.expected_upper_limits(correlated_model(s), 0.90).limits[0]) for s in signals]
    np.testing.assert_allclose(stacked, loop, rtol=1e-12)


def test_limit_beyond_the_poi_bound_is_followed_and_flagged():
    """A POI upper bound below the limit: the root is still found (the POI is held, not
    fitted; a training objective needs the true value and slope), and flagged."""
    model = correlated_model(jnp.array([1.0, 4.0, 6.0, 2.0]))
    free = infer.expected_upper_limits(model, 0.90)
    assert not bool(free.outside_poi_bounds[0])
    bounds = jnp.stack([model.config.lower, model.config.upper], axis=1).at[model.config.poi_index, 1].set(0.1)
    bounded = infer.expected_upper_limits(model, 0.90, settings=infer.FitSettings(par_bounds=bounds))
    assert bool(bounded.converged[0]) and bool(bounded.outside_poi_bounds[0])
    np.testing.assert_allclose(bounded.limits, free.limits, rtol=1e-9)


def test_bad_input():
    model = correlated_model(jnp.array([1.0, 4.0, 6.0, 2.0]))
    with pytest.raises(ValueError, match="cl must lie"):
        infer.expected_upper_limits(model, 1.5)
    with pytest.raises(ValueError, match="nsigma"):
        infer.expected_upper_limits(model, 0.9, (0.0, float("nan")))
    with pytest.raises(ValueError, match="par_bounds"):
        infer.expected_upper_limits(model, 0.9, settings=infer.FitSettings(par_bounds=jnp.zeros((1, 2))))
