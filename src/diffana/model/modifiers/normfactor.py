"""normfactor: a free factor multiplying a sample in a channel (e.g. the signal
strength μ). One parameter, unconstrained, starting at 1 in [0, 10]; no data."""

from __future__ import annotations

from diffana.model.modifiers.base import ModifierKind

NORMFACTOR = ModifierKind(
    name="normfactor", per_bin=False, init=1.0, bounds=(0.0, 10.0), constraint=None, effect="factor"
)
