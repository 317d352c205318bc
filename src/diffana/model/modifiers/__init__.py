"""The modifier kinds, one module each (as pyhf's ``pyhf.modifiers``).

Each module holds everything about its kind: the parameters' defaults (init,
bounds, one per bin or one in all), the parsing and checks of its ``data`` from the
spec, its constraint (Gaussian with σ, Poisson with τ, or none) and how its
auxiliary data are built, and, for normsys and histosys, the templates their
yield contributions are evaluated from. :mod:`~diffana.model.modifiers.base` has
what they share; :data:`MODIFIERS` maps each type name to its kind, in pyhf's
parameter-group order.

The likelihood evaluates every modifier of a kind at once, from the arrays the
builder lays out (:class:`~diffana.model.structure.ModelStructure`): nothing here
runs per modifier at evaluation time.
"""

from __future__ import annotations

from diffana.model.modifiers.base import ModifierKind
from diffana.model.modifiers.histosys import HISTOSYS
from diffana.model.modifiers.lumi import LUMI
from diffana.model.modifiers.normfactor import NORMFACTOR
from diffana.model.modifiers.normsys import NORMSYS
from diffana.model.modifiers.shapefactor import SHAPEFACTOR
from diffana.model.modifiers.shapesys import SHAPESYS
from diffana.model.modifiers.staterror import STATERROR

MODIFIERS: dict[str, ModifierKind] = {
    kind.name: kind for kind in (HISTOSYS, LUMI, NORMFACTOR, NORMSYS, SHAPEFACTOR, SHAPESYS, STATERROR)
}

__all__ = ["MODIFIERS", "ModifierKind"]
