"""The model itself: :class:`ParametricModel` (formula in the package docstring)."""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel
from diffana.model.model import PoissonGaussianNormalisation, _poisson_log_ratio
from diffana.model.parametric.checks import (
    _check_counts,
    _check_degree,
    _check_edges,
    _check_signal,
    location_field,
    _nuisance_width,
    _scalar,
)
from diffana.model.parametric.config import POI_INDEX, ParametricConfig, _config, bernstein_bin_fractions

# The model's rate per bin is max(λ_b, RATE_FLOOR) events. A negative signal yield
# may push λ_b to or below zero in a bin; with n_b > 0 that bin's Poisson term is
# −inf (the fit's line search backs off, but a fit started there could not move),
# and with n_b = 0 its term −λ_b would *reward* λ_b < 0. The floor makes the
# likelihood finite and bounded there: in a bin with counts a floored rate costs
# ~n_b·ln(n_b/1e-12) ≈ 28·n_b in ln L (the fit keeps away), in an empty bin the
# floored term is flat (no reward below zero).
RATE_FLOOR = 1e-12
RATE_FLOOR = 1e-12
EFFICIENCY_FORMS = ("normal", "lognormal")
_NUISANCES = ("mass_scale", "resolution", "efficiency")  # parameter order of the pulls


class ParametricModel(eqx.Module, PoissonGaussianNormalisation):
    """A signal shape on a Bernstein-polynomial background in one fit window (see
    the docstring of diffana.model.parametric for the formula). Build it with :meth:`build`."""

    edges: jax.Array  # (B+1,) bin edges of the window (units of the observable)
    background_basis: jax.Array  # (B, n+1) I_bk, each column summing to 1
    signal: eqx.Module  # a normalised shape on [edges[0], edges[-1]] with bin_integrals(edges)
    # (B,) the signal's bin fractions at nominal shape parameters, computed once at
    # build: without a mass-scale or resolution nuisance the fits use these (the
    # shape's CDFs — a double Crystal Ball's power-law tails — then appear once in
    # the program, not in every loop of every fit: compile time ÷ 3).
    nominal_fractions: jax.Array
    signal_per_poi: jax.Array  # () expected signal events in the window per unit of POI
    widths: jax.Array  # (K,) σ of each constrained nuisance, in parameter order
    config: ParametricConfig
    efficiency_form: str = eqx.field(static=True)
    width_fields: tuple[str, ...] = eqx.field(static=True)  # the shape's fields the resolution scales

    # --- construction -------------------------------------------------------------

    @classmethod
    def build(
        cls,
        *,
        edges,
        signal,
        counts,
        background_degree: int = 3,
        signal_per_poi=1.0,
        mass_scale_width=None,
        resolution_width=None,
        efficiency_width=None,
        efficiency_form: str = "normal",
        poi_name: str = "signal_yield",
        poi_bounds=None,
    ) -> "ParametricModel":
        """A model of one window, with start values and bounds from its counts.

        Args:
            edges: (B+1,) strictly increasing bin edges of the window (units of the
                observable, e.g. GeV); B ≥ background_degree + 2.
            signal: a shape of :mod:`diffana.shapes` normalised on
                [edges[0], edges[-1]] (any equinox Module with ``lower``, ``upper``,
                ``bin_integrals(edges)``; ``mean``/``sigma`` where a nuisance moves them).
            counts: (B,) the observed counts, ≥ 0, not all zero. Used only for the
                start values and bounds (the data are given to the fits).
            background_degree: degree n of the Bernstein polynomial (n+1 coefficients).
            signal_per_poi: expected signal events in the window per unit of POI
                (default 1: the POI is the signal yield in events), > 0.
            mass_scale_width: σ_m of the mean's shift, in the observable's units
                (``mean + alpha_mass_scale·σ_m``); None for no such nuisance.
            resolution_width: σ_r, relative (``sigma·(1 + alpha_resolution·σ_r)``),
                < 0.2; None for none.
            efficiency_width: σ_ε, relative (``ε = 1 + alpha_efficiency·σ_ε``, < 0.2,
                or ``(1 + σ_ε)^alpha_efficiency`` for ``efficiency_form="lognormal"``).
            poi_name: name of the POI.
            poi_bounds: (lower, upper) of the POI; default
                (−5·√(N+1), 10·(N+10))/signal_per_poi events with N = Σ counts, so
                that signed yields of a few standard deviations fit.
        """
        degree = _check_degree(background_degree)
        if efficiency_form not in EFFICIENCY_FORMS:
            raise InvalidModel(f"efficiency_form must be one of {EFFICIENCY_FORMS}, got {efficiency_form!r}")
        if not isinstance(poi_name, str) or not poi_name or poi_name.startswith(("bkg_c", "alpha_")):
            raise InvalidModel(f"poi_name must be a non-empty string not starting with 'bkg_c' or 'alpha_', "
                               f"got {poi_name!r}")
        edges = _check_edges(edges, degree)
        n_bins = edges.shape[0] - 1
        counts = _check_counts(counts, n_bins)
        per_poi = _scalar(signal_per_poi, "signal_per_poi", "expected signal events per unit of POI", positive=True)
        given = {
            "mass_scale": _nuisance_width(mass_scale_width, "mass_scale_width", "shift of the mean per unit pull",
                                          linear=False),
            "resolution": _nuisance_width(resolution_width, "resolution_width", "relative width uncertainty",
                                          linear=True),
            "efficiency": _nuisance_width(efficiency_width, "efficiency_width", "relative efficiency uncertainty",
                                          linear=efficiency_form == "normal"),
        }
        nuisances = tuple(name for name in _NUISANCES if given[name] is not None)
        width_fields = _check_signal(signal, edges, "mass_scale" in nuisances, "resolution" in nuisances)
        config = _config(counts, per_poi, degree, nuisances, poi_name, poi_bounds)
        widths = jnp.stack([given[name] for name in nuisances]) if nuisances else jnp.zeros(0)
        return cls(edges=edges, background_basis=bernstein_bin_fractions(edges, degree), signal=signal,
                   nominal_fractions=signal.bin_integrals(edges), signal_per_poi=per_poi, widths=widths, config=config, efficiency_form=efficiency_form,
                   width_fields=width_fields)

    @classmethod
    def stack(cls, models: Sequence["ParametricModel"]) -> "ParametricModel":
        """One model whose leaves have a leading window axis (``config.init`` is
        (N, P)), for ``jax.vmap`` and the stacked entry points of
        :mod:`diffana.infer`. The models must share bin count, degree, nuisances,
        names and signal-shape type."""
        models = list(models)
        if not models:
            raise InvalidModel("ParametricModel.stack needs at least one model")
        treedef = jax.tree_util.tree_structure(models[0])
        for index, model in enumerate(models[1:], start=1):
            if jax.tree_util.tree_structure(model) != treedef:
                raise InvalidModel(f"models[{index}] differs from models[0] in bin count, degree, nuisances, "
                                   "parameter names or signal-shape type; a stack needs one structure")
        return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *models)

    def observed_data(self, counts) -> jax.Array:
        """The data vector ``[n_1 … n_B, 0 …]``: the counts, then the auxiliary data
        of the constraints (0: nominal)."""
        counts = _check_counts(counts, self.config.n_bins)
        return jnp.concatenate([counts, self.config.auxdata])

    # --- expected data ------------------------------------------------------------

    def _pull(self, pars, name: str):
        """The pull ``alpha_<name>`` from ``pars``, 0 if the model lacks it."""
        names = self.config.names
        return pars[names.index(f"alpha_{name}")] if f"alpha_{name}" in names else jnp.zeros((), pars.dtype)

    def _width(self, name: str):
        nuisances = self.config.nuisance_names
        return self.widths[nuisances.index(name)] if name in nuisances else jnp.zeros((), jnp.float64)

    def signal_shape(self, pars) -> eqx.Module:
        """The signal shape with the mass-scale and resolution nuisances applied."""
        pars = jnp.asarray(pars, jnp.float64)
        shape = self.signal
        if "mass_scale" in self.config.nuisance_names:
            shift = self._pull(pars, "mass_scale") * self._width("mass_scale")
            field = location_field(shape)  # mean, or mass for a Breit–Wigner / Voigtian
            shape = eqx.tree_at(lambda s: getattr(s, field), shape, getattr(shape, field) + shift)
        if "resolution" in self.config.nuisance_names:
            factor = 1.0 + self._pull(pars, "resolution") * self._width("resolution")
            for field in self.width_fields:
                shape = eqx.tree_at(lambda s, f=field: getattr(s, f), shape, getattr(shape, field) * factor)
        return shape

    def efficiency(self, pars) -> jax.Array:
        """The efficiency factor ε (1 without the nuisance)."""
        pars = jnp.asarray(pars, jnp.float64)
        if "efficiency" not in self.config.nuisance_names:
            return jnp.ones((), jnp.float64)
        alpha, width = self._pull(pars, "efficiency"), self._width("efficiency")
        if self.efficiency_form == "lognormal":
            return jnp.exp(alpha * jnp.log1p(width))
        return 1.0 + alpha * width

    def expected_signal(self, pars) -> jax.Array:
        """Expected signal events per bin (B,), ``s·a·ε·f_b``."""
        pars = jnp.asarray(pars, jnp.float64)
        return pars[POI_INDEX] * self.signal_per_poi * self.efficiency(pars) * self.signal_fractions(pars)

    def signal_fractions(self, pars) -> jax.Array:
        """f_b: the signal shape's probability per bin (B,), at the pulls in
        ``pars`` (the cached nominal fractions when no pull moves the shape)."""
        if not self.shape_moves:
            return self.nominal_fractions
        return self.signal_shape(pars).bin_integrals(self.edges)

    @property
    def shape_moves(self) -> bool:
        """Whether a nuisance (mass scale, resolution) changes the signal shape."""
        return any(name in self.config.nuisance_names for name in ("mass_scale", "resolution"))

    def expected_background(self, pars) -> jax.Array:
        """Expected background events per bin (B,), ``Σ_k c_k·I_bk``."""
        pars = jnp.asarray(pars, jnp.float64)
        return self.background_basis @ pars[self.config.background_slice]

    def expected_actualdata(self, pars) -> jax.Array:
        """The rates of the main bins, ``max(signal + background, RATE_FLOOR)``."""
        return jnp.maximum(self._unfloored_rates(pars), RATE_FLOOR)

    def _unfloored_rates(self, pars) -> jax.Array:
        return self.expected_signal(pars) + self.expected_background(pars)

    def expected_auxdata(self, pars) -> jax.Array:
        """Where the constraints peak: at the pulls themselves."""
        return jnp.asarray(pars, jnp.float64)[self.config.background_slice.stop:]

    def expected_data(self, pars, include_auxdata: bool = True) -> jax.Array:
        """Main bins followed (by default) by the auxiliary data, as in pyhf."""
        main = self.expected_actualdata(pars)
        return jnp.concatenate([main, self.expected_auxdata(pars)]) if include_auxdata else main

    # --- likelihood ---------------------------------------------------------------

    def _split_data(self, data):
        data = jnp.asarray(data, jnp.float64)
        return data[:self.config.n_bins], data[self.config.n_bins:]

    def deviance(self, pars, data) -> jax.Array:
        """−2 ln [L(pars)/L_saturated(data)] = 2Σ_b[λ_b − n_b + n_b ln(n_b/λ_b)]
        + Σ_k (a_k − α_k)², exact in float64 at any count."""
        main, aux = self._split_data(data)
        poisson = jnp.sum(_poisson_log_ratio(main, self.expected_actualdata(pars)))
        gaussian = -0.5 * jnp.sum((aux - self.expected_auxdata(pars)) ** 2)
        return -2.0 * (poisson + gaussian)

    def deviance_gradient_and_hessian(self, pars, data):
        """Gradient (P,) and exact Hessian (P, P) of :meth:`deviance` from the
        Jacobian J = ∂λ/∂p of the rates (P forward passes):

            g = Jᵀ w,  H = Jᵀ diag(2n/λ²) J + Σ_b w_b ∇²λ_b  (+ the constraints'),

        with w_b = 2(1 − n_b/λ_b) (0 where the rate is floored). Without nuisances
        λ is linear in the parameters (s and the c_k), so the last term vanishes and
        no second derivative is taken — the fits of a bump hunt then cost a few
        matrix products per Newton step instead of forward-over-reverse automatic
        differentiation (the protocol's fallback)."""
        main, aux = self._split_data(data)
        pars = jnp.asarray(pars, jnp.float64)
        unfloored = self._unfloored_rates(pars)
        jacobian = jax.jacfwd(self._unfloored_rates)(pars)
        above = unfloored > RATE_FLOOR
        rate = jnp.where(above, unfloored, RATE_FLOOR)
        weight = jnp.where(above, 2.0 * (1.0 - main / rate), 0.0)
        curvature = jnp.where(above, 2.0 * main / rate**2, 0.0)
        gradient = jacobian.T @ weight
        hessian = (jacobian.T * curvature) @ jacobian
        if self.config.nuisance_names:
            hessian = hessian + jax.hessian(lambda p: jnp.dot(weight, self._unfloored_rates(p)))(pars)
            pulls = jnp.arange(pars.shape[0]) >= self.config.background_slice.stop
            pull_values = jnp.where(pulls, pars, 0.0)
            aux_full = jnp.zeros_like(pars).at[self.config.background_slice.stop:].set(aux)
            gradient = gradient + 2.0 * jnp.where(pulls, pull_values - aux_full, 0.0)
            hessian = hessian + 2.0 * jnp.diag(pulls.astype(pars.dtype))
        return gradient, hessian

    # --- pseudo-experiments -------------------------------------------------------

    def sample_data(self, key, pars, n_toys: int) -> jax.Array:
        """``n_toys`` data sets at ``pars``: Poisson counts per bin and unit-normal
        auxiliary data around the pulls, shape (n_toys, B + K)."""
        key_main, key_aux = jax.random.split(key)
        rates = self.expected_actualdata(pars)
        main = jax.random.poisson(key_main, rates, shape=(n_toys,) + rates.shape).astype(jnp.float64)
        centre = self.expected_auxdata(pars)
        aux = centre + jax.random.normal(key_aux, (n_toys,) + centre.shape, jnp.float64)
        return jnp.concatenate([main, aux], axis=1)

    # --- checks -------------------------------------------------------------------

    def check_data(self, data) -> jax.Array:
        """``data`` as float64, with a one-line ValueError for a wrong length and,
        when concrete, NaN/inf, negative counts or an empty window (all counts 0:
        the background coefficients would have no data and the fit no minimum
        inside their bounds)."""
        data = jnp.asarray(data, jnp.float64)
        n_bins, n_aux = self.config.n_bins, self.config.nauxdata
        if data.ndim != 1 or data.shape[0] != n_bins + n_aux:
            raise ValueError(f"data has shape {tuple(data.shape)}, but the ParametricModel expects {n_bins + n_aux} "
                             f"values: {n_bins} counts then {n_aux} auxiliary data ({self.config.nuisance_names}); "
                             "build it with model.observed_data(counts)")
        if is_concrete(data):
            values = np.asarray(data)
            if not np.all(np.isfinite(values)):
                raise ValueError(f"data contain NaN or inf at positions {np.flatnonzero(~np.isfinite(values)).tolist()}")
            if np.any(values[:n_bins] < 0):
                raise ValueError(f"observed counts are negative in bins {np.flatnonzero(values[:n_bins] < 0).tolist()}")
            if not np.any(values[:n_bins] > 0):
                raise ValueError("observed counts are all zero: the window is empty, there is no background to fit")
        return data
