"""Objectives (diffana.objectives): closed-form figures of merit and engine-based limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana import objectives as O


# --------------------------------------------------------------------------- Asimov Z
def test_asimov_significance_without_uncertainty_is_the_standard_formula():
    s, b = jnp.array([5.0, 1.0]), jnp.array([10.0, 4.0])
    z = O.asimov_significance(s, b, 0.0, combine=False)
    ref = np.sqrt(2 * ((s + b) * np.log(1 + s / b) - s))
    np.testing.assert_allclose(z, ref, rtol=1e-12)
    np.testing.assert_allclose(O.asimov_significance(s, b, 0.0), np.sqrt(np.sum(ref**2)), rtol=1e-12)


def test_asimov_significance_is_continuous_in_sigma_and_decreasing():
    z0 = O.asimov_significance(5.0, 10.0, 0.0)
    np.testing.assert_allclose(O.asimov_significance(5.0, 10.0, 1e-4), z0, rtol=1e-7)
    zs = [float(O.asimov_significance(5.0, 10.0, sig)) for sig in (0.5, 1.0, 3.0, 10.0)]
    assert z0 > zs[0] and all(a > b for a, b in zip(zs, zs[1:]))


def test_asimov_significance_small_signal_limit():
    # s << b: Z → s / sqrt(b + σ²)
    s, b, sig = 0.01, 100.0, 5.0
    np.testing.assert_allclose(O.asimov_significance(s, b, sig), s / np.sqrt(b + sig**2), rtol=1e-3)


def test_asimov_significance_gradient_is_finite_at_zero_signal():
    g = jax.grad(lambda s: O.asimov_significance(s, jnp.array([10.0, 5.0]), 1.0))(jnp.zeros(2))
    assert np.all(np.isfinite(g))
    g = jax.grad(lambda s: O.asimov_significance(s, 10.0, 2.0))(3.0)
    eps = 1e-6
    fd = (O.asimov_significance(3.0 + eps, 10.0, 2.0) - O.asimov_significance(3.0 - eps, 10.0, 2.0)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


# --------------------------------------------------------------------------- Punzi
def test_punzi_sensitivity_formula_and_limits():
    a, b, eff, B, L = 3.0, 1.28, 0.2, 50.0, 79.7
    ref = (b**2 / 2 + a * np.sqrt(B) + b / 2 * np.sqrt(b**2 + 4 * a * np.sqrt(B) + 4 * B)) / (eff * L)
    np.testing.assert_allclose(O.punzi_sensitivity(eff, B, L, a, b), ref, rtol=1e-12)
    # B = 0: finite, b²/(ε L)
    np.testing.assert_allclose(O.punzi_sensitivity(eff, 0.0, L), 1.28**2 / (eff * L), rtol=1e-12)
    g = jax.grad(lambda B: O.punzi_sensitivity(eff, B, L))(0.0)
    assert np.isfinite(g)
    # a selection that removes every signal event: documented +inf
    assert np.isposinf(O.punzi_sensitivity(0.0, B, L))


def test_punzi_with_soft_efficiency_prefers_the_better_cut():
    rng = np.random.default_rng(0)
    sig, bkg = jnp.asarray(rng.normal(2.0, 1.0, 2000)), jnp.asarray(rng.normal(0.0, 1.0, 20000))
    bkg_weight = 0.01  # expected background events per simulated event

    def s_min(cut):
        eff = O.soft_efficiency(jax.nn.sigmoid((sig - cut) / 0.05))
        B = jnp.sum(jax.nn.sigmoid((bkg - cut) / 0.05)) * bkg_weight
        return O.punzi_sensitivity(eff, B, 10.0)

    values = jax.vmap(s_min)(jnp.linspace(-2.0, 4.0, 61))
    best = float(jnp.linspace(-2.0, 4.0, 61)[jnp.argmin(values)])
    assert -2.0 < best < 4.0  # an interior optimum: neither no cut nor cut-everything
    assert float(jax.grad(s_min)(-2.0)) < 0  # loosest cut: tightening helps


def test_soft_efficiency():
    np.testing.assert_allclose(O.soft_efficiency(jnp.array([1.0, 0.0, 0.5]), jnp.array([1.0, 1.0, 2.0])), 0.5)
    with pytest.raises(ValueError, match="empty"):
        O.soft_efficiency(jnp.zeros(0))
    with pytest.raises(ValueError, match="event_weight shape"):
        O.soft_efficiency(jnp.ones(3), jnp.ones(2))


# --------------------------------------------------------------------------- BCE
def test_binary_cross_entropy_logits_probabilities_and_balance():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=50))
    y = jnp.asarray((rng.uniform(size=50) < 0.2).astype(float))
    w = jnp.asarray(rng.uniform(0.5, 1.5, 50))
    p = jax.nn.sigmoid(z)
    manual = -np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(w)
    np.testing.assert_allclose(O.binary_cross_entropy(p, y, w), manual, rtol=1e-10)
    np.testing.assert_allclose(O.binary_cross_entropy(z, y, w, from_logits=True), manual, rtol=1e-10)
    # balanced: a constant prediction 0.5 gives log 2 whatever the class imbalance, and
    # the minimum over constant predictions sits at 0.5
    np.testing.assert_allclose(O.binary_cross_entropy(jnp.full(50, 0.5), y, w, balanced=True), np.log(2))
    g = jax.grad(lambda c: O.binary_cross_entropy(jnp.full(50, c), y, w, balanced=True, from_logits=True))(0.0)
    np.testing.assert_allclose(g, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="prediction shape"):
        O.binary_cross_entropy(p, y[:3])


# --------------------------------------------------------------------------- masses
def test_over_masses_vmap_equals_blocked_map_and_reductions():
    f = lambda m: jnp.exp(-m) + m**2  # noqa: E731
    masses = jnp.linspace(0.5, 5.0, 10)
    a = O.over_masses(f, masses)
    b = O.over_masses(f, masses, batch_size=3)
    np.testing.assert_allclose(a, f(masses), rtol=1e-14)
    np.testing.assert_allclose(b, a, rtol=1e-14)
    np.testing.assert_allclose(O.average_over_masses(a), np.mean(np.log(a)))
    np.testing.assert_allclose(O.average_over_masses(a, "mean"), np.mean(a))
    np.testing.assert_allclose(O.average_over_masses(a, "max"), np.max(a))
    with pytest.raises(ValueError, match="how"):
        O.average_over_masses(a, "median")
    with pytest.raises(ValueError, match="non-empty 1D"):
        O.over_masses(f, jnp.zeros((0,)))


# --------------------------------------------------------------------------- engine
SIGNAL = [5.0, 10.0, 3.0]
BACKGROUND = [50.0, 60.0, 20.0]
UP = [55.0, 66.0, 22.0]
DOWN = [45.0, 54.0, 18.0]


@pytest.fixture(scope="module")
def engine_model():
    from diffana.model import Model

    spec = O.correlated_background_spec(jnp.asarray(SIGNAL), jnp.asarray(BACKGROUND),
                                        jnp.asarray(UP), jnp.asarray(DOWN), yield_floor=0.0)
    return Model.from_spec(spec)


@pytest.fixture(scope="module")
def pyhf_model():
    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy")
    return pyhf.simplemodels.correlated_background(SIGNAL, BACKGROUND, UP, DOWN)


def test_correlated_background_spec_matches_pyhf_simplemodel(pyhf_model):
    spec = O.correlated_background_spec(SIGNAL, BACKGROUND, UP, DOWN, yield_floor=0.0)
    ours = spec["channels"][0]["samples"]
    ref = pyhf_model.spec["channels"][0]["samples"]
    assert [s["name"] for s in ours] == [s["name"] for s in ref]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a["data"], b["data"])
        assert [(m["name"], m["type"]) for m in a["modifiers"]] == [(m["name"], m["type"]) for m in b["modifiers"]]


def test_expected_upper_limit_and_band_match_pyhf(engine_model, pyhf_model):
    import pyhf

    _, expected = pyhf.infer.intervals.upper_limits.upper_limit(
        pyhf_model.expected_data([0.0, 0.0]), pyhf_model, scan=None, level=0.05, rtol=1e-8
    )
    band = O.expected_upper_limit(engine_model, cl=0.95, band=True)
    np.testing.assert_allclose(band, np.asarray(expected)[1:4], rtol=1e-4)
    np.testing.assert_allclose(O.expected_upper_limit(engine_model, cl=0.95), expected[2], rtol=1e-4)


def test_expected_cls_matches_pyhf(engine_model, pyhf_model):
    import pyhf

    _, expected = pyhf.infer.hypotest(1.0, pyhf_model.expected_data([0.0, 0.0]), pyhf_model,
                                      test_stat="qtilde", return_expected_set=True)
    np.testing.assert_allclose(O.expected_cls(engine_model, 1.0), expected[2], rtol=1e-5)
