"""Limits of a likelihood whose conditional fits have two minima: the cold-started
search ends at a jump of CLs; fitting from both the cold and the warm start keeps the
lower minimum and converges (``upper_limit(both_starts=True)``), and the Z'→invisible
scan refits its unconverged hypotheses that way."""

import json
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.analyses.zprime_invisible import fit
from diffana.infer import limits
from diffana.infer.asymptotics import prepare
from diffana.infer.fit import prepare_call
from diffana.infer.settings import resolve_settings

CASES = json.loads((Path(__file__).parents[1] / "data" / "zprime_two_minima.json").read_text())["hypotheses"]
LUMINOSITY_UNCERTAINTY = 0.01
PLUS_TWO_SIGMA = 5  # curve index (limits.CURVE_NAMES): observed, −2σ, −1σ, median, +1σ, +2σ


def _templates(case: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in case.items() if k != "data"}


def _model_and_data(case: dict):
    model = fit.hypothesis_model(_templates(case), LUMINOSITY_UNCERTAINTY)
    return model, jnp.concatenate([jnp.asarray(case["data"]), model.config.auxdata])


@eqx.filter_jit
def _residuals_from(mu, model, data, start_mu):
    """(6,) log CLs − log 0.1 of the six curves at μ, each curve's conditional fits
    started at the cold-started fits' minima at ``start_mu`` (a continuation from
    there)."""
    fit_settings = resolve_settings(None)
    settings = limits.LimitSettings(cl=0.9, test_stat="qtilde", base_distribution="normal", max_iterations=60,
                                    rtol=1e-10)
    prepared = prepare(prepare_call(model, data, fit_settings), model, "qtilde", fit_settings)
    n = prepared.setup.init.shape[0]
    cold = limits.CurveStarts(prepared.setup.init, jnp.broadcast_to(prepared.setup.init, (6, n)))
    there = limits._curve_point(jnp.full(6, start_mu), prepared, settings, fit_settings.solver, cold)
    return limits._curve_point(jnp.full(6, mu), prepared, settings, fit_settings.solver, there.fitted).residual


def test_both_starts_converge_where_the_cold_search_ends_at_a_jump():
    model, data = _model_and_data(CASES[1])
    cold = infer.upper_limit(data, model, cl=0.9)
    assert not bool(cold.curve_converged[PLUS_TWO_SIGMA]) and bool(cold.discontinuous[PLUS_TWO_SIGMA])
    assert any("jumps across the level" in line for line in cold.warnings())
    # the search stops once the bracket has closed on the jump, not at max_iterations
    assert int(cold.iterations) < 40

    both = infer.upper_limit(data, model, cl=0.9, both_starts=True)
    assert bool(both.converged) and not bool(np.any(both.discontinuous)) and both.warnings() == []
    # the other five curves are the cold ones (one minimum there)
    np.testing.assert_allclose(both.observed, cold.observed, rtol=1e-8)
    np.testing.assert_allclose(both.expected[:4], cold.expected[:4], rtol=1e-8)
    limit = float(both.expected[4])
    assert limit > float(cold.expected[4]) * 1.01  # the lower minimum: lower q_A, higher CLs, a higher root

    # independently: at the limit, the fits continued from 0.97 × the limit (where the
    # cold fit lies on the lower branch) put CLs at 0.1, in a lower minimum than the
    # cold-started fit there
    residual = float(_residuals_from(limit, model, data, 0.97 * limit)[PLUS_TWO_SIGMA])
    assert abs(residual) < 1e-5
    asimov = infer.fitted_asimov_data(0.0, data, model)[0]
    cold_fit = infer.fixed_poi_fit(limit, asimov, model)
    below = infer.fixed_poi_fit(0.97 * limit, asimov, model)
    continued = infer.fixed_poi_fit(limit, asimov, model, init_pars=below.bestfit)
    assert float(continued.twice_nll) < float(cold_fit.twice_nll) - 1e-3


def test_both_starts_excludes_warm_start():
    model, data = _model_and_data(CASES[1])
    with pytest.raises(ValueError, match="exclude each other"):
        infer.upper_limit(data, model, warm_start=True, both_starts=True)


def test_scan_refits_unconverged_hypotheses_from_both_starts():
    case = CASES[0]
    stacked = {k: np.asarray(v, np.float64)[None] for k, v in _templates(case).items()}
    counts = np.asarray(case["data"], np.float64)[None]
    observed, expected, converged = fit.scan_limits(stacked, counts, LUMINOSITY_UNCERTAINTY, 0.9, chunk_bins=40)
    assert converged.tolist() == [True]
    # the cold scan alone leaves it unconverged ...
    cold = fit.run_chunked(fit._compiled_limit_scan(LUMINOSITY_UNCERTAINTY, 0.9), stacked, counts, chunk_bins=40)
    assert cold[2].tolist() == [False]
    # ... and the retry is the both-starts limit of the hypothesis
    model, data = _model_and_data(case)
    both = infer.upper_limit(data, model, cl=0.9, both_starts=True)
    sigma_ref = case["sigma_ref"]
    np.testing.assert_allclose(observed[0], float(both.observed) * sigma_ref, rtol=1e-8)
    np.testing.assert_allclose(expected[0], np.asarray(both.expected) * sigma_ref, rtol=1e-8)
