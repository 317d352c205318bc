"""Toy-based upper limits (``infer.upper_limit_toys``, ``diffana limit --calctype toybased``).

The reference is a counting experiment with an exactly known background, b = 1
event, signal s·μ with s = 1 event, and n = 0 events observed. Its CLs is analytic:
for n_obs the toy ordering by q̃_μ is the ordering by n (fewer events, larger q̃_μ),
so CLs(μ) = P(n ≤ n_obs | μ + b) / P(n ≤ n_obs | b):

* observed (n_obs = 0): CLs = exp(−μ), the classic 90% CL limit μ = ln 10 = 2.303
  events;
* expected median: half the background-only toys have n ≤ 1 and 37% have n = 0, so
  the median toy has n = 1 and the median limit solves exp(−μ)(2 + μ)/2 = 0.1.
"""

from __future__ import annotations

import json
import sys
import types
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.infer.toy_limits import crossing
from diffana.model import Model

sys.modules.setdefault("diffana.cli.__main__", types.ModuleType("diffana.cli.__main__"))
from diffana.cli import main  # noqa: E402

N_TOYS = 10_000
SCAN = np.linspace(1.5, 4.5, 13)  # steps of 0.25: interpolation error < 0.01 on exp(-mu)
COUNTING = {
    "channels": [{"name": "counting", "samples": [
        {"name": "signal", "data": [1.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [1.0], "modifiers": []},
    ]}],
    "observations": [{"name": "counting", "data": [0.0]}],
    "measurements": [{"name": "counting", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}


@pytest.fixture(scope="module")
def counting_model():
    return Model.from_spec({"channels": COUNTING["channels"]}, poi_name="mu")


@pytest.fixture(scope="module")
def counting_limits(counting_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the +2 sigma curve: checked below
        return infer.upper_limit_toys(np.array([0.0]), counting_model, cl=0.90, scan=SCAN, key=3, n_toys=N_TOYS)


def test_observed_limit_is_the_classic_zero_event_limit(counting_limits):
    result = counting_limits
    # The toy CLs curve itself is exp(-mu) within its errors, point by point.
    pull = (result.cls_obs - np.exp(-SCAN)) / result.cls_obs_error
    assert np.all(np.abs(pull) < 4.0), pull
    # The limit: ln 10 within 3 Monte Carlo errors plus the interpolation error.
    assert result.observed_error > 0
    assert abs(result.observed - np.log(10.0)) < 3 * result.observed_error + 0.01, (
        result.observed, result.observed_error)
    assert result.converged and result.n_failed_fits == 0


def test_expected_median_limit_is_the_one_event_limit(counting_limits):
    median = brentq(lambda mu: np.exp(-mu) * (2.0 + mu) / 2.0 - 0.1, 0.5, 10.0)  # 3.27
    result = counting_limits
    assert abs(result.expected[2] - median) < 3 * result.expected_error[2] + 0.01, (
        result.expected[2], result.expected_error[2], median)
    # The band is ordered (-2 sigma ... +2 sigma); the +2 sigma toy (n = 3 events)
    # needs mu > 4.5, beyond the scan, so it is NaN (and the scan said so).
    finite = result.expected[np.isfinite(result.expected)]
    assert np.all(np.diff(finite) >= 0)
    assert np.isnan(result.expected[4])


def test_unreached_crossing_warns_and_gives_nan(counting_model):
    with pytest.warns(UserWarning, match=r"observed.*do not cross 0\.1.*extend the scan"):
        result = infer.upper_limit_toys(np.array([0.0]), counting_model, cl=0.90, scan=np.linspace(0.2, 1.0, 3),
                                        key=3, n_toys=N_TOYS)
    assert np.isnan(result.observed) and np.isnan(result.observed_error)


def test_crossing_interpolates_linearly():
    mu = np.array([0.0, 1.0, 2.0, 3.0])
    cls = np.array([0.5, 0.3, 0.1, 0.02])
    errors = np.full(4, 0.01)
    limit, error = crossing(mu, cls, errors, 0.2)
    assert limit == pytest.approx(1.5)
    assert error == pytest.approx(0.01 / 0.2)  # CLs error over the slope |dCLs/dmu|
    # A noisy curve that rises again after the first crossing: the first one counts.
    assert crossing(mu, np.array([0.5, 0.15, 0.25, 0.02]), errors, 0.2)[0] == pytest.approx(0.3 / 0.35)
    assert np.isnan(crossing(mu, cls, errors, 0.6)[0])  # starts below
    assert np.isnan(crossing(mu, cls, errors, 0.01)[0])  # never reaches


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scan": [2.0, 1.0]}, "strictly increasing"),
        ({"scan": [1.0]}, "at least two"),
        ({"scan": [1.0, 20.0]}, "leaves the POI bounds"),
        ({"cl": 1.5}, "cl must lie"),
        ({"n_toys": 0}, "n_toys must be positive"),
        ({"test_stat": "q0"}, "q0"),
    ],
)
def test_bad_arguments(counting_model, kwargs, message):
    arguments = {"scan": SCAN, "n_toys": N_TOYS} | kwargs
    with pytest.raises(ValueError, match=message):
        infer.upper_limit_toys(np.array([0.0]), counting_model, **arguments)


@pytest.fixture(scope="module")
def counting_path(tmp_path_factory):
    file = tmp_path_factory.mktemp("toy_limit") / "counting.json"
    file.write_text(json.dumps(COUNTING))
    return file


def test_command_line_prints_the_library_result(counting_path, counting_limits, capsys):
    code = main(["limit", str(counting_path), "--cl", "0.90", "--calctype", "toybased", "--ntoys", str(N_TOYS),
                 "--seed", "3", "--scan", f"{SCAN[0]},{SCAN[-1]},{SCAN.size}"])
    captured = capsys.readouterr()
    # The +2 sigma limit lies beyond the scan: the command fails loudly, naming it.
    assert code == 2 and "expected" in captured.err and "+2 sigma" in captured.err
    code = main(["limit", str(counting_path), "--cl", "0.90", "--calctype", "toybased", "--ntoys", str(N_TOYS),
                 "--seed", "3", "--scan", "1.5,8,27"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    output = json.loads(captured.out)
    assert set(output) == {"obs", "exp", "obs_error", "exp_error", "scan"}
    assert len(output["exp"]) == 5 and len(output["exp_error"]) == 5
    assert abs(output["obs"] - np.log(10.0)) < 3 * output["obs_error"] + 0.01


@pytest.mark.parametrize("scan, message", [("1,2", "START,STOP,N"), ("3,1,4", "increasing"),
                                           ("0.5,20,4", "leaves the bounds")])
def test_command_line_rejects_bad_scans(counting_path, capsys, scan, message):
    code = main(["limit", str(counting_path), "--calctype", "toybased", "--scan", scan])
    assert code == 2 and message in capsys.readouterr().err


def test_default_scan_brackets_the_asymptotic_limits(counting_model):
    from diffana.infer.toy_limits import default_scan

    asymptotic = infer.upper_limit(np.array([0.0]), counting_model, cl=0.90)
    limits = np.concatenate([[float(asymptotic.observed)], np.asarray(asymptotic.expected)])
    scan = default_scan(np.array([0.0]), counting_model, 0.90, "qtilde")
    assert scan.size == 12 and np.all(np.diff(scan) > 0)
    assert scan[0] == pytest.approx(0.5 * limits.min()) and scan[-1] == pytest.approx(min(10.0, 2 * limits.max()))
