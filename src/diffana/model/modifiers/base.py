"""What every modifier kind declares, and the records the builder passes around.

A kind (:class:`ModifierKind`, one instance per module of this package) says:

- ``per_bin``: one parameter per bin of its channel, or one for all bins;
- ``init``, ``bounds``: default start value and bounds of each component;
- ``constraint``: ``"gaussian"``, ``"poisson"`` or ``None`` (the numbers, from
  :meth:`ModifierKind.settings`, come as :class:`Gaussian` or :class:`Poisson`,
  which also give the auxiliary data);
- ``effect``: how it changes the yields: ``"factor"`` (multiplies its cells by the
  parameter: one column of ``factor_index`` per factor on a cell), ``"normsys"``
  (interpolated factor) or ``"histosys"`` (interpolated additive shift); the last
  two build their own templates (``templates`` in their modules);
- ``shares_parameter_with``: kinds whose modifiers may use the same name, and so
  the same parameter (normsys and histosys, as in HistFactory);
- :meth:`ModifierKind.parse`: the modifier's ``data`` from the spec, checked, with
  messages naming the channel, sample and modifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

from diffana.errors import InvalidModel
from diffana.model.modifiers.values import check_non_negative, float_values, values, xp
from diffana.model.structure import ParameterSet


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample of a channel: nominal yields (B,) and its raw modifier entries."""

    name: str
    data: Any  # numpy array, or a tracer
    modifiers: list


@dataclasses.dataclass(frozen=True)
class Channel:
    name: str
    nbins: int
    samples: dict  # name -> Sample, in the spec's order


class Modifier(NamedTuple):
    """One modifier entry of one sample, parsed by its kind. (A NamedTuple, read by
    name: one is built per modifier, ~3x cheaper than a frozen dataclass.)"""

    name: str
    kind: str
    channel: str
    sample: str
    data: Any  # what the kind's ``parse`` returned (None for kinds without data)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a model's samples, bins and parameters sit in its arrays."""

    channels: Mapping[str, Channel]  # in the model's (name) order
    sample_index: dict  # sample name -> row of the (S, B) tables
    offsets: dict  # channel name -> its first bin in the main data
    n_bins: int
    slices: dict  # parameter name -> slice of the parameter vector

    @property
    def n_samples(self) -> int:
        return len(self.sample_index)

    def cells(self, modifier: Modifier) -> tuple[int, int, int]:
        """(sample row, first bin, number of bins) that ``modifier`` acts on."""
        return self.sample_index[modifier.sample], self.offsets[modifier.channel], self.channels[modifier.channel].nbins

    def nominal(self, modifier: Modifier):
        """The nominal yields (channel bins) of the sample ``modifier`` is on."""
        return self.channels[modifier.channel].samples[modifier.sample].data


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Gaussian constraint terms: auxiliary datum ~ Normal(parameter, sigma)."""

    sigma: Any  # (n,) widths
    auxdata: Any  # nominal auxiliary data, broadcast to (n,)

    def aux_values(self, n: int):
        return xp(self.auxdata).broadcast_to(self.auxdata, (n,))


@dataclasses.dataclass(frozen=True)
class Poisson:
    """Poisson ("Gamma") constraint terms: auxiliary datum ~ Poisson(γ τ); the
    nominal auxiliary data are τ."""

    tau: Any  # (n,)

    def aux_values(self, n: int):
        return self.tau


@dataclasses.dataclass(frozen=True)
class Settings:
    """A parameter set's numbers before the measurement's ``fixed`` is applied:
    ``init`` (n,), ``bounds`` (n, 2), ``fixed`` (n,) as lists or arrays."""

    init: Any
    bounds: Any
    fixed: Any
    constraint: Gaussian | Poisson | None


class Configured:
    """The measurement's configuration of one parameter (``inits``, ``bounds``,
    ``fixed``, ``auxdata``, ``sigmas``), with the kind's defaults."""

    def __init__(self, name: str, entry: Mapping):
        self.name = name
        self.entry = entry

    def given(self, key: str):
        return self.entry.get(key)

    def get(self, key: str, default: list):
        """The configured value of ``key``, else ``default``; as many values as it."""
        value = self.entry.get(key)
        if value is None:
            return default
        if isinstance(default, list) and len(value) != len(default):
            raise InvalidModel(
                f"parameter {self.name!r}: {len(value)} values for {key!r}, the parameter has {len(default)}"
            )
        return value


@dataclasses.dataclass(frozen=True)
class ModifierKind:
    """A modifier type: its parameters' defaults, parsing and constraint (see the
    module docstring). Subclasses override :meth:`parse` and :meth:`settings`."""

    name: str
    per_bin: bool
    init: float | None  # None: from the measurement (lumi)
    bounds: tuple[float, float] | None
    constraint: str | None  # "gaussian", "poisson" or None
    effect: str  # "factor", "normsys" or "histosys"
    shares_parameter_with: frozenset = frozenset()

    def parse(self, data, where: str, nbins: int):
        """The modifier's ``data``, checked; ``None`` for kinds that take none."""
        return None

    def parameter_set(self, name: str, members: list, channels: Mapping[str, Channel]) -> ParameterSet:
        """The parameter set of the modifiers ``members`` (all named ``name``)."""
        if not self.per_bin:
            return ParameterSet(name, self.name, 1, None)
        spanned = sorted({m.channel for m in members})
        if len(spanned) > 1 and not self.may_span(spanned, channels):
            raise InvalidModel(
                f"the {self.name} modifier {name!r} appears in channels {spanned}; a per-bin modifier "
                "must belong to one channel"
            )
        return ParameterSet(name, self.name, channels[spanned[0]].nbins, spanned[0])

    def may_span(self, spanned: list, channels: Mapping[str, Channel]) -> bool:
        """Whether one per-bin parameter set may act in all channels ``spanned``."""
        return False

    def settings(self, parameter: ParameterSet, members: list, config: Configured, channels) -> Settings:
        """Init, bounds, fixed flags and constraint of ``parameter``."""
        n = parameter.n_parameters
        init, bounds = self.init_and_bounds(n, config)
        return Settings(init, bounds, [False] * n, None)

    def init_and_bounds(self, n: int, config: Configured):
        """The configured ``inits`` and ``bounds`` of ``n`` components, else the kind's."""
        return config.get("inits", [self.init] * n), config.get("bounds", [list(self.bounds)] * n)

    def factor_parameters(self, start: int, nbins: int):
        """(``effect == "factor"``) The parameter multiplying each of a channel's
        bins, for a set starting at ``start``."""
        return range(start, start + nbins) if self.per_bin else [start] * nbins


def unit_gaussian_settings(kind: ModifierKind, config: Configured) -> Settings:
    """A nuisance parameter α in units of its variation (normsys, histosys): the
    kind's init and bounds, constraint Normal(auxdata 0 | α, 1) unless configured."""
    init, bounds = kind.init_and_bounds(1, config)
    sigma = values(config.get("sigmas", [1.0]))
    auxdata = values(config.get("auxdata", [0.0]))
    return Settings(init, bounds, [False], Gaussian(sigma, auxdata))


def per_bin_uncertainties(kind: str, data, where: str, nbins: int):
    """shapesys / staterror data: one non-negative absolute uncertainty per bin."""
    data = float_values(data, f"{where} data")
    if data.shape[0] != nbins:
        raise InvalidModel(f"{where}: {kind} data has {data.shape[0]} bins, the channel has {nbins}")
    check_non_negative(data, f"{where} {kind} uncertainties")
    return data

