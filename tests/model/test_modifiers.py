"""The modifier kinds (diffana.model.modifiers): one module per kind, each holding its
parameters' defaults, the parsing of its data, and its constraint.

Per kind: the defaults a model gets from it (init, bounds, fixed, constraint width or
rate, auxiliary data) and one of its error messages, word for word; the registry has
one kind per modifier type; the structure is declared and hashable by content.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana.errors import InvalidModel
from diffana.model import Model
from diffana.model import model as model_module
from diffana.model import workspace as workspace_module
from diffana.model.modifiers import MODIFIERS
from diffana.model.modifiers.base import Gaussian, Poisson
from diffana.model.structure import MODIFIER_TYPES, PER_BIN_TYPES, ModelStructure


def _sample(name, data, *modifiers):
    return {"name": name, "data": list(data), "modifiers": list(modifiers)}


def _spec(*channels):
    return {"channels": [{"name": name, "samples": list(samples)} for name, samples in channels]}


def _numbers(model, name):
    """(init, lower, upper, fixed) of parameter ``name`` as numpy arrays."""
    part = model.config.par_slice(name)
    config = model.config
    return tuple(np.asarray(a)[part] for a in (config.init, config.lower, config.upper, config.fixed))


def _constraint(model, name):
    """("gaussian", σ, auxdata) or ("poisson", τ, auxdata) of parameter ``name``."""
    s, part = model.structure, model.config.par_slice(name)
    indices = np.arange(part.start, part.stop)
    aux = np.asarray(model.config.auxdata)
    for kind, params, aux_index, scale in (
        ("gaussian", s.gaussian_param, s.gaussian_aux_index, model.gaussian_sigma),
        ("poisson", s.poisson_param, s.poisson_aux_index, model.poisson_rate_factor),
    ):
        rows = np.flatnonzero(np.isin(params, indices))
        if rows.size:
            return kind, np.asarray(scale)[rows], aux[aux_index[rows]]
    return None


def _raises(message, spec, **kwargs):
    with pytest.raises(InvalidModel, match=re.escape(message) + "$"):
        Model.from_spec(spec, **{"poi_name": None, **kwargs})


# ------------------------------------------------------------------- registry


def test_registry_has_one_kind_per_modifier_type():
    assert tuple(MODIFIERS) == MODIFIER_TYPES == model_module.MODIFIER_TYPES
    assert set(MODIFIERS) == set(workspace_module.MODIFIER_TYPES)
    for name, kind in MODIFIERS.items():
        assert kind.name == name
        assert kind.per_bin == (name in PER_BIN_TYPES)
        assert kind.constraint in ("gaussian", "poisson", None)
        assert kind.effect in ("factor", "normsys", "histosys")
        assert dataclasses.is_dataclass(kind)
        with pytest.raises(dataclasses.FrozenInstanceError):
            kind.init = 2.0
    # Kinds that share a parameter agree on its defaults and on each other.
    for name, kind in MODIFIERS.items():
        for other in kind.shares_parameter_with:
            assert name in MODIFIERS[other].shares_parameter_with
            assert (MODIFIERS[other].init, MODIFIERS[other].bounds) == (kind.init, kind.bounds)
            assert MODIFIERS[other].constraint == kind.constraint


# ---------------------------------------------------------------- kind by kind


def test_normfactor():
    model = Model.from_spec(_spec(("sr", [_sample("s", [1.0, 2.0], {"name": "mu", "type": "normfactor", "data": None})])))
    init, lower, upper, fixed = _numbers(model, "mu")
    assert (init.tolist(), lower.tolist(), upper.tolist(), fixed.tolist()) == ([1.0], [0.0], [10.0], [False])
    assert _constraint(model, "mu") is None and model.config.nauxdata == 0
    assert MODIFIERS["normfactor"].parse({"anything": 1}, "w", 2) is None
    _raises("parameter 'mu': 2 values for 'inits', the parameter has 1",
            _spec(("sr", [_sample("s", [1.0], {"name": "mu", "type": "normfactor", "data": None})])),
            parameters=[{"name": "mu", "inits": [1.0, 2.0]}])


def test_lumi():
    spec = _spec(("sr", [_sample("s", [1.0, 2.0], {"name": "lumi", "type": "lumi", "data": None})]))
    model = Model.from_spec(spec, poi_name=None, parameters=[{"name": "lumi", "auxdata": [1.5], "sigmas": [0.03]}])
    init, lower, upper, fixed = _numbers(model, "lumi")
    assert (init.tolist(), lower.tolist(), upper.tolist(), fixed.tolist()) == ([1.5], [0.0], [15.0], [False])
    kind, sigma, aux = _constraint(model, "lumi")
    assert (kind, sigma.tolist(), aux.tolist()) == ("gaussian", [0.03], [1.5])
    _raises("the lumi modifier 'lumi' needs a measurement parameter configuration with 'auxdata' "
            "(the nominal luminosity) and 'sigmas' (its uncertainty)", spec)


def test_normsys():
    spec = _spec(("sr", [_sample("s", [1.0, 2.0], {"name": "n", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})]))
    model = Model.from_spec(spec, poi_name=None)
    init, lower, upper, fixed = _numbers(model, "n")
    assert (init.tolist(), lower.tolist(), upper.tolist(), fixed.tolist()) == ([0.0], [-5.0], [5.0], [False])
    kind, sigma, aux = _constraint(model, "n")
    assert (kind, sigma.tolist(), aux.tolist()) == ("gaussian", [1.0], [0.0])
    parsed = MODIFIERS["normsys"].parse({"hi": 1.1, "lo": 0.9}, "w", 2)
    assert (float(parsed.hi), float(parsed.lo)) == (1.1, 0.9)
    _raises("channel 'sr', sample 's', modifier 'n': normsys 'lo' factor must be positive and finite, got -0.9",
            _spec(("sr", [_sample("s", [1.0], {"name": "n", "type": "normsys", "data": {"hi": 1.1, "lo": -0.9}})])))
    _raises("channel 'sr', sample 's', modifier 'n': normsys data must be {'hi': factor, 'lo': factor}",
            _spec(("sr", [_sample("s", [1.0], {"name": "n", "type": "normsys", "data": [1.1, 0.9]})])))


def test_histosys():
    data = {"hi_data": [1.5, 2.5], "lo_data": [0.5, 1.0]}
    spec = _spec(("sr", [_sample("s", [1.0, 2.0], {"name": "h", "type": "histosys", "data": data})]))
    model = Model.from_spec(spec, poi_name=None)
    init, lower, upper, fixed = _numbers(model, "h")
    assert (init.tolist(), lower.tolist(), upper.tolist(), fixed.tolist()) == ([0.0], [-5.0], [5.0], [False])
    kind, sigma, aux = _constraint(model, "h")
    assert (kind, sigma.tolist(), aux.tolist()) == ("gaussian", [1.0], [0.0])
    assert np.asarray(model.histosys_up).tolist() == [[0.5, 0.5]]
    assert np.asarray(model.histosys_down).tolist() == [[0.5, 1.0]]
    _raises("channel 'sr', sample 's', modifier 'h': hi_data has 3 bins, the channel has 2",
            _spec(("sr", [_sample("s", [1.0, 2.0], {"name": "h", "type": "histosys",
                                                   "data": {"hi_data": [1.0, 2.0, 3.0], "lo_data": [1.0, 2.0]}})])))


def test_normsys_and_histosys_share_a_parameter_and_nothing_else_does():
    both = [{"name": "x", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {"name": "x", "type": "histosys", "data": {"hi_data": [1.5], "lo_data": [0.5]}}]
    model = Model.from_spec(_spec(("sr", [_sample("s", [1.0], *both)])), poi_name=None)
    assert model.config.par_names == ["x"] and model.structure.parameter_sets[0].kind == "histosys"
    _raises("channel 'sr', sample 'b', modifier 'x': the name 'x' is used by modifiers of types "
            "['normfactor', 'normsys'], which cannot share a parameter",
            _spec(("sr", [_sample("a", [1.0], both[0]),
                          _sample("b", [1.0], {"name": "x", "type": "normfactor", "data": None})])))


def test_shapesys():
    spec = _spec(("sr", [_sample("s", [4.0, 0.0, 9.0], {"name": "u", "type": "shapesys", "data": [1.0, 1.0, 0.0]})]))
    model = Model.from_spec(spec, poi_name=None)
    init, lower, upper, fixed = _numbers(model, "u")
    assert init.tolist() == [1.0] * 3 and lower.tolist() == [1e-10] * 3 and upper.tolist() == [10.0] * 3
    assert fixed.tolist() == [False, True, True]  # no yield, or no uncertainty
    kind, tau, aux = _constraint(model, "u")
    assert (kind, tau.tolist(), aux.tolist()) == ("poisson", [16.0, 1.0, 1.0], [16.0, 1.0, 1.0])
    _raises("the shapesys modifier 'u' appears on samples ['a', 'b']; shapesys parameters are per sample "
            "(use staterror to share)",
            _spec(("sr", [_sample(name, [1.0], {"name": "u", "type": "shapesys", "data": [0.1]}) for name in "ab"])))
    _raises("channel 'sr', sample 's', modifier 'u': shapesys data has 1 bins, the channel has 2",
            _spec(("sr", [_sample("s", [1.0, 2.0], {"name": "u", "type": "shapesys", "data": [0.1]})])))


def test_staterror():
    spec = _spec(("sr", [_sample("a", [3.0, 1.0], {"name": "st", "type": "staterror", "data": [0.3, 0.0]}),
                         _sample("b", [1.0, 0.0], {"name": "st", "type": "staterror", "data": [0.3, 0.0]})]))
    model = Model.from_spec(spec, poi_name=None)
    init, lower, upper, fixed = _numbers(model, "st")
    assert init.tolist() == [1.0, 1.0] and lower.tolist() == [1e-10] * 2 and upper.tolist() == [10.0] * 2
    assert fixed.tolist() == [False, True]  # no uncertainty in bin 1
    kind, sigma, aux = _constraint(model, "st")
    assert kind == "gaussian" and aux.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(sigma, [np.hypot(0.3, 0.3) / 4.0, 1.0], rtol=1e-15)
    _raises("channel 'sr', sample 'a', modifier 'st' staterror uncertainties: negative yields in bins [1]",
            _spec(("sr", [_sample("a", [1.0, 2.0], {"name": "st", "type": "staterror", "data": [0.1, -0.2]})])))
    _raises("the staterror modifier 'st' appears in channels ['cr', 'sr']; a per-bin modifier must belong to "
            "one channel",
            _spec(*[(c, [_sample("a", [1.0], {"name": "st", "type": "staterror", "data": [0.1]})]) for c in ("cr", "sr")]))


def test_shapefactor():
    free = {"name": "f", "type": "shapefactor", "data": None}
    model = Model.from_spec(_spec(("sr", [_sample("s", [1.0, 2.0], free)])), poi_name=None)
    init, lower, upper, fixed = _numbers(model, "f")
    assert (init.tolist(), lower.tolist(), upper.tolist(), fixed.tolist()) == (
        [1.0, 1.0], [0.0, 0.0], [10.0, 10.0], [False, False])
    assert _constraint(model, "f") is None and model.config.par_names == ["f[0]", "f[1]"]
    # Channels of equal binning may share the per-bin factors; others may not.
    tied = Model.from_spec(_spec(("cr", [_sample("s", [1.0, 2.0], free)]), ("sr", [_sample("s", [3.0, 4.0], free)])),
                           poi_name=None)
    assert tied.config.npars == 2
    _raises("the shapefactor modifier 'f' appears in channels ['cr', 'sr']; a per-bin modifier must belong to "
            "one channel",
            _spec(("cr", [_sample("s", [1.0, 2.0, 3.0], free)]), ("sr", [_sample("s", [1.0, 2.0], free)])))


# ------------------------------------------------------------------ structure


def test_structure_is_declared_frozen_and_compared_by_content():
    def build(scale=1.0):
        return Model.from_spec(_spec(("sr", [
            _sample("s", [1.0 * scale, 2.0], {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "u", "type": "shapesys", "data": [0.1, 0.2]}),
            _sample("b", [5.0, 6.0], {"name": "n", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})])))

    a, b = build(), build(2.0)
    assert isinstance(a.structure, ModelStructure)
    declared = {f.name for f in dataclasses.fields(ModelStructure)}
    assert set(vars(a.structure)) == declared  # nothing set outside the declaration
    assert a.structure.hessian_colouring is not None and a.structure.slices["u"] == slice(2, 4)  # mu, n, then u (pyhf order)
    # Same structure, other yields: equal, one hash; the arrays compared by content.
    assert a.structure == b.structure and hash(a.structure) == hash(b.structure)
    assert a.structure is not b.structure and a.structure.factor_index is not b.structure.factor_index
    other = Model.from_spec(_spec(("sr", [_sample("s", [1.0, 2.0], {"name": "mu", "type": "normfactor",
                                                                       "data": None})])))
    assert a.structure != other.structure
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.structure.n_aux = 3


def test_constraint_records_give_the_auxiliary_data():
    assert Gaussian(np.ones(3), np.asarray([0.0])).aux_values(3).tolist() == [0.0, 0.0, 0.0]
    assert Poisson(np.asarray([4.0, 9.0])).aux_values(2).tolist() == [4.0, 9.0]
