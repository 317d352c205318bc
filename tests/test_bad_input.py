"""Bad input end to end: through ``load_workspace`` / ``Workspace.model`` and through
the ``diffana cls`` command line (exit code 2, one line naming what is wrong, no
traceback). Zero-background bins are legal and give finite CLs and gradients.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.cli import main

# diffana.cli.build_parser imports every module of the package, __main__ included,
# and importing __main__ runs the command line on sys.argv (pytest's arguments).
# Until the dispatcher skips private modules, register an inert stand-in.
sys.modules.setdefault("diffana.cli.__main__", types.ModuleType("diffana.cli.__main__"))
from diffana.model import InvalidModel, Model
from diffana.model.workspace import WorkspaceError, load_workspace

GOOD = {
    "channels": [
        {"name": "signal_region", "samples": [
            {"name": "signal", "data": [3.0, 6.0],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "background", "data": [20.0, 15.0],
             "modifiers": [{"name": "background_uncertainty", "type": "shapesys",
                            "data": [2.0, 1.5]}]},
        ]}
    ],
    "observations": [{"name": "signal_region", "data": [21.0, 18.0]}],
    "measurements": [{"name": "measurement", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}


def _edit(change):
    document = copy.deepcopy(GOOD)
    change(document)
    return document


def _set_modifier_type(d):
    d["channels"][0]["samples"][0]["modifiers"][0]["type"] = "normfactorr"


def _set_sample(key, value):
    def change(d):
        d["channels"][0]["samples"][1][key] = value
    return change


def _set_observation(value):
    def change(d):
        d["observations"][0]["data"] = value
    return change


# (case id, edit, exception raised by the Python API, words the message must contain)
CASES = [
    ("unknown_modifier_type", _set_modifier_type, WorkspaceError,
     ["$.channels[0].samples[0].modifiers[0]", "unknown modifier type 'normfactorr'"]),
    ("mismatched_bin_counts", _set_sample("data", [20.0, 15.0, 3.0]), WorkspaceError,
     ["sample 'background' has 3 bins", "'signal' of channel 'signal_region' has 2"]),
    ("negative_yield", _set_sample("data", [20.0, -1.0]), InvalidModel,
     ["background", "negative"]),
    ("nan_yield", _set_sample("data", [float("nan"), 15.0]), InvalidModel,
     ["background", "nan"]),
    ("wrong_data_length", _set_observation([21.0, 18.0, 4.0]), WorkspaceError,
     ["3 observed counts for channel 'signal_region', which has 2 bins"]),
    ("negative_observation", _set_observation([21.0, -3.0]), WorkspaceError,
     ["$.observations[0].data[1]", "must not be negative"]),
    ("missing_poi", lambda d: d["measurements"][0]["config"].update(poi="xsec"), WorkspaceError,
     ["POI 'xsec'", "not a parameter of the model"]),
    ("poi_key_absent", lambda d: d["measurements"][0]["config"].pop("poi"), WorkspaceError,
     ["$.measurements[0].config", "'poi' is a required property"]),
    ("missing_channel_observation", lambda d: d["observations"][0].update(name="control"),
     WorkspaceError, ["observation for channel 'control'", "does not define"]),
    ("modifier_data_of_wrong_type", _set_sample("modifiers", [
        {"name": "background_uncertainty", "type": "shapesys", "data": {"hi": 1}}]),
     WorkspaceError, ["$.channels[0].samples[1].modifiers[0].data", "shapesys"]),
]


def _api(document):
    workspace = load_workspace(document)
    model = workspace.model()
    return workspace.data(model)


@pytest.mark.parametrize("case_id, change, exception, words", CASES, ids=[c[0] for c in CASES])
def test_api_error_names_the_culprit(case_id, change, exception, words):
    with pytest.raises(exception) as info:
        _api(_edit(change))
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message


def _run_cli(capsys, path, *extra):
    code = main(["cls", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case_id, change, exception, words", CASES, ids=[c[0] for c in CASES])
def test_cli_reports_one_line_and_exit_code_2(tmp_path, capsys, case_id, change, exception, words):
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(_edit(change)))  # NaN is written as the JSON extension NaN
    code, out, err = _run_cli(capsys, path)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffana cls: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), err


def test_malformed_json(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"channels": [\n  {"name": "sr",, }\n]}')
    with pytest.raises(WorkspaceError, match=r"broken.json: malformed JSON at line 2, column 17"):
        load_workspace(path)
    code, out, err = _run_cli(capsys, path)
    assert code == 2 and "malformed JSON at line 2" in err and len(err.strip().splitlines()) == 1


def test_missing_file(tmp_path, capsys):
    code, _, err = _run_cli(capsys, tmp_path / "nowhere.json")
    assert code == 2 and "nowhere.json: no such file" in err


def test_unknown_measurement(tmp_path, capsys):
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(GOOD))
    code, _, err = _run_cli(capsys, path, "--measurement", "other")
    assert code == 2 and "no measurement called 'other' (measurements: 'measurement')" in err


def test_entry_point_prints_no_traceback(tmp_path):
    """The installed command itself (a fresh interpreter), not just ``main``."""
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(_edit(_set_modifier_type)))
    completed = subprocess.run([sys.executable, "-m", "diffana.cli", "cls", str(path)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "unknown modifier type 'normfactorr'" in completed.stderr


def test_wrong_data_length_through_the_engine():
    model = load_workspace(GOOD).model()
    with pytest.raises(ValueError, match=r"(?i)length|bins|entries|shape"):
        infer.hypotest(1.0, jnp.array([21.0, 18.0, 1.0]), model)


BACKGROUND_WITH_EMPTY_BINS = [0.0, 12.0, 0.0]
OBSERVED_WITH_EMPTY_BINS = [0.0, 13.0, 0.0]


def _zero_background_model(signal):
    """A bin with no background at all (and one with no signal either) is legal."""
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": signal,
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": jnp.array(BACKGROUND_WITH_EMPTY_BINS),
         "modifiers": [{"name": "background_norm", "type": "normsys",
                        "data": {"hi": 1.1, "lo": 0.9}}]},
    ]}]}
    model = Model.from_spec(spec)
    return model, jnp.concatenate([jnp.array(OBSERVED_WITH_EMPTY_BINS), model.config.auxdata])


SIGNAL_WITH_EMPTY_BIN = jnp.array([2.0, 1.0, 0.0])


def test_zero_background_bins_give_finite_cls_and_likelihood_gradients():
    model, data = _zero_background_model(SIGNAL_WITH_EMPTY_BIN)
    result = infer.hypotest(1.0, data, model)
    assert 0.0 < float(result.cls_obs) < 1.0 and np.all(np.isfinite(np.asarray(result.cls_exp)))

    def best_fit_twice_nll(signal):
        model, data = _zero_background_model(signal)
        return infer.fit(data, model).twice_nll

    gradient = jax.grad(best_fit_twice_nll)(SIGNAL_WITH_EMPTY_BIN)
    assert np.all(np.isfinite(np.asarray(gradient)))


@pytest.mark.slow
def test_zero_background_bins_give_finite_cls_gradients():
    """The gradient of CLs itself (implicit differentiation through the fits)."""

    def cls_obs(signal):
        model, data = _zero_background_model(signal)
        return infer.hypotest(1.0, data, model).cls_obs

    value, gradient = jax.value_and_grad(cls_obs)(SIGNAL_WITH_EMPTY_BIN)
    assert np.isfinite(float(value)) and 0.0 < float(value) < 1.0
    assert np.all(np.isfinite(np.asarray(gradient)))
    # More signal where nothing is observed excludes the hypothesis more strongly.
    assert float(gradient[0]) < 0.0
