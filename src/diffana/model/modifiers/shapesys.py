"""shapesys: an uncorrelated per-bin uncertainty of one sample (``data``: absolute
uncertainties σ_b). One parameter γ_b per bin of its channel, starting at 1 in
[1e-10, 10], with a Poisson ("Gamma") constraint of rate γ_b τ_b,
τ_b = (nominal_b / σ_b)²; the auxiliary data are the τ_b. A bin without nominal
yield or uncertainty has τ_b = 1 and its γ_b fixed. One sample per name (share
with staterror)."""

from __future__ import annotations

import dataclasses

from diffana.errors import InvalidModel
from diffana.model.modifiers.base import ModifierKind, Poisson, Settings, per_bin_uncertainties
from diffana.model.modifiers.values import xp


@dataclasses.dataclass(frozen=True)
class Shapesys(ModifierKind):
    def parse(self, data, where: str, nbins: int):
        return per_bin_uncertainties("shapesys", data, where, nbins)

    def parameter_set(self, name, members, channels):
        parameter = super().parameter_set(name, members, channels)
        samples_with = [m.sample for m in members]
        if len(samples_with) > 1:
            raise InvalidModel(
                f"the shapesys modifier {name!r} appears on samples {samples_with}; shapesys "
                "parameters are per sample (use staterror to share)"
            )
        return parameter

    def settings(self, parameter, members, config, channels) -> Settings:
        modifier = members[0]
        nominal, uncertainty = channels[modifier.channel].samples[modifier.sample].data, modifier.data
        module = xp(nominal, uncertainty)
        valid = (nominal > 0) & (uncertainty > 0)
        tau = module.where(valid, nominal**2 / module.where(valid, uncertainty, 1.0) ** 2, 1.0)
        n = parameter.n_parameters
        init, bounds = self.init_and_bounds(n, config)
        return Settings(init, bounds, ~valid, Poisson(tau))


SHAPESYS = Shapesys(
    name="shapesys", per_bin=True, init=1.0, bounds=(1e-10, 10.0), constraint="poisson", effect="factor"
)
