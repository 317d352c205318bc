"""Punzi-net: the Punzi FOM, the per-mass / single cut scans of the paper's comparison,
and the fine-tuning that must separate scores rather than push them all to one."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import objectives
from diffana.analyses.zprime_invisible import punzi
from diffana.analyses.zprime_invisible import selections as sel
from diffana.analyses.zprime_invisible.samples import PUNZI_FEATURES


def test_punzi_s_min_matches_the_formula_by_hand():
    # ε = 0.1, B = 16, L = 10 fb⁻¹: √B = 4, √(b² + 4a√B + 4B) = √(1.6384 + 48 + 64)
    by_hand = (1.28**2 / 2 + 3 * 4 + 0.64 * math.sqrt(1.6384 + 48 + 64)) / (0.1 * 10)
    assert punzi.punzi_s_min(0.1, 16.0, 10.0) == pytest.approx(by_hand, rel=1e-14)
    assert punzi.punzi_s_min(0.2, 0.0, 79.7) == pytest.approx(1.28**2 / (0.2 * 79.7), rel=1e-14)
    assert np.isposinf(punzi.punzi_s_min(0.0, 5.0, 1.0))
    # the training loss's jnp version gives the same numbers
    eff, B = np.array([0.05, 0.3]), np.array([2.5, 4000.0])
    np.testing.assert_allclose(objectives.punzi_sensitivity(eff, B, 79.7), punzi.punzi_s_min(eff, B, 79.7), rtol=1e-14)


def _window_toy():
    """Two hypotheses (M² = 1 and 9 GeV², width 0.1): in window 0 background scores
    0.4 and signal 0.8; in window 1 background 0.7 and signal 0.95. Background far
    from both windows (M² = 5) scores 0.99 and must not count."""
    signal = {"recoil_mass_squared": np.array([[1.0] * 10, [9.0] * 10]),
              "weight": np.full((2, 10), 0.02 * 79.7)}  # ε = 0.2 per window
    s_score = np.array([[0.8] * 10, [0.95] * 10])
    background = {"recoil_mass_squared": np.array([1.0] * 5 + [9.0] * 5 + [5.0] * 5),
                  "weight": np.full(15, 100.0)}
    b_score = np.array([0.4] * 5 + [0.7] * 5 + [0.99] * 5)
    return signal, s_score, background, b_score


def test_scan_finds_the_known_best_cut_per_mass_and_the_single_cut():
    signal, s_score, background, b_score = _window_toy()
    cuts = np.array([0.0, 0.5, 0.75, 0.9])
    scan = punzi.scan_cuts(signal, s_score, background, b_score, [1.0, 9.0], [0.1, 0.1], 2.0, cuts, 79.7)
    np.testing.assert_allclose(scan.efficiency, [[0.2, 0.2, 0.2, 0.0], [0.2, 0.2, 0.2, 0.2]])
    np.testing.assert_allclose(scan.background, [[500, 0, 0, 0], [500, 500, 0, 0]])
    np.testing.assert_array_equal(scan.background_mc, [[5, 0, 0, 0], [5, 5, 0, 0]])
    np.testing.assert_allclose(scan.s_min[0, 0], punzi.punzi_s_min(0.2, 500.0, 79.7))
    # mass 0 is best from 0.5 (first of the tied cuts), mass 1 from 0.75
    np.testing.assert_array_equal(punzi.best_cut_per_mass(scan), [1, 2])
    # one cut for both: 0.75 (0.9 removes all of mass 0's signal)
    assert punzi.best_single_cut(scan) == 2
    # both ends of a mass range are included (the paper's 1–6 GeV)
    assert punzi.masses_in_range([0.5, 1.0, 6.0, 6.5], 1.0, 6.0).tolist() == [False, True, True, False]
    # the mean over one mass alone: mass 0's first best cut (0.5), mass 1's (0.75)
    assert punzi.best_single_cut(scan, [True, False]) == 1
    assert punzi.best_single_cut(scan, [False, True]) == 2


def test_cut_grid_resolves_scores_crowded_near_one():
    s = 1.0 - np.geomspace(1e-2, 1e-6, 1000)  # all scores within 0.99–1
    cuts = punzi.cut_grid(s, np.ones(s.size, bool), 100)
    assert cuts.size == 100 and cuts[0] < s.min()
    assert np.all(np.diff(cuts) > 0)


def _synthetic_problem(seed=0, n_background=3000, n_signal=400):
    """Four features in [0, 1], background broad (10 expected events each, ≈900 per
    window: the √B regime of the real analysis). Hypotheses 0 and 1: signal blobs
    away from the background centre (ε = 50% before the cut). Hypothesis 2, like the
    analysis' edge masses: signal shaped like the background and ε = 5%, so its s_min
    is ≈30× the others'."""
    rng = np.random.default_rng(seed)
    centres, widths = np.array([4.0, 16.0, 36.0]), np.array([0.3, 0.3, 0.3])
    bkg = {n: rng.beta(2.0, 2.0, n_background) for n in PUNZI_FEATURES}
    bkg["recoil_mass_squared"] = rng.uniform(0.0, 40.0, n_background)
    bkg["weight"] = np.full(n_background, 10.0)
    sig = {}
    for i, n in enumerate(PUNZI_FEATURES):
        shift = np.array([0.25, 0.2])[:, None] * (1 if i % 2 else -1)
        blobs = np.clip(0.5 + shift + 0.15 * rng.standard_normal((2, n_signal)), 0.0, 1.0)
        sig[n] = np.concatenate([blobs, rng.beta(2.0, 2.0, (1, n_signal))])
    sig["recoil_mass_squared"] = centres[:, None] + widths[:, None] * rng.standard_normal((centres.size, n_signal))
    sig["weight"] = np.full((centres.size, n_signal), 0.5 * 79.7 / n_signal)
    sig["weight"][2] *= 0.1
    as_jax = {k: jnp.asarray(v) for k, v in bkg.items()}
    data = {"background": as_jax, "window_background": as_jax,
            "signal": {k: jnp.asarray(v) for k, v in sig.items()},
            "centres_m2": jnp.asarray(centres), "widths": jnp.asarray(widths)}
    return bkg, data


def _old_punzi_loss(net, data, luminosity, window):
    """The loss before the fix: plain sigmoid weights, arithmetic mean of s_min."""
    s_sel = net(sel._flat(data["signal"], PUNZI_FEATURES)).reshape(data["signal"]["weight"].shape)
    b_sel = net(data["window_background"])
    eff, B = sel.punzi_window_yields(s_sel, b_sel, data, luminosity, window)
    return objectives.punzi_sensitivity(eff, B, luminosity).mean()


def _background_pass_fraction(net, data, temperature):
    """Σ w_b·weight / Σ w_b: the share of the background the soft cut keeps."""
    w = sel.punzi_weights(net, data["background"], temperature)
    return float((w * data["background"]["weight"]).sum() / data["background"]["weight"].sum())


@pytest.fixture(scope="module")
def pretrained():
    bkg, data = _synthetic_problem()
    net = sel.make_network(bkg, (8, 4), seed=0)
    net_bce, _ = sel.fit_network(sel.bce_loss, net, data, n_steps=100, learning_rate=0.01, seed=0)
    return data, net_bce


def test_punzi_fine_tuning_keeps_scores_separated(pretrained):
    """The fixed loss keeps (and sharpens) the separation: most background ends with a
    near-zero weight and the soft loss improves on the BCE start; the old loss, from
    the same start, raises every weight (the collapse towards one seen in the analysis)."""
    data, net_bce = pretrained
    loss = lambda n, d: sel.punzi_loss(n, d, 79.7, 2.0)  # noqa: E731
    net_new, history = sel.fit_network(loss, net_bce, data, n_steps=60, learning_rate=0.01, seed=0)
    assert history.loss[-1] < history.loss[0]
    kept_new = _background_pass_fraction(net_new, data, sel.PUNZI_TEMPERATURE)
    sig_w = np.asarray(sel.punzi_weights(net_new, data["signal"]))
    kept_bce = _background_pass_fraction(net_bce, data, 1.0)
    assert kept_new < 1.1 * kept_bce < 0.3, (kept_new, kept_bce)
    assert np.mean(sig_w > 0.5) > 0.5  # signal is not thrown away with it

    old = lambda n, d: _old_punzi_loss(n, d, 79.7, 2.0)  # noqa: E731
    net_old, _ = sel.fit_network(old, net_bce, data, n_steps=60, learning_rate=0.01, seed=0)
    kept_old = _background_pass_fraction(net_old, data, 1.0)
    signal_old = np.asarray(net_old(sel._flat(data["signal"], PUNZI_FEATURES)))
    assert kept_old > 0.8  # the old loss keeps nearly all background ...
    assert np.quantile(signal_old, 0.3) > 0.9  # ... with the signal squeezed towards one


def test_punzi_loss_is_the_mean_log_of_hard_cut_s_min_for_decisive_scores(pretrained):
    """With T → 0 the soft weights are the hard cut logit > 0, and the loss is the mean
    over masses of log s_min of that hard cut."""
    data, net = pretrained
    loss = float(sel.punzi_loss(net, data, 79.7, 2.0, temperature=1e-6))
    hard_s = (net.logit(sel._flat(data["signal"], PUNZI_FEATURES)) > 0).reshape(data["signal"]["weight"].shape)
    hard_b = net.logit(data["window_background"]) > 0
    eff, B = sel.punzi_window_yields(hard_s, hard_b, data, 79.7, 2.0)
    assert loss == pytest.approx(float(jnp.log(objectives.punzi_sensitivity(eff, B, 79.7)).mean()), rel=1e-6)
    assert jnp.isfinite(jax.grad(lambda n: sel.punzi_loss(n, data, 79.7, 2.0))(net).layers[0].weight).all()


def test_window_local_punzi_loss_equals_the_dense_one(pretrained):
    """Cumulative sums at the window edges give the dense window sums: the loss to
    round-off and its gradient too, with the events in any order."""
    data, net = pretrained
    shuffled = np.random.default_rng(3).permutation(np.asarray(data["window_background"]["weight"]).size)
    data = {**data, "window_background": {k: v[shuffled] for k, v in data["window_background"].items()}}

    def loss_and_grad(window_local):  # jitted, as fit_network's training step
        return jax.jit(jax.value_and_grad(lambda n: sel.punzi_loss(n, data, 79.7, 2.0, window_local=window_local)))(net)

    (dense, g_dense), (local, g_local) = loss_and_grad(False), loss_and_grad(True)
    assert float(local) == pytest.approx(float(dense), rel=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g_dense), jax.tree_util.tree_leaves(g_local)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12 * np.abs(a).max())


def test_punzi_loss_with_a_cut_logit_is_the_loss_of_the_network_shifted_by_it(pretrained):
    """``cut_logit`` c moves the soft cut to logit c: the same loss as the network
    whose output bias is lowered by c with the cut at 0 (``[training] punzi_cut``)."""
    import equinox as eqx

    data, net = pretrained
    c = 0.7
    shifted = eqx.tree_at(lambda n: n.layers[-1].bias, net, net.layers[-1].bias - c)
    at_c = float(sel.punzi_loss(net, data, 79.7, 2.0, 0.25, cut_logit=c))
    assert at_c == pytest.approx(float(sel.punzi_loss(shifted, data, 79.7, 2.0, 0.25)), rel=1e-12)
    assert at_c != pytest.approx(float(sel.punzi_loss(net, data, 79.7, 2.0, 0.25)), rel=1e-3)


def test_punzi_comparison_on_toy_samples_reaches_the_per_mass_optimum_with_one_cut():
    """Both halves are the toy of the scan test and both networks score it alike: one
    cut (just below 0.8, the lowest signal score) is the best for both masses, so
    (ii)/(i) = 1 with no background MC left."""
    from diffana.analyses.zprime_invisible.samples import AnalysisSamples

    signal, s_score, background, b_score = _window_toy()
    signal = dict(signal, score=s_score)
    background = dict(background, score=b_score)
    samples = AnalysisSamples(masses=np.array([1.0, 3.0]), background_train=background, background_test=background,
                              signal_train=signal, signal_test=signal, pseudo_data={}, luminosity=79.7, generated={})
    punzi_score = lambda ev: np.asarray(ev["score"])  # noqa: E731
    c = punzi.punzi_comparison(samples, punzi_score, punzi_score, window=2.0, n_cuts=50)
    np.testing.assert_allclose(c.ratio, [1.0, 1.0])
    np.testing.assert_allclose(c.bce_best, punzi.punzi_s_min(0.2, 0.0, 79.7))
    np.testing.assert_array_equal(c.bce_best_mc, [0, 0])
    assert 0.7 <= c.punzi_cut < 0.8
    assert c.worst_ratio(0.5, 5.0) == pytest.approx(1.0)
    # identical halves: the per-mass cuts chosen on the training half are the same
    np.testing.assert_array_equal(c.bce_per_mass_out_of_sample, c.bce_best)
    np.testing.assert_array_equal(c.ratio_out_of_sample, c.ratio)


def test_per_mass_cut_chosen_on_the_training_half_pays_for_a_held_out_fluctuation():
    """Mass 0's signal scores spread over 0.5–0.95; the training background in its
    window scores 0.4, so on the training half the best cut keeps all of the signal.
    The held-out half has one more background event (1 expected event) at score 0.75.
    The per-mass scan on the held-out events steps above it (ε 0.2 → 0.08, B = 0); the
    cut chosen on the training half keeps it (ε 0.2, B = 1) — and cannot be better."""
    from diffana.analyses.zprime_invisible.samples import AnalysisSamples

    signal, s_score, background, b_score = _window_toy()
    s_score = np.array([np.linspace(0.5, 0.95, 10), [0.95] * 10])
    signal = dict(signal, score=s_score)
    train = dict(background, score=b_score)
    test = {"recoil_mass_squared": np.append(background["recoil_mass_squared"], 1.0),
            "weight": np.append(background["weight"], 1.0), "score": np.append(b_score, 0.75)}
    samples = AnalysisSamples(masses=np.array([1.0, 3.0]), background_train=train, background_test=test,
                              signal_train=signal, signal_test=signal, pseudo_data={}, luminosity=79.7, generated={})
    score = lambda ev: np.asarray(ev["score"])  # noqa: E731
    c = punzi.punzi_comparison(samples, score, score, window=2.0, n_cuts=50)
    assert c.bce_best[0] == pytest.approx(float(punzi.punzi_s_min(0.08, 0.0, 79.7)))
    assert c.bce_per_mass_out_of_sample[0] == pytest.approx(float(punzi.punzi_s_min(0.2, 1.0, 79.7)))
    np.testing.assert_array_equal(c.bce_best_mc, [0, 0])
    np.testing.assert_array_equal(c.bce_per_mass_out_of_sample_mc, [1, 0])
    assert np.all(c.bce_per_mass_out_of_sample >= c.bce_best)
    np.testing.assert_allclose(c.ratio_out_of_sample, c.punzi_one_cut / c.bce_per_mass_out_of_sample)
    assert c.ratio_out_of_sample[0] < c.ratio[0]
    assert c.geometric_mean(c.ratio_out_of_sample, 0.5, 5.0) == pytest.approx(
        float(np.sqrt(np.prod(c.ratio_out_of_sample))))


def test_training_hypotheses_spread_evenly_in_mass_or_in_scan_index():
    """A scan whose steps shrink with mass (like the resolution-stepped one): by scan
    index most picks are heavy; by mass they are the hypotheses nearest to evenly
    spaced masses, both ends included."""
    from diffana.analyses.zprime_invisible import cuts

    masses = np.sqrt(np.linspace(0.0, 64.0, 65))  # even in M², dense in M at high mass
    by_index = cuts.spread_hypotheses(masses, 5, "scan")
    by_mass = cuts.spread_hypotheses(masses, 5, "mass")
    np.testing.assert_array_equal(by_index, [0, 16, 32, 48, 64])
    np.testing.assert_allclose(masses[by_mass], [0.0, 2.0, 4.0, 6.0, 8.0])
    assert np.sum(masses[by_index] < 4.0) == 1 and np.sum(masses[by_mass] < 4.0) == 2
    with pytest.raises(ValueError, match="hypothesis spacing"):
        cuts.spread_hypotheses(masses, 5, "log")


def test_samples_at_another_luminosity_keep_efficiencies_and_scale_every_count():
    """``at_luminosity`` multiplies background (events) and signal (ε·L) weights by the
    luminosity ratio: the comparison's efficiencies stay, its background counts scale,
    and s_min follows Punzi's formula at the new L, not a plain 1/L."""
    from diffana.analyses.zprime_invisible.samples import AnalysisSamples, at_luminosity
    from diffana.errors import ConfigError

    signal, s_score, background, b_score = _window_toy()
    signal = dict(signal, score=s_score)
    background = dict(background, score=b_score * 0 + 0.9)  # every background event passes the cut
    samples = AnalysisSamples(masses=np.array([1.0, 3.0]), background_train=background, background_test=background,
                              signal_train=signal, signal_test=signal, pseudo_data={"x": 1}, luminosity=79.7,
                              generated={})
    low = at_luminosity(samples, 7.97)
    assert low.luminosity == 7.97 and low.pseudo_data is None
    np.testing.assert_allclose(low.background_test["weight"], 0.1 * background["weight"])
    np.testing.assert_allclose(low.signal_train["weight"], 0.1 * signal["weight"])
    assert samples.background_test["weight"] is background["weight"]  # the input is untouched
    score = lambda ev: np.asarray(ev["score"])  # noqa: E731
    scan_high = punzi.scan_network(samples, score, np.array([0.5]), samples.signal_test, samples.background_test,
                                   2.0, "published")
    scan_low = punzi.scan_network(low, score, np.array([0.5]), low.signal_test, low.background_test, 2.0,
                                  "published")
    assert np.all(scan_high.background > 0) and np.all(scan_high.efficiency > 0)
    np.testing.assert_allclose(scan_low.efficiency, scan_high.efficiency)
    np.testing.assert_allclose(scan_low.background, 0.1 * scan_high.background)
    np.testing.assert_allclose(scan_low.s_min, punzi.punzi_s_min(scan_high.efficiency, 0.1 * scan_high.background,
                                                                  7.97))
    with pytest.raises(ConfigError, match="luminosity must be > 0"):
        at_luminosity(samples, 0.0)
