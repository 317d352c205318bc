"""The on/off counting likelihood (diffana.model.CountingModel) as a second model of
diffana.infer's protocol: closed-form asymptotic CLs for a single Poisson count,
agreement with pyhf (and with diffana's HistFactory Model) on the same workspace,
gradients against finite differences, toys, stacking and bad input.

Compiles are shared through module-level fixtures: one model structure without
nuisances (the closed-form case) and one with four (the Belle-like case).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.infer.protocol import gradient_and_hessian
from diffana.model import CountingModel, LogNormalNuisance, load_workspace

CL = 0.90
SIGNAL_UNCERTAINTIES = {"efficiency": 0.12, "n_bb": 0.023, "b_lambda": 0.008}
BACKGROUND_UNCERTAINTY = 0.53


# --- the closed form: one Poisson count, known background -----------------------------
#
# With b known and no nuisances the only parameter is μ (s = μ·S). For n observed:
#   t(μ; n) = −2 ln [P(n; μS + b) / P(n; n)] = 2[(μS + b) − n + n ln(n / (μS + b))],
#   μ̂ = max((n − b)/S, 0)  (POI bounded below at 0),
#   q̃_μ = t(μ; n) − t(μ̂; n) for μ̂ ≤ μ, else 0;
# on the Asimov data of μ = 0 (n = b, μ̂ = 0): q_A(μ) = 2[μS − b ln(1 + μS/b)].
# CLs as pyhf's asymptotic calculator (arXiv:1007.1727): with δ = √q − √q_A, or
# (q − q_A)/(2√q_A) where √q > √q_A: CLs+b = Φ(−(δ + √q_A)), CLb = Φ(−δ); the
# expected CLs at nσ are Φ(−(nσ + √q_A)) / Φ(−nσ), nσ = 2, 1, 0, −1, −2.


def _t(mu, n, b, s):
    rate = mu * s + b
    return 2.0 * (rate - n + (n * math.log(n / rate) if n > 0 else 0.0))


def closed_form_qtilde(mu, n, b, s):
    muhat = max((n - b) / s, 0.0)
    return 0.0 if muhat > mu else _t(mu, n, b, s) - _t(muhat, n, b, s)


def closed_form_qasimov(mu, b, s):
    return 2.0 * (mu * s - b * math.log1p(mu * s / b))


def closed_form_cls(mu, n, b, s):
    """(observed CLs, [expected CLs at −2σ … +2σ])."""
    q, qa = closed_form_qtilde(mu, n, b, s), closed_form_qasimov(mu, b, s)
    sqrt_q, sqrt_qa = math.sqrt(q), math.sqrt(qa)
    delta = sqrt_q - sqrt_qa if sqrt_q <= sqrt_qa else (q - qa) / (2.0 * sqrt_qa)
    observed = norm.cdf(-(delta + sqrt_qa)) / norm.cdf(-delta)
    expected = [norm.cdf(-(k + sqrt_qa)) / norm.cdf(-k) for k in (2.0, 1.0, 0.0, -1.0, -2.0)]
    return observed, expected


def closed_form_limits(n, b, s):
    """(observed, [expected −2σ … +2σ]) roots of CLs = 1 − CL."""
    alpha = 1.0 - CL

    def root(curve):
        return brentq(lambda mu: curve(mu) - alpha, 1e-9, 1e3, xtol=1e-15, rtol=1e-14)

    observed = root(lambda mu: closed_form_cls(mu, n, b, s)[0])
    expected = [root(lambda mu, k=k: closed_form_cls(mu, n, b, s)[1][k]) for k in range(5)]
    return observed, expected


KNOWN_B, KNOWN_S, TAU = 2.5, 1.7, 4.0


def known_background_model(signal_per_poi=KNOWN_S):
    return CountingModel.on_off(signal_per_poi, TAU * KNOWN_B, TAU, background_known=True, poi_bounds=(0.0, 100.0))


@pytest.fixture(scope="module")
def known_model():
    return known_background_model()


@pytest.mark.parametrize("n_sr", [7.0, 1.0])  # above b (μ̂ > 0) and below it (μ̂ = 0 on its bound)
def test_upper_limit_matches_closed_form(known_model, n_sr):
    data = known_model.observed_data(n_sr, TAU * KNOWN_B)
    result = infer.upper_limit(data, known_model, cl=CL)
    observed, expected = closed_form_limits(n_sr, KNOWN_B, KNOWN_S)
    assert bool(result.converged)
    np.testing.assert_allclose(float(result.observed), observed, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(result.expected), expected, rtol=1e-6)


@pytest.mark.parametrize("mu", [0.5, 2.0, 6.0])
def test_hypotest_matches_closed_form(known_model, mu):
    n_sr = 7.0
    data = known_model.observed_data(n_sr, TAU * KNOWN_B)
    result = infer.hypotest(mu, data, known_model)
    observed, expected = closed_form_cls(mu, n_sr, KNOWN_B, KNOWN_S)
    np.testing.assert_allclose(float(result.cls_obs), observed, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.cls_exp), expected, rtol=1e-8)
    np.testing.assert_allclose(float(result.test_statistic), closed_form_qtilde(mu, n_sr, KNOWN_B, KNOWN_S),
                               rtol=1e-8, atol=1e-12)


# --- the full model against pyhf ----------------------------------------------------


def belle_like_model(signal_per_poi=2.0, background_mc_count=18.0):
    """Four nuisances: three on the signal, one on the signal-region background."""
    return CountingModel.on_off(signal_per_poi, background_mc_count, 6.0, SIGNAL_UNCERTAINTIES,
                                BACKGROUND_UNCERTAINTY, poi_name="bf")


@pytest.fixture(scope="module")
def full_model():
    return belle_like_model()


@pytest.fixture(scope="module")
def full_data(full_model):
    return full_model.observed_data(5.0, 18.0)


@pytest.fixture(scope="module")
def pyhf_pair(full_model, full_data):
    """pyhf's model and data of the full model's workspace (normsys code1), and the
    map from pyhf's parameter order to ours."""
    pyhf = pytest.importorskip("pyhf")
    workspace = pyhf.Workspace(full_model.to_pyhf_workspace(full_data))
    model = workspace.model(modifier_settings={"normsys": {"interpcode": "code1"},
                                               "histosys": {"interpcode": "code0"}})
    order = [full_model.config.par_index(name) for name in model.config.par_names]
    return model, workspace.data(model), order


def test_twice_nll_equals_pyhf_logpdf(full_model, full_data, pyhf_pair):
    """The same −2 ln L, term for term, at random parameter points."""
    model, data, order = pyhf_pair
    rng = np.random.default_rng(7)
    for _ in range(5):
        pars = np.asarray(full_model.config.init) + rng.normal(0.0, 0.5, full_model.config.npars)
        pars[:2] = np.abs(pars[:2])
        ours = float(full_model.twice_nll(pars, full_data))
        theirs = float(-2.0 * model.logpdf(pars[order], data)[0])
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("poi", [1.0, 3.0])
def test_hypotest_matches_pyhf_and_histfactory_model(full_model, full_data, pyhf_pair, poi):
    pyhf = pytest.importorskip("pyhf")
    model, data, order = pyhf_pair
    previous = pyhf.get_backend()
    # SLSQP stops at its tolerance: the default (1e-6 on −2 ln L changes) moves
    # CLs in the 5th digit; 1e-12 brings pyhf to the minimum our Newton fits reach.
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        cls_obs, cls_exp = pyhf.infer.hypotest(poi, data, model, test_stat="qtilde", return_expected_set=True)
        qtilde = pyhf.infer.test_statistics.qmu_tilde(poi, data, model, model.config.suggested_init(),
                                                      model.config.suggested_bounds(), model.config.suggested_fixed())
        pyhf_fit, pyhf_twice_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    finally:
        pyhf.set_backend(*previous)
    ours = infer.hypotest(poi, full_data, full_model)
    assert bool(ours.converged)
    np.testing.assert_allclose(float(ours.cls_obs), float(cls_obs), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.cls_exp), np.ravel(cls_exp), rtol=1e-6)
    # Where pyhf's fits stop: its q̃ is ours, and its free fit's −2 ln L is our
    # −2 ln L at its parameters (the same function).
    np.testing.assert_allclose(float(ours.test_statistic), float(qtilde), rtol=1e-6, atol=1e-9)
    our_pars = np.empty(len(order))
    our_pars[order] = np.asarray(pyhf_fit)
    np.testing.assert_allclose(float(full_model.twice_nll(our_pars, full_data)), float(pyhf_twice_nll), rtol=1e-12)
    # The same workspace through diffana's HistFactory Model: the same likelihood,
    # so the same CLs to the fits' precision.
    workspace = load_workspace(full_model.to_pyhf_workspace(full_data))
    histfactory = workspace.model(normsys_interp="code1")
    theirs = infer.hypotest(poi, workspace.data(histfactory), histfactory)
    np.testing.assert_allclose(float(ours.cls_obs), float(theirs.cls_obs), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ours.cls_exp), np.asarray(theirs.cls_exp), rtol=1e-9)


# --- gradients ---------------------------------------------------------------------


def _central_difference(function, x, step):
    return (function(x + step) - function(x - step)) / (2.0 * step)


def test_expected_limit_gradient_wrt_signal_per_poi(known_model):
    data = known_model.observed_data(7.0, TAU * KNOWN_B)

    def median_expected_limit(signal_per_poi):
        model = eqx.tree_at(lambda m: m.signal_per_poi, known_model, signal_per_poi)
        return infer.upper_limit(data, model, cl=CL).expected[2]

    # One compiled program for the forward and backward pass (half the compile
    # time of an eager jax.grad around the jitted limit).
    gradient = float(eqx.filter_jit(jax.grad(median_expected_limit))(jnp.asarray(KNOWN_S)))
    numeric = _central_difference(lambda s: float(median_expected_limit(jnp.asarray(s))), KNOWN_S, 1e-4)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5)
    # The POI enters only as μ·S, so the limit is exactly ∝ 1/S: d μ*/dS = −μ*/S.
    limit = float(median_expected_limit(jnp.asarray(KNOWN_S)))
    np.testing.assert_allclose(gradient, -limit / KNOWN_S, rtol=1e-8)


def test_deviance_gradient_and_hessian_against_finite_differences(full_model, full_data):
    pars = jnp.asarray([1.3, 2.7, 0.3, -0.4, 0.2, 0.5])
    step = 1e-5
    shifts = step * jnp.eye(full_model.config.npars)

    @eqx.filter_jit  # one compile for the exact derivatives and their differences
    def exact_and_numeric(model):
        deviance = lambda p: model.deviance(p, full_data)  # noqa: E731
        grad = jax.grad(deviance)
        numeric_gradient = jax.vmap(lambda h: (deviance(pars + h) - deviance(pars - h)) / (2.0 * step))(shifts)
        numeric_hessian = jax.vmap(lambda h: (grad(pars + h) - grad(pars - h)) / (2.0 * step))(shifts)
        # The protocol's autodiff derivatives, which the fits use for this model.
        return gradient_and_hessian(model, pars, full_data), (numeric_gradient, numeric_hessian)

    (gradient, hessian), (numeric_gradient, numeric_hessian) = exact_and_numeric(full_model)
    np.testing.assert_allclose(np.asarray(gradient), np.asarray(numeric_gradient), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(hessian), np.asarray(numeric_hessian), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(hessian), np.asarray(hessian).T, rtol=1e-12, atol=1e-12)


def test_deviance_is_exact_at_large_counts():
    """The log-ratio form: at 1e12 events the deviance of a 1e-6 relative shift is
    ≈ n u² = 1 exactly, where n log ν − ν − lgamma(n + 1) would round off."""
    model = CountingModel.on_off(1.0, 6e12, 6.0, background_known=True)
    pars = model.config.init.at[1].set(1e12 * (1 + 1e-6)).at[0].set(0.0)
    data = model.observed_data(1e12, 6e12)
    # Each count sees a relative shift u = 1e-6: deviance = 2n(u − ln(1 + u)).
    u = 1e-6
    expected = 2.0 * 7e12 * (u - math.log1p(u))
    np.testing.assert_allclose(float(model.deviance(pars, data)), expected, rtol=1e-9)


# --- stacking: one model per mass hypothesis -----------------------------------------


def test_stacked_models_vmap(full_model):
    signals = [1.0, 2.0, 4.0]
    models = [belle_like_model(s) for s in signals]
    stacked = infer.stack_models(models)
    data = jnp.stack([m.observed_data(5.0, 18.0) for m in models])
    batched = infer.stacked_hypotest(2.0, data, stacked)
    for index, model in enumerate(models):
        single = infer.hypotest(2.0, data[index], model)
        np.testing.assert_allclose(float(batched.cls_obs[index]), float(single.cls_obs), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(batched.cls_exp[index]), np.asarray(single.cls_exp), rtol=1e-10)


def test_models_built_inside_vmap(full_model):
    """A model per mass built from traced yields: arrays are leaves."""
    signals = jnp.asarray([1.0, 2.0, 4.0])
    built = jax.vmap(lambda s: belle_like_model(s))(signals)
    reference = infer.stack_models([belle_like_model(float(s)) for s in signals])
    for ours, theirs in zip(jax.tree_util.tree_leaves(built), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


# --- toys ------------------------------------------------------------------------


def test_sample_data_moments(full_model):
    pars = jnp.asarray([1.5, 3.2, 0.4, -0.3, 0.1, 0.7])
    n_toys = 20000
    toys = jax.jit(lambda key: full_model.sample_data(key, pars, n_toys))(jax.random.key(3))
    assert toys.shape == (n_toys, 2 + 4)
    expected = np.asarray(full_model.expected_data(pars))
    mean = np.asarray(toys.mean(axis=0))
    # Main counts: Poisson (variance = rate); aux: unit normals around the pulls.
    width = np.sqrt(np.concatenate([expected[:2], np.ones(4)]) / n_toys)
    assert np.all(np.abs(mean - expected) < 5 * width), (mean, expected)
    np.testing.assert_allclose(np.asarray(toys[:, 2:].var(axis=0)), 1.0, atol=0.05)
    np.testing.assert_allclose(np.asarray(toys[:, :2].var(axis=0)), expected[:2], rtol=0.05)


def test_hypotest_toys_agree_with_asymptotics_at_moderate_counts():
    """b ≈ 20 events in the signal region, measured with 120 simulated events: the
    asymptotic CLs (0.225) is within the toys' errors (3000 toys, measured once:
    0.235 ± 0.011; these 200 give 0.32 ± 0.05, the median expected 0.19 against
    0.188)."""
    model = belle_like_model(signal_per_poi=10.0, background_mc_count=120.0)
    data = model.observed_data(22.0, 120.0)
    poi = 1.2
    asymptotic = infer.hypotest(poi, data, model)
    toys = infer.hypotest_toys(poi, data, model, key=11, n_toys=200)
    assert int(toys.n_failed_fits) == 0
    assert 0.05 < float(asymptotic.cls_obs) < 0.5  # where 200 toys resolve CLs
    tolerance = 3.0 * float(toys.cls_obs_error) + 0.01
    assert abs(float(toys.cls_obs) - float(asymptotic.cls_obs)) < tolerance, (toys.cls_obs, asymptotic.cls_obs)
    median_tolerance = 3.0 * float(toys.cls_exp_error[2]) + 0.01
    assert abs(float(toys.cls_exp[2]) - float(asymptotic.cls_exp[2])) < median_tolerance
    np.testing.assert_allclose(float(toys.test_statistic), float(asymptotic.test_statistic), rtol=1e-8)


# --- bad input -------------------------------------------------------------------


def _one_line_error(function, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as error:
        function(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"signal_per_poi": 0.0}, "signal_per_poi"),
        ({"signal_per_poi": float("nan")}, "signal_per_poi"),
        ({"background_mc_count": -1.0}, "background_mc_count"),
        ({"mc_to_data_ratio": 0.0}, "mc_to_data_ratio"),
        ({"mc_to_data_ratio": -6.0}, "mc_to_data_ratio"),
        ({"signal_uncertainties": {"efficiency": -0.1}}, "signal_uncertainties['efficiency']"),
        ({"signal_uncertainties": {"efficiency": 0.0}}, "signal_uncertainties['efficiency']"),
        ({"background_uncertainty": float("inf")}, "background_uncertainty"),
        ({"poi_bounds": (1.0, 0.0)}, "poi_bounds"),
        ({"poi_bounds": 5.0}, "poi_bounds"),
        ({"background_bounds": (-1.0, 10.0)}, "background_bounds"),
        ({"poi_name": "b0"}, "poi_name"),
    ],
)
def test_bad_constructor_arguments(kwargs, named):
    arguments = {"signal_per_poi": 2.0, "background_mc_count": 18.0, **kwargs}
    assert named in _one_line_error(CountingModel.on_off, **arguments)


@pytest.mark.parametrize(
    "nuisances, named",
    [
        ([LogNormalNuisance("eff", signal_kappa=0.0)], "nuisances[0].signal_kappa"),
        ([LogNormalNuisance("eff", background_kappa=-1.2)], "nuisances[0].background_kappa"),
        ([LogNormalNuisance("eff")], "nuisances[0]"),
        ([LogNormalNuisance("eff", 1.1), LogNormalNuisance("eff", 1.2)], "nuisances[1].name"),
        ([LogNormalNuisance("", 1.1)], "nuisances[0].name"),
    ],
)
def test_bad_nuisances(nuisances, named):
    message = _one_line_error(CountingModel.build, signal_per_poi=1.0, background=2.0, nuisances=nuisances)
    assert named in message


@pytest.mark.parametrize(
    "data, named",
    [
        ([5.0, 18.0], "expects 6 values"),
        ([5.0, 18.0, 0.0, 0.0, 0.0, float("nan")], "aux[background]"),
        ([-1.0, 18.0, 0.0, 0.0, 0.0, 0.0], "n_sr"),
        ([5.0, -2.0, 0.0, 0.0, 0.0, 0.0], "n_off"),
    ],
)
def test_bad_data(full_model, data, named):
    assert named in _one_line_error(full_model.check_data, data)
    assert named in _one_line_error(infer.hypotest, 1.0, data, full_model)


def test_bad_observed_counts(full_model):
    assert "n_sr" in _one_line_error(full_model.observed_data, -3, 18)
    assert "n_off" in _one_line_error(full_model.observed_data, 3, float("nan"))


def test_protocol_and_names(full_model):
    from diffana.infer.protocol import StatisticalModel, check_is_model

    check_is_model(full_model)
    assert isinstance(full_model, StatisticalModel)
    assert full_model.config.par_names == ["bf", "b0", "alpha_efficiency", "alpha_n_bb", "alpha_b_lambda",
                                           "alpha_background"]
    assert full_model.config.nmaindata == 2 and full_model.config.nauxdata == 4
    np.testing.assert_allclose(np.asarray(full_model.config.init), [1.0, 3.0, 0, 0, 0, 0])
