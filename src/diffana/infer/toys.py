"""Pseudo-experiments ("toys"): sampling the full likelihood and toy-based CLs.

Where the asymptotic formulae of :mod:`diffana.infer.asymptotics` are not trusted
(few events, a POI near a boundary) the test statistic's distributions are sampled
instead. The procedure is pyhf's ``ToyCalculator`` (and RooStats' frequentist
calculator with profiled nuisance parameters):

1. fit the observed data twice with the POI fixed: at the tested value μ (the null
   hypothesis) and at the alternative (0 for q̃_μ and q_μ; 1 for q0);
2. sample ``n_toys`` pseudo-experiments from the full likelihood at each set of
   fitted parameters — Poisson main bins *and* auxiliary data drawn from the
   constraint terms (unconditional ensemble);
3. evaluate the test statistic on every toy (two fits per toy);
4. p-values are tail fractions: CLs+b = P(t ≥ t_obs | null toys),
   CLb = P(t ≥ t_obs | alternative toys), CLs = CLs+b / CLb; the expected band is
   the (2.3, 15.9, 50, 84.1, 97.7) percentiles of the CLs values the alternative
   toys themselves would give.

With ``test_stat="q0"`` the null is μ = 0 and the reported values are the
discovery p-values (CLs+b), as pyhf's ``hypotest`` returns them.

Unlike pyhf, which fits toys one at a time in a Python loop, all toy fits run in
one compiled, vmapped program (``lax.map`` over batches of toys to bound memory).
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana.infer.asymptotics import _check_test_stat, _clipped_profile_ratio
from diffana.infer.fit import minimize_deviance, poi_index, prepare_call
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, check_is_model
from diffana.infer.settings import FitSettings, ParameterSetup, check_against_model, resolve_settings

# Percentiles of the normal distribution at -2, -1, 0, +1, +2 sigma (pyhf's values).
NORMAL_PERCENTILES = np.array([2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681])


def as_key(key) -> jax.Array:
    """A PRNG key from an integer seed or an existing key."""
    if isinstance(key, int):
        return jax.random.key(key)
    return key


def sample_toys(key, model: StatisticalModel, pars, n_toys: int) -> jax.Array:
    """Draw ``n_toys`` data sets from the full likelihood at ``pars``
    (``model.sample_data``: Poisson main bins, auxiliary data drawn from their
    constraint terms). Returns ``(n_toys, nmaindata + nauxdata)``, laid out like
    observed data, ready for :func:`diffana.infer.fit` and friends.

    Args:
        key: a ``jax.random`` key or an integer seed.
        model: the statistical model.
        pars: parameter values (length ``config.npars``) to generate at.
        n_toys: number of pseudo-experiments (static).
    """
    return model.sample_data(as_key(key), jnp.asarray(pars, jnp.float64), n_toys)


def _statistic_and_status(poi_value, data, model, setup: ParameterSetup, test_stat, solver):
    """The test statistic on one data set (free fit + fit at ``poi_value``)."""
    poi = model.config.poi_index
    inits = jnp.stack([setup.init, setup.init.at[poi].set(poi_value)])
    pinned = jnp.stack([setup.fixed, setup.fixed.at[poi].set(True)])

    def one(start, pin):
        return minimize_deviance(model, data, start, setup.lower, setup.upper, pin, solver)

    fits = jax.vmap(one)(inits, pinned)
    value = _clipped_profile_ratio(poi_value, fits.value[1], fits.value[0], fits.x[0, poi], test_stat)
    return value, jnp.all(fits.converged)


def _toy_statistics(poi_value, toys, model, settings: FitSettings, test_stat, batch_size):
    setup = settings.resolve(model.config)

    def one(data):
        return _statistic_and_status(poi_value, data, model, setup, test_stat, settings.solver)

    return jax.lax.map(one, toys, batch_size=min(batch_size, toys.shape[0]))


def toy_test_statistics(
    poi_value,
    toys,
    model: StatisticalModel,
    test_stat: str = "qtilde",
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    batch_size: int = 256,
    options: SolverOptions | None = None,
    *,
    settings: FitSettings | None = None,
):
    """The test statistic at ``poi_value`` on each of ``toys`` (``(n, ndata)``).

    Returns ``(values, converged)``, both of shape ``(n,)``: ``converged`` is false
    for a toy whose free or conditional fit did not converge. Fits run ``batch_size``
    toys at a time (vmapped) to bound memory.
    """
    _check_test_stat(test_stat)
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    check_is_model(model)
    poi_index(model)
    check_against_model(settings, model.config)
    toys = jnp.asarray(toys, jnp.float64)
    if toys.ndim != 2 or toys.shape[1] != model.config.nmaindata + model.config.nauxdata:
        raise ValueError(
            f"toys must have shape (n_toys, {model.config.nmaindata + model.config.nauxdata}), got {toys.shape}"
        )
    return _toy_statistics_jit(jnp.asarray(poi_value, jnp.float64), toys, model, test_stat, settings, batch_size)


@eqx.filter_jit
def _toy_statistics_jit(poi_value, toys, model, test_stat, settings, batch_size):
    return _toy_statistics(poi_value, toys, model, settings, test_stat, batch_size)


def _expected_band_error(cls_values, cls_exp, clb_values, n_toys, test_stat):
    """Monte Carlo standard error of the expected CLs percentiles.

    Two independent sources: which alternative toy lands at the percentile (its
    rank fraction f has binomial spread sqrt(f(1-f)/n), mapped through the sampled
    quantile function), and the binomial error of CLs+b at that toy from the n null
    toys (divided by its CLb for CLs).
    """
    fraction = NORMAL_PERCENTILES / 100.0
    spread = jnp.sqrt(fraction * (1.0 - fraction) / n_toys)
    low = jnp.percentile(cls_values, 100.0 * jnp.clip(fraction - spread, 0.0, 1.0), method="linear")
    high = jnp.percentile(cls_values, 100.0 * jnp.clip(fraction + spread, 0.0, 1.0), method="linear")
    rank_error = 0.5 * jnp.abs(high - low)
    cls = cls_exp
    if test_stat == "q0":
        clsb, clb = cls, jnp.ones_like(cls)
    else:
        clb = jnp.percentile(clb_values, 100.0 - NORMAL_PERCENTILES, method="linear")
        clsb = jnp.clip(cls * clb, 0.0, 1.0)
    null_error = jnp.sqrt(clsb * (1.0 - clsb) / n_toys) / clb
    return jnp.sqrt(rank_error**2 + null_error**2)


def tail_fraction(sorted_samples, value):
    """Fraction of ``sorted_samples`` (ascending) that are ≥ ``value`` (pyhf's
    ``EmpiricalDistribution.pvalue``); ``value`` may be an array."""
    n = sorted_samples.shape[0]
    below = jnp.searchsorted(sorted_samples, value, side="left")
    return (n - below).astype(jnp.float64) / n


class ToyHypotestResult(eqx.Module):
    """Toy-based CLs for one tested POI value.

    ``cls_obs`` and ``cls_exp`` (−2σ…+2σ) as in :class:`HypotestResult`; for q0 they
    are the discovery p-values (CLs+b). ``*_error`` are Monte Carlo standard
    errors: binomial for the tail fractions; for each expected value, the spread
    of the percentile from the finite number of alternative toys (order
    statistics) combined with the binomial error of its CLs+b from the null toys. ``test_statistics_null`` are the toys generated at the tested
    POI value (pyhf's "sig_plus_bkg" distribution; μ = 0 for q0) and
    ``test_statistics_alt`` those at the alternative (pyhf's "bkg_only"; μ = 1 for
    q0). ``n_failed_fits`` counts toys whose fits did not converge (kept, as pyhf
    keeps them); ``converged`` refers to the fits to the observed data.
    """

    cls_obs: jax.Array
    cls_exp: jax.Array
    clsb: jax.Array
    clb: jax.Array
    cls_obs_error: jax.Array
    cls_exp_error: jax.Array
    clsb_error: jax.Array
    clb_error: jax.Array
    test_statistic: jax.Array
    test_statistics_null: jax.Array
    test_statistics_alt: jax.Array
    n_failed_fits: jax.Array
    converged: jax.Array


def hypotest_toys(
    poi_value,
    data,
    model: StatisticalModel,
    key=0,
    n_toys: int = 2000,
    test_stat: str = "qtilde",
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    batch_size: int = 256,
    options: SolverOptions | None = None,
    *,
    settings: FitSettings | None = None,
) -> ToyHypotestResult:
    """Toy-based CLs for ``POI = poi_value`` (pyhf's ``hypotest`` with
    ``calctype="toybased"``, ``return_expected_set=True``).

    Args:
        poi_value: the tested POI value (use 0 with ``test_stat="q0"``).
        data: observed main bins followed by auxiliary data.
        model: the statistical model.
        key: ``jax.random`` key or integer seed; same key, same toys.
        n_toys: pseudo-experiments per hypothesis (pyhf's default, 2000).
        test_stat: ``"qtilde"``, ``"q"`` or ``"q0"``.
        batch_size: toys fitted at once (memory ∝ batch_size × npars²).

    Warns if CLb = 0 (the observed test statistic lies beyond every alternative
    toy: CLs is undefined, use more toys) or if toy fits failed to converge.
    """
    _check_test_stat(test_stat)
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    data = prepare_call(model, data, settings)
    if n_toys < 1:
        raise ValueError(f"n_toys must be positive, got {n_toys}")
    result = _hypotest_toys(jnp.asarray(poi_value, jnp.float64), data, model, as_key(key), n_toys, test_stat,
                            settings, batch_size)
    _warn_if_unreliable(result, n_toys)
    return result


def _warn_if_unreliable(result: ToyHypotestResult, n_toys: int):
    if isinstance(result.clb, jax.core.Tracer):  # inside jit/vmap: the fields say it
        return
    if float(result.clb) == 0.0:
        warnings.warn(
            f"CLb = 0: the observed test statistic exceeds all {n_toys} alternative toys, "
            "so CLs is undefined (NaN); increase n_toys",
            stacklevel=3,
        )
    if int(result.n_failed_fits) > 0:
        warnings.warn(
            f"{int(result.n_failed_fits)} of {2 * n_toys} toys had a fit that did not converge",
            stacklevel=3,
        )


@eqx.filter_jit
def _hypotest_toys(poi_value, data, model, key, n_toys, test_stat, settings: FitSettings, batch_size):
    poi = model.config.poi_index
    setup = settings.resolve(model.config)
    alternative = 1.0 if test_stat == "q0" else 0.0

    # Generating parameters: the observed data fitted at the null and the alternative.
    generating_poi = jnp.stack([poi_value, jnp.asarray(alternative, jnp.float64)])

    def generating_fit(value):
        return minimize_deviance(model, data, setup.init.at[poi].set(value), setup.lower, setup.upper,
                                 setup.fixed.at[poi].set(True), settings.solver)

    generating = jax.vmap(generating_fit)(generating_poi)
    key_null, key_alt = jax.random.split(key)
    toys = jnp.concatenate([
        sample_toys(key_null, model, generating.x[0], n_toys),
        sample_toys(key_alt, model, generating.x[1], n_toys),
    ])
    statistics, toy_converged = _toy_statistics(poi_value, toys, model, settings, test_stat, batch_size)
    null, alt = statistics[:n_toys], statistics[n_toys:]
    observed, observed_converged = _statistic_and_status(poi_value, data, model, setup, test_stat, settings.solver)

    null_sorted, alt_sorted = jnp.sort(null), jnp.sort(alt)
    clsb = tail_fraction(null_sorted, observed)
    clb = tail_fraction(alt_sorted, observed)
    clsb_error = jnp.sqrt(clsb * (1.0 - clsb) / n_toys)
    clb_error = jnp.sqrt(clb * (1.0 - clb) / n_toys)

    # The CLs each alternative toy would report, and its percentiles (pyhf's band).
    clsb_alt = tail_fraction(null_sorted, alt)
    clb_alt = tail_fraction(alt_sorted, alt)  # >= 1/n: every toy counts itself
    if test_stat == "q0":
        cls_obs, cls_values, cls_obs_error = clsb, clsb_alt, clsb_error
    else:
        cls_obs = jnp.where(clb > 0, clsb / jnp.where(clb > 0, clb, 1.0), jnp.nan)
        cls_values = clsb_alt / clb_alt
        # Independent samples: relative errors add in quadrature.
        rel = jnp.sqrt(clsb_error**2 / jnp.maximum(clsb, 1e-300) ** 2 + clb_error**2 / jnp.maximum(clb, 1e-300) ** 2)
        # With no null toy above t_obs, quote the size of one toy's count.
        cls_obs_error = jnp.where(clsb > 0, cls_obs * rel, (1.0 / n_toys) / jnp.maximum(clb, 1.0 / n_toys))
    cls_exp = jnp.percentile(cls_values, NORMAL_PERCENTILES, method="linear")
    cls_exp_error = _expected_band_error(cls_values, cls_exp, clb_alt, n_toys, test_stat)
    return ToyHypotestResult(
        cls_obs=cls_obs,
        cls_exp=cls_exp,
        clsb=clsb,
        clb=clb,
        cls_obs_error=cls_obs_error,
        cls_exp_error=cls_exp_error,
        clsb_error=clsb_error,
        clb_error=clb_error,
        test_statistic=observed,
        test_statistics_null=null,
        test_statistics_alt=alt,
        n_failed_fits=jnp.sum(~toy_converged),
        converged=observed_converged & jnp.all(generating.converged),
    )
