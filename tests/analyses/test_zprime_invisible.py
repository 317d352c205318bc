"""Tests of the Z'→invisible analysis: config validation, hypotheses, templates,
model, selections' losses, tables; a tiny end-to-end run (slow)."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import diffana  # noqa: F401  (float64)
from conftest import zprime_config_error
from diffana.analyses.zprime_invisible import config as cfg
from diffana.analyses.zprime_invisible import fit, outputs, samples, selections, templates


# ----------------------------------------------------------------------------- config
def test_shipped_configs_load_and_differ():
    full = cfg.load_config("belle2_2019_2020")
    pilot = cfg.load_config("belle2_2018_pilot")
    quick = cfg.load_config(None, quick=True)
    assert full.analysis.luminosity == 79.7 and pilot.analysis.luminosity == 0.276
    assert full.analysis.n_masses == 0 and quick.analysis.n_masses == 16
    assert quick.samples.background_events < full.samples.background_events
    assert quick.templates.theta_bins < full.templates.theta_bins
    json.dumps(full.to_dict())


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[analysis]\nluminosty = 1.0\n", "unknown key(s) ['luminosty'] in [analysis]"),
        ("[analysys]\n", "unknown table(s) ['analysys']"),
        ("[analysis]\nmass_max = 12.0\n", "mass_max = 12.0 GeV is outside the range"),
        ("[analysis]\nmass_min = 0.001\n", "mass_min = 0.001 GeV is outside"),
        ("[analysis]\nluminosity = \"lots\"\n", "[analysis] luminosity must be a number"),
        ("[templates]\ntheta_bins = 0\n", "theta_bins must be 1-10"),
        ("[quick]\ntraining = { bce_stepz = 3 }\n", "unknown key(s) ['bce_stepz'] in [training]"),
        ("[samples]\nsource = \"root\"\nfiles = { mumu = \"nope.root\", tautau = \"nope.root\", eemumu = \"nope.root\" }\n",
         "files.mumu: ROOT file"),
        ("[samples]\nsource = \"root\"\nfiles = { mumu = \"a.root\" }\n", "no ROOT file for ['tautau', 'eemumu']"),
        ("[analysis\n", "not valid TOML"),
        ("[wide_width]\nselection = \"best\"\n", "[wide_width] selection must be one of"),
        ("[wide_width]\nrelative_width = 1.5\n", "[wide_width] relative_width = Γ/M must lie in (0, 1)"),
        ("[training]\nlimit_cut = \"best\"\n", "[training] limit_cut must be \"none\" or \"bce\""),
        ("[training]\nlimit_temperature = 0.0\n", "[training] limit_temperature must be positive"),
        ("[training]\npunzi_cut = \"best\"\n", "[training] punzi_cut must be \"none\" or \"bce\""),
        ("[training]\npunzi_temperature = -1.0\n", "[training] punzi_temperature must be positive"),
        ("[samples]\nsignal_isr = 1\n", "[samples] signal_isr must be true or false"),
        ("[training]\ncut_tightest_signal_fraction = 1.0\n", "cut_tightest_signal_fraction must lie in (0, 1)"),
        ("[training]\ncut_min_signal_events = -1\n", "cut_min_signal_events must be >= 0"),
        ("[training]\ncut_validation_fraction = 1.0\n", "cut_validation_fraction must lie in [0, 1)"),
        ("[training]\ncut_guard_spared_fraction = 1.0\n", "cut_guard_spared_fraction must lie in [0, 1)"),
        ("[training]\ncut_region_masses = [6.0, 1.0]\n", "cut_region_masses must increase strictly"),
        ("[training]\ncut_region_masses = [9.0]\n", "between mass_min (0.01) and mass_max (8.5) GeV, got [9.0]"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, fragment):
    message = zprime_config_error(tmp_path, text)
    assert fragment in message
    assert "\n" not in message


def _root_sample(n=20):
    rng = np.random.default_rng(0)
    return {name: rng.uniform(0.5, 2.0, n) for name in samples.REQUIRED_FEATURES}


def test_signal_isr_setting_reaches_the_signal_generator(monkeypatch):
    class Stop(Exception):
        pass

    calls = []

    def signal_generator(process, luminosity, **settings):
        calls.append((process, settings))
        raise Stop  # the setting is what is checked: generating the signal is the generator's test

    monkeypatch.setattr(samples, "generate_preselected", lambda *args, **kw: {**_root_sample(), "weight": np.ones(20)})
    monkeypatch.setattr("diffana.physics.generator.generate", signal_generator)  # make_samples imports it when it runs
    for isr in (True, False):
        config = cfg.load_config(None, quick=True, overrides={"samples": {"signal_isr": isr}})
        with pytest.raises(Stop):
            samples.make_samples(config, seed=1)
        assert calls[-1][0] == "signal" and calls[-1][1]["signal_isr"] is isr


@pytest.fixture(scope="module")
def root_files(tmp_path_factory):
    from diffana.io import write_sample

    folder = tmp_path_factory.mktemp("root")
    for process in cfg.BACKGROUND_PROCESSES:
        write_sample(folder / f"{process}.root", _root_sample())
    return folder


def test_root_config_with_matching_files_loads(root_files):
    text = ("[samples]\nsource = \"root\"\n"
            "files = { mumu = \"mumu.root\", tautau = \"tautau.root\", eemumu = \"eemumu.root\" }\n")
    config = cfg.load_config(_write(root_files, text))
    assert config.samples.source == "root"


def test_branch_map_that_does_not_match_is_refused(root_files):
    text = ("[samples]\nsource = \"root\"\n"
            "files = { mumu = \"mumu.root\", tautau = \"tautau.root\", eemumu = \"eemumu.root\" }\n"
            "branch_map = { m2Recoil = \"recoil_mass_squared\" }\n")
    with pytest.raises(cfg.ConfigError, match=r"branch_map: branch\(es\) \['m2Recoil'\] not in"):
        cfg.load_config(_write(root_files, text))
    text = text.replace("m2Recoil", "recoil_mass_squared")
    with pytest.raises(cfg.ConfigError, match="lacks feature"):
        cfg.load_config(_write(root_files, text, "d.toml"))


def test_command_line_overrides_parse_as_toml_and_reach_the_config():
    overrides = cfg.parse_overrides(['training.hypothesis_spacing="mass"', "training.n_masses=24"])
    assert overrides == {"training": {"hypothesis_spacing": "mass", "n_masses": 24}}
    config = cfg.load_config("belle2_2019_2020", quick=True, overrides=overrides)
    assert config.training.hypothesis_spacing == "mass" and config.training.n_masses == 24
    with pytest.raises(cfg.ConfigError, match="expected SECTION.KEY=VALUE"):
        cfg.parse_overrides(["n_masses=24"])
    with pytest.raises(cfg.ConfigError, match="not a TOML value"):
        cfg.parse_overrides(["training.hypothesis_spacing=mass"])  # unquoted string


def test_config_options_are_shared_by_the_command_and_the_scripts():
    import argparse

    from diffana.cli.zprime import add_config_options

    parser = argparse.ArgumentParser()
    add_config_options(parser, default="belle2_2019_2020")
    args = parser.parse_args(["--quick", "--set", "training.n_masses=24", "--set", 'training.hypothesis_spacing="mass"'])
    config = cfg.config_from_options(args, ["training.n_masses=12"])  # extra settings apply after --set
    assert config.training.n_masses == 12 and config.training.hypothesis_spacing == "mass"
    assert config.samples.background_events == cfg.load_config("belle2_2019_2020", quick=True).samples.background_events


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    # through the installed console script: the exit code and stderr a user sees
    script = Path(sys.executable).with_name("diffana")
    path = _write(tmp_path, "[analysis]\nmass_max = 11.0\n")
    run = subprocess.run([str(script), "zprime-invisible", "--config", str(path), "--output", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    err = run.stderr.strip()
    assert run.returncode == 2
    assert err.count("\n") == 0 and "mass_max = 11.0 GeV is outside" in err
    assert not (tmp_path / "out").exists()  # refused before anything ran
    run = subprocess.run([str(script), "zprime-invisible", "--quick", "--set", "training.n_masses=x", "--output",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "'x' is not a TOML value" in run.stderr and run.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- hypotheses
def test_mass_hypotheses_are_spaced_by_the_resolution():
    masses = samples.mass_hypotheses(0.01, 8.5)
    assert masses[0] == 0.01 and masses[-1] <= 8.5
    steps = np.diff(masses**2)
    np.testing.assert_allclose(steps, samples.recoil_mass_squared_resolution(masses[:-1]), rtol=1e-12)
    assert 400 < masses.size < 600  # one resolution per step over 0-72 GeV²
    subset = samples.mass_hypotheses(0.01, 8.5, n_masses=16)
    assert subset.size == 16 and subset[0] == masses[0] and subset[-1] == masses[-1]


def test_resolution_table_interpolates():
    np.testing.assert_allclose(samples.recoil_mass_squared_resolution([1.0, 1.65, 20.0], "table"), [0.287, 0.325, 0.046])


def test_pseudo_data_is_poisson_around_the_background():
    rng = np.random.default_rng(3)
    background = {"weight": np.full(1000, 2.5), "x": np.arange(1000.0)}
    sizes = [samples.draw_pseudo_data(background, rng)["weight"].size for _ in range(200)]
    assert abs(np.mean(sizes) - 2500) < 5 * np.sqrt(2500 / 200)
    assert 0.5 * 2500 < np.var(sizes) < 1.5 * 2500


# --------------------------------------------------------------------------- templates
def test_window_histogram_shape_and_normalisation():
    rng = np.random.default_rng(1)
    edges = templates.theta_edges(3)
    m2 = rng.uniform(-1, 5, 5000)
    theta = rng.uniform(0, 180, 5000)
    w = rng.uniform(0.5, 1.5, 5000)
    h = templates.window_histogram(2.0, 0.1, m2, theta, w, edges, 20)
    assert h.shape == (60,)
    m2_edges = templates.window_edges(2.0, 0.1, 20)
    inside = (m2 >= m2_edges[0]) & (m2 < m2_edges[-1])
    np.testing.assert_allclose(float(h.sum()), w[inside].sum(), rtol=1e-12)
    reference, _, _ = np.histogram2d(m2, theta, [m2_edges, edges], weights=w)
    np.testing.assert_allclose(np.asarray(h).reshape(20, 3), reference, rtol=1e-12)


def test_signal_shape_shift_widens_the_peak_about_the_hypothesis():
    rng = np.random.default_rng(2)
    n = 4000
    m2 = 4.0 + 0.1 * rng.normal(size=(1, n))
    theta = np.full((1, n), 90.0)
    w = np.ones((1, n))
    edges = templates.theta_edges(1)
    nominal = templates.signal_histograms(np.array([4.0]), np.array([0.1]), m2, theta, w, edges, 20)
    wider = templates.signal_histograms(np.array([4.0]), np.array([0.1]), m2, theta, w, edges, 20, shape_shift=0.1)
    centres = np.asarray(templates.bin_centres_m2(np.array([4.0]), np.array([0.1]), 20, 1))[0]
    spread = lambda h: np.sqrt(np.average((centres - 4.0) ** 2, weights=np.asarray(h)[0]))  # noqa: E731
    assert spread(wider) == pytest.approx(1.1 * spread(nominal), rel=0.05)


def test_analysis_templates_keys_shapes_and_systematics():
    config = cfg.load_config(None, quick=True)
    rng = np.random.default_rng(0)
    M, n, N = 3, 50, 200
    centres = np.array([1.0, 16.0, 49.0])
    widths = np.array([0.3, 0.25, 0.15])
    signal = {"recoil_mass_squared": centres[:, None] + 0.1 * rng.normal(size=(M, n)),
              "recoil_theta_cm": rng.uniform(30, 150, (M, n)), "weight": np.full((M, n), 0.5)}
    background = {"recoil_mass_squared": rng.uniform(0, 60, N), "recoil_theta_cm": rng.uniform(0, 180, N),
                  "weight": np.ones(N), "process": rng.integers(1, 4, N)}
    edges = templates.theta_edges(2)
    without_mc_errors = dataclasses.replace(config.systematics, background_mc_statistics=False)
    t = templates.analysis_templates(centres, widths, signal, np.ones((M, n)), background, np.ones(N), edges, 20,
                                     without_mc_errors, np.ones(M))
    for key in fit.TEMPLATE_KEYS:
        assert t[key].shape == (M, 40)
    assert np.all(np.asarray(t["background_mumu"]) <= np.asarray(t["background"]))
    np.testing.assert_allclose(t["signal_efficiency"], [0.027, 0.065, 0.083])
    assert set(np.unique(np.asarray(t["background_shape"])[2])) <= {0.086, 0.25}
    assert np.asarray(t["photon_veto"])[0].max() == 0.34 and np.asarray(t["photon_veto"])[2].max() == 0.05


def _one_window_background(weights, rng):
    """One hypothesis (M² = 4 GeV², 20 bins of 0.1 GeV², one θ bin) and background
    events of ``weights`` spread over its window, with a small signal peak."""
    n = weights.size
    background = {"recoil_mass_squared": rng.uniform(3.0, 5.0, n), "recoil_theta_cm": rng.uniform(0, 180, n),
                  "weight": weights, "process": np.full(n, 2)}
    signal = {"recoil_mass_squared": 4.0 + 0.1 * rng.normal(size=(1, 400)),
              "recoil_theta_cm": rng.uniform(0, 180, (1, 400)), "weight": np.full((1, 400), 0.05)}
    return signal, background


def _window_templates(signal, background, systematics):
    return templates.analysis_templates(np.array([4.0]), np.array([0.1]), signal, np.ones((1, 400)), background,
                                        np.ones(background["weight"].size), templates.theta_edges(1), 20,
                                        systematics, np.ones(1))


def test_background_mc_statistics_add_the_template_error_in_quadrature():
    """With ``background_mc_statistics`` each bin's shapesys uncertainty is
    √(shape² + Σw²/(B + floor)²), Σw² histogrammed independently here; a bin with no
    MC keeps the configured shape uncertainty."""
    rng = np.random.default_rng(3)
    weights = rng.exponential(40.0, 60)
    signal, background = _one_window_background(weights, rng)
    systematics = cfg.SystematicsConfig()
    assert systematics.background_mc_statistics
    t = _window_templates(signal, background, systematics)
    edges = templates.window_edges(4.0, 0.1, 20)
    sumw, _ = np.histogram(background["recoil_mass_squared"], edges, weights=weights)
    sumw2, _ = np.histogram(background["recoil_mass_squared"], edges, weights=weights**2)
    expected = np.sqrt(0.032**2 + sumw2 / (sumw + fit.YIELD_FLOOR) ** 2)
    np.testing.assert_allclose(np.asarray(t["background_shape"])[0], expected, rtol=1e-12)
    assert (sumw == 0).any() and np.all(expected[sumw == 0] == 0.032)
    off = _window_templates(signal, background, dataclasses.replace(systematics, background_mc_statistics=False))
    np.testing.assert_allclose(np.asarray(off["background_shape"])[0], 0.032)


def test_background_mc_statistics_weaken_the_limit_only_where_the_mc_is_thin():
    """The same expected background (≈ 2 400 events in the window) from 60 heavy MC events
    or from 60 000 light ones: with the MC error in the fit the thin sample's median
    expected limit is weaker than without it; the rich sample's limit hardly moves."""
    rng = np.random.default_rng(4)
    on, off = cfg.SystematicsConfig(), cfg.SystematicsConfig(background_mc_statistics=False)
    def limit(t):  # bin_mask stays numpy: the fit groups hypotheses by it at trace time
        return fit.expected_median_limits(t, 0.01, 0.9)
    ratios = {}
    for name, n in (("thin", 60), ("rich", 60_000)):
        signal, background = _one_window_background(np.full(n, 2400.0 / n), rng)
        with_errors, without = (limit(_window_templates(signal, background, s))[0] for s in (on, off))
        ratios[name] = float(with_errors / without)
    assert ratios["thin"] > 1.2
    assert 1.0 <= ratios["rich"] < 1.02


def test_hypothesis_model_structure():
    B = 8
    t = {k: jnp.full(B, 2.0) for k in fit.TEMPLATE_KEYS}
    t.update(signal_efficiency=0.03, background_shape=jnp.full(B, 0.05), photon_veto=jnp.full(B, 0.3), sigma_ref=2.0)
    model = fit.hypothesis_model(t, 0.01)
    names = model.config.parameters
    for name in ("sigma", "background_norm", "signal_efficiency", "luminosity", "signal_shape", "photon_veto"):
        assert name in names
    assert model.config.poi_index == names.index("sigma")
    expected = model.expected_data(model.config.init, include_auxdata=False)
    # nominal: signal (2 events/bin × σ_ref 2) + background (2 + floor)
    np.testing.assert_allclose(expected, 4.0 + 2.0 + fit.YIELD_FLOOR, rtol=1e-12)


def test_by_range():
    np.testing.assert_allclose(fit.by_range(jnp.array([-0.4, 8.9, 9.0, 35.9, 50.0]), (9.0, 36.0), (1, 2, 3)),
                               [1, 1, 2, 2, 3])


# -------------------------------------------------------------------------- selections
@pytest.fixture(scope="module")
def toy_training():
    rng = np.random.default_rng(5)
    N, M, n = 400, 2, 60
    feats = {f: rng.uniform(0, 3, N) for f in samples.ANALYSIS_FEATURES}
    feats["recoil_mass_squared"] = rng.uniform(0, 20, N)
    background = {**feats, "weight": np.full(N, 10.0), "process": rng.integers(1, 4, N)}
    sig = {f: rng.uniform(1, 4, (M, n)) for f in samples.ANALYSIS_FEATURES}
    sig["recoil_mass_squared"] = np.array([[4.0], [16.0]]) + 0.2 * rng.normal(size=(M, n))
    sig["weight"] = np.full((M, n), 0.3)
    data = selections.training_data(background, sig, np.array([4.0, 16.0]), np.array([0.26, 0.2]), 300, 0,
                                    window_half_width=10.0)
    net = selections.make_network(background, (8, 4), 0)
    return net, data, background


def test_training_subset_keeps_process_yields(toy_training):
    _, data, background = toy_training
    for label in (1, 2, 3):
        full = background["weight"][background["process"] == label].sum()
        sub = np.asarray(data["background"]["weight"])[np.asarray(data["background"]["process"]) == label].sum()
        assert sub == pytest.approx(full, rel=1e-12)
    assert data["background"]["weight"].shape == (300,)


def test_window_background_is_every_event_in_a_training_window_with_its_weight(toy_training):
    """The Punzi and limit losses see every training event within 10 resolutions of a
    training mass (M² 4 ± 2.6, 16 ± 2 GeV²), unscaled, and no other."""
    _, data, background = toy_training
    m2 = background["recoil_mass_squared"]
    inside = (np.abs(m2 - 4.0) < 2.6) | (np.abs(m2 - 16.0) < 2.0)
    assert 0 < inside.sum() < m2.size
    np.testing.assert_array_equal(np.asarray(data["window_background"]["recoil_mass_squared"]), m2[inside])
    np.testing.assert_array_equal(np.asarray(data["window_background"]["weight"]), background["weight"][inside])


def test_training_window_is_the_wider_of_the_template_and_punzi_windows():
    assert selections.training_window_half_width(20, 2.0) == 10.0
    assert selections.training_window_half_width(2, 3.0) == 3.0


def test_in_windows_marks_events_near_any_centre():
    m2 = np.array([0.0, 0.9, 1.1, 5.0, 9.6, 12.0])
    inside = selections.in_windows(m2, np.array([0.0, 10.0]), np.array([0.5, 0.25]), 2.0)
    np.testing.assert_array_equal(inside, [True, True, False, False, True, False])


def test_hypothesis_training_data_picks_the_evenly_spread_training_masses(toy_training):
    """Both callers (the pipeline and the Punzi reproduction) train on the same hypotheses:
    ``training.n_masses`` of the scan, ends included, with training_data's events."""
    from types import SimpleNamespace

    _, _, background = toy_training
    rng = np.random.default_rng(6)
    centres, widths = np.linspace(1.0, 17.0, 5), np.full(5, 0.25)
    signal = {"recoil_mass_squared": centres[:, None] + 0.1 * rng.normal(size=(5, 10)), "weight": np.ones((5, 10))}
    samples_ = SimpleNamespace(background_train=background, signal_train=signal)
    training = SimpleNamespace(n_masses=3, max_events=200, punzi_window=2.0, max_window_events=0,
                               hypothesis_spacing="scan")
    chosen = selections.hypothesis_training_data(samples_, training, centres, widths, 4, 20)
    np.testing.assert_array_equal(chosen.rows, [0, 2, 4])
    # evenly in mass: M = 1, 2.24, 3, 3.61, 4.12 GeV; the nearest to 1, 2.56, 4.12 GeV
    in_mass = SimpleNamespace(**{**vars(training), "hypothesis_spacing": "mass"})
    np.testing.assert_array_equal(
        selections.hypothesis_training_data(samples_, in_mass, centres, widths, 4, 20).rows, [0, 1, 4])
    direct = selections.training_data(background, {k: v[[0, 2, 4]] for k, v in signal.items()}, centres[[0, 2, 4]],
                                      widths[[0, 2, 4]], 200, 4, window_half_width=10.0)
    for part in ("background", "window_background", "signal"):
        for key in direct[part]:
            np.testing.assert_array_equal(np.asarray(chosen.data[part][key]), np.asarray(direct[part][key]))


def test_window_background_subset_keeps_process_yields(toy_training):
    _, _, background = toy_training
    sig = {"weight": np.ones((1, 2))}
    data = selections.training_data(background, sig, np.array([10.0]), np.array([1.0]), 300, 0,
                                    window_half_width=8.0, max_window_events=100)
    inside = np.abs(background["recoil_mass_squared"] - 10.0) < 8.0
    assert data["window_background"]["weight"].shape == (100,) and inside.sum() > 100
    for label in (1, 2, 3):
        full = background["weight"][inside & (background["process"] == label)].sum()
        sub = np.asarray(data["window_background"]["weight"])[np.asarray(data["window_background"]["process"]) == label]
        assert sub.sum() == pytest.approx(full, rel=1e-12)


def test_bce_and_punzi_losses_have_finite_gradients(toy_training):
    net, data, _ = toy_training
    for loss in (selections.bce_loss, lambda n, d: selections.punzi_loss(n, d, 79.7, 2.0)):
        value, grads = jax.value_and_grad(loss)(net, data)
        assert np.isfinite(float(value))
        leaves = jax.tree_util.tree_leaves(grads)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
        assert any(np.any(np.asarray(g) != 0) for g in leaves)


def test_soft_cut_weights_are_the_plain_output_or_a_soft_cut_at_the_given_logit(toy_training):
    net, data, _ = toy_training
    events = data["signal"]  # (M, n) columns: the shape comes back
    plain = np.asarray(selections.soft_cut_weights(net, events))
    np.testing.assert_allclose(plain, selections.network_scores(net, events), rtol=1e-15, atol=0)
    cut = float(np.median(plain))
    cut_logit = float(special.logit(cut))
    sharp = np.asarray(selections.soft_cut_weights(net, events, cut_logit, 1e-3))
    far = np.abs(special.logit(plain) - cut_logit) > 0.05  # 50 temperatures from the cut
    np.testing.assert_array_equal(np.round(sharp[far]), (plain > cut)[far])


def test_soft_cut_at_a_regional_cut_uses_each_events_own_region(toy_training):
    """A cut per mass region (``cuts.RegionalCut.logit_at``) weights every event as the
    one-value soft cut of the region its M²_rec lies in."""
    from diffana.analyses.zprime_invisible import cuts

    net, data, _ = toy_training
    events = data["signal"]  # two training masses at M² = 4 and 16 GeV²
    regional = cuts.RegionalCut(np.array([10.0]), np.array([0.3, 0.7]))
    weights = np.asarray(selections.soft_cut_weights(net, events, regional.logit_at, 0.2))
    low = np.asarray(events["recoil_mass_squared"]) < 10.0
    assert low.any() and (~low).any()
    for value, region in ((0.3, low), (0.7, ~low)):
        single = np.asarray(selections.soft_cut_weights(net, events, float(special.logit(value)), 0.2))
        np.testing.assert_allclose(weights[region], single[region], rtol=1e-12)


def _toy_limit_loss(toy_training, window_local=False):
    """(d)'s loss on the toy events (2 masses, 1 θ bin) as a function of (net, cut_logit, temperature)."""
    _, data, _ = toy_training
    data = {**data, "sigma_ref": jnp.ones(2)}
    edges = templates.hypothesis_theta_edges(np.array([4.0, 16.0]), cfg.TemplatesConfig(
        theta_bins=1, theta_bins_by_m2=(), theta_m2_edges=()))
    sy = cfg.SystematicsConfig()

    def loss(net, cut_logit, temperature):
        return selections.limit_loss(net, data, theta_edges=edges, n_window=20, systematics=sy,
                                     luminosity_uncertainty=sy.luminosity, cl=0.9, cut_logit=cut_logit,
                                     temperature=temperature, window_local=window_local)

    return loss


@pytest.fixture(scope="module")
def limit_loss_and_grad(toy_training):
    """(d)'s loss on the toy events, jitted with its gradient."""
    loss = _toy_limit_loss(toy_training)
    return jax.jit(loss), jax.jit(jax.value_and_grad(loss))


def test_limit_loss_at_a_soft_cut_has_the_gradient_of_finite_differences(toy_training, limit_loss_and_grad):
    """(d)'s loss with the soft cut at a given logit (``[training] limit_cut = "bce"``):
    finite, and its gradient along a random direction of the network's weights equals
    central differences (the limit is differentiated implicitly through the fits)."""
    net, _, _ = toy_training
    loss, value_and_grad = limit_loss_and_grad
    plain, _ = value_and_grad(net, 0.0, 1.0)
    value, grads = value_and_grad(net, 0.3, 0.25)
    assert np.isfinite(float(plain)) and np.isfinite(float(value)) and float(value) != float(plain)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    direction = jax.tree_util.tree_map(lambda p: jnp.asarray(np.random.default_rng(0).normal(size=p.shape)), params)
    along = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array)),
                                                      jax.tree_util.tree_leaves(direction)))
    h = 1e-5
    moved = [eqx.combine(jax.tree_util.tree_map(lambda p, d, sign=sign: p + sign * h * d, params, direction), static)
             for sign in (1.0, -1.0)]
    central = (float(loss(moved[0], 0.3, 0.25)) - float(loss(moved[1], 0.3, 0.25))) / (2 * h)
    assert along == pytest.approx(central, rel=1e-5)


def test_limit_loss_with_window_local_templates_equals_the_dense_one(toy_training, limit_loss_and_grad):
    """``limit_loss(window_local=True)`` (cumulative sums over the events ordered by M²,
    the cheaper route with many training masses) gives the dense templates' loss and
    gradient to round-off."""
    net, _, _ = toy_training
    _, dense_value_and_grad = limit_loss_and_grad
    local = jax.jit(jax.value_and_grad(_toy_limit_loss(toy_training, window_local=True)))
    value, grads = local(net, 0.3, 0.25)
    dense_value, dense_grads = dense_value_and_grad(net, 0.3, 0.25)
    assert float(value) == pytest.approx(float(dense_value), rel=1e-12)
    for g, d in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(dense_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(d), rtol=1e-9, atol=1e-12 * float(np.max(np.abs(d))))


def test_tau_plane_score_is_the_smaller_recoil_pt():
    f = {"recoil_pt_wrt_muon1_cm": np.array([1.0, 0.2]), "recoil_pt_wrt_muon2_cm": np.array([0.5, 3.0])}
    np.testing.assert_allclose(selections.tau_plane_score(f), [0.5, 0.2])


# ----------------------------------------------------------------------------- outputs
class _FakeResult:
    def __init__(self):
        self.masses = np.array([1.0, 2.0, 5.0])
        base = np.array([[1, 2, 3, 4, 5]] * 3, float)
        self.limits = {name: {"observed": np.array([3.0, 3.0, 3.0]) * f, "expected": base * f,
                              "converged": np.ones(3, bool), "cut": 0.1,
                              "signal_efficiency": np.full(3, 0.05), "background": np.full(3, 100.0)}
                       for name, f in zip(selections.SELECTION_NAMES, (1.0, 0.9, 0.8, 0.5))}
        self.histories, self.timings = {}, {}


def test_summary_and_coupling_limits():
    result = _FakeResult()
    outputs.add_coupling_limits(result)
    s = outputs.summary(result)
    assert s["cut_based"]["mean_ratio_to_cut_based"] == 1.0
    assert s["end_to_end"]["mean_ratio_to_cut_based"] == pytest.approx(0.5)
    assert s["punzi_net"]["signal_efficiency_median"] == pytest.approx(0.05)
    lim = result.limits["cut_based"]
    # vanilla B(invisible) < 1 → weaker coupling limit than fully invisible
    assert np.all(lim["g_vanilla"] > lim["g_invisible"])
    yaml_text = outputs.hepdata_yaml(result)
    assert yaml_text.count("value: 1") >= 1 and "asymerror" in yaml_text


def test_signal_efficiency_by_range_takes_medians_per_published_m2_range():
    # masses (GeV) → M² 1, 4, 9, 16, 49, 64: two hypotheses per range, 9 GeV² opens the middle one
    masses = np.array([1.0, 2.0, 3.0, 4.0, 7.0, 8.0])
    out = outputs.signal_efficiency_by_range(masses, np.array([0.1, 0.2, 0.3, 0.5, 0.02, 0.04]))
    assert out["signal_efficiency_median"] == pytest.approx(0.15)
    assert out["signal_efficiency_median_by_range"] == pytest.approx(
        {"< 9 GeV²": 0.15, "9–36 GeV²": 0.4, "≥ 36 GeV²": 0.03})
    # no hypothesis above 36 GeV²: that range is NaN, not a silent 0
    low = outputs.signal_efficiency_by_range(masses[:4], np.array([0.1, 0.2, 0.3, 0.5]))
    assert np.isnan(low["signal_efficiency_median_by_range"]["≥ 36 GeV²"])


def test_summary_compares_on_masses_where_every_selection_has_a_limit():
    result = _FakeResult()
    # (d) keeps no signal at 5 GeV: its fit "limit" is a huge unconverged POI
    end_to_end = result.limits["end_to_end"]
    end_to_end["signal_efficiency"][2], end_to_end["converged"][2], end_to_end["expected"][2] = 0.0, False, 1e37
    s = outputs.summary(result)
    assert s["end_to_end"]["compared"] == 2 and s["end_to_end"]["no_limit"] == 1
    assert s["cut_based"]["no_limit"] == 0
    assert s["end_to_end"]["mean_ratio_to_cut_based"] == pytest.approx(0.5)
    assert s["end_to_end"]["mean_expected_limit_fb"] == pytest.approx(0.5 * 3.0)


def test_tables_and_plots_mark_a_hypothesis_without_a_limit(tmp_path):
    """A hypothesis whose cut left no signal has no limit: its row says so
    (``has_limit`` False) and the plots leave a gap instead of the fitter's ~10³⁷ fb."""
    from types import SimpleNamespace

    from diffana.analyses.zprime_invisible import plots

    result = _FakeResult()
    end_to_end = result.limits["end_to_end"]
    end_to_end["signal_efficiency"][2], end_to_end["converged"][2], end_to_end["expected"][2] = 0.0, False, 1e37
    outputs.add_coupling_limits(result)
    result.summary = outputs.summary(result)
    outputs.write_tables(result, tmp_path, SimpleNamespace(to_dict=dict), seed=1)
    with open(tmp_path / "limits.csv") as handle:
        rows = list(csv.DictReader(handle))
    flags = {(r["selection"], float(r["mass_GeV"])): r["has_limit"] for r in rows}
    assert flags[("end_to_end", 5.0)] == "False"
    assert sum(flag == "False" for flag in flags.values()) == 1
    shown = plots.only_with_limit(end_to_end, end_to_end["expected"])
    assert np.isnan(shown[2]).all() and np.array_equal(shown[:2], end_to_end["expected"][:2])
    assert np.isnan(plots.only_with_limit(end_to_end, end_to_end["g_expected_vanilla"])[2])
    # limits.json's rows give back the pipeline's arrays (scripts/zprime_replot.py redraws from them)
    masses, limits = outputs.limits_from_rows(json.loads((tmp_path / "limits.json").read_text())["rows"])
    assert np.array_equal(masses, result.masses) and list(limits) == list(result.limits)
    for name, lim in limits.items():
        for key in ("observed", "expected", "converged", "signal_efficiency", "g_vanilla", "g_expected_vanilla"):
            assert np.array_equal(lim[key], result.limits[name][key]), (name, key)
    assert outputs.has_limit(limits["end_to_end"]).tolist() == [True, True, False]


# ------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    from diffana.analyses.zprime_invisible import load_config, run_analysis

    config = load_config(None, quick=True, overrides={
        "analysis": {"n_masses": 3},
        # process_events too: the quick table's per-process counts (millions) override background_events
        "samples": {"background_events": 5000, "signal_events_per_mass": 400,
                    "process_events": {"mumu": 5000, "tautau": 5000, "eemumu": 5000}},
        "training": {"n_masses": 2, "max_events": 500, "bce_steps": 3, "punzi_steps": 2, "limit_steps": 1,
                     "n_thresholds": 2, "cut_validation_fraction": 0.3}})  # the cut on a held-back share
    result = run_analysis(config, tmp_path, seed=2, make_plots=True)
    for name in ("limits.csv", "limits.json", "limits_hepdata.yaml", "zprime_brazil.png", "zprime_training.png",
                 "wide_width_limits.csv", "zprime_wide_width.png"):
        assert (tmp_path / name).is_file()
    assert result.wide_width["expected"].shape == (3, 5) and np.all(np.diff(result.wide_width["expected"], axis=1) >= 0)
    for lim in result.limits.values():
        assert lim["expected"].shape == (3, 5)
        assert np.all(np.diff(lim["expected"], axis=1) >= 0)
        assert lim["local_significance"].shape == (3,) and np.all(np.isfinite(lim["local_significance"]))
        assert lim["background_mc_n_eff"].shape == (3,) and np.all(lim["background_mc_n_eff"] >= 0)
    assert all(0 <= s["windows_below_one_mc_event"] <= 3 for s in result.summary.values())
    for s in result.summary.values():  # the guard's score and hypothesis are both set or both None
        assert (s["cut_signal_guard"] is None) == (s["cut_signal_guard_mass_GeV"] is None)
        assert s["cut_signal_guard_mass_GeV"] is None or s["cut_signal_guard_mass_GeV"] in result.masses
    assert all(0.0 <= s["global_significance"] <= s["max_local_significance"] + 1e-12 for s in result.summary.values())


def test_tiny_run_with_a_cut_per_mass_region(tmp_path):
    """``training.cut_region_masses``: every selection has one cut per region, reported
    per region, and the held-out selection applies each event's own region's cut."""
    from diffana.analyses.zprime_invisible import load_config, run_analysis

    config = load_config(None, quick=True, overrides={
        "analysis": {"n_masses": 4},
        "samples": {"background_events": 5000, "signal_events_per_mass": 400,
                    "process_events": {"mumu": 5000, "tautau": 5000, "eemumu": 5000}},
        "training": {"n_masses": 2, "max_events": 500, "bce_steps": 3, "punzi_steps": 2, "limit_steps": 1,
                     "n_thresholds": 2, "n_refine_thresholds": 0, "cut_region_masses": [4.0]},
        "wide_width": {"enabled": False}})
    result = run_analysis(config, tmp_path, seed=3, make_plots=False)
    assert result.masses.min() < 4.0 < result.masses.max()
    for name, lim in result.limits.items():
        assert len(lim["cut"]) == 2 and lim["cut_region_masses_GeV"] == [4.0]
        assert len(lim["cut_kept_signal_fraction"]) == 2 and len(lim["cut_at_tightest"]) == 2
        assert np.all(np.diff(lim["expected"], axis=1) >= 0)
    summary = json.loads((tmp_path / "limits.json").read_text())["summary"]
    for name, s in summary.items():
        assert s["cut"] == result.limits[name]["cut"] and s["cut_region_masses_GeV"] == [4.0]
        assert len(s["cut_signal_guard"]) == 2
    assert len(json.loads((tmp_path / "cut_scans.json").read_text())["mlp_bce"]) == 2


def test_look_elsewhere_summary():
    masses = np.linspace(1.0, 8.0, 8)
    quiet = outputs.look_elsewhere(masses, np.array([0.1, 0.5, 0.2, 0.0, 0.3, 0.4, 0.2, 0.1]))
    assert quiet["global_p_value"] == 1.0 and quiet["global_significance"] == 0.0
    excess = outputs.look_elsewhere(masses, np.array([0.5, 1.5, 0.5, 2.0, 3.2, 1.0, 0.2, 1.4]))
    assert excess["mass_of_max_local_significance_GeV"] == masses[4]
    assert excess["upcrossings_of_reference"] == 3
    # The global significance is below the local one, and matches the formula.
    assert 0.0 < excess["global_significance"] < 3.2
    from scipy.stats import norm
    p = norm.sf(3.2) + 3 * np.exp(-(3.2**2 - 1.0) / 2)
    assert excess["global_p_value"] == pytest.approx(p, rel=1e-9)
