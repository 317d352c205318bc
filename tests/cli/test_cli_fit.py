"""``diffana fit`` against live pyhf, and the persistent compilation cache of the
``diffana`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from conftest import SMALL_WORKSPACE
from diffana import cache
from diffana.cli import main

WORKSPACE = SMALL_WORKSPACE
POI_VALUE = 1.0


@pytest.fixture(autouse=True)
def no_persistent_cache(monkeypatch):
    """In-process commands must not write to the user's cache folder: JAX keeps
    the first cache folder it opens for the whole pytest process."""
    monkeypatch.setenv(cache.ENV_VAR, "off")


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    file = tmp_path_factory.mktemp("cli_fit") / "workspace.json"
    file.write_text(json.dumps(WORKSPACE))
    return file


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def fit_output(path):
    """One run of every fit (the compiles dominate, so the tests share it)."""
    previous = os.environ.get(cache.ENV_VAR)
    os.environ[cache.ENV_VAR] = "off"  # module scope: monkeypatch is not available yet
    try:
        from contextlib import redirect_stdout
        from io import StringIO

        with redirect_stdout(StringIO()) as out:
            code = main(["fit", str(path), "--poi-value", str(POI_VALUE), "--compare-pyhf"])
    finally:
        if previous is None:
            del os.environ[cache.ENV_VAR]
        else:
            os.environ[cache.ENV_VAR] = previous
    assert code == 0
    return json.loads(out.getvalue())


def _pyhf_fit(poi_value=None):
    """pyhf's fit with a tight SLSQP tolerance: −2 ln L and parameters by label."""
    import pyhf

    previous = pyhf.get_backend()
    try:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
        workspace = pyhf.Workspace(WORKSPACE)
        model = workspace.model()
        data = workspace.data(model)
        if poi_value is None:
            pars, twice_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
        else:
            pars, twice_nll = pyhf.infer.mle.fixed_poi_fit(poi_value, data, model, return_fitted_val=True)
        return float(np.ravel(twice_nll)[0]), dict(zip(model.config.par_names, np.asarray(pars, float)))
    finally:
        pyhf.set_backend(*previous)


@pytest.mark.parametrize("key, poi_value", [("free", None), ("fixed_poi", POI_VALUE)])
def test_fit_matches_pyhf(fit_output, key, poi_value):
    fit = fit_output[key]
    twice_nll, bestfit = _pyhf_fit(poi_value)
    assert fit["converged"] and fit["iterations"] > 0
    assert abs(fit["twice_nll"] - twice_nll) < 1e-6
    assert list(fit["bestfit"]) == list(bestfit)  # pyhf's labels, in pyhf's order
    np.testing.assert_allclose(list(fit["bestfit"].values()), list(bestfit.values()), atol=1e-4)
    if poi_value is not None:
        assert fit["poi_value"] == poi_value and fit["bestfit"]["mu"] == poi_value


def test_output_names_the_model(fit_output, path):
    assert fit_output["workspace"] == str(path)
    assert fit_output["measurement"] == "nominal" and fit_output["poi"] == "mu"


@pytest.mark.parametrize("key", ["free", "fixed_poi"])
def test_compare_pyhf_reports_each_optimizer(fit_output, key):
    fit = fit_output[key]
    assert set(fit["pyhf"]) == {"scipy", "minuit"}
    for name, entry in fit["pyhf"].items():
        if "skipped" in entry:  # iminuit not installed
            assert name == "minuit"
            continue
        assert {"optimizer", "success", "message", "function_calls", "twice_nll",
                "diffana_twice_nll_at_pyhf_bestfit", "twice_nll_above_diffana_minimum",
                "bestfit"} <= set(entry)
        assert entry["success"] is True
        assert list(entry["bestfit"]) == list(fit["bestfit"])
        # Same likelihood: both tools give the same −2 ln L at pyhf's point …
        assert entry["diffana_twice_nll_at_pyhf_bestfit"] == pytest.approx(entry["twice_nll"], rel=1e-10)
        # … and pyhf's fits, which converge here, stop no lower than diffana's minimum.
        above = entry["twice_nll_above_diffana_minimum"]
        assert above == pytest.approx(entry["diffana_twice_nll_at_pyhf_bestfit"] - fit["twice_nll"])
        assert -1e-9 < above < 1e-3
    if "minuit_fmin" in fit["pyhf"]["minuit"]:
        assert fit["pyhf"]["minuit"]["minuit_fmin"]["is_valid"] is True


@pytest.mark.parametrize("argv, message", [
    (["fit", "{path}", "--poi-value", "nan"], "--poi-value must be a finite number"),
    (["fit", "{path}", "--measurement", "narrow_poi", "--poi-value", "5"], "outside the bounds [0.0, 3.0]"),
    (["fit", "{path}", "--measurement", "nope"], "no measurement called 'nope'"),
    (["fit", "{path}.missing"], "workspace.json.missing"),
])
def test_bad_input_is_one_line_exit_2(path, capsys, argv, message):
    code, out, err = _run(capsys, *[a.format(path=path) for a in argv])
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("diffana fit: error:")


def test_malformed_workspace(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = _run(capsys, "fit", bad)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_patchset_options_are_refused(path, capsys):
    """``--patchset`` (shared with cls/limit) is an error, not silently ignored."""
    try:
        code = main(["fit", str(path), "--patchset", str(path)])
    except SystemExit as exit_:  # a model-options version without --patchset
        code = exit_.code
    assert code == 2 and capsys.readouterr().out == ""


def test_compare_pyhf_without_pyhf(path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyhf" else real_find_spec(name, *a))
    code, out, err = _run(capsys, "fit", path, "--compare-pyhf")
    assert code == 2 and out == "" and "--compare-pyhf needs pyhf" in err


# --- the persistent compilation cache ------------------------------------------------


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    for off in ("off", "OFF", " off "):
        monkeypatch.setenv(cache.ENV_VAR, off)
        assert cache.cache_dir() is None
        assert cache.enable_compilation_cache() is None


def test_unusable_cache_folder_warns_and_runs_on(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cache.enable_compilation_cache(blocker / "cache") is None
    assert "no compilation cache" in capsys.readouterr().err


def _diffana_cls(workspace, cache_folder):
    """``diffana cls`` in a fresh process; returns its JSON and its stderr, where
    JAX (JAX_LOG_COMPILES) names each persistent-cache hit and miss."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update({cache.ENV_VAR: str(cache_folder), "JAX_LOG_COMPILES": "1"})
    run = subprocess.run([sys.executable, "-m", "diffana.cli", "cls", str(workspace), "--poi-value", "1.0"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), run.stderr


def test_second_run_loads_the_compiled_cls_from_the_cache(path, tmp_path):
    """Two fresh processes: the first traces the CLs program, stores it
    (diffana.programs) and writes its compilation to the cache folder; the second
    reads the stored program, and its compilation comes from the cache."""
    folder = tmp_path / "jax-cache"
    first, log = _diffana_cls(path, folder)
    assert "Persistent compilation cache hit" not in log
    stored = list((folder / "programs").glob("cli-hypotest-*.jaxexport"))
    assert len(stored) == 1
    assert any(name.endswith("-cache") for name in os.listdir(folder))
    second, log = _diffana_cls(path, folder)
    assert "Persistent compilation cache hit" in log
    assert second == first
