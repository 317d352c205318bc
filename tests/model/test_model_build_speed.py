"""Loading a workspace and building its model stay cheap, without timing anything.

* Schema validation: a compiled yes/no check of pyhf's schema lets valid documents
  skip jsonschema (which took ~0.5 s on a published likelihood); it must accept
  exactly the documents jsonschema accepts, and rejected documents still get
  jsonschema's errors (their messages are tested in test_bad_input and
  test_workspace).
* Model building: concrete templates are combined with numpy and become JAX arrays
  once, at the end (each eager JAX operation costs ~0.3-0.5 ms; a published
  likelihood took ~2000). Counted here: the calls into ``jax.numpy`` and the eager
  primitive evaluations of a concrete build. Traced builds (inside jit, grad, vmap)
  must keep working and agree with eager ones.
"""

from __future__ import annotations

import copy
import json
import random
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana.model import Model, load_workspace
from diffana.model import builder as builder_module
from diffana.model import model as model_module
from diffana.model.modifiers import histosys as histosys_module
from diffana.model.modifiers import values as values_module
from diffana.model import workspace as workspace_module

# ------------------------------------------------------------------ documents


def _spec(n_channels: int = 2, n_systematics: int = 3, n_bins: int = 3) -> dict:
    """A spec with every modifier type; its size grows with the arguments while
    its set of leaves (and so the number of conversions to JAX) does not."""
    rng = np.random.default_rng(n_channels * 100 + n_systematics)
    channels = []
    for c in range(n_channels):
        bins = n_bins + c
        background = (50.0 + 10 * rng.random(bins)).tolist()
        modifiers = [
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": f"staterror_ch{c}", "type": "staterror", "data": (0.05 * np.array(background)).tolist()},
            {"name": f"shapesys_ch{c}", "type": "shapesys", "data": (0.1 * np.array(background)).tolist()},
        ]
        for k in range(n_systematics):
            modifiers.append({"name": f"norm_{k}", "type": "normsys",
                              "data": {"hi": 1.0 + 0.01 * (k + 1), "lo": 1.0 - 0.01 * (k + 1)}})
            modifiers.append({"name": f"shape_{k}", "type": "histosys",
                              "data": {"hi_data": (np.array(background) * 1.02).tolist(),
                                       "lo_data": (np.array(background) * 0.97).tolist()}})
        signal = (1.0 + rng.random(bins)).tolist()
        channels.append({
            "name": f"region_{c}",
            "samples": [
                {"name": "signal", "data": signal,
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None},
                               {"name": "lumi", "type": "lumi", "data": None},
                               {"name": f"staterror_ch{c}", "type": "staterror",
                                "data": (0.1 * np.array(signal)).tolist()}]},
                {"name": "background", "data": background, "modifiers": modifiers},
                {"name": f"other_{c % 2}", "data": [0.0] + [2.0] * (bins - 1),
                 "modifiers": [{"name": f"free_ch{c}", "type": "shapefactor", "data": None}]},
            ],
        })
    return {"channels": channels}


PARAMETERS = [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]]},
              {"name": "mu", "bounds": [[0.0, 5.0]], "inits": [0.5]}]


def _workspace(spec: dict) -> dict:
    return {
        "channels": spec["channels"],
        "observations": [{"name": ch["name"], "data": [float(round(sum(s["data"][b] for s in ch["samples"])))
                                                       for b in range(len(ch["samples"][0]["data"]))]}
                         for ch in spec["channels"]],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": PARAMETERS}}],
        "version": "1.0.0",
    }


# --------------------------------------------------------------------- schema


def _jsonschema_accepts(document, schema_name):
    validator = workspace_module._schema_validator(schema_name)
    return next(iter(validator.iter_errors(document)), None) is None


_ODD_VALUES = [None, True, False, 0, 1, -2.5, 1.0, float("nan"), "", "x", "lumi", "normsys",
               "1.0.0", [], [1.0], [1.0, 2.0], ["a"], [[0.0, 1.0]], [None], {}, {"hi": 1.1, "lo": 0.9},
               {"hi_data": [1.0], "lo_data": [2.0]}, {"name": "x"}]


def _locations(node, path=()):
    """Every (path, value) of a JSON document, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _locations(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _locations(value, path + (index,))


def _mutate(document, rng: random.Random):
    """A copy of ``document`` with one random edit: a value replaced, a key
    removed or added, a list emptied or extended, a modifier's type changed."""
    document = copy.deepcopy(document)
    places = list(_locations(document))
    path, node = rng.choice(places[1:])
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = rng.randrange(6)
    if action == 0:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    elif action == 1:
        del parent[last]
    elif action == 2 and isinstance(node, dict):
        node[rng.choice(["extra", "name", "type", "data", "hi", "lo", "hi_data", "inits", "fixed"])] = (
            copy.deepcopy(rng.choice(_ODD_VALUES)))
    elif action == 3 and isinstance(node, list):
        if rng.random() < 0.5:
            node.clear()
        else:
            node.append(copy.deepcopy(rng.choice(node) if node else rng.choice(_ODD_VALUES)))
    elif action == 4 and isinstance(node, dict) and "type" in node:
        node["type"] = rng.choice(list(workspace_module.MODIFIER_TYPES) + ["normsyss", 3, None])
    else:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    return document


@pytest.mark.parametrize("schema_name", ["workspace.json", "model.json"])
def test_fast_schema_check_accepts_exactly_what_jsonschema_accepts(schema_name):
    check = workspace_module._fast_schema_check(schema_name)
    assert check is not None, "pyhf's schema uses a keyword the fast check does not implement"
    spec = _spec(2, 1, 2)
    base = _workspace(spec) if schema_name == "workspace.json" else {"channels": spec["channels"],
                                                                      "parameters": PARAMETERS}
    assert check(base) and _jsonschema_accepts(base, schema_name)
    rng = random.Random(schema_name)
    outcomes = set()
    for _ in range(400):
        document = _mutate(base, rng)
        if rng.random() < 0.3:
            document = _mutate(document, rng)
        expected = _jsonschema_accepts(document, schema_name)
        assert check(document) == expected, json.dumps(document, default=str)[:2000]
        outcomes.add(expected)
    assert outcomes == {True, False}


def test_fast_schema_check_on_odd_python_values():
    """Values jsonschema types strictly: tuples are no arrays, bools no numbers."""
    check = workspace_module._fast_schema_check("model.json")
    base = {"channels": _spec(1, 1, 2)["channels"]}
    for value in [(1.0, 2.0), np.array([1.0, 2.0]), [True, 1.0], [1, 2], [np.float64(1.0), 2.0],
                  [np.int64(3), 2.0], [complex(1, 0), 1.0]]:
        document = copy.deepcopy(base)
        document["channels"][0]["samples"][0]["data"] = value
        assert check(document) == _jsonschema_accepts(document, "model.json"), value


def test_draft6_keywords_are_jsonschemas():
    """The fast check refuses to compile schemas with assertion keywords it does
    not implement; the list of assertion keywords must be jsonschema's."""
    import jsonschema

    assert workspace_module._DRAFT6_KEYWORDS == set(jsonschema.Draft6Validator.VALIDATORS)


def test_valid_workspace_does_not_need_jsonschema(monkeypatch):
    def no_jsonschema(schema_name):
        raise AssertionError("jsonschema was asked about a valid document")

    document = _workspace(_spec(3, 4, 3))
    monkeypatch.setattr(workspace_module, "_schema_validator", no_jsonschema)
    workspace = load_workspace(document)
    assert workspace.channel_names == ["region_0", "region_1", "region_2"]


def test_invalid_workspace_still_gets_jsonschemas_message():
    document = _workspace(_spec(2, 1, 2))
    document["channels"][1]["samples"][1]["modifiers"][3]["data"] = {"hi": 1.1}
    with pytest.raises(workspace_module.WorkspaceError) as error:
        load_workspace(document)
    message = str(error.value)
    assert "$.channels[1].samples[1].modifiers[3].data" in message
    assert "'lo' is a required property (a normsys modifier)" in message


def test_schema_files_found_without_importing_pyhf(monkeypatch):
    """pyhf's schema folder and version, read without ``import pyhf`` (seconds in
    a fresh process), are pyhf's own."""
    import pyhf.schema

    expected = (pyhf.schema.path / pyhf.schema.version, str(pyhf.schema.version))
    monkeypatch.delitem(sys.modules, "pyhf.schema")
    folder, version = workspace_module._pyhf_schema_folder()
    assert (folder.resolve(), version) == (expected[0].resolve(), expected[1])
    assert "pyhf.schema" not in sys.modules


# ---------------------------------------------------------------------- model


class _Counting:
    """Stands in for ``jax.numpy`` in a module and counts the calls it gets."""

    def __init__(self, calls):
        self._calls = calls

    def __getattr__(self, name):
        attribute = getattr(jnp, name)
        if callable(attribute) and not isinstance(attribute, type):
            def counted(*args, **kwargs):
                self._calls.append(name)
                return attribute(*args, **kwargs)

            return counted
        return attribute


def _count_jax_work(monkeypatch, build):
    """(calls into jax.numpy from the model modules, eager primitive evaluations)
    made by ``build()``."""
    from jax._src import core

    calls, primitives = [], []
    evaluate = core.EvalTrace.process_primitive

    def counted(self, primitive, args, params):
        primitives.append(str(primitive))
        return evaluate(self, primitive, args, params)

    with monkeypatch.context() as patch:
        patch.setattr(builder_module, "jnp", _Counting(calls))
        patch.setattr(model_module, "jnp", _Counting(calls))
        patch.setattr(values_module, "jnp", _Counting(calls))
        patch.setattr(histosys_module, "jnp", _Counting(calls))
        patch.setattr(core.EvalTrace, "process_primitive", counted)
        model = build()
    return model, calls, primitives


N_LEAVES = 12  # Model: 7 arrays, ModelConfig: 5


def test_concrete_build_converts_to_jax_once_per_leaf(monkeypatch):
    small_spec, large_spec = _spec(1, 1, 2), _spec(4, 12, 6)
    small, small_calls, small_primitives = _count_jax_work(
        monkeypatch, lambda: Model.from_spec(small_spec, parameters=PARAMETERS))
    large, large_calls, large_primitives = _count_jax_work(
        monkeypatch, lambda: load_workspace(_workspace(large_spec)).model())
    assert len(jax.tree_util.tree_leaves(large)) == N_LEAVES
    assert large.config.npars > 5 * small.config.npars
    # One jnp.asarray per leaf, however many modifiers; no eager JAX arithmetic.
    assert small_calls == large_calls
    assert sorted(set(large_calls)) == ["asarray"] and len(large_calls) <= N_LEAVES, large_calls
    assert len(large_primitives) <= N_LEAVES, large_primitives


def test_leaves_are_float64_jax_arrays():
    model = Model.from_spec(_spec(2, 2, 3), parameters=PARAMETERS)
    leaves = {
        **{f"config.{k}": getattr(model.config, k) for k in ("init", "lower", "upper", "fixed", "auxdata_values")},
        **{k: getattr(model, k) for k in ("nominal", "normsys_hi", "normsys_lo", "histosys_up", "histosys_down",
                                          "gaussian_sigma", "poisson_rate_factor")},
    }
    for name, leaf in leaves.items():
        assert isinstance(leaf, jax.Array), name
        assert leaf.dtype == (jnp.bool_ if name == "config.fixed" else jnp.float64), (name, leaf.dtype)
    # A model without histosys or normsys has empty float64 tables of the right shape.
    bare = Model.from_spec({"channels": [{"name": "sr", "samples": [
        {"name": "s", "data": [1.0, 2.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}]}]})
    assert bare.histosys_up.shape == (0, 2) and bare.histosys_up.dtype == jnp.float64
    assert bare.normsys_hi.shape == (0,) and bare.normsys_hi.dtype == jnp.float64


def test_build_keeps_no_reference_to_the_callers_arrays():
    spec = _spec(1, 1, 3)
    background = spec["channels"][0]["samples"][1]
    background["data"] = np.array(background["data"])
    background["modifiers"][1]["data"] = np.array(background["modifiers"][1]["data"])
    model = Model.from_spec(spec, parameters=PARAMETERS)
    before = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(model)]
    background["data"][:] = 1e6
    background["modifiers"][1]["data"][:] = 1e6
    for old, leaf in zip(before, jax.tree_util.tree_leaves(model)):
        np.testing.assert_array_equal(old, np.asarray(leaf))


def _numbers(spec):
    """Every numeric template of a spec, in a fixed order, as float64 arrays."""
    out = []
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            out.append(np.asarray(sample["data"], float))
            for modifier in sample["modifiers"]:
                data = modifier["data"]
                if modifier["type"] == "normsys":
                    out += [np.asarray(data["hi"], float), np.asarray(data["lo"], float)]
                elif modifier["type"] == "histosys":
                    out += [np.asarray(data["hi_data"], float), np.asarray(data["lo_data"], float)]
                elif modifier["type"] in ("staterror", "shapesys"):
                    out.append(np.asarray(data, float))
    return out


def _filled(spec, numbers):
    """``spec`` with its numeric templates replaced, in ``_numbers``' order."""
    spec = copy.deepcopy(spec)
    values = iter(numbers)
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            sample["data"] = next(values)
            for modifier in sample["modifiers"]:
                if modifier["type"] == "normsys":
                    modifier["data"] = {"hi": next(values), "lo": next(values)}
                elif modifier["type"] == "histosys":
                    modifier["data"] = {"hi_data": next(values), "lo_data": next(values)}
                elif modifier["type"] in ("staterror", "shapesys"):
                    modifier["data"] = next(values)
    return spec


def _assert_same_model(a, b):
    assert a.structure == b.structure and hash(a.structure) == hash(b.structure)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-15, atol=0)


def test_traced_builds_agree_with_the_eager_build_and_differentiate():
    spec = _spec(1, 1, 3)
    numbers = _numbers(spec)
    eager = Model.from_spec(spec, parameters=PARAMETERS)

    # Every template a tracer (jit), and a batch of them (vmap, as stack_workspaces does).
    jitted = jax.jit(lambda values: Model.from_spec(_filled(spec, values), parameters=PARAMETERS))(numbers)
    _assert_same_model(jitted, eager)
    batched = jax.vmap(lambda values: Model.from_spec(_filled(spec, values), parameters=PARAMETERS))(
        [np.stack([v, v]) for v in numbers])
    _assert_same_model(jax.tree_util.tree_map(lambda leaf: leaf[1], batched), eager)
    # Only some templates traced: the rest concrete, mixed in numpy and JAX.
    partly = jax.jit(lambda signal: Model.from_spec(
        _filled(spec, [signal] + numbers[1:]), parameters=PARAMETERS))(numbers[0])
    _assert_same_model(partly, eager)

    main = np.concatenate([np.sum([s["data"] for s in ch["samples"]], axis=0) for ch in spec["channels"]])
    data = jnp.concatenate([jnp.asarray(1.1 * main), eager.config.auxdata])
    pars = eager.config.init + 0.05

    @jax.jit
    def twice_nll(values):
        return Model.from_spec(_filled(spec, values), parameters=PARAMETERS).twice_nll(pars, data)

    gradient = jax.jit(jax.grad(twice_nll))(numbers)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in gradient)
    # Against a central difference in the first bin of region_0's background
    # (``_numbers``: signal data, its staterror data, then the background data).
    position = 2
    np.testing.assert_array_equal(numbers[position], spec["channels"][0]["samples"][1]["data"])
    step = np.zeros_like(numbers[position])
    step[0] = 1e-4
    up = [v + step if i == position else v for i, v in enumerate(numbers)]
    down = [v - step if i == position else v for i, v in enumerate(numbers)]
    finite_difference = (float(twice_nll(up)) - float(twice_nll(down))) / 2e-4
    np.testing.assert_allclose(float(gradient[position][0]), finite_difference, rtol=1e-5)
