"""The binned statistical model: HistFactory semantics, pyhf-compatible layout.

``Model.from_spec`` takes a pyhf model spec (``{"channels": [...]}``) and builds an
equinox Module whose leaves are the templates (arrays, possibly JAX tracers) and whose
static part is the structure (which modifier acts on which sample and bins). Because
templates are leaves, a model can be rebuilt inside ``jit``/``grad``/``vmap`` from
yields that depend on parameters.

Layout follows pyhf exactly, so that data vectors and parameter vectors can be passed
between the two tools unchanged:

- channels and samples are ordered by name; the main data are the channels' bins
  concatenated in that order;
- parameters are grouped by modifier type (histosys, lumi, normfactor, normsys,
  shapefactor, shapesys, staterror), each group in order of first appearance over
  channels, samples and (name-sorted) modifiers;
- the auxiliary data follow the constrained parameters in parameter order.

The likelihood is ``prod_bins Poisson(n | nu) * prod_constraints``, with continuous
Poisson terms (``lgamma``), Gaussian constraints for normsys, histosys, lumi and
staterror, and Poisson ("Gamma") constraints for shapesys.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana.model import curvature
from diffana.model.builder import build_model
from diffana.model.interpolation import HISTOSYS, NORMSYS
from diffana.model.structure import (  # noqa: F401  (re-exported: read from here)
    MODIFIER_TYPES,
    PER_BIN_TYPES,
    HessianColouring,
    ModelConfig,
    ModelStructure,
    ParameterSet,
)


from diffana._util import is_concrete
from diffana.errors import InvalidModel


class Model(eqx.Module):
    """A binned HistFactory likelihood.

    Build it with :meth:`Model.from_spec` (or ``diffana.model.load_workspace``).
    All methods are pure functions of the parameter vector (length
    ``config.npars``) and, for the likelihood, of the data vector
    (``config.nmaindata`` main bins followed by ``config.nauxdata`` auxiliary data,
    as in pyhf).
    """

    nominal: jax.Array  # (S, B) nominal yields per sample and bin
    normsys_hi: jax.Array  # (J,) up factors
    normsys_lo: jax.Array  # (J,) down factors
    histosys_up: jax.Array  # (H, B) hi - nominal, zero outside the channel
    histosys_down: jax.Array  # (H, B) nominal - lo
    gaussian_sigma: jax.Array  # (G,) widths of the Gaussian constraints
    poisson_rate_factor: jax.Array  # (Q,) tau of the shapesys Poisson constraints
    config: ModelConfig
    structure: ModelStructure = eqx.field(static=True)

    # --- construction -------------------------------------------------------------

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        poi_name: str | None = "mu",
        parameters: Sequence[Mapping[str, Any]] = (),
        normsys_interp: str = "code4",
        histosys_interp: str = "code4p",
    ) -> "Model":
        """Build a model from a pyhf model spec.

        Args:
            spec: ``{"channels": [{"name", "samples": [{"name", "data", "modifiers"}]}]}``.
                Sample ``data`` and modifier data may be lists or (traced) JAX arrays of
                expected event counts per bin.
            poi_name: name of the parameter of interest (a normfactor, usually the
                signal strength); ``None`` for a model without one.
            parameters: measurement parameter configurations, as in a pyhf workspace
                (``name`` with any of ``inits``, ``bounds``, ``fixed``, ``auxdata``,
                ``sigmas``); a ``lumi`` modifier needs ``auxdata`` and ``sigmas``.
            normsys_interp: ``"code4"`` (default, as pyhf) or ``"code1"``.
            histosys_interp: ``"code4p"`` (default, as pyhf) or ``"code0"``.
        """
        return build_model(
            cls,
            spec,
            poi_name=poi_name,
            parameters=parameters,
            normsys_interp=normsys_interp,
            histosys_interp=histosys_interp,
        )

    # --- expected yields ----------------------------------------------------------

    def _factors(self, pars):
        """Product of all multiplicative modifiers, shape (S, B)."""
        s = self.structure
        extended = jnp.concatenate([pars, jnp.ones((1,), pars.dtype)])
        # normfactor, lumi and per-bin factors: a few per cell, multiplied out one by
        # one (jnp.prod's derivative is a tree of slices, see _normsys_factors).
        gathered = extended[s.factor_index]  # (depth, S, B)
        direct = functools.reduce(jnp.multiply, list(gathered))
        if s.normsys_param.size:
            direct = direct * self._normsys_factors(pars)
        return direct

    def _normsys_factors(self, pars):
        """Product of the normsys factors acting on each sample and bin, shape (S, B).

        Published likelihoods carry hundreds of normsys modifiers. Their product is
        taken as exp(Σ log|f|) — a matrix product with the static (J, S·B) mask —
        times the sign of the product, instead of ``jnp.prod`` over a (J, S, B)
        array: the derivatives of a matrix product are matrix products, while
        ``jnp.prod``'s are a tree of slices whose Hessian took 3 of the 4 seconds
        of compiling the ATLAS eRJR likelihood's Hessian (237 normsys)."""
        s = self.structure
        interp = NORMSYS[s.normsys_interp]
        per_modifier = interp(pars[s.normsys_param], self.normsys_hi, self.normsys_lo)  # (J,)
        mask = jnp.asarray(s.normsys_mask.reshape(s.normsys_mask.shape[0], -1), pars.dtype)  # (J, S·B)
        magnitude = jnp.maximum(jnp.abs(per_modifier), jnp.finfo(pars.dtype).tiny)
        log_product = jnp.log(magnitude) @ mask
        # A factor can only be negative for a pathological code4 polynomial; keep the
        # sign of the product exact all the same (no derivative: piecewise constant).
        negatives = jax.lax.stop_gradient(jnp.where(per_modifier < 0, 1.0, 0.0) @ mask)
        sign = 1.0 - 2.0 * jnp.mod(negatives, 2.0)
        return (sign * jnp.exp(log_product)).reshape(s.normsys_mask.shape[1:])

    def _shifts(self, pars):
        """Sum of all additive (histosys) shifts, shape (S, B)."""
        s = self.structure
        if not s.histosys_param.size:
            return jnp.zeros_like(self.nominal)
        interp = HISTOSYS[s.histosys_interp]
        alpha = pars[s.histosys_param][:, None]
        shift = interp(alpha, self.histosys_up, self.histosys_down)  # (H, B)
        return jnp.einsum("hs,hb->sb", s.histosys_sample_onehot, shift)

    def expected_yields(self, pars) -> jax.Array:
        """Expected events per sample and bin, shape (n_samples, n_bins)."""
        pars = jnp.asarray(pars, jnp.float64)
        return (self.nominal + self._shifts(pars)) * self._factors(pars)

    def expected_actualdata(self, pars) -> jax.Array:
        """Expected events per bin (all channels concatenated), summed over samples."""
        return jnp.sum(self.expected_yields(pars), axis=0)

    def expected_auxdata(self, pars) -> jax.Array:
        """Auxiliary data at which the constraint terms peak for ``pars``."""
        s = self.structure
        pars = jnp.asarray(pars, jnp.float64)
        aux = jnp.zeros(s.n_aux, jnp.float64)
        aux = aux.at[s.gaussian_aux_index].set(pars[s.gaussian_param])
        aux = aux.at[s.poisson_aux_index].set(pars[s.poisson_param] * self.poisson_rate_factor)
        return aux

    def expected_data(self, pars, include_auxdata: bool = True) -> jax.Array:
        """Main bins followed (by default) by the auxiliary data, as in pyhf."""
        main = self.expected_actualdata(pars)
        if not include_auxdata:
            return main
        return jnp.concatenate([main, self.expected_auxdata(pars)])

    # --- likelihood ---------------------------------------------------------------
    #
    # Each term is split as log p(n | rate) = log [p(n | rate) / p(n | n)] + log p(n | n):
    # a log-ratio to the saturated model, which depends on the parameters and is
    # computed exactly in float64 at any count, and a constant of the data. Fits
    # minimise the deviance (-2 × the sum of log-ratios): with a Poisson constraint
    # of τ = 1.9e11 (an MC-statistics shapesys of 0.001 on 435 events in a published
    # ATLAS likelihood) n·log(rate) − rate − lgamma(n + 1) is a difference of terms
    # of order 10¹², so −2 ln L moves in steps of 2⁻⁹ whatever the parameter does,
    # and fits stop at round-off; the log-ratio has no such cancellation.

    def deviance(self, pars, data) -> jax.Array:
        """-2 ln [L(pars) / L_saturated]: ``twice_nll`` less its constant
        ``saturated_twice_nll(data)``, exact in float64 however large the counts or
        the constraints' τ. The objective the fits minimise."""
        pars = jnp.asarray(pars, jnp.float64)
        data = jnp.asarray(data, jnp.float64)
        main, aux = self._split_data(data)
        rates = self.expected_actualdata(pars)
        log_ratio = jnp.sum(_poisson_log_ratio(main, rates))
        return -2.0 * (log_ratio + self._constraint_log_ratio(pars, aux))

    def saturated_twice_nll(self, data) -> jax.Array:
        """-2 ln L of the saturated model (every rate equal to its count, every
        constrained parameter at its auxiliary datum): a constant of the data."""
        main, aux = self._split_data(jnp.asarray(data, jnp.float64))
        return -2.0 * (jnp.sum(_poisson_saturated_logpdf(main)) + self._constraint_saturated_logpdf(aux))

    def mainlogpdf(self, pars, maindata) -> jax.Array:
        """Sum of the Poisson log-probabilities of the main bins (continuous in n)."""
        rates = self.expected_actualdata(pars)
        return jnp.sum(_poisson_log_ratio(maindata, rates) + _poisson_saturated_logpdf(maindata))

    def constraint_logpdf(self, pars, auxdata) -> jax.Array:
        """Sum of the constraint terms' log-probabilities."""
        pars = jnp.asarray(pars, jnp.float64)
        return self._constraint_log_ratio(pars, auxdata) + self._constraint_saturated_logpdf(auxdata)

    def _constraint_log_ratio(self, pars, auxdata) -> jax.Array:
        s = self.structure
        total = jnp.zeros((), jnp.float64)
        if s.gaussian_param.size:
            z = (auxdata[s.gaussian_aux_index] - pars[s.gaussian_param]) / self.gaussian_sigma
            total += jnp.sum(-0.5 * z**2)
        if s.poisson_param.size:
            rates = pars[s.poisson_param] * self.poisson_rate_factor
            total += jnp.sum(_poisson_log_ratio(auxdata[s.poisson_aux_index], rates))
        return total

    def _constraint_saturated_logpdf(self, auxdata) -> jax.Array:
        s = self.structure
        total = jnp.zeros((), jnp.float64)
        if s.gaussian_param.size:
            total += jnp.sum(-jnp.log(self.gaussian_sigma) - 0.5 * math.log(2 * math.pi))
        if s.poisson_param.size:
            total += jnp.sum(_poisson_saturated_logpdf(auxdata[s.poisson_aux_index]))
        return total

    @staticmethod
    def _main_log_ratio(maindata, rates):
        """Per main bin, log Poisson(n | rate) − log Poisson(n | n)
        (:func:`_poisson_log_ratio`); :mod:`~diffana.model.curvature` differentiates
        it through the model, so that it need not import this module."""
        return _poisson_log_ratio(maindata, rates)

    def _split_data(self, data):
        n_main = self.config.nmaindata
        return data[:n_main], data[n_main:]

    def logpdf(self, pars, data) -> jax.Array:
        """Log-likelihood of ``data`` (main bins then auxiliary data) at ``pars``."""
        return -0.5 * self.twice_nll(pars, data)

    def twice_nll(self, pars, data) -> jax.Array:
        """-2 log L, as pyhf: the deviance plus the saturated model's constant."""
        return self.deviance(pars, data) + self.saturated_twice_nll(data)

    # --- curvature ----------------------------------------------------------------

    def twice_nll_hessian(self, pars, data) -> jax.Array:
        """Exact Hessian of ``-2 log L`` (and of the deviance, which differs by a
        constant) w.r.t. the parameters, shape (P, P); see
        :meth:`deviance_gradient_and_hessian`."""
        return self.deviance_gradient_and_hessian(pars, data)[1]

    def deviance_gradient_and_hessian(self, pars, data) -> tuple[jax.Array, jax.Array]:
        """Gradient (P,) and exact Hessian (P, P) of the deviance (and of ``-2 log L``).

        Two exact methods, chosen per structure by their estimated cost
        (:func:`diffana.model.curvature.structural_hessian_is_cheaper`): the
        structural one (:mod:`diffana.model.curvature`: univariate modifier
        derivatives combined by matrix products; fast to compile and run for models
        of many global parameters, such as published likelihoods) or coloured
        Hessian-vector products (:meth:`coloured_gradient_and_hessian`; cheapest when
        most parameters act on one bin each, such as per-bin shapesys templates).
        """
        if curvature.structural_hessian_is_cheaper(self.structure):
            return curvature.deviance_gradient_and_hessian(self, pars, data)
        return self.coloured_gradient_and_hessian(pars, data)

    def coloured_gradient_and_hessian(self, pars, data) -> tuple[jax.Array, jax.Array]:
        """Gradient (P,) and exact Hessian (P, P) of the deviance (and of ``-2 log L``).

        One linearisation of the gradient gives both: the gradient is its primal
        value, the Hessian its products with a few directions. Those use the
        likelihood's structural sparsity: per-bin parameters (shapesys, staterror,
        shapefactor) of different bins never interact, so all of them can be probed
        by a few Hessian-vector products ("colours") instead of one per parameter.
        Cost: (number of global parameters + largest number of per-bin parameters
        in one bin) products, instead of P.
        """
        pars = jnp.asarray(pars, jnp.float64)
        colouring = self.structure.hessian_colouring
        gradient, hvp = jax.linearize(lambda p: jax.grad(self.deviance)(p, data), pars)
        products = jax.vmap(hvp)(jnp.asarray(colouring.directions, pars.dtype))  # (K, P)
        # Per-bin block: entry (r, i) is read off the product of i's colour, where i
        # is the only parameter of that colour interacting with r.
        hessian = products[colouring.column_colour, :].T * colouring.per_bin_mask
        # Global rows and columns come from their own (exact) products.
        global_columns = products[: colouring.n_global]  # (G, P)
        hessian = hessian.at[:, colouring.global_index].set(global_columns.T)
        hessian = hessian.at[colouring.global_index, :].set(global_columns)
        return gradient, hessian

    # --- pseudo-experiments -------------------------------------------------------

    def sample_data(self, key, pars, n_toys: int) -> jax.Array:
        """Draw ``n_toys`` data sets from the full likelihood at ``pars``.

        Main bins are Poisson with the expected event counts; the auxiliary data are
        drawn from their constraint terms: normal around the parameter for normsys,
        histosys, lumi and staterror (width: the constraint's sigma), Poisson with
        rate γ·τ for shapesys. Returns ``(n_toys, nmaindata + nauxdata)``, laid out
        like observed data.
        """
        s = self.structure
        pars = jnp.asarray(pars, jnp.float64)
        key_main, key_gauss, key_poisson = jax.random.split(key, 3)
        rates = self.expected_actualdata(pars)
        main = jax.random.poisson(key_main, rates, shape=(n_toys,) + rates.shape).astype(jnp.float64)
        aux = jnp.zeros((n_toys, s.n_aux), jnp.float64)
        if s.gaussian_param.size:
            centre = pars[s.gaussian_param]
            draws = centre + self.gaussian_sigma * jax.random.normal(key_gauss, (n_toys,) + centre.shape, jnp.float64)
            aux = aux.at[:, s.gaussian_aux_index].set(draws)
        if s.poisson_param.size:
            rate = pars[s.poisson_param] * self.poisson_rate_factor
            draws = jax.random.poisson(key_poisson, rate, shape=(n_toys,) + rate.shape).astype(jnp.float64)
            aux = aux.at[:, s.poisson_aux_index].set(draws)
        return jnp.concatenate([main, aux], axis=1)

    # --- checks -------------------------------------------------------------------

    def check_data(self, data) -> jax.Array:
        """Validate a data vector's length (and, when concrete, its values)."""
        data = jnp.asarray(data, jnp.float64)
        expected = self.config.nmaindata + self.config.nauxdata
        if data.ndim != 1 or data.shape[0] != expected:
            raise ValueError(
                f"data has shape {tuple(data.shape)}, but the model expects {expected} values: "
                f"{self.config.nmaindata} main bins (channels {self.config.channel_nbins}) "
                f"followed by {self.config.nauxdata} auxiliary data"
            )
        if is_concrete(data):
            values = np.asarray(data)
            if not np.all(np.isfinite(values)):
                bad = np.flatnonzero(~np.isfinite(values)).tolist()
                raise ValueError(f"data contain NaN or inf at positions {bad}")
            if np.any(values[: self.config.nmaindata] < 0):
                bad = np.flatnonzero(values[: self.config.nmaindata] < 0).tolist()
                raise ValueError(f"observed counts are negative in main bins {bad}")
        return data


def _poisson_log_ratio(n, rate):
    """log Poisson(n | rate) − log Poisson(n | n), continuous in n, exact in float64.

    Written as n·(log1p(u) − u) with u = (rate − n)/n, which involves no difference
    of large numbers for any n (rate − n is exact where rate and n are within a
    factor 2); −rate where n = 0; −inf where n > 0 and rate <= 0."""
    counted = n > 0
    usable = counted & (rate > 0)
    safe_n = jnp.where(counted, n, 1.0)
    u = jnp.where(usable, (rate - n) / safe_n, 0.0)
    ratio = jnp.where(usable, safe_n * _log1p_minus_identity(u), -jnp.inf)
    return jnp.where(counted, ratio, -rate)


# Below this |u|, log1p(u) − u (≈ −u²/2) comes from its Taylor series: the direct
# difference loses about log10(2/|u|) digits.
_SERIES_BELOW = 0.01


def _log1p_minus_identity(u):
    """log(1 + u) − u to float64 precision for any u > −1 (series to u¹¹ for
    |u| < 0.01, where the first omitted term is below 1e-16 of the result)."""
    small = jnp.abs(u) < _SERIES_BELOW
    v = jnp.where(small, u, 0.0)
    series = 0.0
    for k in range(11, 1, -1):  # Horner: Σ_{k≥2} (−1)^(k+1) v^k / k
        series = v * (series + (-1.0) ** (k + 1) / k)
    series = v * series
    w = jnp.where(small, 0.5, u)
    return jnp.where(small, series, jnp.log1p(w) - w)


# Above this count, log Poisson(n | n) comes from Stirling's series: the direct
# n log n − n − lgamma(n + 1) is a difference of terms of order n log n (10¹² for a
# constraint of τ = 1.9e11, where it is off by 1.6e-3).
_STIRLING_FROM = 10.0


def _poisson_saturated_logpdf(n):
    """log Poisson(n | n) = n log n − n − lgamma(n + 1), 0 at n = 0, to float64
    precision at any n: for n ≥ 10 as −½ log(2πn) − (1/(12n) − 1/(360n³) +
    1/(1260n⁵) − 1/(1680n⁷) + 1/(1188n⁹)), whose first omitted term is below 2e-14
    there."""
    small = n < _STIRLING_FROM
    safe_small = jnp.where(small & (n > 0), n, 1.0)
    direct = jnp.where(n > 0, n * jnp.log(safe_small) - n, 0.0) - jax.scipy.special.gammaln(jnp.where(small, n, 1.0) + 1.0)
    large = jnp.where(small, _STIRLING_FROM, n)
    inverse, inverse2 = 1.0 / large, 1.0 / large**2
    series = inverse * (1.0 / 12 - inverse2 * (1.0 / 360 - inverse2 * (1.0 / 1260 - inverse2 * (1.0 / 1680 - inverse2 / 1188))))
    stirling = -0.5 * jnp.log(2.0 * math.pi * large) - series
    return jnp.where(small, direct, stirling)


class PoissonGaussianNormalisation:
    """pyhf's normalisation of −2 ln L for a model whose main data are Poisson counts
    and whose auxiliary data are unit Gaussians (the counting and the parametric
    model): ``saturated_twice_nll``, ``twice_nll`` and ``logpdf`` from the model's
    ``deviance`` and ``_split_data`` (main counts, auxiliary data)."""

    def saturated_twice_nll(self, data) -> jax.Array:
        """−2 ln L of the saturated model: a constant of the data."""
        main, aux = self._split_data(data)
        gaussian = -0.5 * math.log(2.0 * math.pi) * aux.shape[0]
        return -2.0 * (jnp.sum(_poisson_saturated_logpdf(main)) + gaussian)

    def twice_nll(self, pars, data) -> jax.Array:
        """−2 ln L (continuous Poisson, unit Gaussians), pyhf's normalisation."""
        return self.deviance(pars, data) + self.saturated_twice_nll(data)

    def logpdf(self, pars, data) -> jax.Array:
        """ln L(pars | data)."""
        return -0.5 * self.twice_nll(pars, data)
