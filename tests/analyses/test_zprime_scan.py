"""The published Z'→invisible scan (582 hypotheses, 1–5 θ bins by M² with masked
padding) and the chunked limit scans and cut choice. Small sizes throughout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from conftest import zprime_config_error
from diffana.analyses.zprime_invisible import config as cfg
from diffana.analyses.zprime_invisible import cuts, fit, samples, templates


# ------------------------------------------------------------------ the published scan
def test_published_resolution_gives_the_published_scan():
    masses = samples.mass_hypotheses(0.01, 8.5, resolution="published")
    assert masses.size == 582 and masses[0] == 0.01 and 8.49 < masses[-1] <= 8.5
    steps_mev = np.diff(masses) * 1e3
    assert 2.5 <= steps_mev.min() < 3.5  # "steps of 3 ... MeV" at the top of the scan
    assert steps_mev[1] == pytest.approx(202.0, rel=0.03)  # the paper's largest quoted step
    sigma = samples.recoil_mass_squared_resolution(masses, "published")
    assert sigma.max() == 0.23 and np.all(np.diff(sigma) <= 0)
    np.testing.assert_allclose(np.diff(masses**2), sigma[:-1], rtol=1e-12)


def test_table_resolution_keeps_the_old_scan():
    assert samples.mass_hypotheses(0.01, 8.5, resolution="table").size == 436
    with pytest.raises(ValueError, match="unknown resolution model"):
        samples.recoil_mass_squared_resolution(1.0, "guess")


def test_shipped_configs_use_the_published_scan_and_theta_rule():
    config = cfg.load_config("belle2_2019_2020")
    assert config.analysis.resolution == "published"
    assert config.templates.theta_bins_by_m2 == (5, 4, 3, 2, 1)
    assert config.templates.theta_bins == 5


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[analysis]\nresolution = \"wide\"\n", "resolution must be one of"),
        ("[analysis]\nscan_chunk_bins = 0\n", "scan_chunk_bins must be >= 1"),
        ("[analysis]\nscan_structure = \"flat\"\n", "scan_structure must be"),
        ("[templates]\ntheta_m2_edges = [1.0, 9.0]\n", "theta_m2_edges needs 4 value(s)"),
        ("[templates]\ntheta_m2_edges = [1.0, 9.0, 9.0, 50.0]\n", "must increase strictly"),
        ("[templates]\ntheta_bins_by_m2 = [5, 0, 3, 2, 1]\n", "integers 1-10"),
        ("[templates]\ntheta_bins = 3\n", "theta_bins (3) must equal the largest"),
        ("[training]\ncut_masses = 0\n", "cut_masses must be >= 1"),
    ],
)
def test_bad_scan_configs_name_the_problem(tmp_path, text, fragment):
    assert fragment in zprime_config_error(tmp_path, text)


def test_uniform_theta_bins_without_rule(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[templates]\ntheta_bins = 3\ntheta_bins_by_m2 = []\ntheta_m2_edges = []\n")
    config = cfg.load_config(path)
    edges = templates.hypothesis_theta_edges(np.array([0.5, 30.0]), config.templates)
    np.testing.assert_allclose(edges, [[0, 60, 120, 180]] * 2)


# --------------------------------------------------------------------------- θ binning
def test_theta_bin_counts_follow_the_m2_rule():
    counts = templates.theta_bin_counts([0.0, 0.99, 1.0, 8.0, 9.0, 30.0, 50.0, 72.0], (1.0, 9.0, 25.0, 50.0),
                                        (5, 4, 3, 2, 1))
    np.testing.assert_array_equal(counts, [5, 5, 4, 4, 3, 2, 1, 1])


def test_padded_theta_edges_and_mask():
    edges = templates.padded_theta_edges([3, 1], 3, 0.0, 180.0)
    np.testing.assert_allclose(edges, [[0, 60, 120, 180], [0, 180, 180, 180]])
    mask = templates.bin_mask(edges, 2)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 0, 0]])
    with pytest.raises(ValueError, match="1..3"):
        templates.padded_theta_edges([4], 3)


def test_padding_bins_stay_empty():
    rng = np.random.default_rng(4)
    theta = np.concatenate([rng.uniform(0, 180, 500), [180.0]])
    m2 = rng.uniform(1.0, 3.0, theta.size)
    edges = templates.padded_theta_edges([2], 3)
    h = np.asarray(templates.shared_event_histograms(np.array([2.0]), np.array([0.5]), m2, theta,
                                                     np.ones(theta.size), edges, 4))[0].reshape(4, 3)
    assert np.all(h[:, 2] == 0)
    unpadded = np.asarray(templates.window_histogram(2.0, 0.5, m2, theta, np.ones(theta.size),
                                                     templates.theta_edges(2), 4)).reshape(4, 2)
    np.testing.assert_array_equal(h[:, :2], unpadded)


def test_histograms_in_hypothesis_blocks_equal_one_vmap(monkeypatch):
    """With a memory bound that fits 3 hypotheses of these events, the 7 windows are
    binned in blocks (lax.map) and give exactly the histograms of one vmap."""
    rng = np.random.default_rng(5)
    n = 1237  # an event count no other test uses: a fresh trace reads the bound
    m2, theta, weight = rng.uniform(0.0, 8.0, n), rng.uniform(0, 180, n), rng.uniform(0.5, 2.0, n)
    centres, widths = np.linspace(1.0, 7.0, 7), np.full(7, 0.4)
    monkeypatch.setattr(templates, "HISTOGRAM_MEMORY_BYTES", 3 * templates._BYTES_PER_HYPOTHESIS_EVENT * n)
    assert templates.hypotheses_per_block(n) == 3
    blocked = np.asarray(templates.shared_event_histograms(centres, widths, m2, theta, weight,
                                                           templates.theta_edges(2), 4))
    single = np.stack([np.asarray(templates.window_histogram(c, w, m2, theta, weight, templates.theta_edges(2), 4))
                       for c, w in zip(centres, widths)])
    np.testing.assert_allclose(blocked, single, rtol=1e-13)
    assert blocked.sum() > 0


def test_window_local_histograms_equal_the_dense_ones_with_padded_theta_rows():
    """Unsorted events, per-hypothesis θ rows with 1–3 real bins (padding at 180°),
    integer and real weights: the window-local histograms (sorted on the host,
    cumulative sums at the edges) equal every hypothesis binning every event, and so
    do their gradients w.r.t. the weights."""
    rng = np.random.default_rng(11)
    n = 5000
    m2, theta = rng.uniform(-1.0, 12.0, n), rng.uniform(0, 180, n)
    centres = np.linspace(0.5, 10.0, 9)
    widths = 0.1 + 0.05 * centres
    edges = templates.padded_theta_edges([3, 3, 2, 2, 2, 1, 1, 3, 1], 3)
    for weight in (rng.uniform(0.1, 3.0, n), np.ones(n)):
        dense = np.asarray(templates.shared_event_histograms(centres, widths, m2, theta, weight, edges, 6))
        local = np.asarray(templates.window_local_histograms(centres, widths, m2, theta, weight, edges, 6))
        np.testing.assert_allclose(local, dense, rtol=1e-12, atol=1e-12)
        assert dense.sum() > 100 and np.all(local[np.broadcast_to(templates.bin_mask(edges, 6), local.shape) == 0] == 0)
    # integer counts (pseudo-data) are exact
    np.testing.assert_array_equal(local, dense)
    cotangent = rng.normal(size=dense.shape)
    grad_of = lambda f: jax.grad(lambda w: jnp.sum(f(centres, widths, m2, theta, w, edges, 6) * cotangent))  # noqa: E731
    np.testing.assert_allclose(grad_of(templates.window_local_histograms)(jnp.asarray(weight)),
                               grad_of(templates.shared_event_histograms)(jnp.asarray(weight)), rtol=1e-12, atol=1e-12)


def test_preselected_reference_cross_sections_are_sqrt_b_over_signal_in_each_window():
    """σ_ref = max(√B, 3) / max(S, 1e-9) with B the background and S the signal (ε·L per
    unit σ) of each hypothesis' whole window, all θ bins: checked against the events
    counted directly; a window with no background gets the floor √B = 3."""
    rng = np.random.default_rng(5)
    centres, widths = np.array([2.0, 6.0, 40.0]), np.array([0.2, 0.3, 0.5])
    n_window = 4  # windows ±2 widths
    background = {"recoil_mass_squared": rng.uniform(0.0, 10.0, 4000), "recoil_theta_cm": rng.uniform(0, 180, 4000),
                  "weight": rng.uniform(0.5, 2.0, 4000)}
    signal_m2 = centres[:, None] + widths[:, None] * rng.normal(size=(3, 500))
    signal = {"recoil_mass_squared": signal_m2, "recoil_theta_cm": rng.uniform(0, 180, (3, 500)),
              "weight": np.full((3, 500), 0.01)}
    edges = templates.padded_theta_edges([2, 2, 1], 2)
    sigma_ref = templates.preselected_reference_cross_sections(centres, widths, signal, background, edges, n_window)
    for i, (c, w) in enumerate(zip(centres, widths)):
        b_in = np.abs(background["recoil_mass_squared"] - c) < 2 * w
        s_in = np.abs(signal_m2[i] - c) < 2 * w
        expected = max(np.sqrt(background["weight"][b_in].sum()), 3.0) / (0.01 * s_in.sum())
        assert sigma_ref[i] == pytest.approx(expected, rel=1e-10)
    assert sigma_ref[2] == pytest.approx(3.0 / (0.01 * (np.abs(signal_m2[2] - 40.0) < 1.0).sum()), rel=1e-10)


def test_held_out_samples_are_ordered_by_recoil_mass():
    from diffana.analyses.zprime_invisible.samples import by_recoil_mass

    events = {"recoil_mass_squared": np.array([3.0, -1.0, 2.0, 2.0]), "weight": np.array([1.0, 2.0, 3.0, 4.0])}
    ordered = by_recoil_mass(events)
    assert ordered["recoil_mass_squared"].tolist() == [-1.0, 2.0, 2.0, 3.0]
    assert ordered["weight"].tolist() == [2.0, 3.0, 4.0, 1.0]  # stable: ties keep their order


# ---------------------------------------------------------------- masked, chunked scans
N_WINDOW = 4


def _toy_templates(n_hyp: int, n_theta: int, seed: int = 0) -> dict:
    """Templates of ``n_hyp`` toy hypotheses with ``n_theta`` θ bins per M² bin."""
    rng = np.random.default_rng(seed)
    bins = N_WINDOW * n_theta
    background = rng.uniform(20.0, 80.0, (n_hyp, bins))
    signal = np.tile(np.repeat([0.5, 2.0, 2.0, 0.5], n_theta), (n_hyp, 1)) / n_theta
    return {"signal": signal, "signal_up": 0.9 * signal, "signal_down": 1.1 * signal,
            "background": background, "background_mumu": 0.2 * background,
            "signal_efficiency": np.full(n_hyp, 0.03), "background_shape": np.full((n_hyp, bins), 0.05),
            "photon_veto": np.full((n_hyp, bins), 0.34), "sigma_ref": np.full(n_hyp, 2.0)}


def _padded(t: dict, n_theta: int, n_pad: int) -> dict:
    """``t`` with ``n_pad`` θ bins appended to every M² bin, filled with junk
    background-shape and photon-veto sizes (the mask must ignore them) and zero yields."""
    out = {}
    for key, value in t.items():
        if np.ndim(value) == 2:
            per_m2 = value.reshape(value.shape[0], N_WINDOW, n_theta)
            fill = 0.3 if key in ("background_shape", "photon_veto") else 0.0
            pad = np.full((value.shape[0], N_WINDOW, n_pad), fill)
            out[key] = np.concatenate([per_m2, pad], axis=2).reshape(value.shape[0], -1)
        else:
            out[key] = value
    mask = np.concatenate([np.ones((N_WINDOW, n_theta)), np.zeros((N_WINDOW, n_pad))], axis=1).reshape(-1)
    out["bin_mask"] = np.tile(mask, (next(iter(t.values())).shape[0], 1))
    return out


@pytest.fixture(scope="module")
def masked_and_plain():
    """Limits of 3 toy hypotheses: 2 θ bins unpadded (one chunk of 3) and padded to
    3 θ bins with masked bins (chunks of 2, the last padded)."""
    plain = _toy_templates(3, 2)
    data = np.round(plain["background"] * 1.05)
    padded = _padded(plain, 2, 1)
    padded_data = _padded({"d": data}, 2, 1)["d"]
    return (fit.scan_limits(plain, data, 0.01, 0.9, chunk_bins=3 * 8),
            fit.scan_limits(padded, padded_data, 0.01, 0.9, chunk_bins=2 * 12, structure="padded"),
            padded, padded_data)


def test_masked_bins_leave_the_limits_unchanged(masked_and_plain):
    (obs, exp, conv), (obs_m, exp_m, conv_m), _, _ = masked_and_plain
    assert conv.all() and conv_m.all()
    np.testing.assert_allclose(obs_m, obs, rtol=1e-9)
    np.testing.assert_allclose(exp_m, exp, rtol=1e-9)


def test_masked_bins_add_nothing_to_the_deviance():
    import jax.numpy as jnp

    plain = {k: jnp.asarray(v[0]) for k, v in _toy_templates(1, 2).items()}
    padded = {k: jnp.asarray(v[0]) for k, v in _padded(_toy_templates(1, 2), 2, 1).items()}
    data = jnp.round(plain["background"] * 1.05)
    padded_data = jnp.asarray(_padded({"d": np.asarray(data)[None]}, 2, 1)["d"][0])
    m_plain, m_padded = fit.hypothesis_model(plain, 0.01), fit.hypothesis_model(padded, 0.01)
    expected = np.asarray(m_padded.expected_data(m_padded.config.init, include_auxdata=False)).reshape(N_WINDOW, 3)
    assert np.all(expected[:, 2] == 0)
    d_plain = jnp.concatenate([data, m_plain.config.auxdata])
    d_padded = jnp.concatenate([padded_data, m_padded.config.auxdata])
    assert float(m_padded.deviance(m_padded.config.init, d_padded)) == pytest.approx(
        float(m_plain.deviance(m_plain.config.init, d_plain)), rel=1e-12)


def test_chunks_cover_every_hypothesis_once():
    assert fit._chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    rows = fit._padded_rows({"a": np.arange(5)}, 4, 5, 2)["a"]
    np.testing.assert_array_equal(rows, [4, 4])


def test_choose_cut_runs_every_try_in_one_scan(masked_and_plain):
    """Three tries whose templates scale the background by 1, 0.25 and 4 (same signal):
    the lowest background gives the lowest limit."""
    _, _, padded, _ = masked_and_plain
    factors = {0.0: 1.0, 1.0: 0.25, 2.0: 4.0}

    def templates_for_cut(threshold):
        t = dict(padded)
        for key in ("background", "background_mumu"):
            t[key] = padded[key] * factors[threshold]
        return t

    scan = cuts.choose_cut([0.0, 1.0, 2.0], templates_for_cut, fit.ScanSettings(0.01, 0.9, 2 * 12, "padded"))
    assert scan.best == 1.0
    assert scan.expected.shape == (3, 3)
    assert scan.objective[1] < scan.objective[0] < scan.objective[2]


def test_cut_hypotheses_and_thresholds():
    np.testing.assert_array_equal(cuts.cut_hypotheses(582, 4), [0, 194, 387, 581])
    np.testing.assert_array_equal(cuts.cut_hypotheses(3, 16), [0, 1, 2])
    score = np.linspace(0.0, 1.0, 101)
    valid = score < 0.9  # padding rows carry invalid scores
    kept = cuts.kept_signal_fractions(5, 0.04)
    np.testing.assert_allclose(kept, [1, 0.4472, 0.2, 0.08944, 0.04], rtol=1e-3)  # geometric
    thresholds = cuts.cut_thresholds(score, valid, kept)
    assert thresholds[0] < 0.0 and np.all(score[valid] > thresholds[0])
    passed = [np.mean(score[valid] > t) for t in thresholds]
    np.testing.assert_allclose(passed, kept, atol=1.5 / valid.sum())  # up to one of the 90 valid events


def test_cut_scan_flags_a_winning_tightest_try():
    scan = cuts.CutScan(best=2.0, thresholds=np.array([0.0, 1.0, 2.0]), objective=np.array([3.0, 2.0, 1.0]),
                        expected=np.ones((3, 1)))
    assert scan.at_tightest
    assert not scan._replace(objective=np.array([3.0, 1.0, 2.0])).at_tightest


def test_refined_fractions_lie_between_the_winners_neighbours():
    kept = cuts.kept_signal_fractions(5, 0.01)  # 1, 0.316, 0.1, 0.0316, 0.01
    np.testing.assert_allclose(cuts.refined_fractions(kept, 2, 3), [0.1778, 0.06813, 0.04642], rtol=1e-3)
    edge = cuts.refined_fractions(kept, 4, 2)  # the tightest won: both between its neighbour and itself
    np.testing.assert_allclose(edge, [0.02154, 0.01468], rtol=1e-3)
    assert cuts.refined_fractions(kept, 0, 1) == pytest.approx([0.5623], rel=1e-3)


def test_scan_cut_refines_around_the_first_winner(monkeypatch):
    """A fake one-pass scan whose objective is (log kept fraction − log 0.16)²: the
    first pass (1 … 0.01 in 5 geometric steps) wins at 0.1, the second pass lands
    closer to 0.16, and the merged scan holds every try sorted by cut value."""
    score = np.linspace(0.0, 1.0, 10001)
    valid = np.ones(score.size, bool)

    def fake_choose_cut(thresholds, templates_for_cut, settings):
        thresholds = np.unique(np.asarray(thresholds, float))
        kept = np.array([np.mean(score > t) for t in thresholds])
        objective = (np.log(kept) - np.log(0.16)) ** 2
        return cuts.CutScan(float(thresholds[np.argmin(objective)]), thresholds, objective,
                            np.zeros((thresholds.size, 1)))

    monkeypatch.setattr(cuts, "choose_cut", fake_choose_cut)
    one_pass = cuts.scan_cut(score, valid, None, None, cuts.CutScanSettings(5, 0, 0.01, 0))
    two_pass = cuts.scan_cut(score, valid, None, None, cuts.CutScanSettings(5, 3, 0.01, 0))
    assert one_pass.thresholds.size == 5 and np.mean(score > one_pass.best) == pytest.approx(0.1, abs=1e-3)
    assert two_pass.thresholds.size == 8 and np.all(np.diff(two_pass.thresholds) > 0)
    assert np.mean(score > two_pass.best) == pytest.approx(0.1778, abs=2e-3)  # √(0.316 · 0.1), the nearest try
    assert two_pass.objective.min() < one_pass.objective.min()
    assert not two_pass.at_tightest


def test_signal_guard_ceiling_keeps_min_events_in_every_window():
    """Row 0 has 40 events in its window (scores 0 … 0.975), row 1 has 10 (exempt with
    a guard of 20); the 20th highest window score of row 0 is the ceiling, and a cut
    just below it keeps exactly 20 of row 0's window events."""
    m2 = np.array([np.r_[np.full(40, 1.0), np.full(10, 9.0)], np.r_[np.full(10, 4.0), np.full(40, 9.0)]])
    score = np.tile(np.linspace(0.0, 1.225, 50), (2, 1))
    valid = np.ones_like(m2, bool)
    in_window = cuts.signal_in_windows(m2, valid, centres_m2=[1.0, 4.0], widths=[0.1, 0.1], window_bins=4)
    np.testing.assert_array_equal(in_window.sum(axis=1), [40, 10])
    ceiling = cuts.signal_guard_ceiling(score, in_window, 20)
    assert ceiling == pytest.approx(score[0, 20])
    assert np.sum(score[0][in_window[0]] > np.nextafter(ceiling, -np.inf)) == 20
    np.testing.assert_array_equal(cuts.signal_guard_scores(score, in_window, 20), [score[0, 20], np.inf])
    np.testing.assert_array_equal(cuts.signal_guard_scores(score, in_window, 5), [score[0, 35], score[1, 5]])
    assert cuts.signal_guard_ceiling(score, in_window, 0) == np.inf  # guard off
    assert cuts.signal_guard_ceiling(score, in_window, 41) == np.inf  # no row can meet it


def test_scan_cut_stays_below_the_signal_guard(monkeypatch):
    """With a ceiling at score 0.7 (30% kept), the tightest try of the first pass keeps
    30%, not the 1% asked, no try reaches the ceiling, and a scan whose objective falls
    with every tighter cut wins just below it."""
    score = np.linspace(0.0, 1.0, 10001)
    valid = np.ones(score.size, bool)

    def fake_choose_cut(thresholds, templates_for_cut, settings):
        thresholds = np.unique(np.asarray(thresholds, float))
        return cuts.CutScan(float(thresholds[-1]), thresholds, -thresholds, np.zeros((thresholds.size, 1)))

    monkeypatch.setattr(cuts, "choose_cut", fake_choose_cut)
    scan = cuts.scan_cut(score, valid, None, None, cuts.CutScanSettings(5, 3, 0.01, 20), ceiling=0.7)
    assert np.all(scan.thresholds < 0.7)
    assert scan.best == pytest.approx(0.7, abs=2e-4) and scan.at_tightest  # within one event of it
    unguarded = cuts.scan_cut(score, valid, None, None, cuts.CutScanSettings(5, 3, 0.01, 20))
    assert np.mean(score > unguarded.best) == pytest.approx(0.01, abs=1e-3)


def test_structure_groups_split_by_mask():
    mask = np.array([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0]])
    groups = {tuple(rows): tuple(bins) for rows, bins in fit.structure_groups(mask)}
    assert groups == {(0, 2): (0, 1, 3, 4), (1,): (0, 1, 2, 3, 4, 5)}
    (rows, bins), = fit.structure_groups(mask, "padded")
    np.testing.assert_array_equal(rows, [0, 1, 2]) and np.testing.assert_array_equal(bins, np.arange(6))


def test_grouped_scan_drops_the_padding(masked_and_plain):
    """The grouped structure fits the padded templates without their padding bins:
    the same program and numbers as the unpadded templates."""
    (obs, exp, _), _, padded, padded_data = masked_and_plain
    obs_g, exp_g, conv_g = fit.scan_limits(padded, padded_data, 0.01, 0.9, chunk_bins=3 * 8)
    assert conv_g.all()
    np.testing.assert_array_equal(obs_g, obs)
    np.testing.assert_array_equal(exp_g, exp)


def test_expected_median_limits_match_the_scan(masked_and_plain):
    """The training objective's limits (grouped by mask, differentiable) equal the
    scan's median expected limits on background-only data."""
    import jax.numpy as jnp

    (_, exp, _), _, padded, _ = masked_and_plain
    stacked = {k: (v if k == "bin_mask" else jnp.asarray(v)) for k, v in padded.items()}
    median = fit.expected_median_limits(stacked, 0.01, 0.9)
    plain = _toy_templates(3, 2)
    _, exp_nominal, _ = fit.scan_limits(plain, plain["background"] + fit.YIELD_FLOOR, 0.01, 0.9, chunk_bins=3 * 8)
    np.testing.assert_allclose(np.asarray(median), exp_nominal[:, 2], rtol=1e-6)


def test_tightest_kept_fraction_names_what_stops_the_scan():
    """The tightest try keeps the larger of the configured fraction and the share above
    the guard: 30% with a ceiling at 0.7, 1% with the ceiling above every score or
    absent, and only valid events count."""
    score = np.linspace(0.0, 1.0, 10001)
    valid = np.ones(score.size, bool)
    assert cuts.tightest_kept_fraction(score, valid, 0.7, 0.01) == pytest.approx(0.3, abs=1e-3)
    assert cuts.tightest_kept_fraction(score, valid, 1.5, 0.01) == 0.01
    assert cuts.tightest_kept_fraction(score, valid, np.inf, 0.01) == 0.01
    assert cuts.tightest_kept_fraction(score, score < 0.8, 0.7, 0.01) == pytest.approx(0.1 / 0.8, abs=1e-3)


def _toy_samples(n_signal=(3, 4000), n_background=20000):
    rng = np.random.default_rng(1)
    signal_weight = np.where(rng.uniform(size=n_signal) < 0.9, 2.0, 0.0)  # 10% padding
    signal = {"recoil_mass_squared": rng.uniform(0, 10, n_signal), "weight": signal_weight}
    background = {"recoil_mass_squared": rng.uniform(0, 10, n_background), "weight": np.full(n_background, 3.0)}
    return samples.AnalysisSamples(masses=np.array([1.0, 2.0, 3.0]), background_train=background,
                                   background_test=background, signal_train=signal, signal_test=signal,
                                   pseudo_data=None, luminosity=1.0, generated={})


def test_split_for_cut_choice_holds_back_a_disjoint_share():
    """A 30% validation share: every training event lands in exactly one part, each
    part's weights stand for the whole half (sums within 3% of it), padding stays
    padding, and fraction 0 hands back the training half itself."""
    toy = _toy_samples()
    networks, validation = cuts.split_for_cut_choice(toy, 0.3, seed=4)
    in_net, in_val = networks.signal_train["weight"] > 0, validation.signal["weight"] > 0
    np.testing.assert_array_equal(in_net | in_val, toy.signal_train["weight"] > 0)
    assert not np.any(in_net & in_val)
    assert np.mean(in_val[toy.signal_train["weight"] > 0]) == pytest.approx(0.3, abs=0.01)
    for part in (networks.signal_train, validation.signal):
        assert part["weight"].sum() == pytest.approx(toy.signal_train["weight"].sum(), rel=0.03)
    n_background = toy.background_train["weight"].size
    assert networks.background_train["weight"].size + validation.background["weight"].size == n_background
    for part in (networks.background_train, validation.background):
        assert part["weight"].sum() == pytest.approx(toy.background_train["weight"].sum(), rel=0.03)
    assert networks.background_test is toy.background_test  # the held-out half is untouched
    same, whole = cuts.split_for_cut_choice(toy, 0.0, seed=4)
    assert same is toy and whole.signal is toy.signal_train and whole.background is toy.background_train


def test_guard_ceiling_spares_the_weakest_hypotheses():
    """Sparing k hypotheses moves the ceiling to the (k+1)-th lowest guard score and
    names that hypothesis; exempt hypotheses (inf) never set it."""
    scores = np.array([0.7, 0.2, np.inf, 0.5])
    assert cuts.guard_ceiling(scores) == cuts.GuardCeiling(0.2, 1)
    assert cuts.guard_ceiling(scores, spared=1) == cuts.GuardCeiling(0.5, 3)
    assert cuts.guard_ceiling(scores, spared=2) == cuts.GuardCeiling(0.7, 0)
    for spared in (3, 4):
        assert cuts.guard_ceiling(scores, spared) == cuts.GuardCeiling(np.inf, None)


def test_spared_hypotheses_round_the_share_up():
    assert cuts.spared_hypotheses(16, 0.0) == 0
    assert cuts.spared_hypotheses(16, 0.05) == 1  # 0.8 rounds up
    assert cuts.spared_hypotheses(582, 0.05) == 30  # 29.1
    assert cuts.spared_hypotheses(20, 0.05) == 1  # exactly 1, not 2


def test_regional_cut_takes_each_events_region_from_its_own_m2():
    cut = cuts.RegionalCut(np.array([1.0, 36.0]), np.array([0.2, 0.5, 0.8]))
    m2 = np.array([-0.5, 0.99, 1.0, 20.0, 36.0, 70.0])  # an event on an edge belongs to the region above
    np.testing.assert_array_equal(cut.at(m2), [0.2, 0.2, 0.5, 0.5, 0.8, 0.8])
    np.testing.assert_array_equal(cut.passes(np.full(6, 0.6), m2), [True, True, True, True, False, False])
    np.testing.assert_allclose(cut.logit_at(m2[:1]), np.log(0.2 / 0.8), rtol=1e-14)
    assert cut.label() == "0.2, 0.5, 0.8"
    single = cuts.RegionalCut.single(0.4)
    assert single.values.tolist() == [0.4] and np.all(np.asarray(single.at(m2)) == 0.4)


def test_region_cut_hypotheses_spread_the_cut_masses_over_every_region():
    masses = np.linspace(0.1, 8.5, 100)
    regions = cuts.hypothesis_regions(masses, [1.0, 6.0])
    assert regions[masses < 1.0].max() == 0 and set(regions[(masses >= 1.0) & (masses < 6.0)]) == {1}
    by_region = cuts.region_rows(masses, [1.0, 6.0])
    for r, inside in enumerate(by_region):
        np.testing.assert_array_equal(inside, np.flatnonzero(regions == r))
    rows = cuts.region_cut_hypotheses(by_region, 16)
    assert [r.size for r in rows] == [6, 6, 6]  # ⌈16 / 3⌉ each
    for r, picked in enumerate(rows):
        inside = np.flatnonzero(regions == r)
        assert picked[0] == inside[0] and picked[-1] == inside[-1] and np.all(regions[picked] == r)
    with pytest.raises(ValueError, match="cut region 1 holds no mass hypothesis"):
        cuts.region_rows(masses, [5.0, 5.01])
    one = cuts.region_cut_hypotheses(cuts.region_rows(masses, []), 16)
    np.testing.assert_array_equal(one[0], cuts.cut_hypotheses(100, 16))
