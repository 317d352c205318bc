"""Toy-based upper limits: CLs from pseudo-experiments on a scan of POI values.

Where the asymptotic formulae are not trusted (few events, a POI near its bound),
the limit comes from the toy CLs curve instead, as in pyhf's
``upper_limit(..., scan, calctype="toybased")`` and RooStats' ``HypoTestInverter``:

1. run :func:`diffana.infer.hypotest_toys` at each POI value of a scan — one
   compiled program, called once per point, with the *same* key at every point
   (common random numbers: the toy-to-toy noise is correlated along the scan, so
   the CLs curves come out smooth and the interpolation below is stable);
2. for the observed and each of the five expected CLs curves, find the first scan
   interval in which the curve falls below ``1 − cl`` and interpolate linearly
   there (pyhf interpolates linearly too, over the whole curve, which assumes it
   is monotonic; toy curves need not be);
3. quote a Monte Carlo error on each limit: the CLs error at the crossing divided
   by the curve's slope there.

Toy limits are not differentiable (tail fractions of samples are step functions of
the model); use :func:`diffana.infer.upper_limit` inside gradients.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import numpy as np

from diffana.infer.asymptotics import _check_test_stat
from diffana.infer.fit import prepare_call
from diffana.infer.limits import CURVE_NAMES, upper_limit
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, poi_bounds
from diffana.infer.settings import FitSettings, resolve_settings
from diffana.infer.toys import _hypotest_toys, as_key


class ToyUpperLimitResult(eqx.Module):
    """Toy-based CLs upper limits on the POI and the scan they come from.

    ``observed`` and ``expected`` (−2σ, −1σ, median, +1σ, +2σ) are NaN where the
    scan never reaches CLs = 1 − cl (a warning says which; extend the scan).
    ``*_error`` are Monte Carlo standard errors (the interpolated CLs error over the
    slope of the CLs curve at the crossing). ``poi_values`` is the scan,
    ``cls_obs`` ``(n_scan,)`` and ``cls_exp`` ``(n_scan, 5)`` the toy CLs curves with
    their errors; ``n_failed_fits`` counts non-converged toy fits over the whole
    scan; ``converged`` says whether every fit to the observed data converged.
    All fields are numpy arrays (the scan runs outside ``jit``).
    """

    observed: np.ndarray
    expected: np.ndarray
    observed_error: np.ndarray
    expected_error: np.ndarray
    poi_values: np.ndarray
    cls_obs: np.ndarray
    cls_exp: np.ndarray
    cls_obs_error: np.ndarray
    cls_exp_error: np.ndarray
    n_failed_fits: int
    converged: bool


def crossing(poi_values, cls_values, cls_errors, alpha):
    """Where a CLs curve first falls below ``alpha``, and its Monte Carlo error.

    Linear interpolation in the first interval ``[μ_i, μ_i+1]`` with
    ``CLs_i ≥ alpha > CLs_i+1``; the error is the CLs error interpolated to the
    crossing divided by the interval's slope. Returns ``(nan, nan)`` if the curve
    starts below ``alpha`` or never reaches it.
    """
    poi_values, cls_values = np.asarray(poi_values, float), np.asarray(cls_values, float)
    cls_errors = np.asarray(cls_errors, float)
    below = np.flatnonzero(~(cls_values >= alpha))  # NaN counts as "not above"
    if below.size == 0 or below[0] == 0:
        return np.nan, np.nan
    i = below[0] - 1
    x0, x1 = poi_values[i], poi_values[i + 1]
    y0, y1 = cls_values[i], cls_values[i + 1]
    if not np.isfinite(y1):
        return np.nan, np.nan
    slope = (y1 - y0) / (x1 - x0)  # < 0
    fraction = (alpha - y0) / (y1 - y0)
    limit = x0 + fraction * (x1 - x0)
    error_at_crossing = (1.0 - fraction) * cls_errors[i] + fraction * cls_errors[i + 1]
    return limit, error_at_crossing / abs(slope)


def default_scan(data, model: StatisticalModel, cl: float, test_stat: str, n_points: int = 12,
                 settings: FitSettings | None = None) -> np.ndarray:
    """A scan that brackets every limit: ``n_points`` POI values from half the
    smallest to twice the largest asymptotic limit (observed and ±2σ), clipped to
    the POI's bounds. Asymptotic limits are a guide to where the toy ones lie; in
    the low-count regime they can be off by tens of percent, hence the margins."""
    asymptotic = upper_limit(data, model, cl=cl, test_stat=test_stat, settings=settings)
    limits = np.concatenate([[float(asymptotic.observed)], np.asarray(asymptotic.expected, float)])
    limits = limits[np.isfinite(limits)]
    low, high = poi_bounds(model)
    if limits.size == 0:
        return np.linspace(max(low, 0.0), high, n_points)
    start = max(low, 0.5 * limits.min())
    stop = min(high, 2.0 * limits.max())
    return np.linspace(start, stop, n_points)


def upper_limit_toys(
    data,
    model: StatisticalModel,
    cl: float = 0.90,
    scan=None,
    key=0,
    n_toys: int = 2000,
    test_stat: str = "qtilde",
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    batch_size: int = 256,
    options: SolverOptions | None = None,
    progress=None,
    *,
    settings: FitSettings | None = None,
) -> ToyUpperLimitResult:
    """Toy-based CLs upper limits on the POI at confidence level ``cl`` (pyhf's
    ``upper_limit`` with ``calctype="toybased"`` and an explicit scan).

    Args:
        data: observed main bins followed by auxiliary data.
        model: the statistical model; its POI is the quantity limited.
        cl: confidence level (0.90 is the Belle II default); the limit solves
            ``CLs = 1 - cl`` on the toy CLs curve.
        scan: increasing POI values to test; default :func:`default_scan` (12
            points around the asymptotic limits). The limits are only as good as
            the scan is dense near them: the linear interpolation error should be
            small against the quoted Monte Carlo error.
        key: ``jax.random`` key or integer seed; the same toys at every scan point.
        n_toys: pseudo-experiments per hypothesis and scan point.
        test_stat: ``"qtilde"`` (default) or ``"q"``.
        progress: optional callable ``progress(done, total)`` called after each
            scan point (the command line's progress bar).

    Returns:
        :class:`ToyUpperLimitResult`. Warns if a curve never crosses ``1 - cl`` in
        the scan, or if toy fits failed to converge.
    """
    _check_test_stat(test_stat, ("qtilde", "q"))
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl must lie strictly between 0 and 1, got {cl}")
    if n_toys < 1:
        raise ValueError(f"n_toys must be positive, got {n_toys}")
    settings = resolve_settings(settings, init_pars, par_bounds, fixed_params, options)
    data = prepare_call(model, data, settings)
    scan = default_scan(data, model, cl, test_stat, settings=settings) if scan is None else np.asarray(scan, float)
    low, high = poi_bounds(model)
    if scan.ndim != 1 or scan.size < 2 or not np.all(np.diff(scan) > 0):
        raise ValueError("scan must be at least two strictly increasing POI values")
    if scan[0] < low or scan[-1] > high:
        raise ValueError(f"scan [{scan[0]}, {scan[-1]}] leaves the POI bounds [{low}, {high}]")

    key = as_key(key)
    points = []
    for done, poi_value in enumerate(scan, start=1):
        points.append(_hypotest_toys(np.float64(poi_value), data, model, key, n_toys, test_stat, settings,
                                     batch_size))
        if progress is not None:
            progress(done, scan.size)

    cls_obs = np.array([float(p.cls_obs) for p in points])
    cls_exp = np.array([np.asarray(p.cls_exp, float) for p in points])
    cls_obs_error = np.array([float(p.cls_obs_error) for p in points])
    cls_exp_error = np.array([np.asarray(p.cls_exp_error, float) for p in points])
    alpha = 1.0 - cl
    curves = [(cls_obs, cls_obs_error)] + [(cls_exp[:, k], cls_exp_error[:, k]) for k in range(5)]
    limits, errors = np.array([crossing(scan, c, e, alpha) for c, e in curves]).T

    missing = [name for name, limit in zip(CURVE_NAMES, limits) if not np.isfinite(limit)]
    if missing:
        warnings.warn(
            f"the {', '.join(missing)} CLs curve(s) do not cross {alpha:g} within the scan "
            f"[{scan[0]:g}, {scan[-1]:g}]; their limits are NaN: extend the scan",
            stacklevel=2,
        )
    n_failed = int(sum(int(p.n_failed_fits) for p in points))
    if n_failed:
        warnings.warn(f"{n_failed} of {2 * n_toys * scan.size} toys had a fit that did not converge",
                      stacklevel=2)
    return ToyUpperLimitResult(
        observed=limits[0],
        expected=limits[1:],
        observed_error=errors[0],
        expected_error=errors[1:],
        poi_values=scan,
        cls_obs=cls_obs,
        cls_exp=cls_exp,
        cls_obs_error=cls_obs_error,
        cls_exp_error=cls_exp_error,
        n_failed_fits=n_failed,
        converged=all(bool(p.converged) for p in points),
    )
