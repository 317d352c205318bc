"""A binned bump-hunt likelihood: a parametric signal shape on a free polynomial
background in one fit window.

The main data are the counts ``n_b`` of one observable (a mass, in GeV say) in the
``B`` bins of a fit window with edges ``x_0 < … < x_B``. The expected count per bin is

    λ_b = s · a · ε(α_ε) · f_b(α_m, α_r) + Σ_k c_k · I_bk

- ``s``: the parameter of interest; ``a`` (``signal_per_poi``) the expected signal
  events in the window per unit of POI (1 by default, so that ``s`` is the signal
  yield in events; luminosity × efficiency for a cross-section POI);
- ``f_b``: the probability per bin of a signal shape of :mod:`diffana.shapes`
  normalised on the window (so ``Σ_b f_b = 1``: ``s·a`` is the signal *in the
  window*), with its centre and width moved by the mass-scale and resolution
  nuisances: ``mean → mean + α_m·σ_m`` (σ_m in the observable's units) and
  ``sigma → sigma·(1 + α_r·σ_r)`` (σ_r relative);
- ``ε(α_ε) = 1 + α_ε·σ_ε`` (``efficiency_form="normal"``) or ``(1 + σ_ε)^α_ε``
  (``"lognormal"``), σ_ε relative;
- ``I_bk``: the fraction of the k-th Bernstein basis polynomial of degree ``n`` on
  the window that falls in bin b (``Σ_b I_bk = 1``), so each coefficient ``c_k`` is
  in *events* and ``Σ_k c_k`` is the background in the window. ``c_k ≥ 0`` (their
  bounds) keeps the background non-negative everywhere in the window: sufficient,
  not necessary (see docs/parametric_model.md).

Each nuisance is optional (given by its width) and is a unit-Gaussian pull
``alpha_<name>`` with auxiliary datum 0 (pyhf's normsys convention), so data
vectors are ``[n_1 … n_B, a_1 … a_K]`` and parameter vectors ``[s, c_0 … c_n,
alpha_… ]``.

The likelihood is Π_b Poisson(n_b; λ_b) · Π_k N(a_k; α_k, 1). Signed signal yields
are allowed (a bump hunt's local significance needs them), so ``λ_b`` could reach
zero or below; the model's rate is ``max(λ_b, RATE_FLOOR)`` (see :data:`RATE_FLOOR`).

The model implements :class:`diffana.infer.protocol.StatisticalModel`. Its arrays
(edges, the basis integrals, the shape's parameters, the widths, the config's
arrays) are leaves and its names and sizes static, so models of one bin count,
degree and nuisance set stack (:meth:`ParametricModel.stack`,
``infer.stack_models``, or build under ``jax.vmap``, see :func:`sliding_windows`)
and ``jax.vmap(infer.fit)`` fits thousands of windows in one call.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.errors import InvalidModel
from diffana.model.model import _poisson_log_ratio, _poisson_saturated_logpdf
from diffana.model.structure import SuggestedParameters
from diffana.shapes.polynomials import bernstein_basis_integrals

POI_INDEX = 0
PULL_BOUNDS = (-5.0, 5.0)  # as pyhf's normsys default
# The model's rate per bin is max(λ_b, RATE_FLOOR) events. A negative signal yield
# may push λ_b to or below zero in a bin; with n_b > 0 that bin's Poisson term is
# −inf (the fit's line search backs off, but a fit started there could not move),
# and with n_b = 0 its term −λ_b would *reward* λ_b < 0. The floor makes the
# likelihood finite and bounded there: in a bin with counts a floored rate costs
# ~n_b·ln(n_b/1e-12) ≈ 28·n_b in ln L (the fit keeps away), in an empty bin the
# floored term is flat (no reward below zero).
RATE_FLOOR = 1e-12
EFFICIENCY_FORMS = ("normal", "lognormal")
# A linear factor 1 + α·σ stays positive on the pulls' bounds [−5, 5] only for σ < 1/5.
_LINEAR_WIDTH_LIMIT = 1.0 / -PULL_BOUNDS[0]
_NUISANCES = ("mass_scale", "resolution", "efficiency")  # parameter order of the pulls
_WIDTH_ATTRIBUTES = ("sigma",)  # shape fields scaled by the resolution nuisance (also sigma_*)


# --- Bernstein basis ---------------------------------------------------------------

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

class ParametricConfig(eqx.Module, SuggestedParameters):
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
    def poi_index(self) -> int:
        return POI_INDEX

    @property
    def poi_name(self) -> str:
        return self.names[POI_INDEX]

    @property
    def npars(self) -> int:
        return len(self.names)

    @property
    def par_names(self) -> list[str]:
        return list(self.names)

    @property
    def parameters(self) -> list[str]:
        return list(self.names)

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

    @property
    def auxdata(self) -> jax.Array:
        return self.auxdata_values

    def par_index(self, name: str) -> int:
        """Position of parameter ``name`` in parameter vectors."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no parameter named {name!r}; the model has {list(self.names)}") from None

    def poi_bounds(self) -> tuple[float, float]:
        """The POI's (lower, upper) bounds as Python floats (a single, concrete model)."""
        return float(self.lower[POI_INDEX]), float(self.upper[POI_INDEX])


# --- argument checks (each only on concrete values; silent under jit/vmap) ----------

def _scalar(value, argument: str, meaning: str, *, positive: bool) -> jax.Array:
    """``value`` as a float64 scalar; a one-line InvalidModel naming ``argument`` if
    it is concrete and not a finite number > 0 (``positive``) or ≥ 0."""
    if is_concrete(value):
        try:
            number = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidModel(f"{argument} must be a number ({meaning}), got {value!r}") from None
        if number.ndim != 0:
            raise InvalidModel(f"{argument} must be a single number ({meaning}), got shape {number.shape}")
        if not np.isfinite(number) or (number <= 0 if positive else number < 0):
            relation = "> 0" if positive else ">= 0"
            raise InvalidModel(f"{argument} must be a finite number {relation} ({meaning}), got {float(number)!r}")
    return jnp.asarray(value, jnp.float64)


def _check_edges(edges, degree: int) -> jax.Array:
    """Bin edges as float64 (B+1,): one-line InvalidModel for a wrong shape, too few
    bins for the background polynomial, or (when concrete) non-increasing edges."""
    edges = jnp.asarray(edges, jnp.float64)
    if edges.ndim != 1:
        raise InvalidModel(f"edges must be a 1-d array of bin edges, got shape {tuple(edges.shape)}")
    if edges.shape[0] - 1 < degree + 2:
        raise InvalidModel(
            f"edges give {edges.shape[0] - 1} bins, but a degree-{degree} background needs at least "
            f"{degree + 2} (degree + 1 coefficients and a signal yield)"
        )
    if is_concrete(edges):
        values = np.asarray(edges)
        if not np.all(np.isfinite(values)):
            raise InvalidModel("edges contain NaN or inf")
        steps = np.diff(values)
        if np.any(steps <= 0):
            first = int(np.flatnonzero(steps <= 0)[0])
            raise InvalidModel(f"edges must increase strictly; edges[{first + 1}] = {float(values[first + 1])!r} "
                               f"<= edges[{first}] = {float(values[first])!r}")
    return edges


def _check_counts(counts, n_bins: int, argument: str = "counts") -> jax.Array:
    """Observed counts as float64 (B,), with one-line errors for a wrong length and,
    when concrete, NaN/inf, negative counts and an empty window."""
    counts = jnp.asarray(counts, jnp.float64)
    if counts.shape != (n_bins,):
        raise InvalidModel(f"{argument} has shape {tuple(counts.shape)}, but the window has {n_bins} bins")
    if is_concrete(counts):
        values = np.asarray(counts)
        if not np.all(np.isfinite(values)):
            raise InvalidModel(f"{argument} contain NaN or inf in bins {np.flatnonzero(~np.isfinite(values)).tolist()}")
        if np.any(values < 0):
            raise InvalidModel(f"{argument} are negative in bins {np.flatnonzero(values < 0).tolist()}")
        if not np.any(values > 0):
            raise InvalidModel(f"{argument} are all zero: the window is empty, there is no background to fit")
    return counts


def _check_signal(signal, edges, use_mean: bool, use_width: bool) -> tuple[str, ...]:
    """The signal shape's width fields; one-line InvalidModel if it lacks
    ``bin_integrals``, ``mean`` or a width where a nuisance needs them, or (when
    concrete) its normalisation range is not the window or its mean lies outside."""
    if not callable(getattr(signal, "bin_integrals", None)):
        raise InvalidModel(f"signal must be a shape with bin_integrals(edges) (diffana.shapes), "
                           f"got {type(signal).__name__}")
    if use_mean and not hasattr(signal, "mean"):
        raise InvalidModel(f"signal ({type(signal).__name__}) has no 'mean' for the mass-scale nuisance to shift")
    width_fields = tuple(f.name for f in dataclasses.fields(signal)
                         if f.name in _WIDTH_ATTRIBUTES or f.name.startswith("sigma_")) \
        if dataclasses.is_dataclass(signal) else ()
    if use_width and not width_fields:
        raise InvalidModel(f"signal ({type(signal).__name__}) has no 'sigma' for the resolution nuisance to scale")
    lower, upper = getattr(signal, "lower", None), getattr(signal, "upper", None)
    if lower is None or upper is None:
        raise InvalidModel(f"signal ({type(signal).__name__}) has no normalisation range (lower, upper)")
    if all(is_concrete(v) for v in (lower, upper, edges)):
        window = (float(edges[0]), float(edges[-1]))
        shape_range = (float(np.asarray(lower)), float(np.asarray(upper)))
        if not np.allclose(shape_range, window, rtol=1e-12, atol=0.0):
            raise InvalidModel(f"signal is normalised on [{shape_range[0]!r}, {shape_range[1]!r}], but the window "
                               f"(edges) is [{window[0]!r}, {window[1]!r}]: build the shape with lower=edges[0], "
                               "upper=edges[-1]")
        mean = getattr(signal, "mean", None)
        if mean is not None and is_concrete(mean):
            m = float(np.asarray(mean))
            if not window[0] <= m <= window[1]:
                raise InvalidModel(f"signal.mean = {m!r} lies outside the window [{window[0]!r}, {window[1]!r}]")
    return width_fields


def _nuisance_width(value, name: str, meaning: str, linear: bool) -> jax.Array | None:
    """A nuisance's width (None: no such nuisance); for a linear factor 1 + α·σ,
    σ < 1/5 so that the factor stays positive on the pull's bounds."""
    if value is None:
        return None
    width = _scalar(value, name, meaning, positive=True)
    if linear and is_concrete(width) and float(width) >= _LINEAR_WIDTH_LIMIT:
        raise InvalidModel(f"{name} = {float(width)!r} must be < {_LINEAR_WIDTH_LIMIT} (relative): the factor "
                           f"1 + alpha*{name} would reach zero within the pull's bounds {PULL_BOUNDS}")
    return width


# --- the model ----------------------------------------------------------------------

class ParametricModel(eqx.Module):
    """A signal shape on a Bernstein-polynomial background in one fit window (see
    the module docstring for the formula). Build it with :meth:`build`."""

    edges: jax.Array  # (B+1,) bin edges of the window (units of the observable)
    background_basis: jax.Array  # (B, n+1) I_bk, each column summing to 1
    signal: eqx.Module  # a normalised shape on [edges[0], edges[-1]] with bin_integrals(edges)
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
                   signal_per_poi=per_poi, widths=widths, config=config, efficiency_form=efficiency_form,
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
            shape = eqx.tree_at(lambda s: s.mean, shape, shape.mean + shift)
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
        fractions = self.signal_shape(pars).bin_integrals(self.edges)
        return pars[POI_INDEX] * self.signal_per_poi * self.efficiency(pars) * fractions

    def expected_background(self, pars) -> jax.Array:
        """Expected background events per bin (B,), ``Σ_k c_k·I_bk``."""
        pars = jnp.asarray(pars, jnp.float64)
        return self.background_basis @ pars[self.config.background_slice]

    def expected_actualdata(self, pars) -> jax.Array:
        """The rates of the main bins, ``max(signal + background, RATE_FLOOR)``."""
        return jnp.maximum(self.expected_signal(pars) + self.expected_background(pars), RATE_FLOOR)

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


def _check_degree(degree) -> int:
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise InvalidModel(f"background_degree must be an integer >= 0, got {degree!r}")
    return int(degree)


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


# --- sliding windows over one spectrum ---------------------------------------------

class Windows(NamedTuple):
    """Fit windows of one spectrum, one per hypothesis."""

    models: ParametricModel  # stacked: leaves with a leading window axis
    data: jax.Array  # (N, B + K) each window's data vector (counts, then auxiliary data 0)
    first_bin: np.ndarray  # (N,) index of each window's first bin in the spectrum


def window_starts(spectrum_edges, centres, bins_per_window: int) -> np.ndarray:
    """Index of the first spectrum bin of each window of ``bins_per_window`` bins:
    centred on the bin holding the centre (``bins_per_window // 2`` bins below it),
    moved inwards where it would cross an end of the spectrum (so windows near the
    ends are not centred on their hypothesis)."""
    edges = np.asarray(spectrum_edges, np.float64)
    centres = np.atleast_1d(np.asarray(centres, np.float64))
    n_bins = edges.shape[0] - 1
    outside = (centres < edges[0]) | (centres > edges[-1]) | ~np.isfinite(centres)
    if np.any(outside):
        first = int(np.flatnonzero(outside)[0])
        raise InvalidModel(f"centres[{first}] = {float(centres[first])!r} lies off the spectrum "
                           f"[{float(edges[0])!r}, {float(edges[-1])!r}]")
    holding = np.clip(np.searchsorted(edges, centres, side="right") - 1, 0, n_bins - 1)
    return np.clip(holding - bins_per_window // 2, 0, n_bins - bins_per_window)


def sliding_windows(
    spectrum_edges,
    counts,
    centres,
    bins_per_window: int,
    signal_at: Callable,
    *,
    background_degree: int = 3,
    **build_options,
) -> Windows:
    """One :class:`ParametricModel` per hypothesis, each on a window of
    ``bins_per_window`` bins of one spectrum, built in one vmapped call and stacked.

    Args:
        spectrum_edges: (M+1,) strictly increasing edges of the whole spectrum.
        counts: (M,) its observed counts (≥ 0).
        centres: (N,) the hypotheses' masses (inside the spectrum).
        bins_per_window: B, bins per window (≤ M, ≥ background_degree + 2).
        signal_at: ``signal_at(centre, lower, upper)`` → the signal shape of the
            hypothesis normalised on the window [lower, upper]; jnp code only (it
            is traced under ``jax.vmap``), e.g.
            ``lambda m, lo, hi: shapes.Gaussian(m, width(m), lo, hi)``.
        background_degree, build_options: as :meth:`ParametricModel.build`
            (shared by every window).

    Returns:
        :class:`Windows`: the stacked models, each window's data vector and first bin.
        ``jax.vmap(lambda m, d: infer.fit(d, m))(windows.models, windows.data)``
        fits every window. Bad input (a centre off the spectrum, negative counts,
        an empty window) is reported by window index before anything is traced.
    """
    edges = np.asarray(_check_edges(spectrum_edges, _check_degree(background_degree)))
    n_spectrum = edges.shape[0] - 1
    if isinstance(bins_per_window, bool) or not isinstance(bins_per_window, (int, np.integer)) \
            or not background_degree + 2 <= bins_per_window <= n_spectrum:
        raise InvalidModel(f"bins_per_window must be an integer in [{background_degree + 2}, {n_spectrum}] "
                           f"(degree + 2 to the spectrum's bins), got {bins_per_window!r}")
    counts = np.asarray(counts, np.float64)
    if counts.shape != (n_spectrum,):
        raise InvalidModel(f"counts has shape {counts.shape}, but spectrum_edges give {n_spectrum} bins")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        bad = int(np.flatnonzero(~(counts >= 0))[0])
        raise InvalidModel(f"counts[{bad}] = {float(counts[bad])!r}: counts must be finite and >= 0")
    centres = np.atleast_1d(np.asarray(centres, np.float64))
    starts = window_starts(edges, centres, bins_per_window)
    window_bins = starts[:, None] + np.arange(bins_per_window)
    window_counts = counts[window_bins]
    empty = ~np.any(window_counts > 0, axis=1)
    if np.any(empty):
        first = int(np.flatnonzero(empty)[0])
        raise InvalidModel(f"window {first} (centre {float(centres[first])!r}, bins {starts[first]}.."
                           f"{starts[first] + bins_per_window - 1}) is empty: all counts are zero")
    window_edges = edges[np.concatenate([window_bins, window_bins[:, -1:] + 1], axis=1)]

    def build(window_edge, window_count, centre):
        signal = signal_at(centre, window_edge[0], window_edge[-1])
        return ParametricModel.build(edges=window_edge, signal=signal, counts=window_count,
                                     background_degree=background_degree, **build_options)

    # The first window concretely: every check that needs values runs on it.
    build(window_edges[0], window_counts[0], centres[0])
    models = jax.vmap(build)(jnp.asarray(window_edges), jnp.asarray(window_counts), jnp.asarray(centres))
    aux = jnp.broadcast_to(models.config.auxdata_values, (centres.shape[0], models.config.nauxdata))
    data = jnp.concatenate([jnp.asarray(window_counts), aux], axis=1)
    return Windows(models=models, data=data, first_bin=starts)
