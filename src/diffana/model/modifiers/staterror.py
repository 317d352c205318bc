"""staterror: the MC-statistics uncertainty of a channel's summed samples
(``data``: each sample's absolute uncertainties). One parameter γ_b per bin of its
channel, shared by every sample carrying the same name, starting at 1 in
[1e-10, 10], constrained by Normal(auxdatum 1 | γ_b, σ_b) with
σ_b = sqrt(Σ_samples data_b²) / Σ_samples nominal_b. A bin whose σ_b is 0 has its
γ_b fixed (and width 1)."""

from __future__ import annotations

import dataclasses

import numpy as np

from diffana.model.modifiers.base import Gaussian, ModifierKind, Settings, per_bin_uncertainties
from diffana.model.modifiers.values import xp


@dataclasses.dataclass(frozen=True)
class Staterror(ModifierKind):
    def parse(self, data, where: str, nbins: int):
        return per_bin_uncertainties("staterror", data, where, nbins)

    def settings(self, parameter, members, config, channels) -> Settings:
        n = parameter.n_parameters
        sigmas = relative_uncertainties(members, channels[parameter.channel])
        zero = sigmas == 0
        init, bounds = self.init_and_bounds(n, config)
        return Settings(init, bounds, zero, Gaussian(xp(sigmas).where(zero, 1.0, sigmas), np.ones(n, np.float64)))


def relative_uncertainties(members, channel):
    """σ_b of one staterror parameter set: its ``members`` on samples of ``channel``."""
    nominals = [channel.samples[m.sample].data for m in members]
    module = xp(*nominals, *(m.data for m in members))
    nominal_sum = sum(nominals)
    safe = module.where(nominal_sum > 0, nominal_sum, 1.0)
    relative = sum(module.where(nominal_sum > 0, (m.data / safe) ** 2, 0.0) for m in members)
    return module.sqrt(relative) * module.ones(channel.nbins)


STATERROR = Staterror(
    name="staterror", per_bin=True, init=1.0, bounds=(1e-10, 10.0), constraint="gaussian", effect="factor"
)
