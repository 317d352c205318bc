"""The store of extra background MC: chunks are the samples' background at their seed,
independent across seeds, kept when already written, and refused when they do not fit."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from diffana.analyses.zprime_invisible import background_store as store
from diffana.analyses.zprime_invisible.config import load_config
from diffana.analyses.zprime_invisible.samples import make_samples
from diffana.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 4000  # generated per process and chunk: a few hundred preselected events


def tiny_config(**analysis):
    return load_config(None, quick=True, overrides={
        "analysis": {"n_masses": 2, **analysis},
        "samples": {"background_events": EVENTS, "signal_events_per_mass": 200,
                    "process_events": {"mumu": EVENTS, "tautau": EVENTS, "eemumu": EVENTS}}})


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store of chunks 1001 and 1002 for the tiny config, and the progress it reported."""
    directory = tmp_path_factory.mktemp("store")
    reported = []
    store.fill_store(tiny_config(), directory, [1001, 1002], lambda seed, new: reported.append((seed, new)))
    return directory, reported


def test_a_chunk_is_the_background_of_the_samples_of_its_seed(filled):
    directory, _ = filled
    chunk = store.read_chunk(store.chunk_path(directory, 1001))
    samples = make_samples(tiny_config(), 1001)
    both_halves = np.concatenate([samples.background_train["recoil_mass_squared"],
                                  samples.background_test["recoil_mass_squared"]])
    np.testing.assert_array_equal(np.sort(chunk.events["recoil_mass_squared"]), np.sort(both_halves))
    assert chunk.seed == 1001 and chunk.settings == store.store_settings(tiny_config())


def test_chunks_of_different_seeds_are_independent_samples_of_the_same_background(filled):
    directory, reported = filled
    a, b = (store.read_chunk(store.chunk_path(directory, seed)).events for seed in (1001, 1002))
    assert reported == [(1001, True), (1002, True)]
    assert not np.isin(a["recoil_mass_squared"], b["recoil_mass_squared"]).any()
    for process in (1, 2, 3):  # each process' expected events agree within 5 MC standard errors
        wa, wb = (c["weight"][c["process"] == process] for c in (a, b))
        assert wa.size > 0 and wb.size > 0
        assert abs(wa.sum() - wb.sum()) < 5 * np.sqrt(np.sum(wa**2) + np.sum(wb**2))


def test_filling_again_keeps_the_chunks_already_written(filled):
    directory, _ = filled
    path = store.chunk_path(directory, 1001)
    before = os.stat(path).st_mtime_ns
    reported = []
    store.fill_store(tiny_config(), directory, [1001], lambda seed, new: reported.append((seed, new)))
    assert reported == [(1001, False)] and os.stat(path).st_mtime_ns == before
    assert store.read_settings(path) == store.read_chunk(path).settings == store.store_settings(tiny_config())


def test_reading_checks_settings_and_names_what_is_missing(filled):
    directory, _ = filled
    assert [c.seed for c in store.read_store(directory, [1002, 1001], tiny_config())] == [1002, 1001]
    with pytest.raises(ConfigError, match="chunk_1001.npz was generated with"):
        list(store.read_store(directory, [1001], tiny_config(luminosity=8.0)))
    with pytest.raises(ConfigError, match="chunk_1001.npz was generated with"):
        store.fill_store(tiny_config(luminosity=8.0), directory, [1001])
    with pytest.raises(ConfigError, match="no chunk of seed 1003"):
        list(store.read_store(directory, [1003], tiny_config()))


def test_a_file_that_is_not_a_chunk_is_refused_by_name(tmp_path):
    path = store.chunk_path(tmp_path, 7)
    path.write_bytes(b"not a numpy archive")
    with pytest.raises(ConfigError, match="chunk_7.npz is not a background-store chunk"):
        store.read_chunk(path)
    with pytest.raises(ConfigError, match="chunk_7.npz is not a background-store chunk"):
        store.read_settings(path)
    np.savez(path.with_suffix(""), weight=np.ones(3))  # a numpy archive without the header
    with pytest.raises(ConfigError, match="chunk_7.npz is not a background-store chunk"):
        store.read_settings(path)


def test_seed_ranges_and_independence_are_checked():
    assert store.parse_seeds("1001-1003") == [1001, 1002, 1003] and store.parse_seeds("5") == [5]
    for bad in ("a-b", "5-3", ""):
        with pytest.raises(ConfigError, match="store seed"):
            store.parse_seeds(bad)
    store.check_independent([1001, 1002], [1, 2])
    with pytest.raises(ConfigError, match=r"store seeds \[2\] are the seeds of the samples"):
        store.check_independent([1, 2, 3], [2, 7])


def test_only_the_generator_fills_a_store():
    config = tiny_config()
    config = type(config)(**{**config.__dict__, "samples": type(config.samples)(
        **{**config.samples.__dict__, "source": "root"})})
    with pytest.raises(ConfigError, match="a background store is generated"):
        store.store_settings(config)


def test_convergence_script_pools_by_mc_share_and_refuses_its_own_seed(capsys):
    script = runpy.run_path(str(ROOT / "scripts" / "punzi_reference_convergence.py"))
    columns = ("recoil_mass_squared", "bce", "punzi")
    small = script["Pool"]({**{k: np.zeros(2) for k in columns}, "weight": np.array([3.0, 1.0])}, 1.0)
    large = script["Pool"]({**{k: np.zeros(1) for k in columns}, "weight": np.array([8.0])}, 3.0)
    both = script["pooled"]([small, large])
    # each pool stands for the luminosity once: the union too, each weighted by its MC share
    assert both.size == 4.0 and both.events["weight"].sum() == pytest.approx(0.25 * 4.0 + 0.75 * 8.0)
    # a chunk is a whole sample (2× a half); its weights follow the luminosity asked for
    chunk = store.BackgroundChunk(1001, store.StoreSettings(79.7, {}, True, 90.0),
                                  {"recoil_mass_squared": np.array([1.0, 2.0]), "weight": np.array([10.0, 30.0])})
    scorer = script["TrainedScorer"](lambda ev: np.zeros(2), lambda ev: np.ones(2))
    [scored] = script["store_pools"]([chunk], scorer, 7.97)
    assert scored.size == 2.0 and np.allclose(scored.events["weight"], [1.0, 3.0])
    assert np.all(scored.events["punzi"] == 1.0) and np.all(scored.events["bce"] == 0.0)
    assert script["split_seeds"]([1, 2, 3]) == ([1, 2], [3])
    assert [script["doubling"](n) for n in (1, 6, 8)] == [[1], [1, 2, 4, 6], [1, 2, 4, 8]]
    with pytest.raises(ConfigError, match="at least 2 chunk seeds"):
        script["split_seeds"]([1])
    with pytest.raises(SystemExit, match=r"store seeds \[1\] are the seeds of the samples"):
        script["main"](["--samples", "unused.pkl", "--store", "unused", "--store-seeds", "1-2", "--seed", "1"])
