"""Events container and selections (diffana.events, diffana.selection)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana.events import Events
from diffana.selection import MLP, Cuts, MassParametrisedMLP, Standardisation


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(3)
    return Events.from_samples(
        {
            "signal": {"mass": rng.normal(5.0, 0.3, 200), "pt": rng.exponential(2.0, 200)},
            "background": {"mass": rng.uniform(0.0, 10.0, 300), "pt": rng.exponential(1.0, 300)},
        },
        weights={"signal": 0.05, "background": np.full(300, 2.0)},
    )


# --------------------------------------------------------------------------- Events
def test_from_samples_labels_and_yields(events):
    assert events.n_events == 500
    assert events.process_names == ("signal", "background")
    assert events.process_index("background") == 1
    np.testing.assert_allclose(events.yields(), [10.0, 600.0])
    assert events.matrix(["pt", "mass"]).shape == (500, 2)


def test_minibatch_keeps_process_totals(events):
    idx = jnp.arange(0, 500, 7)
    batch = events.minibatch(idx)
    np.testing.assert_allclose(batch.yields(), events.yields(), rtol=1e-12)
    assert batch.n_events == len(idx)
    jitted = jax.jit(lambda e, i: e.minibatch(i).yields())(events, idx)
    np.testing.assert_allclose(jitted, events.yields(), rtol=1e-12)


def test_split_is_disjoint_and_rescaled(events):
    a, b = events.split(0.6, jax.random.PRNGKey(0))
    assert a.n_events + b.n_events == 500
    np.testing.assert_allclose(a.yields(), events.yields(), rtol=1e-12)
    np.testing.assert_allclose(b.yields(), events.yields(), rtol=1e-12)
    together = np.sort(np.concatenate([np.asarray(a.column("mass")), np.asarray(b.column("mass"))]))
    np.testing.assert_array_equal(together, np.sort(np.asarray(events.column("mass"))))


def test_with_feature_shifts_one_column(events):
    shifted = events.with_feature("mass", events.column("mass") * 1.01)
    np.testing.assert_allclose(shifted.column("mass"), 1.01 * events.column("mass"))
    np.testing.assert_array_equal(shifted.column("pt"), events.column("pt"))


def test_events_bad_input_named():
    with pytest.raises(ValueError, match="feature 'pt' has 1 non-finite"):
        Events.from_samples({"s": {"pt": [1.0, np.nan], "m": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="sample 'bkg' is empty"):
        Events.from_samples({"s": {"pt": [1.0]}, "bkg": {"pt": []}})
    with pytest.raises(KeyError, match="process 'bkg' has features"):
        Events.from_samples({"s": {"pt": [1.0]}, "bkg": {"mass": [1.0]}})
    with pytest.raises(ValueError, match="feature 'b' has 2 entries, expected 3"):
        Events({"a": jnp.ones(3), "b": jnp.ones(2)}, jnp.ones(3), jnp.zeros(3, int), ("s",))
    with pytest.raises(ValueError, match="no events"):
        Events({"a": jnp.ones(0)}, jnp.ones(0), jnp.zeros(0, int), ("s",))
    with pytest.raises(ValueError, match="process labels must lie"):
        Events({"a": jnp.ones(2)}, jnp.ones(2), jnp.array([0, 3]), ("s", "b"))
    with pytest.raises(KeyError, match="unknown feature 'eta'"):
        Events({"a": jnp.ones(2)}, jnp.ones(2), jnp.zeros(2, int), ("s",)).column("eta")


# --------------------------------------------------------------------------- selections
def test_standardisation_fit(events):
    st = Standardisation.fit(events, ["mass", "pt"])
    x = st(events)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-12)
    mm = Standardisation.fit(events, ["mass"], method="min_max")(events)
    assert float(mm.min()) == 0.0 and float(mm.max()) == 1.0
    with pytest.raises(ValueError, match="feature 'c' is constant"):
        Standardisation.fit({"c": jnp.ones(4)}, ["c"])


def test_cuts_match_hard_cuts_at_low_temperature(events):
    st = Standardisation.fit(events, ["mass", "pt"])
    cuts = Cuts([("mass", "above", 4.0), ("mass", "below", 6.0), ("pt", "above", 1.0)], st,
                temperature=1e-9)
    m, pt = np.asarray(events.column("mass")), np.asarray(events.column("pt"))
    hard = ((m > 4.0) & (m < 6.0) & (pt > 1.0)).astype(float)
    np.testing.assert_allclose(cuts(events), hard, atol=1e-6)
    [(n, k, t)] = cuts.thresholds()[:1]
    assert (n, k) == ("mass", "above") and t == pytest.approx(4.0)
    # traced temperature (annealing) works under jit
    soft_w = jax.jit(lambda c, t: c(events, temperature=t))(cuts, 0.5)
    assert np.all((soft_w > 0) & (soft_w < 1))


def test_cuts_gradient_wrt_thresholds(events):
    cuts = Cuts([("mass", "above", 4.0)], Standardisation.fit(events, ["mass", "pt"]), 0.2)
    grads = jax.grad(lambda c: jnp.sum(c(events) * events.weight))(cuts)
    assert float(grads.threshold[0]) < 0  # raising the cut removes events


def test_mlp_output_range_and_feature_errors(events):
    st = Standardisation.fit(events, ["mass", "pt"])
    net = MLP(st, hidden=(8, 4), activation=jnp.tanh, key=jax.random.PRNGKey(0))
    out = net(events)
    assert out.shape == (500,) and np.all((out > 0) & (out < 1))
    np.testing.assert_allclose(jax.nn.sigmoid(net.logit(events)), out)
    # a dict in another order with extra columns gives the same output
    feats = {"extra": jnp.zeros(500), "pt": events.column("pt"), "mass": events.column("mass")}
    np.testing.assert_allclose(net(feats), out)
    with pytest.raises(KeyError, match=r"needs features \['pt'\]"):
        net({"mass": events.column("mass")})


def test_mass_parametrised_mlp_vmaps_over_masses(events):
    st = Standardisation.fit(events, ["mass", "pt"])
    net = MassParametrisedMLP(st, (1.0, 9.0), key=jax.random.PRNGKey(2))
    masses = jnp.array([2.0, 5.0, 8.0])
    stacked = jax.vmap(lambda m: net(events, m))(masses)
    assert stacked.shape == (3, 500)
    np.testing.assert_allclose(stacked[1], net(events, 5.0), rtol=1e-12)
    assert not np.allclose(stacked[0], stacked[2])
    with pytest.raises(ValueError, match="needs the hypothesis mass"):
        net(events)


def test_selection_modules_serialise_roundtrip(events, tmp_path):
    st = Standardisation.fit(events, ["mass", "pt"])
    net = MassParametrisedMLP(st, (1.0, 9.0), key=jax.random.PRNGKey(2))
    eqx.tree_serialise_leaves(tmp_path / "net.eqx", net)
    like = MassParametrisedMLP(st, (1.0, 9.0), key=jax.random.PRNGKey(99))
    back = eqx.tree_deserialise_leaves(tmp_path / "net.eqx", like)
    np.testing.assert_array_equal(back(events, 3.0), net(events, 3.0))
