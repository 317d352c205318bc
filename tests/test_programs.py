"""Stored programs (diffana.programs): a later process calls the stored program
instead of tracing again, with the same numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana import infer, programs
from diffana.infer import HypotestResult, UpperLimitResult
from diffana.model import Model

SPEC = {"channels": [{"name": "window", "samples": [
    {"name": "signal", "data": [2.0, 5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
    {"name": "background", "data": [20.0, 12.0], "modifiers": [
        {"name": "background_shape", "type": "shapesys", "data": [2.0, 1.5]}]},
]}]}


@pytest.fixture(scope="module")
def model_and_data():
    model = Model.from_spec(SPEC)
    return model, jnp.concatenate([jnp.array([22.0, 13.0]), model.config.auxdata])


def hypotest_at(model, poi, data):
    return infer.hypotest(poi, data, model)


def test_stored_program_is_written_once_and_reused(tmp_path, model_and_data):
    model, data = model_and_data
    poi = jnp.asarray(1.0)
    first = programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, poi, data,
                                     settings=("qtilde",), folder=tmp_path)
    stored = list(tmp_path.glob("hypotest-*.jaxexport"))
    assert len(stored) == 1
    written = stored[0].stat().st_mtime_ns
    second = programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, poi, data,
                                      settings=("qtilde",), folder=tmp_path)
    assert stored[0].stat().st_mtime_ns == written  # read, not written again
    direct = infer.hypotest(poi, data, model)
    for result in (first, second):
        assert isinstance(result, HypotestResult)
        np.testing.assert_allclose(result.cls_obs, direct.cls_obs, rtol=1e-12)
        np.testing.assert_allclose(result.cls_exp, direct.cls_exp, rtol=1e-12)


def test_other_settings_or_shapes_get_their_own_program(tmp_path, model_and_data):
    model, data = model_and_data
    programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, jnp.asarray(1.0), data,
                             settings=("qtilde",), folder=tmp_path)
    programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, jnp.asarray(1.0), data,
                             settings=("q",), folder=tmp_path)
    assert len(list(tmp_path.glob("hypotest-*.jaxexport"))) == 2


def test_a_damaged_stored_program_is_replaced(tmp_path, model_and_data):
    model, data = model_and_data

    def limits(model, data):
        return infer.upper_limit(data, model, cl=0.95)

    first = programs.call_with_model("limit", limits, UpperLimitResult, model, data, settings=(0.95,),
                                     folder=tmp_path)
    (path,) = tmp_path.glob("limit-*.jaxexport")
    path.write_bytes(b"not a program")
    result = programs.call_with_model("limit", limits, UpperLimitResult, model, data, settings=(0.95,),
                                      folder=tmp_path)
    assert isinstance(result, UpperLimitResult)
    np.testing.assert_allclose(result.observed, first.observed, rtol=1e-12)
    np.testing.assert_allclose(result.expected, first.expected, rtol=1e-12)
    assert result.warnings() == first.warnings() == []
    assert path.read_bytes() != b"not a program"


@pytest.mark.parametrize("options", [programs.FAST_COMPILE, programs.FAST_RUN, None],
                         ids=["fast-compile", "fast-run", "xla-defaults"])
def test_compiler_options_change_speed_not_numbers(tmp_path, model_and_data, options):
    model, data = model_and_data
    result = programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, jnp.asarray(1.0), data,
                                      settings=("qtilde",), folder=tmp_path, compiler_options=options)
    direct = infer.hypotest(1.0, data, model)
    # LLVM's optimisation level may reassociate floating-point sums: agreement to
    # round-off of a converged fit, not bit for bit.
    np.testing.assert_allclose(result.cls_obs, direct.cls_obs, rtol=1e-9)
    np.testing.assert_allclose(result.cls_exp, direct.cls_exp, rtol=1e-9)


def test_host_values_are_accepted_as_arguments(tmp_path, model_and_data):
    model, data = model_and_data
    from_float = programs.call_with_model("hypotest", hypotest_at, HypotestResult, model, 1.0, np.asarray(data),
                                          settings=("qtilde",), folder=tmp_path)
    np.testing.assert_allclose(from_float.cls_obs, infer.hypotest(1.0, data, model).cls_obs, rtol=1e-12)
