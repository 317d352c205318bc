"""diffana against ROOT/HistFactory reference CLs values (pyhf's validation suite).

tests/data/pyhf_validation_cases.json holds ten models with ROOT's CLs; each must be
reproduced within the relative tolerance pyhf itself holds against ROOT. As in
pyhf's validation, normsys uses interpolation code1 and histosys code0 (ROOT's
piecewise-linear histosys; with pyhf's default code4p the two histosys cases miss
ROOT by 1% and by a factor 80). Each case goes through the JSON workspace path:
spec + observations -> ``to_workspace`` -> ``load_workspace`` -> model and data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.model.workspace import load_workspace, to_workspace

DATA = Path(os.environ.get("DIFFANA_VALIDATION_CASES",
                           Path(__file__).parents[1] / "data" / "pyhf_validation_cases.json"))

CASES = json.loads(DATA.read_text()) if DATA.exists() else []


def _pyhf_cls(case, document, tolerance):
    """Live pyhf (numpy backend, SLSQP with the given tolerance) at the case's settings."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=tolerance))
    workspace = pyhf.Workspace(document)
    model = workspace.model(modifier_settings={
        "normsys": {"interpcode": case["normsys_interpcode"]},
        "histosys": {"interpcode": "code0"}})
    obs, exp = pyhf.infer.hypotest(case["mu"], workspace.data(model), model,
                                   test_stat=case["test_stat"], return_expected_set=True)
    return np.concatenate([[float(obs)], np.asarray(exp, float).ravel()])


def _largest_relative_difference(values, reference):
    return float(np.max(np.abs(np.asarray(values) / np.asarray(reference) - 1.0)))


@pytest.mark.skipif(not CASES, reason=f"validation cases not found at {DATA}")
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_root_reference_cls(case):
    """diffana's CLs (obs + 5 expected) against the reference values.

    The references carry the imprecision of the fits that produced them: pyhf
    with a tight optimizer (SLSQP, tolerance 1e-12) misses several of them by
    2e-5 to 3e-4, far beyond the listed tolerance, while agreeing with diffana to
    ~1e-7. So the test asserts two things, both of which can fail:
    diffana agrees with tightly converged live pyhf (rtol 1e-6, 1e-5 for q0 whose
    p-values are tiny), and, wherever tightly converged pyhf itself meets the
    reference within the listed tolerance, diffana does too. Where it does not,
    the case is reported as xfail with both numbers.
    """
    if case["calctype"] != "asymptotics":
        pytest.skip("toy-based case: see test_toy_reference_cls")
    spec = case["spec"]
    document = to_workspace({"channels": spec["channels"]}, case["observations"],
                            poi_name="mu", parameters=spec.get("parameters", []))
    workspace = load_workspace(document)
    model = workspace.model(normsys_interp=case["normsys_interpcode"], histosys_interp="code0")
    data = workspace.data(model)

    result = infer.hypotest(case["mu"], data, model, test_stat=case["test_stat"])
    assert bool(result.converged)
    ours = np.concatenate([[float(result.cls_obs)], np.asarray(result.cls_exp)])
    reference = np.array([case["expected"]["obs"], *case["expected"]["exp"]])

    tight_pyhf = _pyhf_cls(case, document, tolerance=1e-12)
    np.testing.assert_allclose(ours, tight_pyhf, rtol=1e-5 if case["test_stat"] == "q0" else 1e-6)

    pyhf_miss = _largest_relative_difference(tight_pyhf, reference)
    our_miss = _largest_relative_difference(ours, reference)
    if pyhf_miss > case["tolerance"]:
        pytest.xfail(
            f"reference off the converged fit: tightly converged pyhf misses it by "
            f"{pyhf_miss:.2e}, diffana by {our_miss:.2e} (listed tolerance {case['tolerance']:g})"
        )
    np.testing.assert_allclose(ours, reference, rtol=case["tolerance"])


TOY_CASES = [case for case in CASES if case["calctype"] == "toybased"]
N_TOYS_REFERENCE = 2000
"""The toy reference is pyhf 0.7.6's own output with its default 2000 toys and
``numpy.random.seed(0)``: re-running pyhf so reproduces all six numbers exactly
(checked 2026-11-22; pyhf needs a numpy-2 fix of ``percentile(interpolation=)``)."""
N_TOYS_OURS = 20000


@pytest.mark.skipif(not TOY_CASES, reason=f"validation cases not found at {DATA}")
@pytest.mark.parametrize("case", TOY_CASES, ids=[case["id"] for case in TOY_CASES])
def test_toy_reference_cls(case):
    """Toy-based p-values against the reference within the Monte Carlo error.

    Two independent toy ensembles (different generators) cannot agree exactly. Our
    10x larger ensemble's standard errors scale to the reference's 2000 toys by
    sqrt(N_ours / N_ref); the difference must lie within 3 combined sigma, for the
    observed value and each expected one. Where the reference is exactly 0 (no
    null toy of its 2000 beyond the percentile), ours must be small enough that
    seeing no such toy among 2000 is not excluded at 3 sigma: exp(-p N_ref) > 0.0027.
    """
    from diffana.infer import toys

    spec = case["spec"]
    document = to_workspace({"channels": spec["channels"]}, case["observations"], poi_name="mu")
    workspace = load_workspace(document)
    model = workspace.model(normsys_interp=case["normsys_interpcode"], histosys_interp="code0")
    data = workspace.data(model)
    result = toys.hypotest_toys(case["mu"], data, model, key=2026, n_toys=N_TOYS_OURS, test_stat=case["test_stat"])
    assert bool(result.converged) and int(result.n_failed_fits) == 0

    ours = np.concatenate([[float(result.cls_obs)], np.asarray(result.cls_exp)])
    errors = np.concatenate([[float(result.cls_obs_error)], np.asarray(result.cls_exp_error)])
    reference = np.array([case["expected"]["obs"], *case["expected"]["exp"]])
    combined = errors * np.sqrt(1.0 + N_TOYS_OURS / N_TOYS_REFERENCE)
    zero = reference == 0.0
    pulls = np.abs(ours - reference)[~zero] / combined[~zero]
    assert np.all(pulls < 3.0), (ours, errors, reference)
    assert np.all(np.exp(-ours[zero] * N_TOYS_REFERENCE) > 0.0027), (ours, reference)
