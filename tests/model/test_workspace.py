"""pyhf JSON workspaces: loading, validation, model/data building, export.

The reference for every layout question (parameter order, auxiliary data, channel
order of the data, inits and bounds from measurement configs) is pyhf itself.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pyhf
import pytest

import diffana  # noqa: F401  (float64)
from diffana.model.workspace import Workspace, WorkspaceError, load_workspace, to_workspace

# Channels deliberately not in name order ("signal" before "control"): the data
# must follow the model's (sorted) channel order, not the file's.
SPEC = {
    "channels": [
        {
            "name": "signal",
            "samples": [
                {"name": "signal", "data": [5.0, 12.0, 4.0],
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None},
                               {"name": "lumi", "type": "lumi", "data": None},
                               {"name": "signal_efficiency", "type": "normsys",
                                "data": {"hi": 1.05, "lo": 0.93}}]},
                {"name": "background", "data": [50.0, 40.0, 30.0],
                 "modifiers": [{"name": "lumi", "type": "lumi", "data": None},
                               {"name": "background_shape", "type": "histosys",
                                "data": {"hi_data": [53.0, 41.0, 28.0],
                                         "lo_data": [47.0, 39.0, 32.0]}},
                               {"name": "uncorrelated_signal", "type": "shapesys",
                                "data": [3.0, 2.5, 2.0]},
                               {"name": "staterror_signal", "type": "staterror",
                                "data": [1.0, 1.5, 0.8]}]},
            ],
        },
        {
            "name": "control",
            "samples": [
                {"name": "background", "data": [200.0, 150.0],
                 "modifiers": [{"name": "background_norm", "type": "normfactor", "data": None},
                               {"name": "control_shape", "type": "shapefactor", "data": None}]},
            ],
        },
    ]
}
OBSERVATIONS = {"signal": [52.0, 55.0, 33.0], "control": [205.0, 148.0]}
PARAMETERS = [
    {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.9, 1.1]], "inits": [1.0]},
    {"name": "mu", "bounds": [[0.0, 5.0]], "inits": [0.5]},
    {"name": "background_norm", "bounds": [[0.2, 3.0]]},
    {"name": "signal_efficiency", "fixed": True},
]


@pytest.fixture(scope="module")
def document():
    return to_workspace(SPEC, OBSERVATIONS, measurement_name="fit", poi_name="mu",
                        parameters=PARAMETERS)


@pytest.fixture(scope="module")
def both(document):
    """(diffana model, diffana data, pyhf model, pyhf data) of the same workspace."""
    workspace = load_workspace(document)
    model = workspace.model()
    py_workspace = pyhf.Workspace(document)
    py_model = py_workspace.model()
    return model, workspace.data(model), py_model, np.asarray(py_workspace.data(py_model))


def test_to_workspace_validates_against_pyhf_schema(document):
    pyhf.schema.validate(document, "workspace.json")
    assert document["version"] == pyhf.schema.version
    assert document["measurements"][0]["config"]["poi"] == "mu"
    assert {o["name"] for o in document["observations"]} == {"signal", "control"}


def test_to_workspace_accepts_jax_arrays():
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": jnp.array([1.0, 2.0]),
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": np.array([10.0, 9.0]),
         "modifiers": [{"name": "stat", "type": "staterror", "data": jnp.array([1.0, 0.5])}]},
    ]}]}
    document = to_workspace(spec, {"sr": jnp.array([11.0, 12.0])})
    text = json.dumps(document)  # plain JSON, no arrays left
    assert json.loads(text)["channels"][0]["samples"][1]["modifiers"][0]["data"] == [1.0, 0.5]
    pyhf.Workspace(document)


def test_load_from_file_and_dict_agree(tmp_path, document):
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(document))
    from_file = load_workspace(path)
    from_string_path = load_workspace(str(path))
    from_dict = load_workspace(document)
    assert from_file.to_dict() == from_dict.to_dict() == from_string_path.to_dict()
    assert from_file.channel_bins == {"signal": 3, "control": 2}
    assert from_file.observations == OBSERVATIONS
    assert from_file.measurement_names == ["fit"]
    assert from_file.channel_names == ["signal", "control"]
    assert "fit" in repr(from_file)


def test_round_trip_is_lossless(document):
    again = to_workspace(load_workspace(document).spec, load_workspace(document).observations,
                         "fit", "mu", PARAMETERS)
    assert again == document


def test_parameter_layout_matches_pyhf(both):
    model, _, py_model, _ = both
    assert model.config.parameters == py_model.config.par_order
    np.testing.assert_allclose(model.config.suggested_init(), py_model.config.suggested_init())
    np.testing.assert_allclose(model.config.suggested_bounds(), py_model.config.suggested_bounds())
    assert list(np.asarray(model.config.suggested_fixed())) == py_model.config.suggested_fixed()
    # The measurement's settings reached the model.
    poi = model.config.poi_index
    assert model.config.poi_name == "mu"
    assert float(model.config.suggested_init()[poi]) == 0.5
    assert list(np.asarray(model.config.suggested_bounds()[poi])) == [0.0, 5.0]
    assert model.config.poi_bounds() == (0.0, 5.0)


def test_data_follow_model_channel_order_and_auxdata(both):
    model, data, py_model, py_data = both
    assert model.config.channels == ["control", "signal"]
    np.testing.assert_array_equal(np.asarray(data), py_data)
    assert data.dtype == jnp.float64
    main = load_workspace(to_workspace(SPEC, OBSERVATIONS, parameters=PARAMETERS)).data(
        model, include_auxdata=False)
    np.testing.assert_array_equal(np.asarray(main), [205.0, 148.0, 52.0, 55.0, 33.0])


def test_logpdf_matches_pyhf_at_random_points(both):
    model, data, py_model, py_data = both
    rng = np.random.default_rng(7)
    bounds = np.asarray(py_model.config.suggested_bounds())
    init = np.asarray(py_model.config.suggested_init())
    logpdf = jax.jit(lambda m, p, d: m.logpdf(p, d))
    for _ in range(5):
        pars = init + rng.uniform(-0.1, 0.1, init.size) * np.minimum(1.0, bounds[:, 1] - bounds[:, 0])
        np.testing.assert_allclose(float(logpdf(model, jnp.asarray(pars), data)),
                                   float(py_model.logpdf(pars, py_data)[0]), rtol=1e-12)


def test_measurement_selection(document):
    two = json.loads(json.dumps(document))
    second = json.loads(json.dumps(two["measurements"][0]))
    second["name"] = "background_only_poi"
    second["config"]["poi"] = "background_norm"
    two["measurements"].append(second)
    workspace = load_workspace(two)
    assert workspace.get_measurement()["name"] == "fit"  # the first, as pyhf
    assert workspace.model("background_only_poi").config.poi_name == "background_norm"
    assert workspace.model().config.poi_name == "mu"
    assert workspace.model(poi_name="background_norm").config.poi_name == "background_norm"
    with pytest.raises(WorkspaceError, match=r"no measurement called 'nope'.*'fit', 'background_only_poi'"):
        workspace.model("nope")


def test_model_kwargs_reach_the_model(document):
    workspace = load_workspace(document)
    code1 = workspace.model(normsys_interp="code1", histosys_interp="code0")
    default = workspace.model()
    pars = default.config.suggested_init()
    efficiency = default.config.par_slice("signal_efficiency")
    shifted = pars.at[efficiency].set(1.5)
    # Outside |alpha| < 1 code1 and code4 are the same exponential; inside they differ.
    half = pars.at[efficiency].set(0.5)
    assert float(jnp.abs(code1.expected_actualdata(half) - default.expected_actualdata(half)).max()) > 1e-6
    np.testing.assert_allclose(code1.expected_actualdata(shifted)[2:], default.expected_actualdata(shifted)[2:])


def test_bare_spec_loads_with_its_own_parameters():
    spec = dict(SPEC, parameters=PARAMETERS)
    workspace = load_workspace(spec)
    assert workspace.version is None and workspace.measurements == []
    model = workspace.model()
    assert model.config.poi_name == "mu"
    assert workspace.to_dict() == spec
    with pytest.raises(WorkspaceError, match="no observations"):
        workspace.data(model)
    with pytest.raises(WorkspaceError, match="no measurements"):
        workspace.get_measurement()


def test_workspace_class_is_what_load_returns(document):
    assert isinstance(load_workspace(document), Workspace)
    with pytest.raises(WorkspaceError, match="expects a file path or a dict"):
        load_workspace(42)
