"""Properties every shape must have, checked on each: normalisation on the range,
bin integrals summing to 1 over a partition, cdf/sf/pdf consistency, gradients equal
to central finite differences (also on the Crystal Ball tail junctions and at an
exponential slope of 0), finite far-tail values and gradients, jit equal to eager,
and vmap over a stack of shapes with different parameters and ranges equal to a loop.

Each shape's functions are compiled once (jax.jit with the shape as an argument) and
reused for the finite differences: the file stays fast on two cores.
"""

import functools
import zlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import diffana  # noqa: F401  (float64)
from diffana import shapes

RNG = np.random.default_rng(3)
KDE_SAMPLE = np.concatenate([RNG.normal(2.0, 0.4, 150), RNG.uniform(0.0, 5.0, 50)])

# name -> (build(offset) for three variants with different parameters and ranges,
#          points where the density has a kink or junction: quad's break points)
SHAPES = {
    "Gaussian": (lambda o: shapes.Gaussian(1.0 + o, 0.5 + 0.1 * o, -1.0 - o, 3.0 + o), []),
    "CrystalBall": (lambda o: shapes.CrystalBall(1.0 + o, 0.5, 1.2 + 0.2 * o, 2.5 + o, -4.0 - o, 3.0), [1.0 - 0.6]),
    "CrystalBall-high": (lambda o: shapes.CrystalBall(1.0, 0.5 + 0.1 * o, 0.8, 4.0 + o, -1.0, 6.0 + o, side="high"), [1.4]),
    "DoubleCrystalBall": (lambda o: shapes.DoubleCrystalBall(1.0 + 0.1 * o, 0.3, 1.1, 3.0 + o, 0.7 + 0.1 * o, 5.0, -3.0, 5.0 - o), [0.67, 1.21]),
    "CrystalBallSum": (lambda o: shapes.CrystalBallSum(1.0, jnp.array([0.3, 0.8 + 0.1 * o]), jnp.array([1.5, 2.0]),
                                                       jnp.array([3.0, 2.0 + o]), jnp.array([0.6 - 0.1 * o]), -2.0 - o, 4.0), [0.55, -0.6 - 0.2 * 0]),
    "DoubleCrystalBallSum": (lambda o: shapes.DoubleCrystalBallSum(
        1.0, jnp.array([0.3, 0.8]), jnp.array([1.5, 2.0]), jnp.array([3.0, 2.0 + o]), jnp.array([1.0, 1.2]),
        jnp.array([4.0, 6.0]), jnp.array([0.6 + 0.1 * o]), -2.0, 4.0 + o), [0.55, -0.6, 1.3, 1.96]),
    "BreitWigner": (lambda o: shapes.BreitWigner(2.0 + 0.1 * o, 0.4 + 0.1 * o, -1.0 - o, 6.0), []),
    "Voigtian": (lambda o: shapes.Voigtian(2.0 + 0.1 * o, 0.4, 0.3 + 0.1 * o, -1.0, 6.0 + o), []),
    "Bernstein": (lambda o: shapes.Bernstein(jnp.array([1.0, 0.2 + o, 0.0, 2.0]), -1.0 - o, 3.0), []),
    "Chebyshev": (lambda o: shapes.Chebyshev(jnp.array([0.3, -0.2 + 0.1 * o, 0.05]), 0.0, 4.0 + o), []),
    "Exponential": (lambda o: shapes.Exponential(-0.8 + 0.3 * o, 0.0, 5.0 + o), []),
    "Exponential-flat": (lambda o: shapes.Exponential(0.0 * o, 0.0 - o, 5.0), []),
    "KDE": (lambda o: shapes.KDE(KDE_SAMPLE, -0.5 - o, 5.0, bandwidth=0.3 + 0.05 * o), []),
}
NAMES = sorted(SHAPES)


def edges_of(shape, inset=0.0):
    """13 edges: 12 unequal bins partitioning the range (``inset`` > 0: the outer edges
    moved inside the range by that fraction of its width)."""
    lower, upper = float(shape.lower), float(shape.upper)
    u = np.array([0.0, 0.03, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.85, 0.97, 1.0])
    return lower + (upper - lower) * (inset + (1.0 - 2.0 * inset) * u)


@jax.jit
def _evaluate(shape, edges, x):
    return {"bins": shape.bin_integrals(edges), "pdf": shape.pdf(x), "log_pdf": shape.log_pdf(x),
            "cdf": shape.cdf(x), "sf": shape.sf(x)}


@jax.jit
def _weighted_bins(shape, edges, weights):
    return jnp.dot(weights, shape.bin_integrals(edges))


_weighted_bins_gradient = jax.jit(jax.grad(_weighted_bins))


def _pdf_at(shape, x):
    return shape.pdf(x)


_pdf_jit = jax.jit(_pdf_at)


@functools.cache
def case(name):
    build, junctions = SHAPES[name]
    return build(0.0), junctions


def _central_differences(function, shape, step=1e-6):
    """{leaf path: ∂function/∂leaf} by central differences, for every float leaf element."""
    leaves, treedef = jax.tree_util.tree_flatten(shape)
    gradients = []
    for index, leaf in enumerate(leaves):
        leaf = np.asarray(leaf, dtype=float)
        gradient = np.zeros_like(leaf)
        for element in np.ndindex(leaf.shape):
            h = step * max(1.0, abs(leaf[element]))
            values = []
            for sign in (1.0, -1.0):
                moved = leaf.copy()
                moved[element] += sign * h
                changed = list(leaves)
                changed[index] = moved
                values.append(float(function(jax.tree_util.tree_unflatten(treedef, changed))))
            gradient[element] = (values[0] - values[1]) / (2 * h)
        gradients.append(gradient)
    return gradients


JUNCTIONS = {
    "CrystalBall": [lambda s: s.mean - s.alpha * s.sigma],
    "CrystalBall-high": [lambda s: s.mean + s.alpha * s.sigma],
    "DoubleCrystalBall": [lambda s: s.mean - s.alpha_low * s.sigma, lambda s: s.mean + s.alpha_high * s.sigma],
}
"""Where a Crystal Ball's Gaussian core meets a power-law tail."""


@pytest.mark.parametrize("name", NAMES)
def test_shape_properties(name):
    """One test per shape, so each compiled function is compiled once per shape."""
    shape, junctions = case(name)
    edges = edges_of(shape)
    lower, upper = float(shape.lower), float(shape.upper)
    x = np.linspace(lower - 0.5, upper + 0.5, 29)

    # --- normalisation, partition, cdf/sf/log_pdf consistency --------------------------
    values = jax.tree.map(np.asarray, _evaluate(shape, edges, x))
    assert abs(np.sum(values["bins"]) - 1.0) < 1e-13
    inside = (x >= lower) & (x <= upper)
    assert np.all(values["pdf"][~inside] == 0.0)
    assert np.allclose(values["cdf"] + values["sf"], 1.0, rtol=0, atol=1e-14)
    assert np.all(values["cdf"][x <= lower] == 0.0)
    assert np.all(values["cdf"][x >= upper] == 1.0)
    assert np.allclose(np.exp(values["log_pdf"][inside]), values["pdf"][inside], rtol=1e-13, atol=0)
    # the pdf integrates to 1 over the range (adaptive quadrature of the compiled pdf) ...
    pdf = lambda v: float(_pdf_jit(shape, v))
    points = [p for p in junctions if lower < p < upper] or None
    total, _ = quad(pdf, lower, upper, points=points, epsabs=0, epsrel=1e-13, limit=500)
    assert abs(total - 1.0) < 1e-12
    # ... and the bin integrals are its integrals
    for i in (3, len(edges) - 2):
        a, b = float(edges[i]), float(edges[i + 1])
        expected = quad(pdf, a, b, epsabs=0, epsrel=1e-13, points=[p for p in junctions if a < p < b] or None)[0]
        assert abs(float(values["bins"][i]) - expected) <= 1e-11 * expected

    # --- gradients of bin integrals equal central differences ---------------------------
    # On edges strictly inside the range: a bin integral is only C⁰ in a range bound that
    # sits on its edge (the edge is clipped on one side only); there autodiff returns the
    # mean of the one-sided derivatives and central differences match it only to O(h).
    inner_edges = edges_of(shape, inset=1e-3)
    small = shape
    if name == "KDE":  # 200 sample leaves: differentiate a 6-event KDE
        small = eqx.tree_at(lambda s: s.sample, shape, replace=jnp.asarray(KDE_SAMPLE[:6]))
        small = eqx.tree_at(lambda s: s.weights, small, replace=jnp.ones(6))
    # weights seeded by the shape's name: the same in any test order or xdist worker
    weights = np.random.default_rng(zlib.crc32(name.encode())).uniform(-1.0, 1.0, len(edges) - 1)
    _assert_gradients_match(small, inner_edges, weights)

    # --- on a Crystal Ball's tail junction: pdf gradients in x and in every parameter,
    #     and the gradients of bins with an edge on the junction (the density is C¹) -----
    for junction in JUNCTIONS.get(name, []):
        at = float(junction(shape))
        shape_gradient, x_gradient = _pdf_gradients(shape, at)
        h = 1e-6
        assert abs(float(x_gradient) - (pdf(at + h) - pdf(at - h)) / (2 * h)) < 1e-5
        expected = _central_differences(lambda s: _pdf_jit(s, at), shape, step=1e-7)
        for got, want in zip(jax.tree_util.tree_leaves(shape_gradient), expected):
            assert np.all(np.isfinite(got)) and np.max(np.abs(np.asarray(got) - want)) < 1e-5
        on_junction = np.array(inner_edges)
        on_junction[np.argmin(np.abs(on_junction[1:-1] - at)) + 1] = at
        _assert_gradients_match(shape, on_junction, weights)

    # --- vmap over a stack with different parameters and ranges equals a loop ------------
    build, _ = SHAPES[name]
    variants = [shape] + [build(float(o)) for o in (1, 2)]
    stacked_edges = np.stack([edges_of(v) for v in variants])
    stacked_x = np.stack([np.linspace(float(v.lower) - 0.5, float(v.upper) + 0.5, 29) for v in variants])
    batched = _batched(shapes.stack(variants), stacked_edges, stacked_x)
    for i, variant in enumerate(variants):
        single = _evaluate(variant, stacked_edges[i], stacked_x[i])
        # equal up to a few ulps: XLA may vectorise erf/log1p differently under vmap
        assert np.allclose(batched[0][i], single["bins"], rtol=1e-13, atol=0)
        assert np.allclose(batched[1][i], single["pdf"], rtol=1e-13, atol=0)


@jax.jit
@jax.vmap
def _batched(shape, edges, x):
    return shape.bin_integrals(edges), shape.pdf(x)


def _assert_gradients_match(shape, edges, weights):
    gradient = jax.tree_util.tree_leaves(_weighted_bins_gradient(shape, edges, weights))
    expected = _central_differences(lambda s: _weighted_bins(s, edges, weights), shape)
    scale = max(np.max(np.abs(g)) for g in expected)
    for got, want in zip(gradient, expected):
        assert np.all(np.isfinite(got))
        assert np.max(np.abs(np.asarray(got) - want)) < 1e-6 * scale


_pdf_gradients = jax.jit(jax.grad(_pdf_at, argnums=(0, 1)))


def test_far_tails_are_finite_with_finite_gradients():
    """Points and bins hundreds of widths out: log_pdf finite (pdf may underflow to 0),
    gradients finite, no NaN from the branch that is not taken. (The Voigtian's far
    tails are Breit–Wigner tails; its gradients are checked in test_shape_properties.)"""
    cases = [
        shapes.Gaussian(0.0, 1.0, -40.0, 40.0),
        shapes.CrystalBall(0.0, 1.0, 1.0, 3.0, -1e4, 40.0),
        shapes.DoubleCrystalBall(0.0, 1.0, 1.0, 3.0, 2.0, 1.5, -1e4, 1e4),
        shapes.BreitWigner(0.0, 1.0, -1e6, 1e6),
        shapes.Exponential(-3.0, 0.0, 300.0),
    ]
    for shape in cases:
        x = jnp.asarray([float(shape.lower), 0.999 * float(shape.lower), 0.999 * float(shape.upper), float(shape.upper)])
        edges = jnp.sort(jnp.concatenate([x, jnp.asarray([0.5])]))
        log_pdf, gradient, x_gradient = _far_tail_values(shape, x, edges)
        name = type(shape).__name__
        assert np.all(np.isfinite(log_pdf)), name
        assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(gradient)), name
        assert np.all(np.isfinite(x_gradient)), name


@jax.jit
def _far_tail_values(shape, x, edges):
    gradient = jax.grad(lambda s: jnp.sum(s.log_pdf(x)) + jnp.sum(s.bin_integrals(edges)))(shape)
    x_gradient = jax.grad(lambda v: jnp.sum(shape.pdf(v)))(x)
    return shape.log_pdf(x), gradient, x_gradient


def test_stack_needs_shapes():
    with pytest.raises(shapes.ShapeError, match="^stack: needs at least one shape"):
        shapes.stack([])
