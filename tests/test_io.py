"""ROOT I/O: exact round trip, branch maps, chunked reading, error messages."""

import math

import numpy as np
import pytest
import uproot

from diffana import io


@pytest.fixture(scope="module")
def generated_tautau():
    from diffana.physics import generate

    # same size as tests/physics/test_generator.py: the compiled pipeline is shared in one session
    return generate("tautau", luminosity=1.0, n_events=100_000, seed=3)


@pytest.fixture()
def sample():
    rng = np.random.default_rng(7)
    n = 1000
    return {
        "recoil_mass_squared": rng.normal(10.0, 3.0, n),
        "recoil_theta_lab": rng.uniform(30, 120, n),
        "n_tracks": rng.integers(0, 4, n).astype(np.int32),
        "weight": rng.uniform(0.1, 2.0, n),
        "process": rng.integers(0, 4, n).astype(np.int32),
    }


def test_round_trip_is_exact(tmp_path, sample):
    path = tmp_path / "s.root"
    io.write_sample(path, sample)
    back = io.read_sample(path)
    assert set(back) == set(sample)
    for name, value in sample.items():
        assert back[name].dtype == value.dtype, name
        np.testing.assert_array_equal(back[name], value)


def test_round_trip_of_generated_sample(tmp_path, generated_tautau):
    path = tmp_path / "tautau.root"
    io.write_sample(path, generated_tautau)
    back = io.read_sample(path)
    for name, value in generated_tautau.items():
        np.testing.assert_array_equal(back[name], value)


def test_several_trees_in_one_file(tmp_path, sample):
    path = tmp_path / "two.root"
    other = {k: v[:10] for k, v in sample.items()}
    io.write_sample(path, sample, tree="signal", append_trees={"background": other})
    assert len(io.read_sample(path, tree="background")["weight"]) == 10
    with pytest.raises(io.SampleIOError, match=r"no tree 'events'.*background.*signal"):
        io.read_sample(path)


def test_branch_map_renames_and_scales(tmp_path):
    theta = np.linspace(0.5, 2.0, 50)
    path = tmp_path / "belle2.root"
    with uproot.recreate(path) as f:
        f.mktree("events", {"m2Recoil": "f8", "pRecoilTheta": "f8", "other": "f8"})
        f["events"].extend({"m2Recoil": np.linspace(0, 9, 50), "pRecoilTheta": theta, "other": np.ones(50)})
    got = io.read_sample(path, branch_map=io.BELLE2_BRANCH_MAP)
    assert set(got) == {"recoil_mass_squared", "recoil_theta_lab"}  # unmapped 'other' skipped
    np.testing.assert_allclose(got["recoil_theta_lab"], np.degrees(theta))
    picked = io.read_sample(path, branches=["recoil_theta_lab", "other"], branch_map=io.BELLE2_BRANCH_MAP)
    assert set(picked) == {"recoil_theta_lab", "other"}


def test_chunked_iteration_covers_file(tmp_path, sample):
    path = tmp_path / "big.root"
    io.write_sample(path, sample)
    chunks = list(io.iterate_sample(path, step_size=300, branches=["weight", "process"]))
    assert [len(c["weight"]) for c in chunks] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate([c["weight"] for c in chunks]), sample["weight"])
    np.testing.assert_array_equal(np.concatenate([c["process"] for c in chunks]), sample["process"])


def test_missing_file():
    with pytest.raises(io.SampleIOError, match="file not found: .*nope.root"):
        io.read_sample("nope.root")


def test_missing_branch_lists_available(tmp_path, sample):
    path = tmp_path / "s.root"
    io.write_sample(path, sample)
    with pytest.raises(io.SampleIOError, match=r"missing branch for 'dimuon_pt_cm'.*recoil_mass_squared"):
        io.read_sample(path, branches=["dimuon_pt_cm"])
    with pytest.raises(io.SampleIOError, match=r"looked for \['mu_p_pt', 'muon1_pt_lab'\]"):
        io.read_sample(path, branches=["muon1_pt_lab"], branch_map=io.BELLE2_BRANCH_MAP)


def test_non_numeric_branch(tmp_path):
    path = tmp_path / "jagged.root"
    import awkward as ak

    with uproot.recreate(path) as f:
        f.mktree("events", {"x": "f8", "hits": "var * float64"})
        f["events"].extend({"x": np.ones(3), "hits": ak.Array([[1.0], [], [2.0, 3.0]])})
    with pytest.raises(io.SampleIOError, match="branch 'hits'.* not a flat numeric"):
        io.read_sample(path, branches=["hits"])


def test_nan_raise_and_drop(tmp_path, sample):
    sample = dict(sample)
    values = sample["recoil_mass_squared"].copy()
    values[[3, 5, 8]] = np.nan
    sample["recoil_mass_squared"] = values
    path = tmp_path / "nan.root"
    io.write_sample(path, sample)
    with pytest.raises(io.SampleIOError, match="NaN values in branch.*recoil_mass_squared: 3"):
        io.read_sample(path)
    with pytest.warns(UserWarning, match="dropped 3 event"):
        got, report = io.read_sample(path, nan_policy="drop", report=True)
    assert report.n_read == 1000 and report.n_dropped == 3
    assert report.nan_counts == {"recoil_mass_squared": 3}
    assert len(got["weight"]) == 997 and not np.isnan(got["recoil_mass_squared"]).any()
    with pytest.raises(ValueError, match="nan_policy"):
        io.read_sample(path, nan_policy="ignore")


def test_write_rejects_bad_samples(tmp_path):
    with pytest.raises(io.SampleIOError, match="branch 'b' has 2 entries"):
        io.write_sample(tmp_path / "x.root", {"a": np.ones(3), "b": np.ones(2)})
    with pytest.raises(io.SampleIOError, match="branch 'a': dtype"):
        io.write_sample(tmp_path / "x.root", {"a": np.array(["x", "y"])})
    with pytest.raises(io.SampleIOError, match="1-D"):
        io.write_sample(tmp_path / "x.root", {"a": np.ones((2, 2))})


def test_not_a_root_file(tmp_path):
    path = tmp_path / "text.root"
    path.write_text("hello")
    with pytest.raises(io.SampleIOError, match="not a readable ROOT file"):
        io.read_sample(path)


def test_concatenate_samples(sample):
    joined = io.concatenate_samples([sample, sample])
    assert len(joined["weight"]) == 2000
    with pytest.raises(ValueError, match="sample 1 has branches"):
        io.concatenate_samples([sample, {"weight": np.ones(1)}])


def test_default_map_scales_angles_to_degrees():
    assert io.BELLE2_BRANCH_MAP["pRecoilTheta"] == ("recoil_theta_lab", 180.0 / math.pi)
