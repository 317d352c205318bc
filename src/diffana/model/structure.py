"""The static part of a model, declared: what ``builder`` produces and ``Model`` reads.

Shared by :mod:`diffana.model.builder` (which fills it) and :mod:`diffana.model.model`
(which evaluates the likelihood from it), so that neither imports the other's
internals: ``model`` imports ``builder``, ``builder`` imports this module and the
modifier kinds, and this module imports nothing else from diffana.model.

- :class:`ParameterSet`: one named parameter (or one per bin);
- :class:`HessianColouring`: the static plan of the coloured Hessian;
- :class:`ModelStructure`: every static array and name a model needs, hashable by
  content so that models of one structure share jit caches;
- :class:`ModelConfig`: the parameters' bookkeeping, with pyhf's names.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# pyhf's parameter-group order; ``diffana.model.modifiers.MODIFIERS`` has one kind each.
MODIFIER_TYPES = ("histosys", "lumi", "normfactor", "normsys", "shapefactor", "shapesys", "staterror")
PER_BIN_TYPES = ("shapefactor", "shapesys", "staterror")


@dataclasses.dataclass(frozen=True)
class ParameterSet:
    """One named parameter (or one per bin, for shapesys/staterror/shapefactor)."""

    name: str
    kind: str  # a modifier type
    n_parameters: int
    channel: str | None  # per-bin kinds: the channel whose bins they follow

    @property
    def constrained(self) -> bool:
        return self.kind not in ("normfactor", "shapefactor")


class HessianColouring:
    """Static plan for the sparse Hessian (see ``Model.twice_nll_hessian``).

    ``directions`` (K, P): one unit vector per global parameter, then one summed
    vector per colour of per-bin parameters; ``column_colour`` (P,): the row of
    ``directions`` whose product holds column i; ``per_bin_mask`` (P, P): structural
    non-zeros among per-bin parameters (they share a bin).
    """

    def __init__(self, affects: np.ndarray, per_bin: np.ndarray):
        n_pars = affects.shape[0]
        global_index = np.flatnonzero(~per_bin)
        colour = np.full(n_pars, -1)
        # Greedy colouring: per-bin parameters sharing a bin get different colours.
        used_by_bin: dict[int, set] = {}
        for i in np.flatnonzero(per_bin):
            bins = np.flatnonzero(affects[i])
            taken = set().union(*(used_by_bin.get(b, set()) for b in bins))
            c = 0
            while c in taken:
                c += 1
            colour[i] = c
            for b in bins:
                used_by_bin.setdefault(b, set()).add(c)
        n_colours = int(colour.max() + 1) if per_bin.any() else 0
        directions = np.zeros((len(global_index) + n_colours, n_pars))
        directions[np.arange(len(global_index)), global_index] = 1.0
        column_colour = np.zeros(n_pars, dtype=np.int64)
        column_colour[global_index] = np.arange(len(global_index))
        for i in np.flatnonzero(per_bin):
            directions[len(global_index) + colour[i], i] = 1.0
            column_colour[i] = len(global_index) + colour[i]
        shares_bin = (affects.astype(np.int64) @ affects.T.astype(np.int64)) > 0
        self.n_global = len(global_index)
        self.global_index = global_index
        self.directions = directions
        self.column_colour = column_colour
        self.per_bin_mask = (shares_bin & per_bin[:, None] & per_bin[None, :]).astype(np.float64)
        # Each per-bin row must meet at most one parameter of each colour.
        for c in range(n_colours):
            members = (colour == c) & per_bin
            assert np.all(shares_bin[np.ix_(per_bin, members)].sum(axis=1) <= 1)


def _content(value):
    """A hashable, comparable stand-in for a field's value: numpy arrays by bytes and shape."""
    return value.tobytes() + str(value.shape).encode() if isinstance(value, np.ndarray) else value


@dataclasses.dataclass(frozen=True, eq=False)
class ModelStructure:
    """The static (non-traced) part of a model: names, index maps and masks.

    Every field is set at construction. Hashable and comparable by content (numpy
    arrays by their bytes and shape), so a model can be a static argument and jit
    caches are shared between models of the same structure; ``_key`` is that content
    (``diffana.programs`` puts its ``repr`` in stored programs' names).
    ``hessian_colouring`` is left out of it: it follows from the other fields.
    ``slices`` (name -> slice) is ``slices_items`` as a dict.

    Shapes: S samples, B bins, P parameters, J normsys and H histosys modifiers,
    G Gaussian and Q Poisson constraint terms.
    """

    channel_names: tuple[str, ...]
    channel_nbins: tuple[int, ...]
    sample_names: tuple[str, ...]
    parameter_sets: tuple[ParameterSet, ...]
    slices_items: tuple[tuple[str, tuple[int, int]], ...]  # name -> (start, stop)
    n_parameters: int
    n_aux: int
    poi_index: int | None
    poi_name: str | None
    factor_index: np.ndarray  # (depth, S, B) int64: the direct factors' parameters, P = none
    normsys_param: np.ndarray  # (J,) int64
    normsys_mask: np.ndarray  # (J, S, B) bool: the cells each normsys multiplies
    normsys_interp: str
    histosys_param: np.ndarray  # (H,) int64
    histosys_sample_onehot: np.ndarray  # (H, S) float: the sample each histosys shifts
    histosys_interp: str
    gaussian_param: np.ndarray  # (G,) int64
    gaussian_aux_index: np.ndarray  # (G,) int64: position in the auxiliary data
    poisson_param: np.ndarray  # (Q,) int64
    poisson_aux_index: np.ndarray  # (Q,) int64
    hessian_colouring: HessianColouring = dataclasses.field(repr=False)
    _key: tuple = dataclasses.field(init=False, repr=False)
    slices: dict = dataclasses.field(init=False, repr=False)  # name -> slice

    def __post_init__(self):
        content = [(f.name, _content(getattr(self, f.name))) for f in dataclasses.fields(self)
                   if f.name not in ("hessian_colouring", "_key", "slices")]
        object.__setattr__(self, "_key", tuple(sorted(content)))
        object.__setattr__(self, "slices", {name: slice(*bounds) for name, bounds in self.slices_items})

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, ModelStructure) and self._key == other._key


class SuggestedParameters:
    """pyhf's names for a config's start values, bounds and fixed mask
    (``suggested_init()`` and friends), for any config with ``init``, ``lower``,
    ``upper`` and ``fixed`` arrays (the HistFactory and counting models' configs)."""

    def suggested_init(self) -> jax.Array:
        return self.init

    def suggested_bounds(self) -> jax.Array:
        return jnp.stack([self.lower, self.upper], axis=-1)

    def suggested_fixed(self) -> jax.Array:
        return self.fixed


class ModelConfig(eqx.Module, SuggestedParameters):
    """Parameter bookkeeping, with pyhf's names: ``suggested_init`` and friends."""

    init: jax.Array  # (P,)
    lower: jax.Array  # (P,)
    upper: jax.Array  # (P,)
    fixed: jax.Array  # (P,) bool
    auxdata_values: jax.Array  # (A,)
    structure: ModelStructure = eqx.field(static=True)

    @property
    def parameters(self) -> list[str]:
        """Names of the parameter sets, in order."""
        return [p.name for p in self.structure.parameter_sets]

    @property
    def par_names(self) -> list[str]:
        """One label per scalar parameter (``name[i]`` for per-bin sets), as pyhf."""
        names = []
        for p in self.structure.parameter_sets:
            if p.n_parameters == 1 and p.kind not in PER_BIN_TYPES:
                names.append(p.name)
            else:
                names.extend(f"{p.name}[{i}]" for i in range(p.n_parameters))
        return names

    @property
    def npars(self) -> int:
        return int(self.structure.n_parameters)

    @property
    def poi_index(self) -> int | None:
        return self.structure.poi_index

    @property
    def poi_name(self) -> str | None:
        return self.structure.poi_name

    @property
    def channels(self) -> list[str]:
        return list(self.structure.channel_names)

    @property
    def samples(self) -> list[str]:
        return list(self.structure.sample_names)

    @property
    def channel_nbins(self) -> dict[str, int]:
        return dict(zip(self.structure.channel_names, self.structure.channel_nbins))

    @property
    def nmaindata(self) -> int:
        return int(sum(self.structure.channel_nbins))

    @property
    def nauxdata(self) -> int:
        return int(self.structure.n_aux)

    @property
    def auxdata(self) -> jax.Array:
        return self.auxdata_values

    def par_slice(self, name: str) -> slice:
        try:
            return self.structure.slices[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}; the model has {self.parameters}") from None

    def poi_bounds(self) -> tuple[float, float]:
        """The POI's (lower, upper) bounds as Python floats, for argument checks
        outside ``jit``. Raises if the model has no POI."""
        if self.poi_index is None:
            raise ValueError("this model has no parameter of interest; build it with poi_name=...")
        # numpy, not jnp: host-side indexing compiles nothing.
        return float(np.asarray(self.lower)[self.poi_index]), float(np.asarray(self.upper)[self.poi_index])


class NamedParameters:
    """pyhf's parameter vocabulary for a config whose POI is parameter 0 and whose
    ``names`` tuple, ``lower``/``upper`` arrays and ``auxdata_values`` are fields
    (the counting and the parametric models' configs)."""

    @property
    def poi_index(self) -> int:
        return 0

    @property
    def poi_name(self) -> str:
        return self.names[0]

    @property
    def npars(self) -> int:
        return len(self.names)

    @property
    def par_names(self) -> list[str]:
        return list(self.names)

    @property
    def parameters(self) -> list[str]:
        return list(self.names)

    @property
    def auxdata(self):
        return self.auxdata_values

    def par_index(self, name: str) -> int:
        """Position of parameter ``name`` in parameter vectors."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no parameter named {name!r}; the model has {list(self.names)}") from None

    def poi_bounds(self) -> tuple[float, float]:
        """The POI's (lower, upper) bounds as Python floats (a single, concrete model)."""
        return float(self.lower[0]), float(self.upper[0])
