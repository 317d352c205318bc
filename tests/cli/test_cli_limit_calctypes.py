"""``diffana limit --calctype bayesian`` and ``--calctype feldman-cousins`` on a
workspace file: a one-bin counting experiment with a known background, whose
answers are known in closed form (Helene's Bayesian limit) or from the exact
Poisson construction (Feldman & Cousins)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import gammaincc

import diffana  # noqa: F401  (float64)
from diffana.cli import main
from diffana.infer.feldman_cousins import feldman_cousins_poisson

sys.modules.setdefault("diffana.cli.__main__", types.ModuleType("diffana.cli.__main__"))

OBSERVED = 4
BACKGROUND = 1.5

COUNTING_WORKSPACE = {
    "channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": [1.0],
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [BACKGROUND], "modifiers": []},
    ]}],
    "observations": [{"name": "sr", "data": [float(OBSERVED)]}],
    "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
        {"name": "mu", "bounds": [[0.0, 30.0]], "inits": [1.0]}]}}],
    "version": "1.0.0",
}


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    file = tmp_path_factory.mktemp("cli-calctypes") / "counting.json"
    file.write_text(json.dumps(COUNTING_WORKSPACE))
    return file


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bayesian_limit_is_helenes(path, capsys):
    code, out, err = _run(capsys, "limit", str(path), "--calctype", "bayesian", "--cl", "0.9")
    assert code == 0, err
    printed = json.loads(out)
    # 1 − CL = Γ(n+1, s+b) / Γ(n+1, b) for a flat prior on s ≥ 0 and known b.
    helene = brentq(lambda s: gammaincc(OBSERVED + 1, s + BACKGROUND) / gammaincc(OBSERVED + 1, BACKGROUND) - 0.1,
                    0.0, 50.0, xtol=1e-12)
    np.testing.assert_allclose(printed["obs"], helene, rtol=1e-4)
    assert printed["method"] == "exact"  # no nuisance parameters to integrate out


def test_feldman_cousins_interval_matches_the_exact_construction(path, capsys):
    code, out, err = _run(capsys, "limit", str(path), "--calctype", "feldman-cousins", "--cl", "0.9",
                          "--ntoys", "4000", "--seed", "1")
    assert code == 0, err
    printed = json.loads(out)
    lower, upper = printed["interval"]
    assert printed["obs"] == upper
    exact = feldman_cousins_poisson(OBSERVED, BACKGROUND, cl=0.9)
    # Toys (4000 per point) and a 40-point grid against the exact construction: the
    # ends agree within the grid's spacing (30/39 ≈ 0.8 would be too coarse; the
    # default grid adapts to the data, its spacing is printed by the library).
    assert abs(lower - float(exact.lower)) < 0.35
    assert abs(upper - float(exact.upper)) < 0.35


def test_feldman_cousins_rejects_too_few_toys(path, capsys):
    code, _, err = _run(capsys, "limit", str(path), "--calctype", "feldman-cousins", "--ntoys", "5")
    assert code == 2 and "toys" in err
    assert "Traceback" not in err
