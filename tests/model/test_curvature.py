"""Both exact gradient-and-Hessian methods of the deviance equal JAX's AD of it.

``diffana.model.curvature`` assembles both from univariate modifier derivatives,
``Model.coloured_gradient_and_hessian`` from coloured Hessian-vector products;
``Model.deviance_gradient_and_hessian`` picks one per structure. Here both are
compared with ``jax.grad`` and
``jax.hessian`` of ``Model.deviance`` on every modifier type and interpolation code,
at points inside and outside |α| < 1, with the POI at 0 and γ away from 1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from conftest import atlas_erjr_dir
from diffana.model import Model, curvature, load_workspace

VALIDATION = json.loads((Path(__file__).parents[1] / "data" / "pyhf_validation_cases.json").read_text())
RTOL = 1e-11


def _random_point(model, rng, poi_at_zero=False):
    """Parameters spread over ±2.5 around the initial values (α beyond ±1 included),
    clipped to the bounds."""
    init = np.asarray(model.config.suggested_init(), float)
    low, high = np.asarray(model.config.suggested_bounds(), float).T
    span = np.minimum(2.5, 0.45 * (high - low))
    point = np.clip(init + rng.uniform(-1.0, 1.0, init.size) * span, low, high)
    if poi_at_zero and model.config.poi_index is not None:
        point[model.config.poi_index] = 0.0
    return point


# Jitted once here (compiled once per model structure): op-by-op jax.hessian of a
# 40-parameter model takes minutes.
_STRUCTURAL = jax.jit(lambda m, p, d: curvature.deviance_gradient_and_hessian(m, p, d))
_COLOURED = jax.jit(lambda m, p, d: m.coloured_gradient_and_hessian(p, d))
_AUTODIFF = jax.jit(lambda m, p, d: (jax.grad(m.deviance)(p, d), jax.hessian(m.deviance)(p, d)))


def _assert_matches_autodiff(model, data, pars):
    """Both exact methods (structural, coloured HVPs) equal dense AD."""
    reference_gradient, reference_hessian = _AUTODIFF(model, pars, data)
    scale_g = max(float(np.max(np.abs(reference_gradient))), 1e-300)
    scale_h = max(float(np.max(np.abs(reference_hessian))), 1e-300)
    for method in (_STRUCTURAL, _COLOURED):
        gradient, hessian = method(model, pars, data)
        np.testing.assert_allclose(gradient, reference_gradient, rtol=RTOL, atol=RTOL * scale_g)
        np.testing.assert_allclose(hessian, reference_hessian, rtol=RTOL, atol=RTOL * scale_h)
    structural_hessian = np.asarray(_STRUCTURAL(model, pars, data)[1])
    np.testing.assert_array_equal(structural_hessian, structural_hessian.T)  # exactly symmetric


def test_method_choice_follows_the_structure():
    """Published likelihoods (many global parameters) take the structural Hessian,
    per-bin-γ template models the coloured products."""
    import jax.numpy as jnp

    from diffana.analyses.zprime_invisible.fit import TEMPLATE_KEYS, hypothesis_model

    t = {k: jnp.ones(40) for k in TEMPLATE_KEYS}
    t.update(signal_efficiency=0.027, background_shape=jnp.full(40, 0.086), photon_veto=jnp.full(40, 0.05),
             sigma_ref=1.0)
    assert not curvature.structural_hessian_is_cheaper(hypothesis_model(t, 0.01).structure)
    if (Path(atlas_erjr_dir()) / "bkg_only.json").exists():
        assert curvature.structural_hessian_is_cheaper(_atlas_model()[0].structure)


@pytest.mark.parametrize("index", range(6))
def test_random_models(index):
    from random_workspaces import random_workspace

    _, model, data = random_workspace(index)
    rng = np.random.default_rng(index)
    for poi_at_zero in (False, True):
        _assert_matches_autodiff(model, data, _random_point(model, rng, poi_at_zero))


@pytest.mark.parametrize("case", VALIDATION, ids=[c["id"] for c in VALIDATION])
def test_pyhf_validation_models(case):
    from diffana.model.workspace import to_workspace

    spec = case["spec"]
    workspace = load_workspace(to_workspace({"channels": spec["channels"]}, case["observations"], poi_name="mu",
                                            parameters=spec.get("parameters", [])))
    model = workspace.model(normsys_interp=case["normsys_interpcode"], histosys_interp="code0")
    data = workspace.data(model)
    _assert_matches_autodiff(model, data, _random_point(model, np.random.default_rng(7)))


@pytest.mark.parametrize("histosys_interp", ["code0", "code4p"])
@pytest.mark.parametrize("normsys_interp", ["code1", "code4"])
def test_every_interpolation_code(normsys_interp, histosys_interp):
    """A parameter acting as normsys and histosys on one sample and as normsys on
    another, a shared normfactor twice on one sample (μ²), shapesys and lumi."""
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": [3.0, 6.0, 2.0], "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "k", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": "jes", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
            {"name": "jes", "type": "histosys", "data": {"hi_data": [3.5, 6.2, 2.1], "lo_data": [2.6, 5.5, 1.7]}}]},
        {"name": "background", "data": [50.0, 30.0, 10.0], "modifiers": [
            {"name": "jes", "type": "normsys", "data": {"hi": 0.9, "lo": 1.15}},
            {"name": "k", "type": "normfactor", "data": None},
            {"name": "mcstat", "type": "shapesys", "data": [5.0, 3.0, 2.5]},
            {"name": "lumi", "type": "lumi", "data": None}]}]}],
        "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]], "inits": [1.0]}]}
    model = Model.from_spec(spec, poi_name="mu", normsys_interp=normsys_interp, histosys_interp=histosys_interp,
                            parameters=spec["parameters"])
    data = np.concatenate([[55.0, 33.0, 14.0], np.asarray(model.config.auxdata)])
    rng = np.random.default_rng(3)
    for _ in range(4):
        _assert_matches_autodiff(model, data, _random_point(model, rng))


def test_zprime_window_model_with_the_poi_at_zero():
    """The flagship's fit model: per-bin shapesys on 40 bins, histosys on both samples,
    two normfactors; at σ = 0 (the background-only fit)."""
    import jax.numpy as jnp

    from diffana.analyses.zprime_invisible.fit import TEMPLATE_KEYS, hypothesis_model

    rng = np.random.default_rng(4)
    bins = 40
    t = {k: jnp.asarray(rng.uniform(0.5, 20.0, bins)) for k in TEMPLATE_KEYS}
    t.update(signal_efficiency=0.027, background_shape=jnp.full(bins, 0.086), photon_veto=jnp.full(bins, 0.05),
             sigma_ref=1.0)
    model = hypothesis_model(t, 0.01)
    data = jnp.concatenate([jnp.asarray(rng.poisson(20.0, bins), float), model.config.auxdata])
    _assert_matches_autodiff(model, data, _random_point(model, rng, poi_at_zero=True))


def _atlas_model():
    """The ATLAS eRJR likelihood with its 200/100 signal patch: (model, data)."""
    import jsonpatch

    folder = Path(atlas_erjr_dir())
    document = jsonpatch.apply_patch(json.loads((folder / "bkg_only.json").read_text()),
                                     json.loads((folder / "patch_C1N2_WZ_200p0_100p0.json").read_text()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*mu_BG.*")  # the measurement names an unused parameter
        workspace = load_workspace(document)
        model = workspace.model()
    return model, workspace.data(model)


def test_published_atlas_likelihood():
    if not (Path(atlas_erjr_dir()) / "bkg_only.json").exists():
        pytest.skip(f"needs the ATLAS eRJR likelihood in {atlas_erjr_dir()}")
    model, data = _atlas_model()
    _assert_matches_autodiff(model, data, _random_point(model, np.random.default_rng(5)))
