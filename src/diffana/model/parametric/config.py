"""Parameter bookkeeping of a :class:`~diffana.model.parametric.ParametricModel`:
the config (pyhf's vocabulary), its start values and bounds from a window's counts,
and the Bernstein basis fractions I_bk of the background."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from diffana._util import is_concrete
from diffana.errors import InvalidModel
from diffana.model.structure import NamedParameters, SuggestedParameters
from diffana.shapes.polynomials import bernstein_basis_integrals

POI_INDEX = 0
PULL_BOUNDS = (-5.0, 5.0)  # as pyhf's normsys default


def bernstein_bin_fractions(edges, degree: int) -> jax.Array:
    """(B, degree+1): I_bk, the fraction of the k-th Bernstein basis polynomial of
    degree n on the window [edges[0], edges[-1]] that falls in bin b. The exact bin
    integrals of :func:`diffana.shapes.bernstein_basis_integrals` divided by each
    basis polynomial's integral over the window, (x_B − x_0)/(n+1): each column sums
    to 1, so a coefficient multiplying it is a number of events."""
    edges = jnp.asarray(edges, jnp.float64)
    lower, upper = edges[0], edges[-1]
    return bernstein_basis_integrals(degree, lower, upper, edges) * ((degree + 1.0) / (upper - lower))


# --- configuration -----------------------------------------------------------------

class ParametricConfig(eqx.Module, SuggestedParameters, NamedParameters):
    """Parameter bookkeeping of a :class:`ParametricModel`, in pyhf's vocabulary.

    Parameters are ``[poi, bkg_c0 … bkg_c<n>, alpha_<nuisance>…]``: the POI (signal
    events in the window per ``signal_per_poi``), the Bernstein coefficients
    (background events per basis polynomial) and one unit-Gaussian pull per
    nuisance (dimensionless).
    """

    init: jax.Array  # (P,) suggested start values
    lower: jax.Array  # (P,)
    upper: jax.Array  # (P,)
    fixed: jax.Array  # (P,) bool: held at init in every fit
    auxdata_values: jax.Array  # (K,) the Gaussian constraints' centres (0: nominal)
    names: tuple[str, ...] = eqx.field(static=True)
    n_bins: int = eqx.field(static=True)
    degree: int = eqx.field(static=True)

    @property
    def background_slice(self) -> slice:
        """Positions of the Bernstein coefficients in parameter vectors."""
        return slice(POI_INDEX + 1, POI_INDEX + 2 + self.degree)

    @property
    def nuisance_names(self) -> list[str]:
        """The constrained nuisances (without ``alpha_``), in parameter order."""
        return [name[len("alpha_"):] for name in self.names[self.background_slice.stop:]]

    @property
    def nmaindata(self) -> int:
        return self.n_bins

    @property
    def nauxdata(self) -> int:
        return len(self.names) - self.background_slice.stop



def _config(counts, per_poi, degree: int, nuisances, poi_name: str, poi_bounds) -> ParametricConfig:
    """Start values and bounds from the window's counts (see :meth:`ParametricModel.build`)."""
    total = jnp.sum(counts)
    n_coefficients = degree + 1
    if poi_bounds is None:
        poi_low, poi_high = -5.0 * jnp.sqrt(total + 1.0) / per_poi, 10.0 * (total + 10.0) / per_poi
    else:
        poi_low, poi_high = _poi_bounds(poi_bounds)
    # Each coefficient starts at its share of the window's events (a flat background),
    # strictly inside its bounds so that the fit has a gradient to follow.
    start = jnp.maximum(total, 1.0) / n_coefficients
    background_high = 10.0 * (total + 10.0)
    n = len(nuisances)
    names = (poi_name,) + tuple(f"bkg_c{k}" for k in range(n_coefficients)) + tuple(f"alpha_{x}" for x in nuisances)
    init = jnp.concatenate([jnp.zeros(1), jnp.full(n_coefficients, 1.0) * start, jnp.zeros(n)])
    lower = jnp.concatenate([jnp.stack([poi_low]), jnp.zeros(n_coefficients), jnp.full(n, PULL_BOUNDS[0])])
    upper = jnp.concatenate([jnp.stack([poi_high]), jnp.full(n_coefficients, 1.0) * background_high,
                             jnp.full(n, PULL_BOUNDS[1])])
    return ParametricConfig(init=init, lower=lower, upper=upper, fixed=jnp.zeros(len(names), bool),
                            auxdata_values=jnp.zeros(n), names=names, n_bins=int(counts.shape[0]), degree=degree)


def _poi_bounds(value) -> tuple[jax.Array, jax.Array]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InvalidModel(f"poi_bounds must be a pair (lower, upper), got {value!r}") from None
    if is_concrete(low) and is_concrete(high):
        low_f, high_f = float(low), float(high)
        if not (math.isfinite(low_f) and math.isfinite(high_f) and low_f < high_f):
            raise InvalidModel(f"poi_bounds must be finite with lower < upper, got ({low_f!r}, {high_f!r})")
    return jnp.asarray(low, jnp.float64), jnp.asarray(high, jnp.float64)
