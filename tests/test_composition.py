"""The whole differentiable analysis: selection → soft histogram → fit → expected limit.

``loss(params, events, mass)``: events with weights and process labels in, a scalar
out; it jits, differentiates (checked against central finite differences) and vmaps
over mass hypotheses. Systematic templates (histosys) come from shifted inputs passed
through the same selection.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401
from diffana import objectives, soft
from diffana.events import Events
from diffana.selection import MLP, Cuts, MassParametrisedMLP, Standardisation

EDGES = jnp.linspace(0.0, 10.0, 4)  # GeV: 3 bins of the observable "m"
SCORE_EDGES = jnp.linspace(0.0, 1.0, 4)
SIGNAL, BACKGROUND = 0, 1
ENERGY_SCALE = 0.05  # ±5% shift of "m" for the histosys templates


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(11)
    n_sig, n_bkg = 300, 600
    return Events.from_samples(
        {
            "signal": {"m": rng.normal(5.0, 1.0, n_sig), "x": rng.normal(1.0, 1.0, n_sig)},
            "background": {"m": rng.exponential(4.0, n_bkg), "x": rng.normal(-0.5, 1.0, n_bkg)},
        },
        weights={"signal": 10.0 / n_sig, "background": 100.0 / n_bkg},
    )


def templates(weight_fn, events, values_fn, bandwidth=None):
    """(signal, background, background_up, background_down) yields; the up/down
    templates re-run the *same* selection on energy-scale-shifted inputs."""
    hists = []
    for scale in (1.0, 1.0 + ENERGY_SCALE, 1.0 - ENERGY_SCALE):
        shifted = events.with_feature("m", events.column("m") * scale)
        h = soft.process_histograms(shifted, values_fn(shifted), EDGES if bandwidth is None else SCORE_EDGES,
                                    selection_weight=weight_fn(shifted), bandwidth=bandwidth)
        hists.append(h)
    nominal, up, down = hists
    return nominal[SIGNAL], nominal[BACKGROUND], up[BACKGROUND], down[BACKGROUND]


def limit_of(signal, background, up, down):
    from diffana.model import Model

    spec = objectives.correlated_background_spec(signal, background, up, down)
    return objectives.expected_upper_limit(Model.from_spec(spec), cl=0.90)


def cut_loss(cuts, events, mass=None):
    """Soft cuts as weights, hard bins of the observable m."""
    return jnp.log(limit_of(*templates(lambda e: cuts(e), events, lambda e: e.column("m"))))


def mlp_loss(net, events, mass=None):
    """Network score histogrammed in kernel-smoothed bins."""
    return jnp.log(limit_of(*templates(lambda e: jnp.ones(e.n_events), events, net, bandwidth=0.15)))


def flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))])


def central_difference(loss, params, direction, eps):
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    _, unravel = jax.flatten_util.ravel_pytree(diff)
    base = jax.flatten_util.ravel_pytree(diff)[0]
    f = lambda v: loss(eqx.combine(unravel(v), static))  # noqa: E731
    return (f(base + eps * direction) - f(base - eps * direction)) / (2 * eps)


@pytest.fixture(scope="module")
def cuts(events):
    st = Standardisation.fit(events, ["m", "x"])
    return Cuts([("x", "above", 0.0), ("m", "above", 2.0), ("m", "below", 8.0)], st, temperature=0.3)


@pytest.fixture(scope="module")
def mlp(events):
    st = Standardisation.fit(events, ["m", "x"])
    return MLP(st, hidden=(4,), key=jax.random.PRNGKey(3))


@pytest.fixture(scope="module")
def cut_value_and_grad(events):
    # one compilation shared by the gradient and the "removes every event" tests
    return jax.jit(jax.value_and_grad(lambda c: cut_loss(c, events)))


def check_gradient(value_and_grad, params, n_directions=3):
    """Directional derivatives along the gradient and random directions vs central
    differences (the values come from the same compiled function)."""
    value, grad = value_and_grad(params)
    assert np.isfinite(value)
    g = flat(grad)
    assert np.all(np.isfinite(g)) and float(jnp.max(jnp.abs(g))) > 0
    loss = lambda p: value_and_grad(p)[0]  # noqa: E731
    rng = np.random.default_rng(0)
    directions = [g] + [jnp.asarray(rng.normal(size=g.shape)) for _ in range(n_directions - 1)]
    for d in directions:
        d = d / jnp.linalg.norm(d)
        fd = central_difference(loss, params, d, 1e-4)
        np.testing.assert_allclose(jnp.dot(g, d), fd, rtol=1e-3)


def test_gradient_of_cut_based_composition_matches_finite_differences(cuts, cut_value_and_grad):
    check_gradient(cut_value_and_grad, cuts)


def test_gradient_of_mlp_composition_matches_finite_differences(mlp, events):
    check_gradient(jax.jit(jax.value_and_grad(lambda p: mlp_loss(p, events))), mlp)


def test_composition_vmaps_over_masses(events):
    """One mass-parametrised network for all hypotheses, vmapped over masses; the mean
    (over masses) log limit differentiates."""
    st = Standardisation.fit(events, ["m", "x"])
    net = MassParametrisedMLP(st, (2.0, 8.0), hidden=(4,), key=jax.random.PRNGKey(1))

    def loss(net, events, mass):
        window = soft.window_cut(events.column("m"), mass - 1.5, mass + 1.5, 0.1)
        edges = mass + jnp.linspace(-1.5, 1.5, 4)
        h = soft.process_histograms(events, events.column("m"), edges,
                                    selection_weight=window * net(events, mass))
        b = h[BACKGROUND]
        return limit_of(h[SIGNAL], b, 1.05 * b, 0.95 * b)  # expected UL on μ

    def objective(net, masses):
        per_mass = objectives.over_masses(lambda m: loss(net, events, m), masses)
        return objectives.average_over_masses(per_mass), per_mass

    value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))
    masses = jnp.array([3.0, 5.0, 7.0])
    (value, per_mass), grad = value_and_grad(net, masses)
    # lanes of the vmapped solver do not talk to each other: permuting the masses
    # permutes the values (same compiled function), and every mass gives its own limit
    (_, permuted), _ = value_and_grad(net, masses[jnp.array([2, 0, 1])])
    np.testing.assert_allclose(permuted, per_mass[jnp.array([2, 0, 1])], rtol=1e-8)
    assert len(set(np.round(np.asarray(per_mass), 6))) == 3
    np.testing.assert_allclose(value, np.mean(np.log(per_mass)))
    assert np.all(np.isfinite(flat(grad))) and float(jnp.max(jnp.abs(flat(grad)))) > 0


# --------------------------------------------------------------------------- bad input
def test_mismatched_feature_names_name_the_feature(mlp, events):
    renamed = Events({"m": events.column("m"), "y": events.column("x")}, events.weight,
                     events.process, events.process_names)
    with pytest.raises(KeyError, match=r"needs features \['x'\]"):
        mlp_loss(mlp, renamed)


def test_nan_features_are_refused_with_the_feature_name():
    with pytest.raises(ValueError, match="feature 'x' has 1 non-finite"):
        Events.from_samples({"signal": {"m": [1.0, 2.0], "x": [0.0, np.nan]}})


def test_empty_sample_is_refused_with_its_name():
    with pytest.raises(ValueError, match="sample 'background' is empty"):
        Events.from_samples({"signal": {"m": [1.0]}, "background": {"m": []}})


def test_selection_removing_every_event_gives_finite_documented_values(cuts, events, cut_value_and_grad):
    """A cut beyond every event (hard selection empty): soft weights are tiny but
    non-zero, background bins are floored at ``yield_floor`` (finite likelihood), the
    expected limit is huge but finite and so is its gradient — training can climb out.
    (Weights that underflow to exactly zero, below ~1e-150 signal events, give a
    saturated limit with a NaN gradient: ``train`` then raises FloatingPointError.)"""
    x_max = float(jnp.max(cuts.standardisation(events)[:, 1]))
    closed = eqx.tree_at(lambda c: c.threshold, cuts, cuts.threshold.at[0].set(x_max + 3.0))
    assert float(jnp.max(closed(events, temperature=1e-9))) == 0.0  # the hard cut keeps nothing
    value, grad = cut_value_and_grad(closed)
    assert np.isfinite(value)
    g = flat(grad)
    assert np.all(np.isfinite(g)) and float(g[0]) > 0  # loosening the cut lowers the limit
    open_value, _ = cut_value_and_grad(cuts)
    assert float(value) > float(open_value) + 3.0  # the limit is > e³ ≈ 20× worse


# --------------------------------------------------------------------------- neos blobs
@pytest.mark.slow
def test_neos_blobs_training_beats_the_classifier_on_held_out_events():
    """examples/neos_blobs: training on CLs (b) and on the expected limit (c) reaches a
    lower expected limit than a BCE classifier (a) on an independent sample."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "neos_blobs"))
    import run as neos_blobs

    results = neos_blobs.run(steps=120, n_train=3000, n_test=10000, seed=0, progress=False)
    median = {name: r["metrics"][2] for name, r in results.items()}
    assert median["neos"] < median["bce"]
    assert median["limit"] < median["bce"]
    cls = {name: r["metrics"][0] for name, r in results.items()}
    assert cls["neos"] < cls["bce"]
