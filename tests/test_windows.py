"""Window-local evaluation (diffana.windows) equals the dense evaluation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana import soft, windows
from diffana.events import Events
from diffana.selection import MLP, MassParametrisedMLP, Standardisation

N_BINS = 5


def _edges(masses):
    width = 0.1 + 0.02 * masses
    return masses[:, None] + width[:, None] * np.linspace(-2.5, 2.5, N_BINS + 1)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(3)
    n = 4000
    masses = np.linspace(0.5, 7.9, 12)
    edges = _edges(masses)
    m = rng.exponential(2.5, n)
    m[:5] = edges[3, 0]  # on a low edge: first bin
    m[5:9] = edges[3, -1]  # on the last edge: last bin (closed, as numpy)
    m[9:12] = edges[4, 2]  # on an inner edge: the upper bin
    events = {"m": m, "x": rng.normal(size=n), "weight": rng.uniform(0.5, 1.5, n),
              "theta": rng.integers(0, 3, n)}
    return {"events": windows.sort_events(events, "m"), "masses": jnp.asarray(masses),
            "edges": jnp.asarray(edges)}


def _dense(values, weights, edges):
    return jax.vmap(lambda e: soft.hard_histogram(values, e, weights))(edges)


def test_cumulative_histograms_equal_dense_ones(sample):
    ev, edges = sample["events"], sample["edges"]
    ours = windows.window_histograms(ev["m"], ev["weight"], edges)
    dense = _dense(ev["m"], ev["weight"], edges)
    np.testing.assert_allclose(ours, dense, rtol=1e-12, atol=1e-12)
    assert float(dense[3, 0]) > 0 and float(dense[3, -1]) > 0
    # counts by numpy on the unsorted-independent definition
    counts, _ = np.histogram(np.asarray(ev["m"]), np.asarray(edges[4]))
    np.testing.assert_allclose(windows.window_histograms(ev["m"], jnp.ones_like(ev["m"]), edges[4]), counts)


def test_categories_split_each_window(sample):
    ev, edges = sample["events"], sample["edges"]
    ours = windows.window_histograms(ev["m"], ev["weight"], edges, category=ev["theta"], n_categories=3)
    assert ours.shape == (12, 3, N_BINS)
    for c in range(3):
        dense = _dense(ev["m"], ev["weight"] * (ev["theta"] == c), edges)
        np.testing.assert_allclose(ours[:, c], dense, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def networks(sample):
    st = Standardisation.fit({"m": sample["events"]["m"], "x": sample["events"]["x"]}, ["m", "x"])
    key = jax.random.PRNGKey(1)
    return MLP(st, hidden=(6,), key=key), MassParametrisedMLP(st, (0.5, 8.0), hidden=(6,), key=key)


def _objective(histograms):
    return jnp.sum(jnp.log(histograms + 1e-3) * jnp.arange(1.0, N_BINS + 1))


def test_independent_network_gradient_equals_dense(sample, networks):
    ev, edges = sample["events"], sample["edges"]
    net = networks[0]

    def loss(net, windowed):
        w = net(ev) * ev["weight"]
        h = windows.window_histograms(ev["m"], w, edges) if windowed else _dense(ev["m"], w, edges)
        return _objective(h)

    v1, g1 = eqx.filter_value_and_grad(loss)(net, True)
    v2, g2 = eqx.filter_value_and_grad(loss)(net, False)
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)])  # noqa: E731
    assert abs(float(v1 - v2)) <= 1e-10 * abs(float(v2))
    assert float(jnp.max(jnp.abs(flat(g1) - flat(g2))) / jnp.max(jnp.abs(flat(g2)))) < 1e-10


def test_parametrised_network_slices_equal_dense(sample, networks, batch_size=5):
    """In lax.map blocks of 5 (the vmap path: test_slice_at_the_end_and_empty_windows)."""
    ev, edges, masses = sample["events"], sample["edges"], sample["masses"]
    net = networks[1]
    plan = windows.plan_windows(ev["m"], edges[:, 0], edges[:, -1])
    assert plan.size < ev["m"].shape[0]  # a window holds a fraction of the events

    def windowed(net):
        per = lambda e, mass, edge: soft.hard_histogram(e["m"], edge, net(e, mass) * e["weight"])  # noqa: E731
        return _objective(windows.map_windows(per, ev, plan, masses, edges, batch_size=batch_size))

    def dense(net):
        per = lambda mass, edge: soft.hard_histogram(ev["m"], edge, net(ev, mass) * ev["weight"])  # noqa: E731
        return _objective(jax.vmap(per)(masses, edges))

    v1, g1 = eqx.filter_value_and_grad(windowed)(net)
    v2, g2 = eqx.filter_value_and_grad(dense)(net)
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)])  # noqa: E731
    assert abs(float(v1 - v2)) <= 1e-12 * abs(float(v2))
    assert float(jnp.max(jnp.abs(flat(g1) - flat(g2))) / jnp.max(jnp.abs(flat(g2)))) < 1e-10


def test_slice_at_the_end_and_empty_windows():
    values = jnp.arange(10.0)
    weights = jnp.linspace(1.0, 2.0, 10)
    edges = jnp.asarray([[7.5, 8.5, 9.0], [20.0, 21.0, 22.0], [-5.0, 0.0, 2.0], [0.5, 3.5, 6.5]])
    plan = windows.plan_windows(values, edges[:, 0], edges[:, -1])
    assert plan.size == 6  # [0.5, 6.5] holds 1..6
    hist = windows.map_windows(lambda e, edge: soft.hard_histogram(e["v"], edge, e["w"]),
                               {"v": values, "w": weights}, plan, edges)
    np.testing.assert_allclose(hist, _dense(values, weights, edges), rtol=1e-14)
    np.testing.assert_allclose(hist[1], 0.0)
    np.testing.assert_allclose(windows.window_histograms(values, weights, edges), hist, rtol=1e-14)
    assert windows.plan_windows(values, [0.5], [1.5], multiple_of=4).size == 4


def test_sort_events_keeps_events_together():
    ev = Events.from_samples({"a": {"m": np.array([3.0, 1.0]), "x": np.array([30.0, 10.0])},
                              "b": {"m": np.array([2.0]), "x": np.array([20.0])}}, {"a": 1.0, "b": 2.0})
    s = windows.sort_events(ev, "m")
    np.testing.assert_array_equal(s.column("m"), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.column("x"), [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(s.weight, [1.0, 2.0, 1.0])


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="no column 'mass'"):
        windows.sort_events({"m": np.ones(3)}, "mass")
    with pytest.raises(ValueError, match="1 NaN/inf"):
        windows.sort_events({"m": np.array([1.0, np.nan, 2.0])}, "m")
    with pytest.raises(ValueError, match="column 'w' has shape"):
        windows.sort_events({"m": np.ones(3), "w": np.ones(2)}, "m")
    with pytest.raises(ValueError, match="not in ascending order"):
        windows.window_histograms(jnp.array([2.0, 1.0]), jnp.ones(2), jnp.array([0.0, 3.0]))
    with pytest.raises(ValueError, match="not in ascending order"):
        windows.plan_windows(np.array([2.0, 1.0]), [0.0], [3.0])
    with pytest.raises(ValueError, match="high >= low"):
        windows.plan_windows(np.arange(3.0), [2.0], [1.0])
    with pytest.raises(ValueError, match="weights shape"):
        windows.window_histograms(jnp.arange(3.0), jnp.ones(2), jnp.array([0.0, 3.0]))
    with pytest.raises(ValueError, match="n_categories"):
        windows.window_histograms(jnp.arange(3.0), jnp.ones(3), jnp.array([0.0, 3.0]), category=jnp.zeros(3, int))
    plan = windows.plan_windows(np.arange(5.0), [0.0, 1.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="leading axis of 2 hypotheses"):
        windows.map_windows(lambda e, a: e, {"v": jnp.arange(5.0)}, plan, jnp.ones(3))
