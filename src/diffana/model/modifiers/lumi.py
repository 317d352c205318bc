"""lumi: the luminosity, one factor on every sample that carries it. One parameter,
Gaussian-constrained around the measurement's ``auxdata`` (the nominal luminosity)
with its ``sigmas``, which the measurement must give; it starts at the auxdatum, in
[0, 10 × auxdatum]. No data."""

from __future__ import annotations

import dataclasses

from diffana.errors import InvalidModel
from diffana.model.modifiers.base import Gaussian, ModifierKind, Settings
from diffana.model.modifiers.values import values


@dataclasses.dataclass(frozen=True)
class Lumi(ModifierKind):
    def settings(self, parameter, members, config, channels) -> Settings:
        if config.given("auxdata") is None or config.given("sigmas") is None:
            raise InvalidModel(
                f"the lumi modifier {parameter.name!r} needs a measurement parameter configuration with "
                "'auxdata' (the nominal luminosity) and 'sigmas' (its uncertainty)"
            )
        aux = config.get("auxdata", [1.0])
        init = config.get("inits", list(aux))
        bounds = config.get("bounds", [[0.0, 10.0 * float(aux[0])]])
        sigma = values(config.get("sigmas", [1.0]))
        return Settings(init, bounds, [False], Gaussian(sigma, values(aux)))


LUMI = Lumi(name="lumi", per_bin=False, init=None, bounds=None, constraint="gaussian", effect="factor")
