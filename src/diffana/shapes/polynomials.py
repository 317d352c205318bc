"""Polynomial shapes on the range: Bernstein (non-negative with non-negative
coefficients) and Chebyshev (RooChebychev's convention; may be negative).

Both live on the normalisation range itself: u = (x − lower)/(upper − lower) ∈ [0, 1]
(Bernstein) or t = 2u − 1 ∈ [−1, 1] (Chebyshev), so the range is also the
polynomial's domain. Basis values come from recurrences (multiplications and
additions only), so values and gradients are finite everywhere on the range,
including its ends (no 0^0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.shapes.base import Shape, ShapeError, check, check_range, parameter

__all__ = ["Bernstein", "Chebyshev", "bernstein_basis", "bernstein_basis_integrals"]


# --- Bernstein basis -----------------------------------------------------------------

def bernstein_basis(u, degree: int) -> jax.Array:
    """(…, degree+1): b_{k,n}(u) = C(n,k) u^k (1−u)^(n−k), k = 0 … n, by the
    recurrence b_{k,m+1} = (1−u)·b_{k,m} + u·b_{k−1,m} (stable on [0, 1])."""
    u = jnp.asarray(u, dtype=float)
    v = 1.0 - u
    basis = [jnp.ones_like(u)]
    for m in range(degree):
        basis = ([v * basis[0]] + [v * basis[j] + u * basis[j - 1] for j in range(1, m + 1)]
                 + [u * basis[m]])
    return jnp.stack(basis, axis=-1)


def _basis_masses(ua, ub, degree: int) -> jax.Array:
    """(…, degree+1): ∫_{ua}^{ub} b_{k,n}(u) du for 0 <= ua <= ub <= 1.

    ∫_0^u b_{k,n} = (1/(n+1)) Σ_{j>k} b_{j,n+1}(u) (the regularised incomplete beta
    I_u(k+1, n−k+1) over n+1), and ∫_u^1 b_{k,n} = (1/(n+1)) Σ_{j<=k} b_{j,n+1}(u). Each
    bin takes the difference of whichever of the two is the smaller there (the
    cumulative below when the bin's middle is under the basis polynomial's mean
    (k+1)/(n+2), the cumulative above otherwise), so no 1 − 1 cancellation at
    either end of the range."""
    upper_a, upper_b = bernstein_basis(ua, degree + 1), bernstein_basis(ub, degree + 1)
    # mass above u: cumulative sums of b_{j,n+1} over j <= k, k = 0 … n
    above_a = jnp.cumsum(upper_a, axis=-1)[..., :-1]
    above_b = jnp.cumsum(upper_b, axis=-1)[..., :-1]
    # mass below u: sums over j > k, k = 0 … n
    below_a = jnp.flip(jnp.cumsum(jnp.flip(upper_a, -1), axis=-1), -1)[..., 1:]
    below_b = jnp.flip(jnp.cumsum(jnp.flip(upper_b, -1), axis=-1), -1)[..., 1:]
    k = np.arange(degree + 1)
    middle = 0.5 * (jnp.asarray(ua) + jnp.asarray(ub))
    use_below = middle[..., None] < (k + 1.0) / (degree + 2.0)
    return jnp.where(use_below, below_b - below_a, above_a - above_b) / (degree + 1.0)


def bernstein_basis_integrals(degree: int, lower, upper, edges) -> jax.Array:
    """(bins, degree+1): ∫ of each Bernstein basis polynomial b_{k,n}((x − lower)/(upper −
    lower)) over each bin [edges[i], edges[i+1]] clipped to [lower, upper], in x units.

    Exact closed form (regularised incomplete beta functions as sums of the degree
    n+1 basis, cancellation-free at both ends). Each column integrates to
    (upper − lower)/(n+1) over the whole range, so a background Σ_k c_k b_k has
    Σ_k c_k·(upper − lower)/(n+1) events in the range per unit of density.
    ``edges`` may carry leading batch axes (…, bins+1) → (…, bins, degree+1)."""
    lower, upper = parameter(lower), parameter(upper)
    width = upper - lower
    u = (jnp.clip(jnp.asarray(edges, dtype=float), lower, upper) - lower) / width
    return width * _basis_masses(u[..., :-1], u[..., 1:], int(degree))


def _check_coefficients(shape, coefficients, minimum_length):
    if not is_concrete(coefficients):
        return
    c = np.asarray(coefficients, dtype=float)
    if c.ndim != 1 or c.shape[0] < minimum_length:
        raise ShapeError(f"{shape}: coefficients must be a 1-D array of at least "
                         f"{minimum_length} entries, got shape {c.shape}")
    check(shape, "coefficients", c, "")


class Bernstein(Shape):
    """f(x) ∝ Σ_k c_k b_{k,n}(u), u = (x − lower)/(upper − lower), of degree
    n = len(coefficients) − 1 on [lower, upper] (RooBernstein, zfit's Bernstein,
    numba_stats.bernstein.density with xmin, xmax = lower, upper).

    Non-negative coefficients give a non-negative density on the range (the usual way
    to keep a fitted background non-negative: bounds c_k >= 0); negative ones are
    allowed but may make it negative somewhere. The normalisation is exact:
    ∫_range b_{k,n} = (upper − lower)/(n+1), so ∫_range f = (upper − lower)·Σc/(n+1),
    which must be > 0. Bin integrals are Σ_k c_k × :func:`bernstein_basis_integrals`
    (see :meth:`bin_integrals_unnormalised`)."""

    coefficients: jax.Array

    def __init__(self, coefficients, lower, upper):
        _check_coefficients("Bernstein", coefficients, 1)
        check_range("Bernstein", lower, upper)
        if is_concrete(coefficients) and not np.sum(np.asarray(coefficients, float)) > 0:
            raise ShapeError("Bernstein: coefficients must have a positive sum (the integral "
                             f"over the range), got sum {float(np.sum(coefficients))!r}")
        self.coefficients = parameter(coefficients)
        self.lower, self.upper = parameter(lower), parameter(upper)

    @property
    def degree(self) -> int:
        return self.coefficients.shape[-1] - 1

    def _u(self, x):
        return (x - self.lower) / (self.upper - self.lower)

    def _density(self, x):
        return bernstein_basis(self._u(x), self.degree) @ self.coefficients

    def _integral(self, a, b):
        masses = _basis_masses(self._u(a), self._u(b), self.degree)
        return (self.upper - self.lower) * (masses @ self.coefficients)

    def _normalisation(self):
        return (self.upper - self.lower) * jnp.sum(self.coefficients) / (self.degree + 1.0)

    def bin_integrals_unnormalised(self, edges) -> jax.Array:
        """Σ_k c_k ∫_bin b_{k,n}: the bins' integrals of the unnormalised polynomial, in
        x units times the coefficients' (events per unit of x if c_k are densities)."""
        return bernstein_basis_integrals(self.degree, self.lower, self.upper, edges) @ self.coefficients


# --- Chebyshev -----------------------------------------------------------------------

def _chebyshev_values(t, order: int) -> list:
    """[T_0(t), …, T_order(t)] by T_{k+1} = 2t·T_k − T_{k−1}."""
    values = [jnp.ones_like(t), t]
    for _ in range(order - 1):
        values.append(2.0 * t * values[-1] - values[-2])
    return values[: order + 1]


class Chebyshev(Shape):
    """f(x) ∝ 1 + Σ_{k=1}^{n} c_k T_k(t), t = 2(x − lower)/(upper − lower) − 1 ∈ [−1, 1]
    (RooChebychev's convention: the T_0 coefficient is 1; zfit's Chebyshev with
    coeff0 = 1). ``coefficients`` are c_1 … c_n (n >= 0 entries).

    Not guaranteed non-negative: for some coefficients the density is negative on part
    of the range (then pdf and bin integrals there are negative too — constrain the
    coefficients or use :class:`Bernstein`). Integrals are exact: ∫T_k dt =
    T_{k+1}/(2(k+1)) − T_{k−1}/(2(k−1)) (k >= 2), ∫T_1 = t²/2, ∫T_0 = t, and the range
    integral is (upper − lower)/2 · (2 + Σ_{k even} c_k·2/(1 − k²))."""

    coefficients: jax.Array

    def __init__(self, coefficients, lower, upper):
        _check_coefficients("Chebyshev", coefficients, 0)
        check_range("Chebyshev", lower, upper)
        if is_concrete(coefficients):
            c = np.asarray(coefficients, float)
            k = np.arange(1, c.shape[0] + 1)
            even = k % 2 == 0
            if not 2.0 + np.sum(c[even] * 2.0 / (1.0 - k[even] ** 2)) > 0:
                raise ShapeError("Chebyshev: coefficients must give a positive integral over "
                                 "the range (2 + Σ_{k even} 2c_k/(1 − k²) > 0), got "
                                 f"{np.array2string(c, separator=', ')}")
        self.coefficients = parameter(coefficients)
        self.lower, self.upper = parameter(lower), parameter(upper)

    @property
    def order(self) -> int:
        return self.coefficients.shape[-1]

    def _t(self, x):
        return 2.0 * (x - self.lower) / (self.upper - self.lower) - 1.0

    def _density(self, x):
        values = _chebyshev_values(self._t(x), self.order)
        return values[0] + sum(self.coefficients[k - 1] * values[k] for k in range(1, self.order + 1))

    def _antiderivative(self, x):
        t = self._t(x)
        values = _chebyshev_values(t, self.order + 1)
        total = t  # ∫ T_0
        for k in range(1, self.order + 1):
            if k == 1:
                integral = 0.5 * t * t
            else:
                integral = values[k + 1] / (2.0 * (k + 1)) - values[k - 1] / (2.0 * (k - 1))
            total = total + self.coefficients[k - 1] * integral
        return 0.5 * (self.upper - self.lower) * total  # dx = (upper − lower)/2 dt
