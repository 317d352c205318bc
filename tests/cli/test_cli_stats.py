"""``diffana cls`` and ``diffana limit`` on a workspace file, against live pyhf."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from conftest import SMALL_WORKSPACE
from diffana import infer
from diffana.cli import main

# diffana.cli.build_parser imports every module of the package, __main__ included,
# and importing __main__ runs the command line on sys.argv (pytest's arguments).
# Until the dispatcher skips private modules, register an inert stand-in.
sys.modules.setdefault("diffana.cli.__main__", types.ModuleType("diffana.cli.__main__"))
from diffana.model.workspace import load_workspace

WORKSPACE = SMALL_WORKSPACE


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    file = tmp_path_factory.mktemp("cli") / "workspace.json"
    file.write_text(json.dumps(WORKSPACE))
    return file


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pyhf_cls(poi_value, test_stat, normsys):
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    workspace = pyhf.Workspace(WORKSPACE)
    model = workspace.model(modifier_settings={"normsys": {"interpcode": normsys},
                                               "histosys": {"interpcode": "code4p"}})
    obs, exp = pyhf.infer.hypotest(poi_value, workspace.data(model), model,
                                   test_stat=test_stat, return_expected_set=True)
    return float(obs), np.asarray(exp, float).ravel()


def test_cls_matches_pyhf(path, capsys):
    code, out, err = _run(capsys, "cls", str(path), "--poi-value", "1.5",
                          "--test-stat", "qtilde", "--normsys-interp", "code1")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"CLs_obs", "CLs_exp"} and len(result["CLs_exp"]) == 5
    obs, exp = _pyhf_cls(1.5, "qtilde", "code1")
    np.testing.assert_allclose(result["CLs_obs"], obs, rtol=1e-5)
    np.testing.assert_allclose(result["CLs_exp"], exp, rtol=1e-5)


@pytest.mark.slow  # its own compile (q0)
def test_cls_q0_gives_discovery_p_values(path, capsys):
    code, out, err = _run(capsys, "cls", str(path), "--poi-value", "0", "--test-stat", "q0")
    assert code == 0, err
    obs, exp = _pyhf_cls(0.0, "q0", "code4")
    np.testing.assert_allclose(json.loads(out)["CLs_obs"], obs, rtol=1e-5)
    np.testing.assert_allclose(json.loads(out)["CLs_exp"], exp, rtol=1e-5)


def test_limit_solves_cls_equals_one_minus_cl(path, capsys):
    code, out, err = _run(capsys, "limit", str(path), "--cl", "0.90")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"obs", "exp"} and len(result["exp"]) == 5
    assert np.all(np.diff(result["exp"]) > 0)  # −2σ < −1σ < median < +1σ < +2σ
    workspace = load_workspace(path)
    model = workspace.model()
    at_limit = infer.hypotest(result["obs"], workspace.data(model), model)
    np.testing.assert_allclose(float(at_limit.cls_obs), 0.10, rtol=1e-6)


def test_measurement_option_selects_the_measurement(path, capsys):
    code, _, err = _run(capsys, "cls", str(path), "--measurement", "narrow_poi",
                        "--poi-value", "4.0")
    assert code == 2 and "outside the bounds [0.0, 3.0]" in err


@pytest.mark.parametrize("argv, message", [
    (["limit", "{path}", "--cl", "1.5"], "--cl must lie strictly between 0 and 1"),
    (["limit", "{path}", "--calctype", "toybased", "--both-starts"], "--both-starts applies to asymptotic limits"),
    (["cls", "{path}", "--poi-value", "nan"], "--poi-value must be a finite number"),
])
def test_bad_options(path, capsys, argv, message):
    code, _, err = _run(capsys, *[a.format(path=path) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_interpolation_code_is_rejected_by_argparse(path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cls", str(path), "--normsys-interp", "code9"])
    assert info.value.code == 2
    assert "code9" in capsys.readouterr().err


@pytest.mark.slow  # 47 s on 2 cores; toy CLs stay in CI (infer/test_toys.py, validation toy reference)
def test_cls_toybased_is_the_library_result(path, capsys):
    code, out, err = _run(capsys, "cls", str(path), "--calctype", "toybased", "--ntoys", "500",
                          "--seed", "3")
    assert code == 0, err
    printed = json.loads(out)
    workspace = load_workspace(path)
    model = workspace.model()
    result = infer.hypotest_toys(1.0, workspace.data(model), model, key=3, n_toys=500)
    assert printed["CLs_obs"] == float(result.cls_obs)
    assert printed["CLs_exp"] == [float(v) for v in result.cls_exp]
    assert 0.0 < printed["CLs_obs"] < 1.0


def test_cls_toybased_rejects_no_toys(path, capsys):
    code, _, err = _run(capsys, "cls", str(path), "--calctype", "toybased", "--ntoys", "0")
    assert code == 2 and "--ntoys must be positive" in err
