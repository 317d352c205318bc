"""histosys: a systematic variation of a sample's shape, ``hi_data`` and
``lo_data`` templates at α = ±1, interpolated in α as an additive shift per bin
(``code4p`` or ``code0``, see :mod:`diffana.model.interpolation`). One parameter α,
starting at 0 in [-5, 5], constrained by Normal(auxdatum 0 | α, 1); it may share
its name (and so its parameter) with normsys modifiers.

Yields: all histosys shifts of a model are evaluated together from the (H, B)
``up`` = hi − nominal and ``down`` = nominal − lo tables (zero outside each one's
channel) and added to their samples by the (H, S) one-hot map (``Model._shifts``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffana.errors import InvalidModel
from diffana.model.modifiers.base import ModifierKind, Settings, unit_gaussian_settings
from diffana.model.modifiers.values import float_values


class HistosysData(NamedTuple):  # one per modifier: a NamedTuple, cheap to build
    hi: Any  # (channel bins,) yields at α = +1
    lo: Any  # yields at α = -1


@dataclasses.dataclass(frozen=True)
class HistosysTemplates:
    """All histosys modifiers of a model, in order: H of them."""

    param: np.ndarray  # (H,) int64: each one's parameter
    up: Any  # (H, B): hi − nominal in its channel's bins, zero elsewhere
    down: Any  # (H, B): nominal − lo
    sample_onehot: np.ndarray  # (H, S) float: the sample each one shifts


@dataclasses.dataclass(frozen=True)
class Histosys(ModifierKind):
    def parse(self, data, where: str, nbins: int) -> HistosysData:
        if not isinstance(data, Mapping) or "hi_data" not in data or "lo_data" not in data:
            raise InvalidModel(f"{where}: histosys data must be {{'hi_data': [...], 'lo_data': [...]}}")
        hi = float_values(data["hi_data"], f"{where} hi_data")
        lo = float_values(data["lo_data"], f"{where} lo_data")
        for label, array in (("hi_data", hi), ("lo_data", lo)):
            if array.shape[0] != nbins:
                raise InvalidModel(f"{where}: {label} has {array.shape[0]} bins, the channel has {nbins}")
        return HistosysData(hi, lo)

    def settings(self, parameter, members, config, channels) -> Settings:
        return unit_gaussian_settings(self, config)

    def templates(self, modifiers: list, layout) -> HistosysTemplates:
        ups, downs, bins = [], [], []
        samples = np.zeros(len(modifiers), np.int64)
        for h, modifier in enumerate(modifiers):
            nominal = layout.nominal(modifier)
            samples[h], first, nbins = layout.cells(modifier)
            ups.append(modifier.data.hi - nominal)
            downs.append(nominal - modifier.data.lo)
            bins.append((first, nbins))
        onehot = np.zeros((len(modifiers), layout.n_samples))
        onehot[np.arange(len(modifiers)), samples] = 1.0
        return HistosysTemplates(
            param=np.asarray([layout.slices[m.name].start for m in modifiers], np.int64),
            up=_table(ups, bins, layout.n_bins),
            down=_table(downs, bins, layout.n_bins),
            sample_onehot=onehot,
        )


def _table(deltas, bins, n_bins):
    """(H, B): each histosys's per-bin shift in its channel's bins, zero elsewhere."""
    if any(isinstance(d, jax.core.Tracer) for d in deltas):
        return jnp.stack([jnp.pad(d, (b0, n_bins - b0 - nb)) for d, (b0, nb) in zip(deltas, bins)])
    table = np.zeros((len(deltas), n_bins), np.float64)
    for row, (delta, (b0, nb)) in zip(table, zip(deltas, bins)):
        row[b0 : b0 + nb] = delta
    return table


HISTOSYS = Histosys(
    name="histosys", per_bin=False, init=0.0, bounds=(-5.0, 5.0), constraint="gaussian", effect="histosys",
    shares_parameter_with=frozenset({"normsys"}),
)
