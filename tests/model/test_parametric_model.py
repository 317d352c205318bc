"""The parametric bump-hunt model (diffana.model.parametric): a signal shape of
diffana.shapes on a free Bernstein background in one fit window.

What is checked, against what:
- fits against iminuit's MIGRAD minimising the same −2 ln L written here in numpy
  (numba-stats double Crystal Ball, scipy beta CDFs for the Bernstein basis);
- hypotest and upper limits (90% and 95% CL) against pyhf on the same likelihood
  written as a HistFactory workspace (signal histogram with a normfactor POI, one
  sample per Bernstein basis polynomial with a free normfactor each);
- implicit gradients of the fitted yield w.r.t. the data and of the upper limit
  w.r.t. the signal width against central finite differences;
- a vmapped fit of a stack of windows against a loop of single fits;
- toys' moments; one-line errors for bad input.

Compiles are shared through module-level fixtures (one structure per purpose).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln

import diffana  # noqa: F401  (float64)
from diffana import infer
from diffana.errors import InvalidModel
from diffana.model.parametric import RATE_FLOOR, ParametricModel, bernstein_bin_fractions, sliding_windows
from diffana.shapes import DoubleCrystalBall, Gaussian

LOWER, UPPER = 2.0, 3.0  # GeV, the fit window
MEAN, SIGMA = 2.5, 0.02  # GeV
DCB_TAILS = dict(alpha_low=1.3, n_low=3.0, alpha_high=1.6, n_high=5.0)
BACKGROUND = np.array([900.0, 500.0, 700.0, 400.0])  # events per basis polynomial (cubic)
SIGNAL_EVENTS = 60.0
MASS_SCALE, RESOLUTION = 0.002, 0.05  # GeV; relative


def beta_fractions(edges, degree):
    """I_bk from scipy: (n+1)·b_{k,n} is the Beta(k+1, n−k+1) density on the window."""
    t = (np.asarray(edges) - edges[0]) / (edges[-1] - edges[0])
    return np.stack([np.diff(stats.beta(k + 1, degree - k + 1).cdf(t)) for k in range(degree + 1)], axis=1)


def poisson_counts(expected, seed):
    return np.random.default_rng(seed).poisson(expected).astype(float)


# --- the iminuit comparison: 100 bins, double Crystal Ball, cubic background ---------

EDGES_100 = np.linspace(LOWER, UPPER, 101)


def dcb_fractions(edges, mean, sigma):
    """Truncated double Crystal Ball per bin from numba-stats (crystalball_ex with
    equal left/right scales)."""
    from numba_stats import crystalball_ex

    args = (DCB_TAILS["alpha_low"], DCB_TAILS["n_low"], sigma, DCB_TAILS["alpha_high"], DCB_TAILS["n_high"], sigma,
            mean)
    cdf = crystalball_ex.cdf(np.asarray(edges), *args)
    return np.diff(cdf) / (cdf[-1] - cdf[0])


@pytest.fixture(scope="module")
def dcb_counts():
    expected = SIGNAL_EVENTS * dcb_fractions(EDGES_100, MEAN, SIGMA) + beta_fractions(EDGES_100, 3) @ BACKGROUND
    return poisson_counts(expected, seed=13)


@pytest.fixture(scope="module")
def dcb_model(dcb_counts):
    signal = DoubleCrystalBall(MEAN, SIGMA, lower=LOWER, upper=UPPER, **DCB_TAILS)
    return ParametricModel.build(edges=EDGES_100, signal=signal, counts=dcb_counts, background_degree=3,
                                 mass_scale_width=MASS_SCALE, resolution_width=RESOLUTION)


def numpy_twice_nll(pars, counts):
    """−2 ln L of the same likelihood in numpy: Poisson per bin (with lgamma) and two
    unit Gaussians, parameters [s, c0..c3, alpha_mass_scale, alpha_resolution]."""
    s, c, alpha_m, alpha_r = pars[0], np.asarray(pars[1:5]), pars[5], pars[6]
    fractions = dcb_fractions(EDGES_100, MEAN + alpha_m * MASS_SCALE, SIGMA * (1 + alpha_r * RESOLUTION))
    rate = s * fractions + beta_fractions(EDGES_100, 3) @ c
    poisson = np.sum(counts * np.log(rate) - rate - gammaln(counts + 1))
    gaussian = -0.5 * (alpha_m**2 + alpha_r**2) - np.log(2 * np.pi)
    return -2.0 * (poisson + gaussian)


@pytest.fixture(scope="module")
def minuit_fit(dcb_model, dcb_counts):
    iminuit = pytest.importorskip("iminuit")
    config = dcb_model.config
    cost = lambda *pars: numpy_twice_nll(np.array(pars), dcb_counts)  # noqa: E731
    minuit = iminuit.Minuit(cost, *np.asarray(config.init), name=config.par_names)
    minuit.errordef = iminuit.Minuit.LEAST_SQUARES  # 1: the cost is −2 ln L
    minuit.strategy = 2
    minuit.tol = 1e-10
    minuit.limits = list(zip(np.asarray(config.lower).tolist(), np.asarray(config.upper).tolist()))
    minuit.migrad(ncall=100_000)
    minuit.migrad(ncall=100_000)  # restarted from its own minimum: a fresh Hessian
    assert minuit.valid
    return minuit


def test_twice_nll_equals_numpy(dcb_model, dcb_counts):
    """The model's −2 ln L is the numpy formula at parameters away from the minimum."""
    data = dcb_model.observed_data(dcb_counts)
    for pars in ([0.0, 800, 600, 600, 450, 0.0, 0.0], [75.0, 950, 420, 730, 380, 0.7, -1.2]):
        ours = float(dcb_model.twice_nll(jnp.array(pars), data))
        assert ours == pytest.approx(numpy_twice_nll(np.array(pars), dcb_counts), rel=1e-12)


def test_fit_agrees_with_iminuit(dcb_model, dcb_counts, minuit_fit):
    data = dcb_model.observed_data(dcb_counts)
    result = infer.fit(data, dcb_model)
    assert bool(result.converged)
    ours, theirs = np.asarray(result.bestfit), np.asarray(minuit_fit.values)
    errors = np.asarray(minuit_fit.errors)
    # Where MIGRAD stops: EDM = ½ gᵀH⁻¹g < 0.002·tol·errordef, i.e. within about
    # √(2·EDM) of the minimum in units of each parameter's error.
    assert minuit_fit.fmin.edm < 1e-10
    poi_and_background = slice(0, 5)
    np.testing.assert_allclose(ours[poi_and_background], theirs[poi_and_background], rtol=1e-5)
    np.testing.assert_allclose(ours[5:], theirs[5:], atol=1e-5)  # pulls (unit width, near 0): absolute
    assert np.all(np.abs(ours - theirs) < 2 * np.sqrt(2 * minuit_fit.fmin.edm) * errors + 1e-12)
    # Both at the same minimum: −2 ln L equal to 1e-8 absolute (≈1e-11 relative), ours not above.
    assert float(result.twice_nll) == pytest.approx(minuit_fit.fval, abs=1e-8)
    assert float(result.twice_nll) <= minuit_fit.fval + 1e-10


def test_background_bounds_do_not_bind_on_this_spectrum(dcb_model, dcb_counts):
    """c_k ≥ 0 is sufficient for a non-negative background, not necessary; on this
    spectrum every fitted c_k is interior, so the bounds change nothing: the fit
    with c_k unbounded below lands on the same point."""
    data = dcb_model.observed_data(dcb_counts)
    bounded = infer.fit(data, dcb_model)
    # The same structure with other bound values: the compiled fit is reused.
    lower = dcb_model.config.lower.at[dcb_model.config.background_slice].set(-1e4)
    unbounded = eqx.tree_at(lambda m: m.config.lower, dcb_model, lower)
    free = infer.fit(data, unbounded)
    assert np.all(np.asarray(bounded.bestfit[dcb_model.config.background_slice]) > 50.0)
    np.testing.assert_allclose(np.asarray(free.bestfit), np.asarray(bounded.bestfit), rtol=1e-9, atol=1e-9)


def test_sample_data_moments(dcb_model):
    pars = dcb_model.config.init.at[0].set(SIGNAL_EVENTS).at[5].set(0.5)
    n_toys = 20_000
    toys = np.asarray(dcb_model.sample_data(jax.random.PRNGKey(3), pars, n_toys))
    expected = np.asarray(dcb_model.expected_data(pars))
    n_bins = dcb_model.config.nmaindata
    rate = expected[:n_bins]
    mean_error = np.sqrt(rate / n_toys)
    variance_error = np.sqrt((rate + 2 * rate**2) / n_toys)  # Poisson: Var(s²) ≈ (μ4 − σ⁴)/N
    assert np.all(np.abs(toys[:, :n_bins].mean(0) - rate) < 5 * mean_error)
    assert np.all(np.abs(toys[:, :n_bins].var(0, ddof=1) - rate) < 5 * variance_error)
    assert np.all(toys[:, :n_bins] == np.round(toys[:, :n_bins]))
    aux = toys[:, n_bins:]
    np.testing.assert_allclose(aux.mean(0), expected[n_bins:], atol=5 / np.sqrt(n_toys))
    np.testing.assert_allclose(aux.var(0, ddof=1), 1.0, atol=5 * np.sqrt(2 / n_toys))


# --- inference against pyhf: 30 bins, Gaussian signal, quadratic background ---------

EDGES_30 = np.linspace(LOWER, UPPER, 31)
GAUSS_SIGMA = 0.03
QUADRATIC = np.array([300.0, 150.0, 250.0])


def gaussian_fractions(edges, mean, sigma):
    cdf = stats.norm(mean, sigma).cdf(np.asarray(edges))
    return np.diff(cdf) / (cdf[-1] - cdf[0])


@pytest.fixture(scope="module")
def gauss_counts():
    expected = 15.0 * gaussian_fractions(EDGES_30, MEAN, GAUSS_SIGMA) + beta_fractions(EDGES_30, 2) @ QUADRATIC
    return poisson_counts(expected, seed=5)


def gauss_model(counts, sigma=GAUSS_SIGMA, **options):
    signal = Gaussian(MEAN, sigma, LOWER, UPPER)
    return ParametricModel.build(edges=EDGES_30, signal=signal, counts=counts, background_degree=2, **options)


@pytest.fixture(scope="module")
def pyhf_pair(gauss_counts):
    """The same likelihood as a pyhf model: the signal histogram (scipy) with the
    POI as normfactor, each Bernstein basis histogram (scipy) with its own normfactor."""
    pyhf = pytest.importorskip("pyhf")
    model = gauss_model(gauss_counts, poi_bounds=(0.0, 200.0))
    config = model.config
    fractions, basis = gaussian_fractions(EDGES_30, MEAN, GAUSS_SIGMA), beta_fractions(EDGES_30, 2)
    samples = [{"name": "signal", "data": fractions.tolist(),
                "modifiers": [{"name": config.poi_name, "type": "normfactor", "data": None}]}]
    samples += [{"name": f"basis{k}", "data": basis[:, k].tolist(),
                 "modifiers": [{"name": f"bkg_c{k}", "type": "normfactor", "data": None}]} for k in range(3)]
    parameters = [{"name": name, "inits": [float(config.init[i])],
                   "bounds": [[float(config.lower[i]), float(config.upper[i])]]}
                  for i, name in enumerate(config.par_names)]
    spec = {"channels": [{"name": "window", "samples": samples}],
            "observations": [{"name": "window", "data": gauss_counts.tolist()}],
            "measurements": [{"name": "m", "config": {"poi": config.poi_name, "parameters": parameters}}],
            "version": "1.0.0"}
    workspace = pyhf.Workspace(spec)
    pyhf_model = workspace.model()
    order = [pyhf_model.config.par_names.index(name) for name in config.par_names]
    return model, pyhf_model, workspace.data(pyhf_model), order


def pyhf_cls(pyhf, poi, data, pyhf_model):
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        cls_obs, cls_exp = pyhf.infer.hypotest(poi, data, pyhf_model, test_stat="qtilde", return_expected_set=True)
    finally:
        pyhf.set_backend(*previous)
    return float(cls_obs), np.asarray(cls_exp, float)


def test_twice_nll_equals_pyhf_logpdf(pyhf_pair, gauss_counts):
    model, pyhf_model, data, order = pyhf_pair
    pars = np.array([12.0, 280.0, 170.0, 240.0])
    pyhf_pars = np.empty(4)
    pyhf_pars[order] = pars
    ours = float(model.twice_nll(pars, model.observed_data(gauss_counts)))
    assert ours == pytest.approx(-2.0 * float(pyhf_model.logpdf(pyhf_pars, data)[0]), rel=1e-12)


def test_hypotest_matches_pyhf(pyhf_pair, gauss_counts):
    pyhf = pytest.importorskip("pyhf")
    model, pyhf_model, data, order = pyhf_pair
    ours = infer.hypotest(20.0, model.observed_data(gauss_counts), model)
    assert bool(ours.converged)
    cls_obs, cls_exp = pyhf_cls(pyhf, 20.0, data, pyhf_model)
    assert float(ours.cls_obs) == pytest.approx(cls_obs, rel=1e-6)
    # The expected CLs rest on the Asimov data of the fit with the POI at 0, where
    # pyhf's SLSQP (tolerance 1e-12) stops ~5e-9 in −2 ln L above the minimum ours
    # reaches (its background coefficients ~1e-3 away along a shallow direction):
    # q_A differs by ~1e-5 relative, so CLs_exp by ~1e-5.
    np.testing.assert_allclose(np.asarray(ours.cls_exp), cls_exp, rtol=2e-5)
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        _, pyhf_fitted = pyhf.infer.calculators.generate_asimov_data(
            0.0, data, pyhf_model, pyhf_model.config.suggested_init(), pyhf_model.config.suggested_bounds(),
            pyhf_model.config.suggested_fixed(), return_fitted_pars=True)
    finally:
        pyhf.set_backend(*previous)
    background_only = infer.fixed_poi_fit(0.0, model.observed_data(gauss_counts), model)
    pyhf_twice_nll = float(model.twice_nll(np.asarray(pyhf_fitted)[order], model.observed_data(gauss_counts)))
    assert float(background_only.twice_nll) <= pyhf_twice_nll
    assert float(background_only.twice_nll) == pytest.approx(pyhf_twice_nll, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("cl", [0.90, 0.95])
def test_upper_limit_matches_pyhf(pyhf_pair, gauss_counts, cl):
    """Our CLs at our limits is 1 − CL; pyhf's CLs there too, to its fits'
    precision: at this observed limit (μ = 22.17 at 90% CL) pyhf's conditional fit
    stops ~1e-8 in −2 ln L above ours, which moves its CLs by ~1e-6. The default
    model (POI bounded below at −5√(N+1): signed yields) gives the same limits, as
    q̃ takes a fitted μ̂ < 0 as 0."""
    pyhf = pytest.importorskip("pyhf")
    model, pyhf_model, data, _ = pyhf_pair
    observed = model.observed_data(gauss_counts)
    limits = infer.upper_limit(observed, model, cl=cl)
    assert bool(limits.converged)
    ours = infer.hypotest(limits.observed, observed, model)
    assert float(ours.cls_obs) == pytest.approx(1 - cl, rel=1e-9)
    cls_obs, _ = pyhf_cls(pyhf, float(limits.observed), data, pyhf_model)
    assert cls_obs == pytest.approx(1 - cl, rel=3e-6)
    for band, limit in enumerate(np.asarray(limits.expected)):
        _, cls_exp = pyhf_cls(pyhf, float(limit), data, pyhf_model)
        assert cls_exp[band] == pytest.approx(1 - cl, rel=2e-5)  # pyhf's Asimov fit: see test_hypotest_matches_pyhf
    signed = gauss_model(gauss_counts)
    assert float(signed.config.lower[0]) < 0
    signed_limits = infer.upper_limit(signed.observed_data(gauss_counts), signed, cl=cl)
    np.testing.assert_allclose(float(signed_limits.observed), float(limits.observed), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(signed_limits.expected), np.asarray(limits.expected), rtol=1e-8)


def test_deficit_fits_a_negative_yield(gauss_counts):
    """Signed yields: a deficit under the peak gives ŝ < 0, and the rate floor keeps
    every rate positive."""
    counts = gauss_counts.copy()
    peak = np.abs(EDGES_30[:-1] + 0.5 / 30 - MEAN) < 2 * GAUSS_SIGMA
    counts[peak] = np.floor(0.3 * counts[peak])
    model = gauss_model(counts)
    result = infer.fit(model.observed_data(counts), model)
    assert bool(result.converged)
    assert float(result.bestfit[0]) < 0
    assert float(result.bestfit[0]) > float(model.config.lower[0])
    assert np.all(np.asarray(model.expected_actualdata(result.bestfit)) > 0)
    very_negative = model.config.init.at[0].set(float(model.config.lower[0]))
    assert np.all(np.asarray(model.expected_actualdata(very_negative)) >= RATE_FLOOR)
    assert np.isfinite(float(model.deviance(very_negative, model.observed_data(counts))))


# --- gradients -----------------------------------------------------------------------

def test_fitted_yield_gradient_wrt_data(gauss_counts):
    model = gauss_model(gauss_counts)
    data = model.observed_data(gauss_counts)

    def fitted_yield(d):
        return infer.fit(d, model).bestfit[0]

    gradient = np.asarray(jax.grad(fitted_yield)(data))
    step = 1e-3
    for b in (5, 14, 15, 16, 27):
        shift = jnp.zeros_like(data).at[b].set(step)
        difference = (float(fitted_yield(data + shift)) - float(fitted_yield(data - shift))) / (2 * step)
        assert gradient[b] == pytest.approx(difference, rel=1e-6, abs=1e-9)
    # Scaling all counts by k scales the best fit by k (no constraint, no active
    # bound: the likelihood is homogeneous), so Euler's relation Σ_b n_b ∂ŝ/∂n_b = ŝ.
    counts = np.asarray(data[:model.config.nmaindata])
    assert float(counts @ gradient[:counts.size]) == pytest.approx(float(fitted_yield(data)), rel=1e-8)
    assert gradient[15] > 0  # a count under the peak raises the yield


@pytest.mark.slow
def test_upper_limit_gradient_wrt_signal_width(gauss_counts):
    """d(observed 90% CL limit)/d(sigma) by implicit differentiation through the
    limit's root and its fits, against central differences."""
    data = gauss_model(gauss_counts).observed_data(gauss_counts)

    def limit(sigma):
        return infer.upper_limit(data, gauss_model(gauss_counts, sigma=sigma), cl=0.90).observed

    gradient = float(jax.grad(limit)(GAUSS_SIGMA))
    step = 1e-5
    difference = (float(limit(GAUSS_SIGMA + step)) - float(limit(GAUSS_SIGMA - step))) / (2 * step)
    assert gradient == pytest.approx(difference, rel=1e-5)
    assert gradient > 0  # a wider peak hides more signal under the background


# --- stacks of windows -----------------------------------------------------------------

@pytest.fixture(scope="module")
def windows():
    """Three 30-bin windows (quadratic background, Gaussian signal, no nuisance: the
    structure of gauss_model) sliding over a 90-bin spectrum."""
    edges = np.linspace(1.5, 4.5, 91)
    expected = beta_fractions(edges, 2) @ np.array([900.0, 300.0, 600.0])
    counts = poisson_counts(expected, seed=8)
    centres = np.array([2.2, 3.0, 3.9])
    return sliding_windows(edges, counts, centres, 30,
                           lambda m, lo, hi: Gaussian(m, 0.02 * m, lo, hi), background_degree=2), counts, centres


def test_vmapped_fits_equal_a_loop(windows):
    stacked, _, _ = windows
    assert stacked.models.config.init.shape == (3, 4)
    fits = jax.vmap(lambda m, d: infer.fit(d, m))(stacked.models, stacked.data)
    assert bool(jnp.all(fits.converged))
    for i in range(3):
        model = jax.tree.map(lambda leaf, i=i: leaf[i], stacked.models)
        single = infer.fit(stacked.data[i], model)
        np.testing.assert_allclose(np.asarray(fits.bestfit[i]), np.asarray(single.bestfit), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(float(fits.twice_nll[i]), float(single.twice_nll), rtol=1e-10)


def test_sliding_windows_equal_models_built_one_by_one(windows):
    stacked, counts, centres = windows
    edges = np.linspace(1.5, 4.5, 91)
    models = []
    for centre, start in zip(centres, stacked.first_bin):
        window = edges[start:start + 31]
        models.append(ParametricModel.build(edges=window, signal=Gaussian(centre, 0.02 * centre, window[0], window[-1]),
                                            counts=counts[start:start + 30], background_degree=2))
        assert window[0] <= centre <= window[-1]
    by_hand = ParametricModel.stack(models)
    assert infer.protocol.stack_size(by_hand) == 3
    for stack in (by_hand, infer.stack_models(models)):
        for leaf, other in zip(jax.tree.leaves(stack), jax.tree.leaves(stacked.models)):
            np.testing.assert_allclose(np.asarray(leaf), np.asarray(other), rtol=1e-14)
    assert list(stacked.first_bin) == [np.argmax(edges > c) - 1 - 15 for c in centres]


# --- structure and bad input ------------------------------------------------------------

def test_protocol_and_names(dcb_model):
    config = dcb_model.config
    assert isinstance(dcb_model, infer.StatisticalModel)
    assert config.par_names == ["signal_yield", "bkg_c0", "bkg_c1", "bkg_c2", "bkg_c3", "alpha_mass_scale",
                                "alpha_resolution"]
    assert (config.poi_index, config.nmaindata, config.nauxdata) == (0, 100, 2)
    assert config.nuisance_names == ["mass_scale", "resolution"]
    np.testing.assert_allclose(np.asarray(config.suggested_bounds())[5:], [[-5, 5], [-5, 5]])
    np.testing.assert_allclose(np.asarray(bernstein_bin_fractions(EDGES_100, 3)), beta_fractions(EDGES_100, 3),
                               atol=1e-15)


def test_nuisances_move_the_signal(dcb_counts):
    """Mass scale shifts the mean by α·σ_m, resolution scales sigma by 1 + α·σ_r,
    efficiency scales the yield by 1 + α·σ_ε (or (1 + σ_ε)^α)."""
    signal = Gaussian(MEAN, SIGMA, LOWER, UPPER)
    for form, factor in (("normal", 1 + 2 * 0.1), ("lognormal", 1.1**2)):
        model = ParametricModel.build(edges=EDGES_100, signal=signal, counts=dcb_counts, mass_scale_width=0.004,
                                      resolution_width=0.1, efficiency_width=0.1, efficiency_form=form)
        pars = model.config.init.at[0].set(50.0).at[-3:].set(jnp.array([1.5, -2.0, 2.0]))
        moved = Gaussian(MEAN + 1.5 * 0.004, SIGMA * (1 - 2 * 0.1), LOWER, UPPER)
        np.testing.assert_allclose(np.asarray(model.expected_signal(pars)),
                                   50.0 * factor * np.asarray(moved.bin_integrals(EDGES_100)), rtol=1e-13)


def test_nuisances_move_a_voigtian_peak(dcb_counts):
    """Breit–Wigner and Voigtian name their peak ``mass``: the mass-scale pull moves
    it, the resolution pull scales the Gaussian sigma (not the natural width)."""
    from diffana.shapes import Voigtian

    signal = Voigtian(MEAN, 0.01, SIGMA, LOWER, UPPER)
    model = ParametricModel.build(edges=EDGES_100, signal=signal, counts=dcb_counts, mass_scale_width=0.004,
                                  resolution_width=0.1)
    pars = model.config.init.at[0].set(50.0).at[-2:].set(jnp.array([1.5, -2.0]))
    moved = Voigtian(MEAN + 1.5 * 0.004, 0.01, SIGMA * (1 - 2 * 0.1), LOWER, UPPER)
    np.testing.assert_allclose(np.asarray(model.expected_signal(pars)),
                               50.0 * np.asarray(moved.bin_integrals(EDGES_100)), rtol=1e-12)


@pytest.mark.parametrize("nuisances", [
    pytest.param({}, marks=pytest.mark.slow),  # a subset of the next case (CI time)
    dict(mass_scale_width=0.004, resolution_width=0.1, efficiency_width=0.1),
    dict(efficiency_width=0.1, efficiency_form="lognormal"),
])
def test_structured_derivatives_equal_autodiff(dcb_counts, nuisances):
    """The model's own gradient and Hessian (from the rates' Jacobian) equal
    jax.grad / jax.hessian of the deviance, with an empty bin, a floored bin and
    auxiliary data off their nominal value."""
    signal = DoubleCrystalBall(MEAN, SIGMA, lower=LOWER, upper=UPPER, **DCB_TAILS)
    counts = np.asarray(dcb_counts).copy()
    counts[3] = 0.0
    model = ParametricModel.build(edges=EDGES_100, signal=signal, counts=counts, background_degree=3, **nuisances)
    data = model.observed_data(counts)
    data = data.at[model.config.nmaindata:].set(0.3)
    pars = model.config.init.at[0].set(40.0).at[1].set(300.0)
    k = model.config.nauxdata
    if k:
        pars = pars.at[-k:].set(jnp.linspace(-0.5, 0.7, k))
    gradient, hessian = model.deviance_gradient_and_hessian(pars, data)
    np.testing.assert_allclose(np.asarray(gradient), np.asarray(jax.grad(model.deviance)(pars, data)),
                               rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.asarray(hessian), np.asarray(jax.hessian(model.deviance)(pars, data)),
                               rtol=1e-12, atol=1e-9)
    # A strongly negative yield floors some rates: their terms are flat, as autodiff says.
    floored = pars.at[0].set(-5000.0)
    assert bool(jnp.any(model._unfloored_rates(floored) <= 0))
    np.testing.assert_allclose(np.asarray(model.deviance_gradient_and_hessian(floored, data)[1]),
                               np.asarray(jax.hessian(model.deviance)(floored, data)), rtol=1e-12, atol=1e-9)


def signal_at(mean=MEAN, sigma=SIGMA, lower=LOWER, upper=UPPER):
    return Gaussian(mean, sigma, lower, upper)


@pytest.mark.parametrize("change, named", [
    (dict(signal=signal_at(mean=3.5, upper=4.0)), "edges"),
    (dict(signal=signal_at(mean=3.2)), "signal.mean"),
    (dict(resolution_width=0.3), "resolution_width"),
    (dict(efficiency_width=-0.1), "efficiency_width"),
    (dict(mass_scale_width=float("nan")), "mass_scale_width"),
    (dict(counts=np.zeros(100)), "counts are all zero"),
    (dict(counts=np.r_[np.ones(99), -1.0]), "counts are negative in bins [99]"),
    (dict(counts=np.ones(99)), "counts has shape"),
    (dict(edges=EDGES_100[::-1]), "edges must increase"),
    (dict(edges=np.linspace(LOWER, UPPER, 5)), "at least 5"),
    (dict(background_degree=2.5), "background_degree"),
    (dict(signal_per_poi=0.0), "signal_per_poi"),
    (dict(efficiency_width=0.1, efficiency_form="gamma"), "efficiency_form"),
    (dict(poi_bounds=(1.0, -1.0)), "poi_bounds"),
    (dict(signal=np.ones(3)), "bin_integrals"),
])
def test_bad_arguments(change, named):
    arguments = dict(edges=EDGES_100, signal=signal_at(), counts=np.ones(100), background_degree=3)
    arguments.update(change)
    with pytest.raises(InvalidModel) as error:
        ParametricModel.build(**arguments)
    message = str(error.value)
    assert named in message and "\n" not in message


def test_shape_parameters_out_of_range_are_named():
    with pytest.raises(InvalidModel, match="sigma"):
        Gaussian(MEAN, -0.01, LOWER, UPPER)


@pytest.mark.parametrize("data, named", [
    (np.zeros(102), "all zero"),
    (np.r_[np.ones(100), 0, 0] * np.r_[1, -1, np.ones(100)], "negative in bins [1]"),
    (np.ones(100), "expects 102 values"),
    (np.r_[np.ones(100), np.nan, 0], "NaN"),
])
def test_bad_data(dcb_model, data, named):
    with pytest.raises(ValueError) as error:
        infer.fit(data, dcb_model)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("centres, counts, named", [
    ([2.0, 5.0], np.ones(90), "centres[1] = 5.0 lies off the spectrum"),
    ([2.0, 4.0], np.r_[np.ones(45), np.zeros(45)], "window 1 (centre 4.0"),
    ([2.0], -np.ones(90), "counts[0]"),
])
def test_bad_windows(centres, counts, named):
    edges = np.linspace(1.5, 4.5, 91)
    with pytest.raises(InvalidModel) as error:
        sliding_windows(edges, counts, centres, 30, lambda m, lo, hi: Gaussian(m, 0.05, lo, hi))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_stack_needs_one_structure(dcb_model, gauss_counts):
    with pytest.raises(InvalidModel, match=r"models\[1\] differs"):
        ParametricModel.stack([dcb_model, gauss_model(gauss_counts)])
