"""Shape parameters between generated masses, against numpy and scipy's PCHIP."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

import diffana  # noqa: F401  (float64)
from diffana.shapes import DoubleCrystalBall, ShapeError, interpolate, interpolate_parameters

MASSES = np.array([0.5, 1.0, 2.0, 4.0, 7.0])
TABLE = {"sigma": np.array([0.004, 0.007, 0.013, 0.03, 0.05]),
         "alpha_low": np.array([1.2, 1.3, 1.5, 1.4, 1.45]),
         "n_low": np.array([3.0, 3.0, 2.5, 2.2, 2.0])}


def test_linear_and_monotone_cubic():
    query = np.linspace(0.5, 7.0, 53)
    values = np.stack(list(TABLE.values()), axis=-1)
    linear = interpolate(MASSES, values, query)
    expected = np.stack([np.interp(query, MASSES, v) for v in TABLE.values()], axis=-1)
    assert np.max(np.abs(linear - expected)) < 1e-15
    cubic = interpolate(MASSES, values, query, method="monotone-cubic")
    assert np.max(np.abs(cubic - PchipInterpolator(MASSES, values)(query))) < 1e-15
    outside = np.array([0.1, 9.0])
    assert np.max(np.abs(interpolate(MASSES, values, outside, "monotone-cubic", extrapolate=True)
                         - PchipInterpolator(MASSES, values, extrapolate=True)(outside))) < 1e-14
    params = interpolate_parameters(MASSES, TABLE, 3.0)
    assert set(params) == set(TABLE) and abs(float(params["sigma"]) - 0.0215) < 1e-15


def test_out_of_range_is_an_error_unless_extrapolating():
    with pytest.raises(ShapeError, match=r"^interpolate: mass 8.0 is outside the generated masses \[0.5, 7.0\]"):
        interpolate(MASSES, TABLE["sigma"], 8.0)
    assert abs(float(interpolate(MASSES, TABLE["sigma"], 8.0, extrapolate=True)) - 0.05 - 0.02 / 3) < 1e-15
    with pytest.raises(Exception, match="outside the generated masses"):
        eqx.filter_jit(lambda m: interpolate(MASSES, TABLE["sigma"], m))(8.0)


def test_shape_at_a_mass_under_jit_vmap_and_grad():
    """Parameters interpolated inside a vmapped scan feed a shape; gradients in the
    mass are finite (also on a knot, where the piecewise forms meet)."""
    edges_offsets = jnp.linspace(-0.1, 0.1, 21)

    def bins(mass):
        params = interpolate_parameters(MASSES, TABLE, mass, method="monotone-cubic")
        shape = DoubleCrystalBall(mass, params["sigma"], params["alpha_low"], params["n_low"],
                                  2.0, 5.0, mass - 0.1, mass + 0.1)
        return shape.bin_integrals(mass + edges_offsets)

    scan = jax.jit(jax.vmap(bins))(jnp.array([0.7, 2.0, 5.5]))
    assert scan.shape == (3, 20) and np.allclose(scan.sum(axis=1), 1.0, atol=1e-14)
    gradient = jax.grad(lambda m: bins(m)[12])(2.0)
    assert np.isfinite(gradient)


@pytest.mark.parametrize("call, message", [
    (lambda: interpolate([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], 1.5), "interpolate: masses must be strictly increasing"),
    (lambda: interpolate([1.0], [1.0], 1.0), "interpolate: needs masses \\(K,\\) with K >= 2"),
    (lambda: interpolate([1.0, 2.0], [1.0, 2.0], 1.5, method="spline"), "interpolate: method must be one of"),
])
def test_bad_input(call, message):
    with pytest.raises(ShapeError, match="^" + message):
        call()
