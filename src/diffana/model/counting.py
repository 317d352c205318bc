"""A Poisson on/off counting likelihood with log-normal constraints.

The likelihood of a single-bin search whose background is measured in an "off"
sample (a control region, or a simulated sample of ``τ`` times the data's
luminosity), as used by Belle's search for B⁰ → Λψ_DS (PRD 105, L051101, Eq. 1):

    L = P(n_sr; s + b) · P(n_off; τ·b0) · Π_i N(a_i; α_i, 1)

    s = poi · signal_per_poi · Π_i κ_s,i^α_i        (signal in the signal region)
    b = b0 · Π_i κ_b,i^α_i                           (background in the signal region)

``P`` is the (continuous) Poisson density, ``b0`` the expected background in the
signal region (free, ≥ 0) and each systematic uncertainty a standard-normal pull
``α_i`` with auxiliary datum ``a_i`` (0 when observed) that scales the signal by
``κ_s,i^α_i`` and/or the signal-region background by ``κ_b,i^α_i``. A factor
``κ^α`` with ``α ~ N(0, 1)`` is a log-normal variable of median 1 and spread ``κ``:
the paper's G[x; m0, κ] terms, written in terms of their pulls (read, as in
HistFactory and RooStats, as the density of the auxiliary measurement m0, so that
Eq. 2's 1/x is no function of the parameters; see docs/counting_model.md). This is exactly
HistFactory's ``normsys`` modifier with interpolation code 1 (hi = κ, lo = 1/κ) and
a Gaussian constraint, so :meth:`CountingModel.to_pyhf_workspace` writes the same
likelihood as a pyhf workspace.

The model implements :class:`diffana.infer.protocol.StatisticalModel`: fits,
``hypotest``, ``upper_limit`` and toys of :mod:`diffana.infer` work on it. Data
vectors are ``[n_sr, n_off, a_1, …, a_K]``; parameter vectors ``[poi, b0,
alpha_<name_1>, …, alpha_<name_K>]``.

Its arrays are leaves and its parameter names static, so models of equal nuisance
names (one per mass hypothesis, say) stack with ``diffana.infer.stack_models`` (or
build under ``jax.vmap``) for ``infer.stacked_upper_limit``. With a handful of
parameters it needs no structured Hessian: the fits use the protocol's
automatic-differentiation one (``infer.protocol.gradient_and_hessian``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.model.arguments import scalar as _scalar
from diffana.model.model import InvalidModel, PoissonGaussianNormalisation, _poisson_log_ratio
from diffana.model.structure import NamedParameters, SuggestedParameters

POI_INDEX = 0
BACKGROUND_INDEX = 1
BACKGROUND_NAME = "b0"
N_MAIN = 2  # n_sr, n_off
PULL_BOUNDS = (-5.0, 5.0)  # as pyhf's normsys default
SIGNAL_REGION = "signal_region"
CONTROL_REGION = "control_region"


@dataclasses.dataclass(frozen=True)
class LogNormalNuisance:
    """One systematic uncertainty: a standard-normal pull ``alpha_<name>`` that
    multiplies the signal by ``signal_kappa**alpha`` and the signal-region
    background by ``background_kappa**alpha``.

    Attributes:
        name: label; the parameter is called ``alpha_<name>``.
        signal_kappa: log-normal spread κ on the signal yield (1 + relative
            uncertainty; 1.0 for no effect on the signal). Dimensionless, > 0.
        background_kappa: the same on the background in the signal region.
    """

    name: str
    signal_kappa: float = 1.0
    background_kappa: float = 1.0


def _bounds(value, argument: str) -> tuple[jax.Array, jax.Array]:
    """A (lower, upper) pair as float64 scalars, checked when concrete."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InvalidModel(f"{argument} must be a pair (lower, upper), got {value!r}") from None
    if is_concrete(low) and is_concrete(high):
        low_f, high_f = float(low), float(high)
        if not (math.isfinite(low_f) and math.isfinite(high_f) and low_f < high_f):
            raise InvalidModel(f"{argument} must be finite with lower < upper, got ({low_f!r}, {high_f!r})")
    return jnp.asarray(low, jnp.float64), jnp.asarray(high, jnp.float64)


def _check_nuisance(nuisance: LogNormalNuisance, index: int, taken: set) -> None:
    """One-line InvalidModel for a nuisance with a bad name or κ."""
    where = f"nuisances[{index}]"
    if not isinstance(nuisance, LogNormalNuisance):
        raise InvalidModel(f"{where} must be a LogNormalNuisance, got {type(nuisance).__name__}")
    if not isinstance(nuisance.name, str) or not nuisance.name:
        raise InvalidModel(f"{where}.name must be a non-empty string, got {nuisance.name!r}")
    if f"alpha_{nuisance.name}" in taken:
        raise InvalidModel(f"{where}.name {nuisance.name!r} is used twice (parameter alpha_{nuisance.name})")
    kappas = {"signal_kappa": nuisance.signal_kappa, "background_kappa": nuisance.background_kappa}
    for field, kappa in kappas.items():
        _scalar(kappa, f"{where}.{field}", f"log-normal spread of {nuisance.name!r}", positive=True)
    if all(is_concrete(k) and float(k) == 1.0 for k in kappas.values()):
        raise InvalidModel(
            f"{where} ({nuisance.name!r}) has signal_kappa = background_kappa = 1: it changes nothing; drop it"
        )


def _relative_to_kappa(uncertainty, argument: str, name: str):
    """κ = 1 + relative uncertainty (the paper's ``1 + syst``), > 1."""
    _scalar(uncertainty, argument, f"relative uncertainty of {name!r}, e.g. 0.086 for 8.6%", positive=True)
    return 1.0 + jnp.asarray(uncertainty, jnp.float64)


class CountingConfig(eqx.Module, SuggestedParameters, NamedParameters):
    """Parameter bookkeeping of a :class:`CountingModel`, in pyhf's vocabulary.

    Parameters are ``[poi, b0, alpha_<name>…]``: the parameter of interest (in the
    units chosen for ``signal_per_poi``), the expected background in the signal
    region (events) and one standard-normal pull per nuisance (dimensionless).
    """

    init: jax.Array  # (P,) suggested start values
    lower: jax.Array  # (P,)
    upper: jax.Array  # (P,)
    fixed: jax.Array  # (P,) bool: held at init in every fit
    auxdata_values: jax.Array  # (K,) the Gaussian constraints' centres (observed pulls)
    names: tuple[str, ...] = eqx.field(static=True)

    @property
    def nuisance_names(self) -> list[str]:
        """The nuisances' names (without the ``alpha_`` prefix), in parameter order."""
        return [name[len("alpha_"):] for name in self.names[BACKGROUND_INDEX + 1:]]

    @property
    def nmaindata(self) -> int:
        return N_MAIN

    @property
    def nauxdata(self) -> int:
        return len(self.names) - BACKGROUND_INDEX - 1



class CountingModel(eqx.Module, PoissonGaussianNormalisation):
    """Poisson on/off counting likelihood with log-normal systematic uncertainties
    (see the module docstring for the formula).

    Build it with :meth:`on_off` (the physicist's arguments) or :meth:`build`
    (general nuisances, e.g. one acting on signal and background together).
    """

    signal_per_poi: jax.Array  # () expected signal events in the SR per unit of POI
    mc_to_data_ratio: jax.Array  # () τ: off-sample luminosity / data luminosity
    log_kappa_signal: jax.Array  # (K,) ln κ of each nuisance on the signal
    log_kappa_background: jax.Array  # (K,) ln κ of each nuisance on the SR background
    config: CountingConfig

    # --- construction -------------------------------------------------------------

    @classmethod
    def build(
        cls,
        *,
        signal_per_poi,
        background,
        mc_to_data_ratio=1.0,
        nuisances: Sequence[LogNormalNuisance] = (),
        poi_name: str = "mu",
        poi_init=1.0,
        poi_bounds=(0.0, 10.0),
        background_bounds=None,
        background_fixed: bool = False,
    ) -> "CountingModel":
        """The general constructor.

        Args:
            signal_per_poi: expected signal events in the signal region for POI = 1
                at nominal nuisances (events per unit of POI), > 0.
            background: start value of ``b0`` (expected background events in the
                signal region), ≥ 0; its value if ``background_fixed``.
            mc_to_data_ratio: τ, the off measurement's expected count is τ·b0
                (dimensionless, > 0: luminosity ratio of a simulated sample, or the
                off/on ratio of a control region).
            nuisances: the log-normal systematics, parameters ``alpha_<name>``.
            poi_name: name of the parameter of interest.
            poi_init, poi_bounds: its start value and (lower, upper) bounds, in
                any unit (the branching fraction itself, or in units of 1e-5: the
                fits are invariant under the rescaling).
            background_bounds: (lower, upper) of ``b0`` in events; default
                (0, 10·(background + 10)).
            background_fixed: hold ``b0`` at ``background`` (background known
                exactly; the off count then only adds a constant to −2 ln L).
        """
        signal = _scalar(signal_per_poi, "signal_per_poi", "expected signal events per unit of POI", positive=True)
        b0 = _scalar(background, "background", "expected background events in the signal region", positive=False)
        tau = _scalar(mc_to_data_ratio, "mc_to_data_ratio", "off-sample to data luminosity ratio tau", positive=True)
        if not isinstance(poi_name, str) or not poi_name or poi_name == BACKGROUND_NAME:
            raise InvalidModel(f"poi_name must be a non-empty string other than {BACKGROUND_NAME!r}, got {poi_name!r}")
        taken = {poi_name, BACKGROUND_NAME}
        for index, nuisance in enumerate(nuisances):
            _check_nuisance(nuisance, index, taken)
            taken.add(f"alpha_{nuisance.name}")
        poi_low, poi_high = _bounds(poi_bounds, "poi_bounds")
        if background_bounds is None:
            background_bounds = (0.0, 10.0 * (b0 + 10.0))
        b_low, b_high = _bounds(background_bounds, "background_bounds")
        if is_concrete(b_low) and float(b_low) < 0:
            raise InvalidModel(f"background_bounds must start at >= 0 (b0 is an event count), got {float(b_low)!r}")
        poi_init = _scalar(poi_init, "poi_init", "start value of the POI", positive=False)
        n = len(nuisances)
        names = (poi_name, BACKGROUND_NAME) + tuple(f"alpha_{x.name}" for x in nuisances)
        config = CountingConfig(
            init=jnp.concatenate([jnp.stack([poi_init, b0]), jnp.zeros(n)]),
            lower=jnp.concatenate([jnp.stack([poi_low, b_low]), jnp.full(n, PULL_BOUNDS[0])]),
            upper=jnp.concatenate([jnp.stack([poi_high, b_high]), jnp.full(n, PULL_BOUNDS[1])]),
            fixed=jnp.zeros(len(names), bool).at[BACKGROUND_INDEX].set(bool(background_fixed)),
            auxdata_values=jnp.zeros(n),
            names=names,
        )
        return cls(
            signal_per_poi=signal,
            mc_to_data_ratio=tau,
            log_kappa_signal=_log_kappas(nuisances, "signal_kappa"),
            log_kappa_background=_log_kappas(nuisances, "background_kappa"),
            config=config,
        )

    @classmethod
    def on_off(
        cls,
        signal_per_poi,
        background_mc_count,
        mc_to_data_ratio=6.0,
        signal_uncertainties: Mapping[str, float] | None = None,
        background_uncertainty=None,
        *,
        poi_name: str = "mu",
        poi_init=1.0,
        poi_bounds=(0.0, 10.0),
        background_known: bool = False,
        background_bounds=None,
    ) -> "CountingModel":
        """The Belle B⁰ → Λψ_DS likelihood (PRD 105 L051101, Eq. 1) in its own terms.

        Args:
            signal_per_poi: expected signal events in the signal region per unit of
                POI, e.g. 2·N_B⁰B̄⁰·ε·B(Λ→pπ⁻) × 1e-5 for a POI that is the branching
                fraction in units of 1e-5.
            background_mc_count: n_bkg, the number of simulated background events
                passing the selection (counts, ≥ 0); b0 starts at n_bkg/τ. This is
                the start value only: the count itself is data, given to
                :meth:`observed_data` as ``n_off``.
            mc_to_data_ratio: τ, luminosity of the background simulation over that
                of the data (6 in the paper).
            signal_uncertainties: ``{name: relative uncertainty}`` on the signal
                yield, e.g. ``{"efficiency": 0.12, "n_bb": 0.023, "b_lambda":
                0.008}``; each is a log-normal factor κ = 1 + uncertainty, parameter
                ``alpha_<name>``.
            background_uncertainty: relative systematic uncertainty of the
                signal-region background b around b0 (the paper's
                G[b; b0, 1 + syst(b0)]), parameter ``alpha_background``; None for
                none.
            poi_name, poi_init, poi_bounds: the parameter of interest (see
                :meth:`build`).
            background_known: fix b0 at n_bkg/τ (no statistical uncertainty on
                the background).
            background_bounds: (lower, upper) of b0 in events (default
                (0, 10·(b0 start + 10))).
        """
        tau = _scalar(mc_to_data_ratio, "mc_to_data_ratio", "off-sample to data luminosity ratio tau", positive=True)
        count = _scalar(background_mc_count, "background_mc_count", "simulated background count n_bkg", positive=False)
        nuisances = []
        for name, uncertainty in (signal_uncertainties or {}).items():
            argument = f"signal_uncertainties[{name!r}]"
            nuisances.append(LogNormalNuisance(str(name), signal_kappa=_relative_to_kappa(uncertainty, argument, name)))
        if background_uncertainty is not None:
            kappa = _relative_to_kappa(background_uncertainty, "background_uncertainty", "background")
            nuisances.append(LogNormalNuisance("background", background_kappa=kappa))
        # A free b0 starts at one event's worth if no simulated event passed (a
        # start on the bound b0 = 0 gives the fit no gradient to leave it by).
        start = count / tau if background_known else jnp.maximum(count, 1.0) / tau
        return cls.build(
            signal_per_poi=signal_per_poi,
            background=start,
            mc_to_data_ratio=tau,
            nuisances=nuisances,
            poi_name=poi_name,
            poi_init=poi_init,
            poi_bounds=poi_bounds,
            background_bounds=background_bounds,
            background_fixed=background_known,
        )

    def observed_data(self, n_sr, n_off) -> jax.Array:
        """The data vector ``[n_sr, n_off, 0…]``: the signal-region count, the off
        count (n_bkg, simulated background events) and the auxiliary data of the
        constraints (0: the nominal value of every systematic)."""
        counts = [_scalar(n_sr, "n_sr", "observed signal-region count", positive=False),
                  _scalar(n_off, "n_off", "off / simulated background count", positive=False)]
        return jnp.concatenate([jnp.stack(counts), self.config.auxdata])

    # --- expected data ------------------------------------------------------------

    def _split_pars(self, pars):
        pars = jnp.asarray(pars, jnp.float64)
        return pars[POI_INDEX], pars[BACKGROUND_INDEX], pars[BACKGROUND_INDEX + 1:]

    def expected_signal(self, pars) -> jax.Array:
        """Expected signal events in the signal region."""
        poi, _, alpha = self._split_pars(pars)
        return poi * self.signal_per_poi * jnp.exp(jnp.dot(alpha, self.log_kappa_signal))

    def expected_background(self, pars) -> jax.Array:
        """Expected background events in the signal region, b = b0·Π κ_b^α."""
        _, b0, alpha = self._split_pars(pars)
        return b0 * jnp.exp(jnp.dot(alpha, self.log_kappa_background))

    def expected_actualdata(self, pars) -> jax.Array:
        """Expected main data ``[s + b, τ·b0]`` (events)."""
        _, b0, _ = self._split_pars(pars)
        on = self.expected_signal(pars) + self.expected_background(pars)
        return jnp.stack([on, self.mc_to_data_ratio * b0])

    def expected_auxdata(self, pars) -> jax.Array:
        """Where the constraints peak: at the pulls themselves."""
        return self._split_pars(pars)[2]

    def expected_data(self, pars, include_auxdata: bool = True) -> jax.Array:
        """Main data followed (by default) by the auxiliary data, as in pyhf."""
        main = self.expected_actualdata(pars)
        if not include_auxdata:
            return main
        return jnp.concatenate([main, self.expected_auxdata(pars)])

    # --- likelihood ---------------------------------------------------------------

    def _split_data(self, data):
        data = jnp.asarray(data, jnp.float64)
        return data[:N_MAIN], data[N_MAIN:]

    def deviance(self, pars, data) -> jax.Array:
        """−2 ln [L(pars) / L_saturated(data)], exact in float64 at any count (the
        Poisson terms as log-ratios to the saturated model, as ``Model.deviance``)."""
        main, aux = self._split_data(data)
        alpha = self._split_pars(pars)[2]
        poisson = jnp.sum(_poisson_log_ratio(main, self.expected_actualdata(pars)))
        gaussian = -0.5 * jnp.sum((aux - alpha) ** 2)
        return -2.0 * (poisson + gaussian)

    # --- pseudo-experiments -------------------------------------------------------

    def sample_data(self, key, pars, n_toys: int) -> jax.Array:
        """``n_toys`` data sets from the full likelihood at ``pars``: Poisson counts
        ``[n_sr, n_off]`` and unit-normal auxiliary data around the pulls. Shape
        ``(n_toys, 2 + K)``, laid out like :meth:`observed_data`."""
        key_main, key_aux = jax.random.split(key)
        rates = self.expected_actualdata(pars)
        main = jax.random.poisson(key_main, rates, shape=(n_toys, N_MAIN)).astype(jnp.float64)
        centre = self.expected_auxdata(pars)
        aux = centre + jax.random.normal(key_aux, (n_toys,) + centre.shape, jnp.float64)
        return jnp.concatenate([main, aux], axis=1)

    # --- checks -------------------------------------------------------------------

    def check_data(self, data) -> jax.Array:
        """``data`` as float64, with a one-line ValueError for a wrong length and,
        when concrete, for NaN/inf or negative counts."""
        data = jnp.asarray(data, jnp.float64)
        expected = N_MAIN + self.config.nauxdata
        if data.ndim != 1 or data.shape[0] != expected:
            raise ValueError(
                f"data has shape {tuple(data.shape)}, but the CountingModel expects {expected} values: "
                f"[n_sr, n_off] followed by {self.config.nauxdata} auxiliary data "
                f"(one per nuisance: {self.config.nuisance_names}); build it with model.observed_data(n_sr, n_off)"
            )
        if is_concrete(data):
            values = np.asarray(data)
            labels = ["n_sr", "n_off"] + [f"aux[{name}]" for name in self.config.nuisance_names]
            bad = [labels[i] for i in np.flatnonzero(~np.isfinite(values))]
            if bad:
                raise ValueError(f"data contain NaN or inf in {', '.join(bad)}")
            negative = [labels[i] for i in np.flatnonzero(values[:N_MAIN] < 0)]
            if negative:
                raise ValueError(f"observed counts are negative: {', '.join(negative)}")
        return data

    # --- export -------------------------------------------------------------------

    def to_pyhf_workspace(self, data, measurement_name: str = "counting") -> dict:
        """The same likelihood as a pyhf workspace (a JSON-ready dict).

        Channels ``signal_region`` and ``control_region`` of one bin. In the signal
        region: a ``signal`` sample of ``signal_per_poi`` events with a normfactor
        POI and one normsys (hi κ_s, lo 1/κ_s) per nuisance acting on the signal;
        a ``background`` sample of 1 event with the normfactor ``b0`` and a normsys
        per nuisance acting on the background. In the control region a
        ``background`` sample of τ events with the same normfactor ``b0``. So every
        parameter keeps its name, value and bounds. The normsys factors equal
        κ^α only with interpolation code 1: build the pyhf model with
        ``modifier_settings={"normsys": {"interpcode": "code1"}}`` (diffana:
        ``normsys_interp="code1"``).

        Args:
            data: a data vector of this model (:meth:`observed_data`); its counts
                become the observations, non-zero auxiliary data the pulls'
                ``auxdata``.
        """
        from diffana.model.workspace import to_workspace

        if self.config.init.ndim != 1:
            raise ValueError("to_pyhf_workspace needs a single model; index a stacked one first")
        data = np.asarray(self.check_data(data))
        spec = {"channels": [self._signal_region_channel(), self._control_region_channel()]}
        observations = {SIGNAL_REGION: [float(data[0])], CONTROL_REGION: [float(data[1])]}
        return to_workspace(spec, observations, measurement_name=measurement_name, poi_name=self.config.poi_name,
                            parameters=self._parameter_configs(data[N_MAIN:]))

    def _normsys(self, log_kappas) -> list[dict]:
        """normsys modifiers for the nuisances with κ ≠ 1 in ``log_kappas``."""
        modifiers = []
        for name, log_kappa in zip(self.config.names[BACKGROUND_INDEX + 1:], np.asarray(log_kappas)):
            if log_kappa != 0.0:
                kappa = float(np.exp(log_kappa))
                modifiers.append({"name": name, "type": "normsys", "data": {"hi": kappa, "lo": 1.0 / kappa}})
        return modifiers

    def _signal_region_channel(self) -> dict:
        b0 = {"name": BACKGROUND_NAME, "type": "normfactor", "data": None}
        poi = {"name": self.config.poi_name, "type": "normfactor", "data": None}
        return {"name": SIGNAL_REGION, "samples": [
            {"name": "background", "data": [1.0], "modifiers": [b0] + self._normsys(self.log_kappa_background)},
            {"name": "signal", "data": [float(self.signal_per_poi)],
             "modifiers": [poi] + self._normsys(self.log_kappa_signal)},
        ]}

    def _control_region_channel(self) -> dict:
        b0 = {"name": BACKGROUND_NAME, "type": "normfactor", "data": None}
        return {"name": CONTROL_REGION, "samples": [
            {"name": "background", "data": [float(self.mc_to_data_ratio)], "modifiers": [b0]},
        ]}

    def _parameter_configs(self, auxdata) -> list[dict]:
        config = self.config
        configs = []
        for index, name in enumerate(config.names):
            entry = {"name": name, "inits": [float(config.init[index])],
                     "bounds": [[float(config.lower[index]), float(config.upper[index])]]}
            if bool(config.fixed[index]):
                entry["fixed"] = True
            if index > BACKGROUND_INDEX and auxdata[index - BACKGROUND_INDEX - 1] != 0.0:
                entry["auxdata"] = [float(auxdata[index - BACKGROUND_INDEX - 1])]
            configs.append(entry)
        return configs


def _log_kappas(nuisances: Sequence[LogNormalNuisance], field: str) -> jax.Array:
    """ln κ of each nuisance's ``field`` as a (K,) float64 array (0 for none)."""
    if not nuisances:
        return jnp.zeros(0)
    return jnp.log(jnp.stack([jnp.asarray(getattr(x, field), jnp.float64) for x in nuisances]))
