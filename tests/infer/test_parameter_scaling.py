"""A fit must not depend on the units of its parameters.

Newton's method is invariant under a rescaling of the parameters; the projected
Newton solver's handling of the bounds must be too. Before the ε-active set was
measured in units of each parameter's curvature, a POI of scale 1e-5 (a branching
fraction as the parameter itself) was always "near" its bound at 0, ping-ponged
between 0 and the interior, and the fit stopped unconverged after 100 iterations.
"""

import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.model import CountingModel

# Belle B⁰ → Λψ_DS normalisation (docs/counting_model.md); the per-mass inputs are
# illustrative. Events per unit of the branching fraction:
_EVENTS_PER_UNIT_B = 2 * 772e6 * 0.486 * 5.0e-4 * 0.639


def _model(unit: float) -> CountingModel:
    """The on/off counting model with B measured in multiples of ``unit``."""
    return CountingModel.on_off(
        signal_per_poi=_EVENTS_PER_UNIT_B * unit,
        background_mc_count=18.0,
        mc_to_data_ratio=6.0,
        signal_uncertainties={"efficiency": 0.11, "n_b0b0": 0.018},
        background_uncertainty=0.53,
        poi_name="B",
        poi_bounds=(0.0, 2e-4 / unit),
        poi_init=1e-5 / unit,
    )


@pytest.fixture(scope="module")
def fits():
    """Free fits of one data set (a small excess) with B in units of 1 and of 1e-5."""
    results = {}
    for unit in (1.0, 1e-5):
        model = _model(unit)
        data = model.observed_data(n_sr=7.0, n_off=18.0)
        results[unit] = (model, data, infer.fit(data, model))
    return results


def test_fit_converges_with_a_tiny_poi_scale(fits):
    _, _, raw = fits[1.0]
    assert bool(raw.converged)
    assert int(raw.iterations) < 15


def test_fit_is_invariant_under_poi_rescaling(fits):
    _, _, raw = fits[1.0]
    _, _, scaled = fits[1e-5]
    assert float(raw.bestfit[0]) > 0  # an interior best fit: the excess pulls B up
    np.testing.assert_allclose(float(raw.bestfit[0]), float(scaled.bestfit[0]) * 1e-5, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(raw.bestfit[1:]), np.asarray(scaled.bestfit[1:]), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(raw.twice_nll), float(scaled.twice_nll), rtol=1e-12)


def test_fit_at_the_bound_with_a_tiny_poi_scale():
    """No excess: the best fit sits on B = 0, reached, and the fit says converged."""
    model = _model(1.0)
    data = model.observed_data(n_sr=1.0, n_off=18.0)
    result = infer.fit(data, model)
    assert bool(result.converged)
    assert float(result.bestfit[0]) == 0.0


def test_upper_limit_is_invariant_under_poi_rescaling(fits):
    raw_model, raw_data, _ = fits[1.0]
    scaled_model, scaled_data, _ = fits[1e-5]
    raw = infer.upper_limit(raw_data, raw_model, cl=0.90)
    scaled = infer.upper_limit(scaled_data, scaled_model, cl=0.90)
    assert not raw.unconverged_curves()
    np.testing.assert_allclose(float(raw.observed), float(scaled.observed) * 1e-5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(raw.expected), np.asarray(scaled.expected) * 1e-5, rtol=1e-6)
