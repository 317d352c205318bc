"""Crystal Ball shapes: one power-law tail (RooCBShape), two independent tails
(double-sided, common sigma), and sums of either with a common mean.

In the standardised variable z = (x − mean)/sigma the unnormalised density is

    exp(−z²/2)                                      for −alpha_low <= z <= alpha_high
    exp(−alpha²/2) · (1 + alpha·t/n)^(−n)           in a tail, t = distance beyond the
                                                    junction (t = −alpha_low − z below,
                                                    t = z − alpha_high above)

which is RooCBShape's A·(B − z)^(−n), A = (n/alpha)^n·exp(−alpha²/2), B = n/alpha − alpha,
written so that it is evaluated without large powers: value and first derivative are
continuous at the junction. The tail beyond t holds

    T(t) = exp(−alpha²/2) · n/(alpha·(n − 1)) · (1 + alpha·t/n)^(1 − n)

(finite for n > 1), and the mass between t0 <= t1 in a tail is
T(t0)·(−expm1((1 − n)·log1p(alpha·(t1 − t0)/(n + alpha·t0)))), exact in floating point
for bins of any width and depth in the tail. A bin integral is the sum of its
non-negative pieces in the low tail, the Gaussian core (erf/erfc, see
:func:`diffana.shapes.base.normal_mass`) and the high tail: no cancellation anywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import equinox as eqx
import numpy as np

from diffana._util import is_concrete
from diffana.shapes.base import Shape, ShapeError, check, check_range, normal_mass, parameter

__all__ = ["CrystalBall", "DoubleCrystalBall", "CrystalBallSum", "DoubleCrystalBallSum"]


# --- the standardised density and its pieces ----------------------------------------

def _tail_log_density(t, alpha, n):
    """log density at distance t >= 0 beyond the junction (in sigma)."""
    return -0.5 * alpha * alpha - n * jnp.log1p(alpha * t / n)


def _tail_mass_beyond(t, alpha, n):
    """T(t): ∫ of the tail density from t to infinity."""
    return jnp.exp(-0.5 * alpha * alpha + jnp.log(n) - jnp.log(alpha) - jnp.log(n - 1.0)
                   + (1.0 - n) * jnp.log1p(alpha * t / n))


def _tail_mass_between(t0, t1, alpha, n):
    """∫ of the tail density from t0 to t1 (0 <= t0 <= t1), without cancellation."""
    ratio = jnp.log1p(alpha * (t1 - t0) / (n + alpha * t0))
    return _tail_mass_beyond(t0, alpha, n) * -jnp.expm1((1.0 - n) * ratio)


def _log_density(z, alpha_low, n_low, alpha_high, n_high, high_tail: bool):
    """log of the standardised density; the unused branches see safe arguments (t = 0)."""
    in_low = z < -alpha_low
    log_f = jnp.where(in_low, _tail_log_density(jnp.where(in_low, -alpha_low - z, 0.0),
                                                alpha_low, n_low), -0.5 * z * z)
    if high_tail:
        in_high = z > alpha_high
        log_f = jnp.where(in_high, _tail_log_density(jnp.where(in_high, z - alpha_high, 0.0),
                                                     alpha_high, n_high), log_f)
    return log_f


def _mass(p, q, alpha_low, n_low, alpha_high, n_high, high_tail: bool):
    """∫_p^q of the standardised density (p <= q): low tail + core + high tail pieces."""
    p_low, q_low = jnp.minimum(p, -alpha_low), jnp.minimum(q, -alpha_low)
    total = _tail_mass_between(-alpha_low - q_low, -alpha_low - p_low, alpha_low, n_low)
    if high_tail:
        p_core = jnp.clip(p, -alpha_low, alpha_high)
        q_core = jnp.clip(q, -alpha_low, alpha_high)
        p_high, q_high = jnp.maximum(p, alpha_high), jnp.maximum(q, alpha_high)
        total = total + _tail_mass_between(p_high - alpha_high, q_high - alpha_high,
                                           alpha_high, n_high)
    else:
        p_core, q_core = jnp.maximum(p, -alpha_low), jnp.maximum(q, -alpha_low)
    return total + normal_mass(p_core, q_core)


def _check_tail(shape, alpha_name, alpha, n_name, n):
    check(shape, alpha_name, alpha, "> 0", lambda v: v > 0)
    check(shape, n_name, n, "> 1", lambda v: v > 1)


_SIDES = ("low", "high")


# --- one tail -------------------------------------------------------------------------

class CrystalBall(Shape):
    """Gaussian core with one power-law tail (RooCBShape, scipy.stats.crystalball,
    numba_stats.crystalball with beta = alpha, m = n): the tail is below
    ``mean − alpha·sigma`` (``side="low"``, the default) or mirrored above
    ``mean + alpha·sigma`` (``side="high"``). alpha > 0, n > 1."""

    mean: jax.Array
    sigma: jax.Array
    alpha: jax.Array
    n: jax.Array
    side: str = eqx.field(static=True)

    def __init__(self, mean, sigma, alpha, n, lower, upper, side: str = "low"):
        if side not in _SIDES:
            raise ShapeError(f"CrystalBall: side must be 'low' or 'high', got {side!r}")
        check("CrystalBall", "mean", mean, "")
        check("CrystalBall", "sigma", sigma, "> 0", lambda v: v > 0)
        _check_tail("CrystalBall", "alpha", alpha, "n", n)
        check_range("CrystalBall", lower, upper)
        self.mean, self.sigma = parameter(mean), parameter(sigma)
        self.alpha, self.n = parameter(alpha), parameter(n)
        self.lower, self.upper = parameter(lower), parameter(upper)
        self.side = side

    def _z(self, x):
        z = (x - self.mean) / self.sigma
        return -z if self.side == "high" else z

    def _log_density(self, x):
        return _log_density(self._z(x), self.alpha, self.n, self.alpha, self.n, False)

    def _integral(self, a, b):
        p, q = self._z(a), self._z(b)
        if self.side == "high":
            p, q = q, p
        return self.sigma * _mass(p, q, self.alpha, self.n, self.alpha, self.n, False)


class DoubleCrystalBall(Shape):
    """Gaussian core with independent power-law tails on both sides and one common
    sigma: the tails start at ``mean − alpha_low·sigma`` and ``mean + alpha_high·sigma``
    (RooCrystalBall with sigmaL = sigmaR, zfit's DoubleCB, numba_stats.crystalball_ex
    with scale_left = scale_right = sigma). alpha_* > 0, n_* > 1."""

    mean: jax.Array
    sigma: jax.Array
    alpha_low: jax.Array
    n_low: jax.Array
    alpha_high: jax.Array
    n_high: jax.Array

    def __init__(self, mean, sigma, alpha_low, n_low, alpha_high, n_high, lower, upper):
        name = "DoubleCrystalBall"
        check(name, "mean", mean, "")
        check(name, "sigma", sigma, "> 0", lambda v: v > 0)
        _check_tail(name, "alpha_low", alpha_low, "n_low", n_low)
        _check_tail(name, "alpha_high", alpha_high, "n_high", n_high)
        check_range(name, lower, upper)
        self.mean, self.sigma = parameter(mean), parameter(sigma)
        self.alpha_low, self.n_low = parameter(alpha_low), parameter(n_low)
        self.alpha_high, self.n_high = parameter(alpha_high), parameter(n_high)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _tails(self):
        return self.alpha_low, self.n_low, self.alpha_high, self.n_high

    def _log_density(self, x):
        return _log_density((x - self.mean) / self.sigma, *self._tails(), True)

    def _integral(self, a, b):
        p, q = (a - self.mean) / self.sigma, (b - self.mean) / self.sigma
        return self.sigma * _mass(p, q, *self._tails(), True)


# --- sums with a common mean ---------------------------------------------------------

def _check_fractions(shape, fractions, k):
    """K − 1 fractions in [0, 1] summing to at most 1 (when concrete)."""
    if not is_concrete(fractions):
        return
    f = np.asarray(fractions, dtype=float)
    if f.ndim < 1 or f.shape[-1] != k - 1:
        raise ShapeError(f"{shape}: fractions must have {k - 1} entries (one fewer than the "
                         f"{k} components; the last gets 1 − sum), got shape {f.shape}")
    check(shape, "fractions", f, "in [0, 1] with sum <= 1",
          lambda v: (v >= 0) & (v <= 1) & (v.sum(-1, keepdims=True) <= 1 + 1e-12))


def _component_count(shape, **arrays) -> int:
    """K, the common length of the (K,) component parameters (when concrete)."""
    sizes = {name: np.shape(value)[-1:] for name, value in arrays.items()}
    if any(size == () for size in sizes.values()) or len(set(sizes.values())) != 1:
        raise ShapeError(f"{shape}: {', '.join(arrays)} must be 1-D arrays of one length "
                         f"(one entry per component), got shapes "
                         f"{ {name: np.shape(value) for name, value in arrays.items()} }")
    return next(iter(sizes.values()))[0]


def _weights(fractions):
    """(…, K) component weights from the K − 1 fractions: the last gets 1 − Σ."""
    return jnp.concatenate([fractions, 1.0 - jnp.sum(fractions, axis=-1, keepdims=True)], -1)


class _Mixture(Shape):
    """Σ_k w_k · CB_k(x), each component normalised on the range (the convention of
    RooAddPdf and zfit's SumPDF for fractions), all with one mean."""

    def _standardised(self, x):
        """(…, K) standardised variable of each component, mirrored for a high tail."""
        raise NotImplementedError

    def _component_log_density(self, z):
        raise NotImplementedError

    def _component_mass(self, p, q):
        raise NotImplementedError

    def _masses(self, a, b):
        """(…, K) ∫_a^b of each component's unnormalised density, in x units."""
        p, q = self._standardised(a), self._standardised(b)
        if getattr(self, "side", "low") == "high":
            p, q = q, p
        return self.sigma * self._component_mass(p, q)

    def _weights_over_norms(self):
        return _weights(self.fractions) / self._masses(self.lower, self.upper)

    def _log_density(self, x):
        z = self._standardised(x)
        return jax.scipy.special.logsumexp(self._component_log_density(z),
                                           b=self._weights_over_norms(), axis=-1)

    def _integral(self, a, b):
        return jnp.sum(self._weights_over_norms() * self._masses(a, b), axis=-1)

    def _normalisation(self):
        return jnp.ones_like(self.lower)


class CrystalBallSum(_Mixture):
    """Σ_k w_k · CrystalBall(mean, sigma_k, alpha_k, n_k): K one-tailed Crystal Balls
    with one mean, each normalised on the range. ``sigma``, ``alpha``, ``n`` are (K,);
    ``fractions`` (K − 1,) are w_1 … w_{K−1}, and w_K = 1 − Σ fractions.
    ``side`` as for :class:`CrystalBall` (all components alike)."""

    mean: jax.Array
    sigma: jax.Array
    alpha: jax.Array
    n: jax.Array
    fractions: jax.Array
    side: str = eqx.field(static=True)

    def __init__(self, mean, sigma, alpha, n, fractions, lower, upper, side: str = "low"):
        name = "CrystalBallSum"
        if side not in _SIDES:
            raise ShapeError(f"{name}: side must be 'low' or 'high', got {side!r}")
        k = _component_count(name, sigma=sigma, alpha=alpha, n=n)
        check(name, "mean", mean, "")
        check(name, "sigma", sigma, "> 0", lambda v: v > 0)
        _check_tail(name, "alpha", alpha, "n", n)
        _check_fractions(name, fractions, k)
        check_range(name, lower, upper)
        self.mean, self.sigma = parameter(mean), parameter(sigma)
        self.alpha, self.n = parameter(alpha), parameter(n)
        self.fractions = parameter(fractions)
        self.lower, self.upper = parameter(lower), parameter(upper)
        self.side = side

    def _standardised(self, x):
        z = (jnp.asarray(x)[..., None] - self.mean) / self.sigma
        return -z if self.side == "high" else z

    def _component_log_density(self, z):
        return _log_density(z, self.alpha, self.n, self.alpha, self.n, False)

    def _component_mass(self, p, q):
        return _mass(p, q, self.alpha, self.n, self.alpha, self.n, False)


class DoubleCrystalBallSum(_Mixture):
    """Σ_k w_k · DoubleCrystalBall(mean, sigma_k, alpha_low_k, n_low_k, alpha_high_k,
    n_high_k): K double-sided Crystal Balls with one mean, each normalised on the
    range; (K,) parameters, ``fractions`` (K − 1,) as for :class:`CrystalBallSum`."""

    mean: jax.Array
    sigma: jax.Array
    alpha_low: jax.Array
    n_low: jax.Array
    alpha_high: jax.Array
    n_high: jax.Array
    fractions: jax.Array

    def __init__(self, mean, sigma, alpha_low, n_low, alpha_high, n_high, fractions,
                 lower, upper):
        name = "DoubleCrystalBallSum"
        k = _component_count(name, sigma=sigma, alpha_low=alpha_low, n_low=n_low,
                             alpha_high=alpha_high, n_high=n_high)
        check(name, "mean", mean, "")
        check(name, "sigma", sigma, "> 0", lambda v: v > 0)
        _check_tail(name, "alpha_low", alpha_low, "n_low", n_low)
        _check_tail(name, "alpha_high", alpha_high, "n_high", n_high)
        _check_fractions(name, fractions, k)
        check_range(name, lower, upper)
        self.mean, self.sigma = parameter(mean), parameter(sigma)
        self.alpha_low, self.n_low = parameter(alpha_low), parameter(n_low)
        self.alpha_high, self.n_high = parameter(alpha_high), parameter(n_high)
        self.fractions = parameter(fractions)
        self.lower, self.upper = parameter(lower), parameter(upper)

    def _standardised(self, x):
        return (jnp.asarray(x)[..., None] - self.mean) / self.sigma

    def _component_log_density(self, z):
        return _log_density(z, self.alpha_low, self.n_low, self.alpha_high, self.n_high, True)

    def _component_mass(self, p, q):
        return _mass(p, q, self.alpha_low, self.n_low, self.alpha_high, self.n_high, True)
