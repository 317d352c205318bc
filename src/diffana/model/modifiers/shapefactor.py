"""shapefactor: a free factor per bin (data-driven shapes). One parameter per bin,
unconstrained, starting at 1 in [0, 10]; no data. Unlike the other per-bin kinds it
may tie channels of equal binning bin by bin, as in pyhf."""

from __future__ import annotations

import dataclasses

from diffana.model.modifiers.base import ModifierKind


@dataclasses.dataclass(frozen=True)
class Shapefactor(ModifierKind):
    def may_span(self, spanned, channels) -> bool:
        return len({channels[c].nbins for c in spanned}) == 1


SHAPEFACTOR = Shapefactor(
    name="shapefactor", per_bin=True, init=1.0, bounds=(0.0, 10.0), constraint=None, effect="factor"
)
