"""Bump hunts: a signal-plus-background fit in each of thousands of sliding windows
of one spectrum, in one compiled call.

A bump hunt (the four-muon Z' search: 9788 windows; the ALP→γγ search) tests every
mass hypothesis with its own model on its own window of the spectrum: a signal
shape centred on the hypothesis on a free polynomial background
(:func:`diffana.model.sliding_windows` builds the stack). Per window this module
computes

- the fitted signal yield ŝ (POI units) and its error from the curvature of
  −2 ln L at the best fit, σ(ŝ) = √(2 (H⁻¹)_ss) with H the Hessian of the deviance;
- the signed local significance S = sign(ŝ)·√(2 ln L_s+b/L_b)
  = sign(ŝ)·√(deviance(ŝ, θ̂) − deviance(0, θ̂₀));
- a profile-likelihood upper limit on the POI (:func:`profile_upper_limits`);

and, for the scan as a whole, the global significance from whole-spectrum toys and
Gross–Vitells (:func:`global_significance`), and the fit-bias bootstrap
(:func:`fit_bias`): pulls of the fitted yield on Poisson-varied data with an
injected signal.

Every function takes the stacked models and a data row per window (``data`` of
shape (H, bins + auxdata)) and runs all windows in one ``vmap``; it works for any
stacked :class:`~diffana.infer.protocol.StatisticalModel` with a POI.

Several devices: :func:`fit_windows`, :func:`profile_upper_limits` and
:func:`bump_hunt` take ``mesh=`` (:func:`diffana.sharding.device_mesh`); the windows
are then split along the mesh's ``"hypotheses"`` axis and each device fits its own
block (batches of 64 one after another, as on one device), with no communication.
Results equal the single-device ones (docs/devices.md).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from diffana import sharding
from diffana.infer import linalg
from diffana.infer.fit import minimize_deviance, poi_index
from diffana.infer.minimize import SolverOptions
from diffana.infer.lee import global_p_value_from_toys, gross_vitells, significance_from_p_value, upcrossings
from diffana.infer.profile_root import solve_profile_root
from diffana.infer.protocol import StatisticalModel, check_is_model, gradient_and_hessian, stack_size
from diffana.infer.settings import FitSettings, check_against_model, resolve_settings
from diffana.infer.toys import as_key

__all__ = [
    "BumpHuntResult",
    "FitBias",
    "GlobalSignificance",
    "ProfileLimits",
    "WindowFits",
    "bump_hunt",
    "fit_bias",
    "fit_windows",
    "global_significance",
    "profile_upper_limits",
    "window_data",
]

# Windows fitted together in one vmapped batch (see _batched).
DEFAULT_BATCH_SIZE = 64


class WindowFits(NamedTuple):
    """The fits of every window; each field has a leading window axis (H,)."""

    signal_yield: jax.Array  # (H,) ŝ, the POI at the free fit (signed)
    yield_error: jax.Array  # (H,) σ(ŝ) from the curvature at the free fit
    local_significance: jax.Array  # (H,) sign(ŝ)·√(2 ln L_s+b / L_b)
    bestfit: jax.Array  # (H, P) parameters of the free fit
    background_only: jax.Array  # (H, P) parameters of the fit with POI = 0
    deviance: jax.Array  # (H,) deviance at the free fit
    background_only_deviance: jax.Array  # (H,) deviance at the POI = 0 fit
    converged: jax.Array  # (H,) bool: both fits converged


class ProfileLimits(NamedTuple):
    """One-sided profile-likelihood upper limits on the POI of every window."""

    limit: jax.Array  # (H,) POI value where q̃(s) = Φ⁻¹(cl)²
    converged: jax.Array  # (H,) bool: the root search and its fits converged
    iterations: jax.Array  # (H,) root-search iterations


class BumpHuntResult(NamedTuple):
    """Fits, local significances and upper limits of a whole scan."""

    fits: WindowFits
    limits: ProfileLimits
    cl: float


class GlobalSignificance(NamedTuple):
    """The look-elsewhere effect of a scan, from whole-spectrum toys."""

    max_local_significance: jax.Array  # observed largest local S over the scan
    p_global: jax.Array  # fraction of toys with max S ≥ the observed one
    p_global_error: jax.Array  # its binomial standard error
    z_global: jax.Array  # Φ⁻¹(1 − p_global)
    p_gross_vitells: jax.Array  # Gross–Vitells estimate from the toys' up-crossings
    toy_max_significance: jax.Array  # (n_toys,) the largest local S of each toy
    mean_upcrossings: jax.Array  # ⟨N(c0)⟩ of the toys' S² curves at the reference level
    n_failed_fits: jax.Array  # toy × window fits that did not converge


class FitBias(NamedTuple):
    """The fit-bias bootstrap of every window; fields (H,) unless stated."""

    injected_yield: jax.Array  # (H,) the signal yield injected (POI units)
    mean_pull: jax.Array  # mean of (ŝ − s_inj)/σ(ŝ) over the toys
    pull_width: jax.Array  # standard deviation of the pulls
    mean_bias: jax.Array  # mean of ŝ − s_inj (POI units)
    mean_pull_error: jax.Array  # statistical error of mean_pull: pull_width/√n
    converged_fraction: jax.Array  # fraction of toys whose fits converged


# The windows' fits stop when the Newton decrement (≈ twice the distance to the
# minimum in −2 ln L) is below 1e-12 rather than the 1e-18 of diffana's other
# entry points: the last, full Newton step still lands on the minimum to rounding
# (9788 four-muon windows: limits and S identical to 5e-14, 1.5–1.7× faster).
BUMP_HUNT_SOLVER = SolverOptions(decrement_tolerance=1e-12)


def _settings(settings: FitSettings | None) -> FitSettings:
    """The given settings, or the bump hunt's defaults (:data:`BUMP_HUNT_SOLVER`)."""
    return FitSettings(solver=BUMP_HUNT_SOLVER) if settings is None else resolve_settings(settings)


# --- checks ---------------------------------------------------------------------

def _check_windows(data, models: StatisticalModel, settings: FitSettings):
    """One-line errors before tracing: a stacked model with a POI, one data row per
    window, finite non-negative counts. Returns the data as float64 (H, width)."""
    check_is_model(models, "models")
    n = stack_size(models)
    if n is None:
        raise ValueError("expected a stack of window models (diffana.model.sliding_windows); got a single model")
    poi_index(models)
    check_against_model(settings, models.config)
    data = jnp.asarray(data, jnp.float64)
    width = models.config.nmaindata + models.config.nauxdata
    if data.shape != (n, width):
        raise ValueError(f"data must have one row per window, shape ({n}, {width}); got {tuple(data.shape)}")
    counts = data[:, : models.config.nmaindata]
    if not bool(jnp.all(jnp.isfinite(data))):
        window = int(jnp.argmax(~jnp.all(jnp.isfinite(data), axis=1)))
        raise ValueError(f"data of window {window} contain NaN or infinite values")
    if bool(jnp.any(counts < 0)):
        window = int(jnp.argmax(jnp.any(counts < 0, axis=1)))
        raise ValueError(f"data of window {window} contain negative counts")
    return data


def _check_cl(cl) -> float:
    cl = float(cl)
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl must be between 0 and 1 (e.g. 0.90), got {cl}")
    return cl


# --- one window -----------------------------------------------------------------

def _poi_error(model, pars, data, free):
    """σ(POI) = √(2 (H_ff⁻¹)_poi,poi): −2 ln L's Hessian H restricted to the free
    parameters (the covariance of a Gaussian likelihood is 2 H⁻¹)."""
    poi = model.config.poi_index
    _, hessian = gradient_and_hessian(model, pars, data)
    mask2 = free[:, None] & free[None, :]
    eye = jnp.eye(pars.shape[0], dtype=pars.dtype)
    unit = eye[poi]
    column = linalg.solve(jnp.where(mask2, hessian, eye), unit)
    return jnp.sqrt(jnp.maximum(2.0 * column[poi], 0.0))


def _fit_window(data, model, settings: FitSettings) -> WindowFits:
    setup = settings.resolve(model.config)
    poi = model.config.poi_index
    # The free and the POI = 0 fit as one vmapped solve (they differ only in start
    # values and the pinned mask): one copy of the solver in the compiled program.
    starts = jnp.stack([setup.init, setup.init.at[poi].set(0.0)])
    pinned = jnp.stack([setup.fixed, setup.fixed.at[poi].set(True)])
    both = jax.vmap(lambda start, pin: minimize_deviance(model, data, start, setup.lower, setup.upper, pin,
                                                         settings.solver))(starts, pinned)
    free, null = (jax.tree_util.tree_map(lambda leaf, k=k: leaf[k], both) for k in (0, 1))
    signal_yield = free.x[poi]
    excess = jnp.maximum(null.value - free.value, 0.0)
    return WindowFits(
        signal_yield=signal_yield,
        yield_error=_poi_error(model, free.x, data, ~setup.fixed),
        local_significance=jnp.sign(signal_yield) * jnp.sqrt(excess),
        bestfit=free.x,
        background_only=null.x,
        deviance=free.value,
        background_only_deviance=null.value,
        converged=free.converged & null.converged,
    )


def _limit_window(data, model, fits: WindowFits, z, settings: FitSettings) -> ProfileLimits:
    """q̃(s) = deviance(s, θ̂_s) − deviance(max(ŝ, 0), θ̂): pyhf's q̃ convention (a
    negative ŝ is replaced by the boundary 0). Root of q̃ = z² above max(ŝ, 0) by
    :func:`~diffana.infer.profile_root.solve_profile_root` (safeguarded Newton on √q̃,
    warm-started fits)."""
    setup = settings.resolve(model.config)
    reference = jnp.where(fits.signal_yield > 0, fits.deviance, fits.background_only_deviance)
    # The root of the Gaussian approximation q̃(s) = ((s − ŝ)² − min(ŝ, 0)²)/σ²:
    # ŝ + zσ for ŝ ≥ 0, ŝ + √(ŝ² + z²σ²) for a deficit (starting those at zσ took
    # 4–8 root-search steps instead of 3, and under vmap a batch waits for its slowest).
    error = jnp.where(fits.yield_error > 0, fits.yield_error, 1.0)
    deficit = jnp.minimum(fits.signal_yield, 0.0)
    guess = jnp.where(fits.signal_yield >= 0, fits.signal_yield + z * error,
                      deficit + jnp.sqrt(deficit**2 + (z * error) ** 2))
    root = solve_profile_root(model, data, reference, z, guess, jnp.maximum(fits.signal_yield, 0.0),
                              fits.bestfit, setup, settings.solver, highest=setup.upper[model.config.poi_index])
    return ProfileLimits(limit=root.poi, converged=root.converged, iterations=root.iteration)


# --- every window at once ----------------------------------------------------------

def fit_windows(data, models: StatisticalModel, *, settings: FitSettings | None = None,
                mesh: jax.sharding.Mesh | None = None) -> WindowFits:
    """Free and background-only fits of every window, the fitted yield with its
    error and the signed local significance, in one vmapped call.

    Args:
        data: (H, bins + auxdata) one data row per window (``Windows.data``).
        models: the stacked window models (``Windows.models``).
        settings: one :class:`FitSettings` for every window (or stacked like the
            models).
        mesh: split the windows over the devices of this mesh's ``"hypotheses"``
            axis (:func:`diffana.sharding.device_mesh`); None: this process's
            default device.
    """
    settings = _settings(settings)
    data = _check_windows(data, models, settings)
    return _on_mesh(mesh, lambda d, m: _fit_windows(d, m, settings, mesh=mesh), data, models)


def _on_mesh(mesh, run, *stacked):
    """``run(*stacked)``; with a mesh, on the windows placed along its
    ``"hypotheses"`` axis (padded to a multiple of the shards by repeating the last
    window) and with the padding dropped from the outputs."""
    if mesh is None:
        return run(*stacked)
    shards = sharding.shard_hypotheses(stacked, mesh)
    return sharding.unpad(run(*shards.stack), shards.n_hypotheses)


def _over_windows(function, mesh, *stacked):
    """``function(*stacked)`` on the windows' leading axis: at once on one device,
    or each device of ``mesh`` on its own block of windows (``shard_map``: every
    device runs its fits' while loops to the end on its own; XLA's automatic
    partitioning of a vmapped while loop would instead synchronise all devices at
    every iteration)."""
    if mesh is None:
        return function(*stacked)
    return sharding.map_shards(function, mesh)(*stacked)


def _batched(function, batch_size: int, *stacked):
    """``function`` over the leading window axis of ``stacked``: vmapped within
    batches of ``batch_size`` windows, the batches one after another (lax.map).
    Under vmap a while loop runs until its slowest lane is done, so one window
    needing many iterations would hold up the whole scan; batches confine it. The
    9788 four-muon windows: fits + limits 9.9 s in one batch, 3.6 s in batches of
    256, 2.7 s in batches of 64 (32: the same)."""
    n_windows = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    return jax.lax.map(lambda window: function(*window), stacked, batch_size=min(batch_size, n_windows))


@eqx.filter_jit
def _fit_windows(data, models, settings, batch_size=DEFAULT_BATCH_SIZE, mesh=None):
    def fit_block(d, m):
        return _batched(lambda dw, mw: _fit_window(dw, mw, settings), batch_size, d, m)
    return _over_windows(fit_block, mesh, data, models)


def profile_upper_limits(data, models: StatisticalModel, cl: float = 0.90, fits: WindowFits | None = None, *,
                         settings: FitSettings | None = None,
                         mesh: jax.sharding.Mesh | None = None) -> ProfileLimits:
    """One-sided profile-likelihood upper limits at confidence level ``cl`` on the
    POI of every window: the POI s > max(ŝ, 0) where q̃(s) = Φ⁻¹(cl)² (1.642 at
    90%, 2.706 at 95%), the asymptotic one-sided limit without CLs (so, unlike
    CLs, a downward fluctuation gives a limit below the median expected one).

    ``fits``: the windows' :func:`fit_windows` (computed if not given).
    ``mesh``: split the windows over devices, as in :func:`fit_windows`.
    """
    settings = _settings(settings)
    cl = _check_cl(cl)
    data = _check_windows(data, models, settings)
    if fits is None:
        fits = _on_mesh(mesh, lambda d, m: _fit_windows(d, m, settings, mesh=mesh), data, models)
    return _on_mesh(mesh, lambda d, m, f: _profile_limits(d, m, f, cl, settings, mesh=mesh), data, models, fits)


@eqx.filter_jit
def _profile_limits(data, models, fits, cl, settings, batch_size=DEFAULT_BATCH_SIZE, mesh=None):
    z = ndtri(jnp.asarray(cl, jnp.float64))

    def limit_block(d, m, f):
        return _batched(lambda dw, mw, fw: _limit_window(dw, mw, fw, z, settings), batch_size, d, m, f)
    return _over_windows(limit_block, mesh, data, models, fits)


def bump_hunt(data, models: StatisticalModel, cl: float = 0.90, *,
              settings: FitSettings | None = None, mesh: jax.sharding.Mesh | None = None) -> BumpHuntResult:
    """Fit, local significance and profile-likelihood upper limit of every window
    of a scan (:func:`fit_windows` then :func:`profile_upper_limits`); ``mesh``
    splits the windows over devices, as in :func:`fit_windows`."""
    settings = _settings(settings)
    cl = _check_cl(cl)
    data = _check_windows(data, models, settings)
    fits, limits = _on_mesh(mesh, lambda d, m: _bump_hunt(d, m, cl, settings, mesh), data, models)
    return BumpHuntResult(fits=fits, limits=limits, cl=cl)


@eqx.filter_jit
def _bump_hunt(data, models, cl, settings, mesh=None):
    fits = _fit_windows(data, models, settings, mesh=mesh)
    return fits, _profile_limits(data, models, fits, cl, settings, mesh=mesh)


# --- toys of the whole spectrum -----------------------------------------------------

def window_data(spectrum_counts, first_bin, bins_per_window: int, auxdata) -> jax.Array:
    """Data rows of every window cut from whole-spectrum counts: (…, H, bins +
    auxdata) from ``spectrum_counts`` (…, M), the windows' first bins (H,) and
    their auxiliary data (H, K)."""
    spectrum_counts = jnp.asarray(spectrum_counts, jnp.float64)
    bins = jnp.asarray(first_bin)[:, None] + jnp.arange(bins_per_window)
    counts = spectrum_counts[..., bins]
    aux = jnp.broadcast_to(jnp.asarray(auxdata, jnp.float64), counts.shape[:-1] + (jnp.shape(auxdata)[-1],))
    return jnp.concatenate([counts, aux], axis=-1)


def global_significance(data, models: StatisticalModel, first_bin, background_spectrum, key, n_toys: int = 100,
                        reference_level: float = 1.0, batch_size: int = 1, observed: WindowFits | None = None, *,
                        settings: FitSettings | None = None) -> GlobalSignificance:
    """Global significance of the largest local excess of a scan.

    Background-only pseudo-experiments of the *whole spectrum* (Poisson counts of
    ``background_spectrum`` in every bin; the windows' auxiliary data drawn once per
    toy from their unit Gaussians, shared by all windows), each analysed at every
    window as the data were, keep the correlations between overlapping windows
    that make the look-elsewhere effect. Returns the toys' p-value of the observed
    largest local S and the Gross–Vitells estimate from the toys' mean number of
    up-crossings of ``reference_level`` by S² (upward fluctuations only).

    Args:
        data, models: the observed windows, as for :func:`fit_windows`.
        first_bin: (H,) each window's first bin in the spectrum (``Windows.first_bin``).
        background_spectrum: (M,) expected background counts of every bin of the
            spectrum (e.g. a fit of the background model to the whole spectrum).
        key: ``jax.random`` key or integer seed.
        n_toys: pseudo-experiments; batch_size: toys analysed at once (each
            toy's windows are fitted in batches of 64, one batch after another).
        observed: the observed :func:`fit_windows` (computed if not given).
    """
    settings = _settings(settings)
    data = _check_windows(data, models, settings)
    background_spectrum = jnp.asarray(background_spectrum, jnp.float64)
    first_bin = jnp.asarray(first_bin)
    bins = models.config.nmaindata
    if first_bin.shape != (data.shape[0],):
        raise ValueError(f"first_bin must have one entry per window, shape ({data.shape[0]},); got {first_bin.shape}")
    if background_spectrum.ndim != 1 or int(jnp.max(first_bin)) + bins > background_spectrum.shape[0] \
            or int(jnp.min(first_bin)) < 0:
        raise ValueError("background_spectrum must be the (M,) expected counts of the whole spectrum, "
                         "covering every window's bins")
    if not bool(jnp.all(jnp.isfinite(background_spectrum) & (background_spectrum >= 0))):
        raise ValueError("background_spectrum must be finite and >= 0 in every bin")
    if int(n_toys) < 1:
        raise ValueError(f"n_toys must be at least 1, got {n_toys}")
    if observed is None:
        observed = _fit_windows(data, models, settings)
    return _global_significance(as_key(key), data, models, first_bin, background_spectrum, int(n_toys),
                                float(reference_level), int(batch_size), observed, settings)


@eqx.filter_jit
def _global_significance(key, data, models, first_bin, background_spectrum, n_toys, reference_level, batch_size,
                         observed, settings):
    bins = models.config.nmaindata
    n_aux = models.config.nauxdata
    count_key, aux_key = jax.random.split(key)
    spectra = jax.random.poisson(count_key, background_spectrum, (n_toys,) + background_spectrum.shape)
    aux = models.config.auxdata + jax.random.normal(aux_key, (n_toys, 1, n_aux))

    def analyse(toy):
        spectrum, toy_aux = toy
        toy_data = window_data(spectrum, first_bin, bins, jnp.broadcast_to(toy_aux, (data.shape[0], n_aux)))
        fits = _batched(lambda d, m: _fit_window(d, m, settings), DEFAULT_BATCH_SIZE, toy_data, models)
        return fits.local_significance, fits.converged

    significance, converged = jax.lax.map(analyse, (spectra.astype(jnp.float64), aux),
                                          batch_size=min(batch_size, n_toys))
    toy_max = jnp.max(significance, axis=1)
    observed_max = jnp.max(observed.local_significance)
    p_global, p_error = global_p_value_from_toys(toy_max, observed_max)
    upward_q = jnp.maximum(significance, 0.0) ** 2
    mean_upcrossings = jnp.mean(upcrossings(upward_q, reference_level))
    q_max = jnp.maximum(observed_max, 0.0) ** 2
    return GlobalSignificance(
        max_local_significance=observed_max,
        p_global=p_global,
        p_global_error=p_error,
        z_global=significance_from_p_value(p_global),
        p_gross_vitells=jnp.minimum(gross_vitells(q_max, reference_level, mean_upcrossings), 1.0),
        toy_max_significance=toy_max,
        mean_upcrossings=mean_upcrossings,
        n_failed_fits=jnp.sum(~converged),
    )


# --- fit-bias bootstrap ---------------------------------------------------------

def fit_bias(data, models: StatisticalModel, injected_yield, key, n_toys: int = 1000, batch_size: int = 256, *,
             settings: FitSettings | None = None) -> FitBias:
    """The fit-bias bootstrap of every window: pseudo-data drawn from the window's
    background-only fit to ``data`` plus ``injected_yield`` of signal (Poisson
    counts; auxiliary data from their constraints, ``model.sample_data``), each
    fitted freely; the pulls (ŝ − s_inj)/σ(ŝ) should have mean 0 and width 1.

    Args:
        data, models: the observed windows, as for :func:`fit_windows`.
        injected_yield: POI value injected, one for all windows or (H,).
        key: ``jax.random`` key or integer seed.
        n_toys: pseudo-experiments per window; batch_size: windows bootstrapped
            at once (memory ∝ batch_size × n_toys × bins).
    """
    settings = _settings(settings)
    data = _check_windows(data, models, settings)
    n_windows = data.shape[0]
    injected = jnp.broadcast_to(jnp.asarray(injected_yield, jnp.float64), (n_windows,))
    if not bool(jnp.all(jnp.isfinite(injected))):
        raise ValueError("injected_yield must be finite")
    if int(n_toys) < 2:
        raise ValueError(f"n_toys must be at least 2 (a pull width needs two), got {n_toys}")
    keys = jax.random.split(as_key(key), n_windows)
    return _fit_bias(keys, data, models, injected, int(n_toys), int(batch_size), settings)


class _YieldFit(NamedTuple):
    """A toy's free fit, as the bootstrap needs it."""

    signal_yield: jax.Array
    yield_error: jax.Array
    converged: jax.Array


def _free_fit(data, model, settings: FitSettings) -> _YieldFit:
    """The free fit alone (the bootstrap's pulls need no background-only fit)."""
    setup = settings.resolve(model.config)
    free = minimize_deviance(model, data, setup.init, setup.lower, setup.upper, setup.fixed, settings.solver)
    return _YieldFit(signal_yield=free.x[model.config.poi_index],
                     yield_error=_poi_error(model, free.x, data, ~setup.fixed), converged=free.converged)


def _bias_window(key, data, model, injected, n_toys, settings):
    poi = model.config.poi_index
    background = _fit_window(data, model, settings).background_only
    toys = model.sample_data(key, background.at[poi].set(injected), n_toys)
    fits = jax.vmap(lambda d: _free_fit(d, model, settings))(toys)
    pulls = (fits.signal_yield - injected) / fits.yield_error
    ok = fits.converged & (fits.yield_error > 0)
    count = jnp.maximum(jnp.sum(ok), 1)
    mean_pull = jnp.sum(jnp.where(ok, pulls, 0.0)) / count
    width = jnp.sqrt(jnp.sum(jnp.where(ok, (pulls - mean_pull) ** 2, 0.0)) / jnp.maximum(count - 1, 1))
    return FitBias(
        injected_yield=injected,
        mean_pull=mean_pull,
        pull_width=width,
        mean_bias=jnp.sum(jnp.where(ok, fits.signal_yield - injected, 0.0)) / count,
        mean_pull_error=width / jnp.sqrt(count),
        converged_fraction=jnp.mean(ok.astype(jnp.float64)),
    )


@eqx.filter_jit
def _fit_bias(keys, data, models, injected, n_toys, batch_size, settings):
    def one(window):
        key, d, m, s = window
        return _bias_window(key, d, m, s, n_toys, settings)

    # lax.map over windows in batches keeps memory at batch_size × n_toys fits.
    n_windows = data.shape[0]
    return jax.lax.map(one, (keys, data, models, injected), batch_size=min(batch_size, n_windows))
