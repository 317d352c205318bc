"""normsys: a systematic variation of a sample's normalisation, ``hi`` and ``lo``
factors at α = ±1, interpolated in α (``code4`` or ``code1``, see
:mod:`diffana.model.interpolation`). One parameter α, starting at 0 in [-5, 5],
constrained by Normal(auxdatum 0 | α, 1); it may share its name (and so its
parameter) with histosys modifiers.

Yields: all normsys factors of a model are evaluated together, one interpolation
over the (J,) ``hi``/``lo`` vectors and one product per cell with the static
(J, S, B) ``mask`` (``Model._normsys_factors``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from diffana.errors import InvalidModel
from diffana.model.modifiers.base import ModifierKind, Settings, unit_gaussian_settings
from diffana.model.modifiers.values import concatenate, is_concrete, values


class NormsysData(NamedTuple):  # one per modifier: a NamedTuple, cheap to build
    hi: Any  # factor at α = +1 (0-d array)
    lo: Any  # factor at α = -1


@dataclasses.dataclass(frozen=True)
class NormsysTemplates:
    """All normsys modifiers of a model, in order: J of them."""

    param: np.ndarray  # (J,) int64: each one's parameter
    hi: Any  # (J,)
    lo: Any  # (J,)
    mask: np.ndarray  # (J, S, B) bool: the cells each one multiplies


@dataclasses.dataclass(frozen=True)
class Normsys(ModifierKind):
    def parse(self, data, where: str, nbins: int) -> NormsysData:
        if not isinstance(data, Mapping) or "hi" not in data or "lo" not in data:
            raise InvalidModel(f"{where}: normsys data must be {{'hi': factor, 'lo': factor}}")
        hi, lo = data["hi"], data["lo"]
        for label, value in (("hi", hi), ("lo", lo)):
            if is_concrete(value) and not (np.isfinite(value) and float(value) > 0):
                raise InvalidModel(f"{where}: normsys '{label}' factor must be positive and finite, got {value}")
        return NormsysData(values(hi), values(lo))

    def settings(self, parameter, members, config, channels) -> Settings:
        return unit_gaussian_settings(self, config)

    def templates(self, modifiers: list, layout) -> NormsysTemplates:
        mask = np.zeros((len(modifiers), layout.n_samples, layout.n_bins), bool)
        for j, modifier in enumerate(modifiers):
            sample, first, nbins = layout.cells(modifier)
            mask[j, sample, first : first + nbins] = True
        return NormsysTemplates(
            param=np.asarray([layout.slices[m.name].start for m in modifiers], np.int64),
            hi=concatenate([m.data.hi for m in modifiers]),
            lo=concatenate([m.data.lo for m in modifiers]),
            mask=mask,
        )


NORMSYS = Normsys(
    name="normsys", per_bin=False, init=0.0, bounds=(-5.0, 5.0), constraint="gaussian", effect="normsys",
    shares_parameter_with=frozenset({"histosys"}),
)
