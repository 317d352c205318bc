"""Fast Belle II generator: kinematics, processes, detector, features, preselection, CLI.

One sample of N_EVENTS per process is generated once per session (module
fixtures) so every process compiles once; the CLI tests reuse the same sizes.
"""

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
import jax
import jax.numpy as jnp

from diffana.physics import (
    BACKGROUND_PROCESSES,
    FEATURE_UNITS,
    PROCESS_LABELS,
    DetectorModel,
    cross_section,
    generate,
    preselection,
)
from diffana.physics import detector as det
from diffana.physics import kinematics as kin
from diffana.physics import processes
from diffana.physics.features import NOMINAL_CM_ANGLE, NOMINAL_CM_BETA, NOMINAL_SQRT_S
from diffana.physics.features import gaussian_core_width as core_width

N_EVENTS = 100_000
LUMI = 1.0

# PHYSICS.md: σ(M²_rec) of the signal peak against M_Z' (GeV → GeV²)
WIDTH_TABLE = {1.0: 0.287, 1.3: 0.339, 2.0: 0.311, 3.0: 0.271, 4.0: 0.262, 5.0: 0.243, 6.0: 0.196, 7.0: 0.158, 8.0: 0.096}


@pytest.fixture(scope="module")
def backgrounds():
    return {p: generate(p, LUMI, n_events=N_EVENTS, seed=11) for p in BACKGROUND_PROCESSES}


# --- kinematics -------------------------------------------------------------------------


def test_nominal_cm_frame_matches_physics_md():
    electron, positron = kin.beam_four_momenta(7.004, 4.002)
    total = np.asarray(electron + positron)
    np.testing.assert_allclose(total[1:], [0.457, 0.0, 2.999], atol=2e-3)
    assert NOMINAL_SQRT_S == pytest.approx(10.58, abs=0.005)
    beta_gamma = np.linalg.norm(NOMINAL_CM_BETA) / np.sqrt(1 - np.sum(NOMINAL_CM_BETA**2))
    assert beta_gamma == pytest.approx(0.287, abs=0.002)
    e_cm = np.asarray(kin.lab_to_cm(electron, NOMINAL_CM_BETA, NOMINAL_CM_ANGLE))
    p_cm = np.asarray(kin.lab_to_cm(positron, NOMINAL_CM_BETA, NOMINAL_CM_ANGLE))
    np.testing.assert_allclose(e_cm[1:3], 0.0, atol=1e-12)  # e⁻ along +z in the CM
    np.testing.assert_allclose(e_cm[1:] + p_cm[1:], 0.0, atol=1e-12)
    assert e_cm[3] > 0


def test_lab_cm_round_trip():
    p = jax.random.normal(jax.random.key(0), (100, 4)) + jnp.array([10.0, 0, 0, 0])
    back = kin.cm_to_lab(kin.lab_to_cm(p, NOMINAL_CM_BETA, NOMINAL_CM_ANGLE), NOMINAL_CM_BETA, NOMINAL_CM_ANGLE)
    np.testing.assert_allclose(back, p, atol=1e-12)
    np.testing.assert_allclose(kin.invariant_mass_squared(kin.boost(p, jnp.array([0.1, 0.2, 0.5]))),
                               kin.invariant_mass_squared(p), atol=1e-10)


def test_angle_helpers():
    a = jnp.array([1.0, 1.0, 0.0, 0.0])
    b = jnp.array([1.0, 0.0, 1.0, 0.0])
    assert float(kin.opening_angle(a, b)) == pytest.approx(np.pi / 2)
    assert float(kin.cos_opening_angle(a, b)) == pytest.approx(0.0, abs=1e-15)
    assert float(kin.polar_angle(jnp.array([1.0, 0, 0, -1.0]))) == pytest.approx(np.pi)
    d = kin.rotate_to_direction(jnp.array([1.0, 0.0, 0.0, 1.0]), jnp.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(d, [1.0, 0.0, 1.0, 0.0], atol=1e-12)


def test_vectorised_trigonometry_matches_libm():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100_000) * 10.0 ** rng.uniform(-8, 3, 100_000)
    x = rng.normal(size=100_000) * 10.0 ** rng.uniform(-8, 3, 100_000)
    np.testing.assert_allclose(jax.jit(kin.atan2)(y, x), np.arctan2(y, x), rtol=0, atol=1e-15)
    edges = np.array([0.0, -0.0, 1.0, -1.0])
    np.testing.assert_array_equal(kin.atan2(edges[[0, 0, 2, 3]], edges[[0, 3, 0, 0]]), [0.0, np.pi, np.pi / 2, -np.pi / 2])
    c = rng.uniform(-1, 1, 100_000)
    np.testing.assert_allclose(jax.jit(kin.arccos)(c), np.arccos(c), rtol=0, atol=1e-15)
    u = rng.uniform(0, 1, 100_000)
    cos, sin = jax.jit(kin.cos_sin_of_turn)(u)
    np.testing.assert_allclose(cos, np.cos(2 * np.pi * u), rtol=0, atol=1e-15)
    np.testing.assert_allclose(sin, np.sin(2 * np.pi * u), rtol=0, atol=1e-15)
    angle = rng.uniform(-4, 4, 100_000)
    np.testing.assert_allclose(jnp.stack(kin.cos_sin(angle)), [np.cos(angle), np.sin(angle)], rtol=0, atol=2e-15)
    p = kin.from_polar_cos_sin(jnp.array([2.0]), jnp.array([0.6]), jnp.array([0.0]), jnp.array([1.0]), 0.0)
    np.testing.assert_allclose(p, [[2.0, 0.0, 1.6, 1.2]], atol=1e-15)


# --- truth-level samplers -----------------------------------------------------------------


def test_samplers_have_the_right_moments():
    u = jax.random.uniform(jax.random.key(1), (200_000,))
    cos_theta = np.asarray(jax.jit(processes._sample_one_plus_cos2)(u))
    assert np.mean(cos_theta**2) == pytest.approx(0.4, abs=0.003)  # ⟨c²⟩ for 1 + c²
    x = np.asarray(jax.jit(processes.michel_energy_fraction)(u))
    assert x.min() >= 0 and x.max() <= 1
    assert x.mean() == pytest.approx(0.7, abs=0.002)  # ⟨x⟩ of 2x²(3 − 2x)
    assert np.mean(x**2) == pytest.approx(0.5333, abs=0.002)


def test_isr_spectrum_is_soft_and_collinear():
    sqrt_s = jnp.full(100_000, 10.58)
    photons = np.asarray(jax.jit(processes.initial_state_radiation)(jax.random.key(2), sqrt_s, 0.5))
    x = 2 * photons[..., 0] / 10.58
    beta_half = 0.5 * float(processes.radiator_exponent(10.58**2, kin.ELECTRON_MASS))
    # P(x > 0.1) = 1 − 0.1^{β/2} for the β/2·x^{β/2−1} spectrum
    assert np.mean(x[:, 0] > 0.1) == pytest.approx(1 - 0.1**beta_half, abs=0.004)
    theta = np.asarray(kin.polar_angle(photons[:, 0]))
    # collinear: flat in log θ above m_e/E, so most photons stay in the beam pipe
    assert np.median(theta) < 0.05 and np.mean(theta > np.radians(12.4)) < 0.25
    assert np.median(np.asarray(kin.polar_angle(photons[:, 1]))) > np.pi - 0.05


def test_breit_wheeler_high_energy_limit():
    w = 50.0
    alpha = processes.ALPHA
    expected = 4 * np.pi * alpha**2 / w**2 * (np.log(w**2 / kin.MUON_MASS**2) - 1)
    assert float(processes.breit_wheeler_cross_section(w, kin.MUON_MASS)) == pytest.approx(expected, rel=1e-3)


# --- detector -------------------------------------------------------------------------------


def test_ecl_acceptance_and_gaps():
    theta = jnp.array([10.0, 20.0, 31.8, 60.0, 90.0, 129.5, 140.0, 160.0])
    assert np.asarray(det.photon_in_ecl_acceptance(theta)).tolist() == [
        False, True, False, True, False, False, True, False]


def test_muon_id_and_pion_misid_ranges():
    p = jnp.array([0.5, 1.0, 2.0, 4.0])
    theta = jnp.full(4, 90.0)
    muon = np.asarray(det.muon_id_probability(p, theta, jnp.zeros(4, bool)))
    pion = np.asarray(det.muon_id_probability(p, theta, jnp.ones(4, bool)))
    assert muon[0] < 0.9 and np.all((muon[1:] >= 0.93) & (muon[1:] <= 0.99))
    assert np.all((pion >= 0.03) & (pion <= 0.20)) and pion[-1] < pion[0]


# --- generated samples ----------------------------------------------------------------------


def test_samples_are_complete_finite_and_weighted(backgrounds):
    for process, sample in backgrounds.items():
        assert set(sample) == set(FEATURE_UNITS), process
        for name, value in sample.items():
            assert value.shape == (N_EVENTS,), (process, name)
            assert np.all(np.isfinite(value)), (process, name)
        assert sample["weight"].sum() == pytest.approx(cross_section(process) * LUMI, rel=1e-9)
        assert np.all(sample["process"] == PROCESS_LABELS[process])
        assert np.all(sample["muon1_energy_cm"] >= sample["muon2_energy_cm"])
        assert np.all(sample["muon1_charge"] * sample["muon2_charge"] == -1)


def test_cross_sections():
    assert cross_section("mumu") == pytest.approx(1.148e6)
    assert cross_section("tautau") == pytest.approx(0.919e6 * (0.1739 + 0.1082) ** 2)
    assert cross_section("eemumu") == pytest.approx(18.9e6)


def test_reproducible_from_seed():
    a = generate("tautau", 0.01, n_events=N_EVENTS, seed=5)
    b = generate("tautau", 0.01, n_events=N_EVENTS, seed=5)
    c = generate("tautau", 0.01, n_events=N_EVENTS, seed=6)
    np.testing.assert_array_equal(a["recoil_mass_squared"], b["recoil_mass_squared"])
    assert not np.array_equal(a["recoil_mass_squared"], c["recoil_mass_squared"])


def test_unweighted_option(backgrounds):
    sample = generate("eemumu", LUMI, n_events=N_EVENTS, seed=11, unweighted=True)
    assert 0 < len(sample["weight"]) < N_EVENTS  # eeμμ is importance-weighted: hit-or-miss drops events
    assert np.ptp(sample["weight"]) == 0
    assert sample["weight"].sum() == pytest.approx(18.9e6 * LUMI)
    # same physics as the weighted sample: mean dimuon mass agrees
    weighted = backgrounds["eemumu"]
    mean_w = np.average(weighted["dimuon_mass"], weights=weighted["weight"])
    assert sample["dimuon_mass"].mean() == pytest.approx(mean_w, rel=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown process 'bhabha'"):
        generate("bhabha")
    with pytest.raises(ValueError, match="needs a Z' mass"):
        generate("signal", n_events=10)
    with pytest.raises(ValueError, match="outside"):
        generate("signal", n_events=10, mass=20.0)
    with pytest.raises(ValueError, match="luminosity must be positive"):
        generate("mumu", -1.0)


def test_preselection_needs_its_features():
    with pytest.raises(KeyError, match="recoil_pt_cm"):
        preselection({"recoil_mass_squared": np.zeros(2)})


def _histogram(sample, edges, mask=None):
    mask = preselection(sample) if mask is None else mask
    return np.histogram(sample["recoil_mass_squared"][mask], edges, weights=sample["weight"][mask])[0]


def test_background_composition_after_preselection(backgrounds):
    edges = np.array([-1.0, 1.0, 9.0, 36.0, 64.0, 100.0])
    h = {p: _histogram(s, edges) for p, s in backgrounds.items()}
    # μμ(γ) piles up at M²_rec ≈ 0 (one lost photon) ...
    mumu = h["mumu"]
    assert mumu[0] > mumu[1:].max()
    assert mumu[0] > h["tautau"][0] + h["eemumu"][0]
    # ... ττ dominates at moderate M²_rec, eeμμ at high M²_rec
    assert h["tautau"][2] > 3 * (h["mumu"][2] + h["eemumu"][2])
    assert h["eemumu"][4] > h["tautau"][4] + h["mumu"][4]


def test_mumu_missing_mass_comes_from_lost_photons(backgrounds):
    s = backgrounds["mumu"]
    # before the photon veto and pT cut: the recoil direction of radiative μμ points
    # into the ECL gaps or outside the ECL far more often than isotropic directions
    mask = (s["n_tracks"] == 2) & (s["recoil_mass_squared"] > 1.0) & (s["photon_energy_total"] < 0.5)
    theta = s["recoil_theta_lab"][mask]
    dead = ~np.asarray(det.photon_in_ecl_acceptance(jnp.asarray(theta)))
    solid_angle_dead = 1 - 0.5 * (np.cos(np.radians(12.4)) - np.cos(np.radians(155.1))) + 0.5 * (
        np.cos(np.radians(31.4)) - np.cos(np.radians(32.2)) + np.cos(np.radians(128.7)) - np.cos(np.radians(130.7)))
    assert np.mean(dead) > 3 * solid_angle_dead


def _check_signal_widths(masses, n_events):
    for mass in masses:
        sample = generate("signal", n_events=n_events, mass=float(mass), seed=4, signal_cross_section=1.0)
        centre, width = core_width(sample["recoil_mass_squared"])
        assert centre == pytest.approx(mass**2, abs=0.05 + 0.01 * width), mass
        assert width == pytest.approx(WIDTH_TABLE[mass], rel=0.30), (mass, width)


def test_signal_peak_width_against_physics_md_table():
    """σ(M²_rec) within ±30% of PHYSICS.md at low, middle and high mass (modest statistics)."""
    _check_signal_widths([1.3, 4.0, 8.0], N_EVENTS // 20)


@pytest.mark.slow
def test_signal_peak_width_against_physics_md_table_all_masses():
    _check_signal_widths(sorted(WIDTH_TABLE), N_EVENTS // 5)


def test_signal_is_weighted_to_theory_cross_section():
    from diffana.physics.theory import zprime_cross_section

    sample = generate("signal", 2.0, n_events=N_EVENTS // 20, mass=3.0, seed=4)
    assert sample["weight"].sum() == pytest.approx(2.0 * float(zprime_cross_section(3.0)), rel=1e-9)
    assert np.all(sample["process"] == PROCESS_LABELS["signal"])
    efficiency = preselection(sample).mean()
    assert 0.1 < efficiency < 0.6  # before the MLP; ≈5% after it in the paper


@pytest.mark.slow  # a separate compilation of the per-event (vmapped) theory sampler
def test_signal_with_isr_has_a_radiative_tail():
    plain = generate("signal", n_events=N_EVENTS // 20, mass=4.0, seed=4, signal_cross_section=1.0)
    isr = generate("signal", n_events=N_EVENTS // 20, mass=4.0, seed=4, signal_cross_section=1.0, signal_isr=True)
    assert isr["weight"].sum() == pytest.approx(1.0)
    for sample in (plain, isr):
        assert np.all(np.isfinite(sample["recoil_mass_squared"]))
    # lost ISR energy adds recoil mass: a high-side tail the Born sample lacks
    tail = lambda s: np.sum(s["weight"][s["recoil_mass_squared"] > 16.0 + 2.0])  # noqa: E731
    assert tail(isr) > 3 * tail(plain) + 0.02
    assert core_width(isr["recoil_mass_squared"])[0] == pytest.approx(16.0, abs=0.3)


def test_detector_model_is_configurable():
    wide = DetectorModel(pt_resolution=(4e-3, 4e-3))
    narrow = generate("signal", n_events=N_EVENTS // 20, mass=2.0, seed=4, signal_cross_section=1.0)
    smeared = generate("signal", n_events=N_EVENTS // 20, mass=2.0, seed=4, signal_cross_section=1.0, detector=wide)
    assert core_width(smeared["recoil_mass_squared"])[1] > 1.5 * core_width(narrow["recoil_mass_squared"])[1]


# --- CLI ---------------------------------------------------------------------------------------
# The sub-command is driven through its own parser (register + func), as the dispatcher does.


def run_cli(argv):
    import argparse

    from diffana.cli import CommandError
    from diffana.cli import generate as generate_cli

    parser = argparse.ArgumentParser(prog="diffana")
    generate_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CommandError as error:
        return str(error)


def test_cli_generate_writes_readable_root(tmp_path, capsys):
    from diffana.io import read_sample

    out = tmp_path / "tt.root"
    assert run_cli(["generate", "--process", "tautau", "--lumi", "0.5", "--events", str(N_EVENTS), "--seed", "3",
                    "--out", str(out)]) == 0
    sample = read_sample(out)
    assert len(sample["weight"]) == N_EVENTS
    assert sample["weight"].sum() == pytest.approx(cross_section("tautau") * 0.5)
    assert "wrote 100,000 tautau events" in capsys.readouterr().out


def test_cli_errors():
    assert "--mass" in run_cli(["generate", "--process", "signal", "--out", "x.root"])
    assert "--out" in run_cli(["generate", "--process", "mumu"])
    assert "--lumi must be positive" in run_cli(["generate", "--process", "mumu", "--lumi", "-1", "--out", "x.root"])
    assert "--mass only applies" in run_cli(["generate", "--process", "mumu", "--mass", "1", "--out", "x.root"])


def test_cli_summary(capsys):
    assert run_cli(["generate", "--summary", "--lumi", "1.0", "--summary-events", str(N_EVENTS)]) == 0
    out = capsys.readouterr().out
    for process in BACKGROUND_PROCESSES:
        assert process in out
    assert "1,148,000" in out and "18,900,000" in out


def test_gaussian_core_width_recovers_a_gaussian_under_tails():
    rng = np.random.default_rng(3)
    core = rng.normal(2.0, 0.5, 200_000)
    tails = rng.uniform(-20.0, 20.0, 4_000)  # 2% flat contamination
    centre, width = core_width(np.concatenate([core, tails]))
    assert centre == pytest.approx(2.0, abs=0.01)
    assert width == pytest.approx(0.5, rel=0.03)
