"""Published likelihoods: patchset files, patch application, harmonisation of
workspaces of different structure into stacked groups, batched CLs and limits, and
``diffana cls/limit --patchset``.

The synthetic background-only workspace has a signal region (2 bins) and a control
region (1 bin); four signal patches differ in structure the way published ones do
(a signal sample named per mass point with its own MC-statistics shapesys,
different systematics, no signal in the control region), and one (C) cannot be
padded exactly onto the others. Compiled programs are shared through module-scoped
fixtures: one vmapped hypotest per group structure, one hypotest per original one.
"""

from __future__ import annotations

import copy
import json
import sys
import types

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from conftest import atlas_erjr_dir
from diffana import infer
from diffana.infer.patchsets import stacked_hypotest, unstack
from diffana.model import (
    PatchError,
    WorkspaceError,
    WorkspaceGroup,
    apply_patch,
    load_patchset,
    load_workspace,
    read_patches,
    select_patches,
    stack_workspaces,
)

# diffana.cli.build_parser imports every module of the package; importing __main__
# would run the command line on pytest's arguments (as in test_cli_stats.py).
sys.modules.setdefault("diffana.cli.__main__", types.ModuleType("diffana.cli.__main__"))
from diffana.cli import main  # noqa: E402

RTOL = 1e-9

BACKGROUND = {
    "channels": [
        {"name": "SR", "samples": [
            {"name": "background", "data": [50.0, 30.0], "modifiers": [
                {"name": "bkg_norm", "type": "normfactor", "data": None},
                {"name": "jes", "type": "histosys", "data": {"hi_data": [53.0, 31.0], "lo_data": [48.0, 29.5]}},
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": "mcstat_SR", "type": "staterror", "data": [2.0, 1.5]}]}]},
        {"name": "CR", "samples": [
            {"name": "background", "data": [200.0], "modifiers": [
                {"name": "bkg_norm", "type": "normfactor", "data": None},
                {"name": "jes", "type": "normsys", "data": {"hi": 1.02, "lo": 0.97}},
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": "mcstat_CR", "type": "staterror", "data": [5.0]}]}]},
    ],
    "observations": [{"name": "SR", "data": [56.0, 37.0]}, {"name": "CR", "data": [204.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]]}]}}],
    "version": "1.0.0",
}


def _signal(name, channel, data, systematics):
    modifiers = [
        {"name": "mu", "type": "normfactor", "data": None},
        {"name": "lumi", "type": "lumi", "data": None},
        {"name": f"mcstat_{name}_{channel}", "type": "shapesys", "data": [0.1 * d for d in data]},
    ] + systematics
    return {"name": name, "data": data, "modifiers": modifiers}


def _add(channel_index, sample):
    return {"op": "add", "path": f"/channels/{channel_index}/samples/1", "value": sample}


XSEC = {"name": "sig_xsec", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
PDF = {"name": "sig_pdf", "type": "normsys", "data": {"hi": 1.05, "lo": 0.96}}


def _jes(nominal):
    return {"name": "jes", "type": "histosys",
            "data": {"hi_data": [1.1 * v for v in nominal], "lo_data": [0.92 * v for v in nominal]}}


PATCH_A = [  # signal in both regions: xsec normsys, jes histosys
    _add(0, _signal("signal_A", "SR", [5.0, 8.0], [XSEC, _jes([5.0, 8.0])])),
    _add(1, _signal("signal_A", "CR", [0.5], [XSEC])),
]
PATCH_B = [  # no signal in the control region; a pdf normsys instead of xsec and jes
    _add(0, _signal("signal_B", "SR", [3.0, 10.0], [PDF])),
]
PATCH_C = [  # its signal also scales with bkg_norm: A's non-zero signal cannot get that no-op
    _add(0, _signal("signal_C", "SR", [4.0, 4.0], [{"name": "bkg_norm", "type": "normfactor", "data": None}])),
]
PATCH_D = [  # like A with other yields
    _add(0, _signal("signal_D", "SR", [9.0, 3.0], [XSEC, _jes([9.0, 3.0])])),
    _add(1, _signal("signal_D", "CR", [1.5], [XSEC])),
]


def _patchset(background, patches):
    import pyhf.utils

    return {
        "metadata": {
            "description": "synthetic signal grid",
            "digests": {"sha256": pyhf.utils.digest(background, algorithm="sha256")},
            "labels": ["mass"],
            "references": {"hepdata": "ins0000000"},
        },
        "patches": [{"metadata": {"name": name, "values": [float(i)]}, "patch": patch}
                    for i, (name, patch) in enumerate(patches.items())],
        "version": "1.0.0",
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("patchset")
    paths = {
        "background": folder / "bkg_only.json",
        "patchset": folder / "patchset.json",
        "A": folder / "patch_A.json",
        "B": folder / "patch_B.json",
    }
    paths["background"].write_text(json.dumps(BACKGROUND))
    paths["patchset"].write_text(json.dumps(_patchset(BACKGROUND, {"C": PATCH_C, "D": PATCH_D})))
    paths["A"].write_text(json.dumps(PATCH_A))
    paths["B"].write_text(json.dumps(PATCH_B))
    return paths


ORDER = ["C", "D", "patch_A", "patch_B"]  # patchset first, then the plain files


@pytest.fixture(scope="module")
def patched(files):
    return load_patchset(files["background"], [files["patchset"], files["A"], files["B"]])


@pytest.fixture(scope="module")
def groups(patched):
    return patched.stack()


class _Memo(dict):
    """Results computed on first use, so that a test run compiles only what the
    selected tests need."""

    def __init__(self, compute):
        super().__init__()
        self.compute = compute

    def __missing__(self, key):
        self[key] = self.compute(key)
        return self[key]


@pytest.fixture(scope="module")
def stacked_cls(groups):
    """Per member name, its HypotestResult from the vmapped call of its group (one
    compilation per group structure)."""

    def compute_group(index):
        group = groups[index]
        return dict(zip(group.names, unstack(stacked_hypotest(1.0, group.data, group.model))))

    by_group = _Memo(compute_group)
    group_of = {name: index for index, group in enumerate(groups) for name in group.names}
    return _Memo(lambda name: by_group[group_of[name]][name])


@pytest.fixture(scope="module")
def original_cls(patched):
    """Per member name, hypotest of the model built from its own (unpadded)
    workspace (one compilation per member: their structures differ)."""

    def compute(name):
        workspace = patched.workspaces[name]
        model = workspace.model()
        return infer.hypotest(1.0, workspace.data(model), model)

    return _Memo(compute)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------- reading


def test_reads_patchset_and_plain_patch_files_in_order(files):
    patches = read_patches([files["patchset"], files["A"], files["B"]], background=BACKGROUND)
    assert [p.name for p in patches] == ORDER
    assert patches[0].values == (0.0,) and patches[0].source == str(files["patchset"])
    assert patches[2].values == () and list(patches[2].operations) == PATCH_A


def test_patched_workspace_is_the_jsonpatch_result(patched):
    import jsonpatch

    expected = load_workspace(jsonpatch.apply_patch(BACKGROUND, PATCH_B))
    workspace = patched.workspaces["patch_B"]
    assert workspace.spec == expected.spec and workspace.observations == expected.observations
    assert workspace.measurements == expected.measurements


def test_digest_mismatch_names_the_file_and_both_digests(files, tmp_path):
    other = copy.deepcopy(BACKGROUND)
    other["observations"][0]["data"] = [57.0, 37.0]
    path = tmp_path / "other_bkg.json"
    path.write_text(json.dumps(other))
    with pytest.raises(PatchError) as info:
        load_patchset(path, [files["patchset"]])
    message = str(info.value)
    import pyhf.utils

    assert str(files["patchset"]) in message and str(path) in message
    assert pyhf.utils.digest(BACKGROUND) in message and pyhf.utils.digest(other) in message


def test_unknown_patch_name_lists_available_names(files):
    patches = read_patches([files["patchset"], files["A"]])
    with pytest.raises(PatchError, match=r"no patch named 'E'.*available: C, D, patch_A"):
        select_patches(patches, ["C", "E"])
    assert [p.name for p in select_patches(patches, ["patch_A", "C", "patch_A"])] == ["patch_A", "C"]


def test_patch_that_does_not_apply_names_patch_and_operation():
    from diffana.model import NamedPatch

    patch = NamedPatch("broken", (PATCH_B[0], {"op": "add", "path": "/channels/7/samples/5", "value": {}}), "x.json")
    with pytest.raises(PatchError) as info:
        apply_patch(BACKGROUND, patch)
    message = str(info.value)
    assert "'broken'" in message and "operation 1 (add /channels/7/samples/5)" in message
    assert len(message.splitlines()) == 1 and len(message) < 400


def test_invalid_patched_sample_is_a_schema_error_naming_the_patch(files, tmp_path):
    sample = _signal("signal_X", "SR", [1.0, 1.0], [])
    del sample["data"]
    path = tmp_path / "patch_X.json"
    path.write_text(json.dumps([_add(0, sample)]))
    with pytest.raises(WorkspaceError, match=r"patch 'patch_X'.*\$\.channels\[0\]\.samples\[1\].*'data'"):
        load_patchset(files["background"], [path])


def test_plain_file_that_is_no_patch_is_rejected(files, tmp_path):
    path = tmp_path / "patch_bad.json"
    path.write_text(json.dumps([{"op": "add", "value": 1}]))
    with pytest.raises(PatchError, match="patch_bad.json: not a valid JSON patch"):
        read_patches([path])


# ------------------------------------------------------------------ harmonising


def test_structurally_different_members_form_as_few_groups_as_possible(groups):
    # C's signal scales with bkg_norm, which the others have elsewhere: its own group.
    assert [group.names for group in groups] == [("C",), ("D", "patch_A", "patch_B")]
    group = groups[1]
    assert isinstance(group, WorkspaceGroup) and len(group) == 3
    assert group.model.nominal.shape[0] == 3
    assert group.data.shape == (3, group.model.config.nmaindata + group.model.config.nauxdata)
    # Added samples are matched by order and take the first member's names.
    assert group.model.config.samples == ["background", "signal_D"]
    assert "mcstat_signal_D_SR" in group.model.config.parameters
    assert "mcstat_signal_A_SR" not in group.model.config.parameters


def test_member_lacking_a_parameter_has_it_fixed(groups):
    group = groups[1]
    config = group.model.config
    fixed = np.asarray(config.fixed)
    row_b, row_a = group.index("patch_B"), group.index("patch_A")
    assert fixed[row_b, config.par_slice("sig_xsec")].all()  # B has no xsec normsys at all
    assert not fixed[row_a, config.par_slice("sig_xsec")].any()
    assert fixed[row_a, config.par_slice("sig_pdf")].all()
    # B has no control-region signal: its zero-yield copy's shapesys bin is fixed.
    assert fixed[row_b, config.par_slice("mcstat_signal_D_CR")].all()
    assert config.channels == ["CR", "SR"]  # sorted, so bin 0 is the control region
    assert float(group.member("patch_B").model.nominal[1, 0]) == 0.0  # signal row


# patch_B is the most padded member (renamed samples and shapesys, a zero-yield
# control-region copy, absent parameters fixed); the others cost a compilation each.
@pytest.mark.parametrize("name", [pytest.param("C", marks=pytest.mark.slow), pytest.param("D", marks=pytest.mark.slow),
                                  pytest.param("patch_A", marks=pytest.mark.slow), "patch_B"])
def test_harmonised_member_has_the_cls_of_its_own_workspace(name, stacked_cls, original_cls):
    stacked, original = stacked_cls[name], original_cls[name]
    assert bool(stacked.converged) and bool(original.converged)
    np.testing.assert_allclose(float(stacked.test_statistic), float(original.test_statistic), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(float(stacked.test_statistic_asimov), float(original.test_statistic_asimov),
                               rtol=RTOL)
    np.testing.assert_allclose(float(stacked.cls_obs), float(original.cls_obs), rtol=RTOL)
    np.testing.assert_allclose(np.asarray(stacked.cls_exp), np.asarray(original.cls_exp), rtol=RTOL)


def test_python_api_takes_a_stack_of_workspaces(patched, groups):
    documents = {name: workspace.to_dict() for name, workspace in patched.workspaces.items()}
    # Without the background-only workspace, samples common to all are matched by name.
    again = stack_workspaces(documents)
    assert [g.names for g in again] == [g.names for g in groups]
    np.testing.assert_array_equal(np.asarray(again[1].data), np.asarray(groups[1].data))
    np.testing.assert_array_equal(np.asarray(again[1].model.nominal), np.asarray(groups[1].model.nominal))


def test_identical_structures_stack_without_padding(patched):
    group, = stack_workspaces([patched.workspaces["D"], patched.workspaces["D"]])
    assert group.names == ("0", "1") and group.model.config.npars == patched.workspaces["D"].model().config.npars


# -------------------------------------------------------------------------- CLI


def test_cli_cls_patchset_is_keyed_by_patch_name(files, capsys, stacked_cls):
    code, out, err = _run(capsys, "cls", files["background"], "--patchset", files["patchset"], files["A"],
                          files["B"], "--patch", "D", "patch_A", "patch_B")
    assert code == 0, err
    result = json.loads(out)
    assert sorted(result) == ["D", "patch_A", "patch_B"]
    for name in result:
        assert set(result[name]) == {"CLs_obs", "CLs_exp", "converged"} and result[name]["converged"]
        # The command compiles a few patches for compile speed (LLVM -O0,
        # programs.FAST_COMPILE): the same numbers up to floating-point rounding.
        np.testing.assert_allclose(result[name]["CLs_obs"], float(stacked_cls[name].cls_obs), rtol=1e-12)
        np.testing.assert_allclose(result[name]["CLs_exp"], np.asarray(stacked_cls[name].cls_exp), rtol=1e-12)
    assert "3 patches form 1 group(s)" in err and "group 1/1: 3 workspaces" in err


@pytest.mark.slow  # compiles the one-member group of C
def test_cli_cls_all_patches_two_groups(files, capsys, stacked_cls):
    code, out, err = _run(capsys, "cls", files["background"], "--patchset", files["patchset"], files["A"],
                          files["B"])
    assert code == 0, err
    result = json.loads(out)
    assert sorted(result) == sorted(ORDER) and "4 patches form 2 group(s)" in err
    assert all(result[name]["CLs_obs"] == float(stacked_cls[name].cls_obs) for name in ORDER)


def test_load_patchset_selects_patches_in_the_order_asked(files):
    patched = load_patchset(files["background"], [files["patchset"], files["A"]], ["patch_A", "C"])
    assert list(patched.workspaces) == ["patch_A", "C"]


@pytest.mark.parametrize("extra, message", [
    (["--patch", "E"], "no patch named 'E'"),
    (["--calctype", "toybased"], "--patchset supports --calctype asymptotics only"),
    (["--poi-value", "20"], "outside the bounds [0.0, 10.0] of the POI 'mu' of patch 'C'"),
])
def test_cli_patchset_bad_input_is_one_line(files, capsys, extra, message):
    code, _, err = _run(capsys, "cls", files["background"], "--patchset", files["patchset"], *extra)
    lines = [line for line in err.strip().splitlines() if "patches form" not in line]
    assert code == 2 and message in err and len(lines) == 1, err


def test_cli_patch_without_patchset_is_an_error(files, capsys):
    code, _, err = _run(capsys, "limit", files["background"], "--patch", "C")
    assert code == 2 and "--patch selects patches of a --patchset" in err


def test_cli_digest_mismatch_is_an_error(files, capsys, tmp_path):
    other = copy.deepcopy(BACKGROUND)
    other["measurements"][0]["name"] = "renamed"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    code, _, err = _run(capsys, "cls", path, "--patchset", files["patchset"])
    assert code == 2 and "made for another background-only workspace" in err


@pytest.mark.slow  # 41 s on 2 cores; the patchset CLI stays in CI (cls keyed by patch, bad input)
def test_cli_limit_patchset(files, capsys, stacked_cls):
    code, out, err = _run(capsys, "limit", files["background"], "--cl", "0.95", "--patchset", files["A"],
                          files["B"], files["patchset"], "--patch", "D", "patch_A", "patch_B")
    assert code == 0, err
    result = json.loads(out)
    assert sorted(result) == ["D", "patch_A", "patch_B"]
    for name, entry in result.items():
        assert set(entry) == {"obs", "exp", "converged", "warnings"}
        assert entry["converged"] and entry["warnings"] == []
        assert np.all(np.diff(entry["exp"]) > 0)
    # The observed limits solve CLs = 0.05 (same group structure: reuses the compiled hypotest).
    names = ("D", "patch_A", "patch_B")
    group = load_patchset(files["background"], [files["patchset"], files["A"], files["B"]], names).stack()[0]
    at_limit = stacked_hypotest(np.array([result[n]["obs"] for n in group.names]), group.data, group.model)
    np.testing.assert_allclose(np.asarray(at_limit.cls_obs), 0.05, rtol=1e-6)


# ------------------------------------------------------------------------ ATLAS

ATLAS = atlas_erjr_dir()
ATLAS_PATCHES = ["patch_C1N2_WZ_500p0_300p0", "patch_C1N2_WZ_100p0_20p0"]  # with / without CRlow signal


def _cli_json(*argv):
    """``diffana ARGV``'s JSON output and stderr, outside pytest's per-test capture
    (for module-scoped fixtures)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()), err.getvalue()


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """Two ATLAS patches (with and without a CRlow signal): ``diffana cls
    --patchset`` and ``diffana cls`` on each patched workspace, and the stacked
    and unpadded hypotest results, which reuse the CLI's compiled programs (three
    ATLAS compilations in all)."""
    import os

    if not os.path.isdir(ATLAS):
        pytest.skip(f"{ATLAS} is not on this machine")
    import jsonpatch

    folder = tmp_path_factory.mktemp("atlas")
    patches = [f"{ATLAS}/{name}.json" for name in ATLAS_PATCHES]
    with open(f"{ATLAS}/bkg_only.json") as handle:
        background = json.load(handle)
    batched, batched_err = _cli_json("cls", f"{ATLAS}/bkg_only.json", "--patchset", *patches)
    patched = load_patchset(f"{ATLAS}/bkg_only.json", patches)
    group, = patched.stack()
    stacked = dict(zip(group.names, unstack(stacked_hypotest(1.0, group.data, group.model))))
    single, original = {}, {}
    for name, path in zip(ATLAS_PATCHES, patches):
        with open(path) as handle:
            workspace_file = folder / f"{name}_workspace.json"
            workspace_file.write_text(json.dumps(jsonpatch.apply_patch(background, json.load(handle))))
        single[name], _ = _cli_json("cls", workspace_file)
        workspace = patched.workspaces[name]
        model = workspace.model()
        original[name] = infer.hypotest(1.0, workspace.data(model), model)
    return types.SimpleNamespace(batched=batched, batched_err=batched_err, single=single, group=group,
                                 stacked=stacked, original=original)


@pytest.mark.slow  # three ATLAS compilations (~20-40 s each on 2 cores)
def test_atlas_patchset_cli_equals_single_workspace_cls(atlas):
    assert "2 patches form 1 group(s)" in atlas.batched_err
    for name in ATLAS_PATCHES:
        np.testing.assert_allclose(atlas.batched[name]["CLs_obs"], atlas.single[name]["CLs_obs"], rtol=RTOL)
        np.testing.assert_allclose(atlas.batched[name]["CLs_exp"], atlas.single[name]["CLs_exp"], rtol=RTOL)
        assert atlas.batched[name]["converged"]


@pytest.mark.slow  # shares the compilations above
@pytest.mark.parametrize("name", ATLAS_PATCHES)
def test_atlas_harmonised_member_has_the_qtilde_of_its_own_workspace(atlas, name):
    stacked, original = atlas.stacked[name], atlas.original[name]
    # 500/300 has a CRlow signal; 100/20 gets a zero-yield CRlow copy of it.
    np.testing.assert_allclose(float(stacked.test_statistic), float(original.test_statistic), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(float(stacked.test_statistic_asimov), float(original.test_statistic_asimov),
                               rtol=RTOL)
    np.testing.assert_allclose(float(stacked.cls_obs), float(original.cls_obs), rtol=RTOL)
    np.testing.assert_allclose(np.asarray(stacked.cls_exp), np.asarray(original.cls_exp), rtol=RTOL)
