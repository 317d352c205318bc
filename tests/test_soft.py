"""Soft histograms, sigmoid cuts and annealing schedules (diffana.soft)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import relaxed

import diffana  # noqa: F401  (float64)
from diffana import soft

EDGES = jnp.linspace(0.0, 1.0, 5)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(1)
    values = jnp.asarray(rng.uniform(-0.1, 1.1, 400))
    weights = jnp.asarray(rng.uniform(0.5, 2.0, 400))
    process = jnp.asarray(rng.integers(0, 3, 400))
    return values, weights, process


def test_hard_histogram_matches_numpy(sample):
    values, weights, _ = sample
    ours = soft.hard_histogram(values, EDGES, weights)
    ref, _ = np.histogram(np.asarray(values), np.asarray(EDGES), weights=np.asarray(weights))
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_hard_histogram_clip_keeps_every_event(sample):
    values, weights, _ = sample
    clipped = soft.hard_histogram(values, EDGES, weights, overflow="clip")
    np.testing.assert_allclose(clipped.sum(), weights.sum(), rtol=1e-12)
    dropped = soft.hard_histogram(values, EDGES, weights)
    assert clipped.sum() > dropped.sum()


def test_hard_histogram_gradient_wrt_weights_is_bin_membership(sample):
    values, weights, _ = sample
    grad = jax.grad(lambda w: soft.hard_histogram(values, EDGES, w)[1])(weights)
    inside = (values >= EDGES[1]) & (values < EDGES[2])
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(inside, dtype=float))


def test_nan_value_falls_in_no_bin():
    values = jnp.array([0.1, jnp.nan, 0.9])
    for overflow in ("drop", "clip"):
        h = soft.hard_histogram(values, EDGES, overflow=overflow)
        assert float(h.sum()) == 2.0


def test_kde_histogram_unweighted_is_relaxed_hist(sample):
    values, _, _ = sample
    for reflect in (False, True):
        ours = soft.kde_histogram(values, EDGES, 0.05, weights=jnp.ones_like(values),
                                  reflect_infinities=reflect)
        ref = relaxed.hist(values, EDGES, 0.05, reflect_infinities=reflect)
        np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_kde_histogram_tends_to_hard_histogram(sample):
    values, weights, _ = sample
    hard = soft.hard_histogram(values, EDGES, weights)
    kde = soft.kde_histogram(values, EDGES, 1e-6, weights=weights)
    np.testing.assert_allclose(kde, hard, rtol=1e-9)


def test_kde_reflect_conserves_total_weight(sample):
    values, weights, _ = sample
    h = soft.kde_histogram(values, EDGES, 0.2, weights=weights, reflect_infinities=True)
    np.testing.assert_allclose(h.sum(), weights.sum(), rtol=1e-12)


def test_kde_density_integrates_to_one(sample):
    values, weights, _ = sample
    h = soft.kde_histogram(values, EDGES, 0.1, weights=weights, density=True)
    np.testing.assert_allclose(jnp.sum(h * jnp.diff(EDGES)), 1.0, rtol=1e-12)


def test_kde_gradient_wrt_values_matches_finite_differences(sample):
    values, weights, _ = sample

    def f(shift):
        return soft.kde_histogram(values + shift, EDGES, 0.1, weights=weights)[2]

    g = jax.grad(f)(0.0)
    eps = 1e-5
    fd = (f(eps) - f(-eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    assert abs(float(g)) > 0


@pytest.mark.parametrize("kind", ["hard", "kde"])
def test_by_process_equals_per_process(sample, kind):
    values, weights, process = sample
    if kind == "hard":
        both = soft.hard_histograms_by_process(values, EDGES, weights, process, 3)
        single = lambda m: soft.hard_histogram(values, EDGES, weights * m)  # noqa: E731
    else:
        both = soft.kde_histograms_by_process(values, EDGES, 0.1, weights, process, 3)
        single = lambda m: soft.kde_histogram(values, EDGES, 0.1, weights=weights * m)  # noqa: E731
    assert both.shape == (3, 4)
    for p in range(3):
        np.testing.assert_allclose(both[p], single((process == p).astype(float)), rtol=1e-12)


def test_histograms_jit_and_vmap(sample):
    values, weights, process = sample
    f = jax.jit(lambda bw: soft.kde_histograms_by_process(values, EDGES, bw, weights, process, 3))
    out = jax.vmap(f)(jnp.array([0.05, 0.1]))
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[1], f(0.1), rtol=1e-12)


def test_bad_inputs_are_named():
    v = jnp.ones(3)
    with pytest.raises(ValueError, match="strictly increasing"):
        soft.hard_histogram(v, jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="weights shape"):
        soft.kde_histogram(v, EDGES, 0.1, weights=jnp.ones(4))
    with pytest.raises(ValueError, match="process labels shape"):
        soft.hard_histograms_by_process(v, EDGES, None, jnp.zeros(2, int), 1)
    with pytest.raises(TypeError, match="integers"):
        soft.hard_histograms_by_process(v, EDGES, None, jnp.zeros(3), 1)
    with pytest.raises(ValueError, match="overflow"):
        soft.hard_histogram(v, EDGES, overflow="wrap")


def test_sigmoid_cut_and_window():
    x = jnp.array([-1.0, 0.0, 1.0])
    above = soft.sigmoid_cut(x, 0.0, 0.1)
    below = soft.sigmoid_cut(x, 0.0, 0.1, keep="below")
    np.testing.assert_allclose(above + below, 1.0)
    assert above[0] < 1e-4 and above[2] > 1 - 1e-4 and above[1] == 0.5
    w = soft.window_cut(jnp.array([-5.0, 0.0, 5.0]), -1.0, 1.0, 0.01)
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="keep"):
        soft.sigmoid_cut(x, 0.0, 0.1, keep="left")


def test_annealing_schedules():
    for make in (soft.linear_anneal, soft.exponential_anneal, soft.cosine_anneal):
        s = make(1.0, 0.01, 100)
        np.testing.assert_allclose(s(0), 1.0)
        np.testing.assert_allclose(s(100), 0.01)
        np.testing.assert_allclose(s(1000), 0.01)
        mid = float(s(50))
        assert 0.01 < mid < 1.0
        assert float(jax.jit(s)(jnp.asarray(50))) == pytest.approx(mid)
    np.testing.assert_allclose(soft.exponential_anneal(1.0, 0.01, 100)(50), 0.1)
    with pytest.raises(ValueError):
        soft.exponential_anneal(0.0, 1.0, 10)
    with pytest.raises(ValueError):
        soft.linear_anneal(1.0, 0.0, 0)


def test_process_histograms_on_events():
    from diffana.events import Events

    rng = np.random.default_rng(5)
    ev = Events.from_samples(
        {"s": {"o": rng.uniform(0, 1, 50)}, "b": {"o": rng.uniform(0, 1, 80)}},
        weights={"s": 0.5, "b": 2.0},
    )
    sel = jnp.asarray(rng.uniform(0, 1, 130))
    hard = soft.process_histograms(ev, ev.column("o"), EDGES, selection_weight=sel)
    assert hard.shape == (2, 4)
    ref = soft.hard_histogram(ev.column("o"), EDGES, ev.weight * sel * (ev.process == 1))
    np.testing.assert_allclose(hard[1], ref, rtol=1e-12)
    kde = soft.process_histograms(ev, ev.column("o"), EDGES, bandwidth=0.05, reflect_infinities=True)
    np.testing.assert_allclose(kde.sum(axis=1), ev.yields(), rtol=1e-12)
    with pytest.raises(ValueError, match="values shape"):
        soft.process_histograms(ev, jnp.ones(3), EDGES)
