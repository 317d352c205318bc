"""Turn a pyhf model spec into a :class:`~diffana.model.Model`.

One function per step: parse the channels and samples, collect the modifiers (each
parsed by its kind, :mod:`diffana.model.modifiers`), lay out the parameters, take
their settings (init, bounds, fixed, constraint) from the kinds and the measurement,
lay out the constraints and auxiliary data, build the templates, and assemble the
static :class:`~diffana.model.structure.ModelStructure` and the array leaves.

Validation happens here and in the kinds, with messages that name the channel,
sample and modifier at fault. Checks on values (NaN, negative yields) run when the
templates are concrete; inside ``jit`` they are tracers and cannot be inspected.

Concrete templates are combined with numpy and become JAX arrays once, at the end
(see :mod:`diffana.model.modifiers.values`); traced ones go through ``jax.numpy``,
so a model built inside ``jit``/``grad``/``vmap`` stays differentiable in them.

This module imports :mod:`~diffana.model.structure` and the kinds, not
:mod:`diffana.model.model`: ``Model.from_spec`` passes its class in.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from diffana.errors import InvalidModel
from diffana.model.interpolation import HISTOSYS_CODES, NORMSYS_CODES
from diffana.model.modifiers import MODIFIERS
from diffana.model.modifiers.base import Channel, Configured, Gaussian, Layout, Modifier, Sample
from diffana.model.modifiers.values import check_non_negative, concatenate, float_values, values, where, xp
from diffana.model.structure import (
    MODIFIER_TYPES,
    HessianColouring,
    ModelConfig,
    ModelStructure,
    ParameterSet,
)

_TYPE_RANK = {kind: rank for rank, kind in enumerate(MODIFIER_TYPES)}


def build_model(cls, spec, *, poi_name, parameters, normsys_interp, histosys_interp):
    """``cls`` (a :class:`~diffana.model.Model` class) built from a pyhf model spec;
    the arguments are ``Model.from_spec``'s."""
    _check_interpolation(normsys_interp, histosys_interp)
    channels = _parse_channels(spec)
    sample_names = sorted({s for channel in channels.values() for s in channel.samples})
    modifiers = _collect_modifiers(channels)
    members = _members(modifiers)
    parameter_sets = _parameter_sets(modifiers, members, channels)
    slices = _slices(parameter_sets)
    configs = _user_configs(parameters, slices)
    numbers = [_parameter_numbers(p, members[p.name], configs.get(p.name, {}), channels) for p in parameter_sets]
    poi_index = _poi_index(poi_name, parameter_sets, slices)
    constraints = _constraints(parameter_sets, numbers, slices)
    layout = _layout(channels, sample_names, slices)
    templates = _templates(modifiers, layout)
    structure = _structure(
        layout, parameter_sets, constraints, templates, poi_name, poi_index,
        _hessian_colouring(parameter_sets, modifiers, layout), normsys_interp, histosys_interp,
    )
    return _assemble(cls, structure, _nominal(channels, layout), numbers, constraints, templates)


def _check_interpolation(normsys_interp, histosys_interp):
    if normsys_interp not in NORMSYS_CODES:
        raise InvalidModel(f"normsys_interp must be one of {NORMSYS_CODES}, got {normsys_interp!r}")
    if histosys_interp not in HISTOSYS_CODES:
        raise InvalidModel(f"histosys_interp must be one of {HISTOSYS_CODES}, got {histosys_interp!r}")


# --- channels and samples ----------------------------------------------------------


def _parse_channels(spec) -> OrderedDict:
    """name -> :class:`Channel`, ordered by name."""
    if not isinstance(spec, Mapping):
        raise InvalidModel(f"a model spec must be a mapping with a 'channels' list, got {type(spec).__name__}")
    channels = spec.get("channels")
    if not isinstance(channels, (list, tuple)) or not channels:
        raise InvalidModel("the model spec needs a non-empty 'channels' list")
    parsed = {}
    for channel in channels:
        if not isinstance(channel, Mapping) or "name" not in channel:
            raise InvalidModel(f"each channel needs a 'name' and 'samples', got {channel!r:.80}")
        name = channel["name"]
        if name in parsed:
            raise InvalidModel(f"channel {name!r} is defined twice")
        parsed[name] = _parse_channel(name, channel.get("samples"))
    return OrderedDict(sorted(parsed.items()))


def _parse_channel(name, samples) -> Channel:
    if not isinstance(samples, (list, tuple)) or not samples:
        raise InvalidModel(f"{where(name)} has no samples")
    parsed, nbins = {}, None
    for sample in samples:
        if not isinstance(sample, Mapping) or "name" not in sample or "data" not in sample:
            raise InvalidModel(f"{where(name)}: each sample needs 'name' and 'data'")
        sname = sample["name"]
        if sname in parsed:
            raise InvalidModel(f"{where(name, sname)} is defined twice")
        data = float_values(sample["data"], f"{where(name, sname)} data")
        check_non_negative(data, f"{where(name, sname)} data")
        if nbins is None:
            nbins = data.shape[0]
        elif data.shape[0] != nbins:
            raise InvalidModel(
                f"{where(name, sname)} has {data.shape[0]} bins, but other samples of the channel have {nbins}"
            )
        modifiers = sample.get("modifiers", [])
        if not isinstance(modifiers, (list, tuple)):
            raise InvalidModel(f"{where(name, sname)}: 'modifiers' must be a list")
        parsed[sname] = Sample(sname, data, list(modifiers))
    if nbins == 0:
        raise InvalidModel(f"{where(name)} has no bins")
    return Channel(name, nbins, parsed)


def _nominal(channels, layout: Layout):
    """(S, B) nominal yields: zero where a sample does not appear in a channel."""
    rows = []
    for s in layout.sample_index:
        pieces = [
            channel.samples[s].data if s in channel.samples else np.zeros(channel.nbins, np.float64)
            for channel in channels.values()
        ]
        rows.append(xp(*pieces).concatenate(pieces))
    return xp(*rows).stack(rows)


# --- modifiers and parameters ------------------------------------------------------


def _parse_modifier(modifier, channel: Channel, sample: str) -> Modifier:
    if not isinstance(modifier, Mapping) or "name" not in modifier or "type" not in modifier:
        raise InvalidModel(
            f"{where(channel.name, sample)}: each modifier needs 'name' and 'type', got {modifier!r:.80}"
        )
    name, kind = modifier["name"], modifier["type"]
    at = where(channel.name, sample, name)
    if kind not in MODIFIER_TYPES:
        raise InvalidModel(f"{at}: unknown modifier type {kind!r}; known types are {', '.join(MODIFIER_TYPES)}")
    data = MODIFIERS[kind].parse(modifier.get("data"), at, channel.nbins)
    return Modifier(name, kind, channel.name, sample, data)


def _collect_modifiers(channels) -> list[Modifier]:
    """Every modifier, in pyhf's order: channels and samples by name, each sample's
    modifiers by name. A name may be used once per kind on a sample, and by several
    kinds only where they share a parameter (normsys and histosys)."""
    modifiers, kinds_of = [], {}
    for channel in channels.values():
        for sample in sorted(channel.samples):
            parsed = [_parse_modifier(m, channel, sample) for m in channel.samples[sample].modifiers]
            seen_here = set()
            for modifier in sorted(parsed, key=lambda m: m.name):
                name, kind = modifier.name, modifier.kind
                if (name, kind) in seen_here:
                    raise InvalidModel(
                        f"{where(channel.name, sample, name)}: the {kind} modifier is listed twice on this sample"
                    )
                seen_here.add((name, kind))
                kinds = kinds_of.setdefault(name, set())
                kinds.add(kind)
                if len(kinds) > 1 and not _may_share(kinds):
                    raise InvalidModel(
                        f"{where(channel.name, sample, name)}: the name {name!r} is used by modifiers of types "
                        f"{sorted(kinds)}, which cannot share a parameter"
                    )
                modifiers.append(modifier)
    return modifiers


def _may_share(kinds) -> bool:
    """Whether modifiers of all these kinds may share one parameter."""
    return all(other in MODIFIERS[kind].shares_parameter_with for kind in kinds for other in kinds - {kind})


def _members(modifiers) -> dict[str, list[Modifier]]:
    """name -> the modifiers of that name, in order."""
    members = {}
    for modifier in modifiers:
        members.setdefault(modifier.name, []).append(modifier)
    return members


def _parameter_sets(modifiers, members, channels) -> list[ParameterSet]:
    """One set per name, ordered as pyhf does: by kind (a shared name counts as its
    first kind in ``MODIFIER_TYPES``), then by first appearance of the name in that kind."""
    first_seen = {}
    for position, modifier in enumerate(modifiers):
        first_seen.setdefault((modifier.kind, modifier.name), position)
    kind_of = {name: min({m.kind for m in group}, key=_TYPE_RANK.get) for name, group in members.items()}

    def order_key(name):
        return (_TYPE_RANK[kind_of[name]], first_seen[(kind_of[name], name)])

    return [MODIFIERS[kind_of[name]].parameter_set(name, members[name], channels)
            for name in sorted(members, key=order_key)]


def _slices(parameter_sets) -> dict[str, slice]:
    slices, start = {}, 0
    for p in parameter_sets:
        slices[p.name] = slice(start, start + p.n_parameters)
        start += p.n_parameters
    return slices


def _user_configs(parameters, slices) -> dict[str, Mapping]:
    """The measurement's parameter configurations by name (unknown names: a warning)."""
    configs = {}
    for config in parameters or ():
        if not isinstance(config, Mapping) or "name" not in config:
            raise InvalidModel(f"each parameter configuration needs a 'name', got {config!r:.80}")
        if config["name"] in configs:
            raise InvalidModel(f"parameter {config['name']!r} is configured twice")
        configs[config["name"]] = config
    for name in configs:
        if name not in slices:
            warnings.warn(f"the measurement configures parameter {name!r}, which no modifier defines; ignored")
    return configs


@dataclasses.dataclass(frozen=True)
class _Numbers:
    """One parameter set's arrays, (n,) each, and its constraint."""

    init: Any
    lower: Any
    upper: Any
    fixed: Any
    constraint: Any  # Gaussian, Poisson or None


def _parameter_numbers(parameter: ParameterSet, members, entry: Mapping, channels) -> _Numbers:
    """Its kind's settings, the measurement's ``fixed`` over them, as arrays."""
    n = parameter.n_parameters
    settings = MODIFIERS[parameter.kind].settings(parameter, members, Configured(parameter.name, entry), channels)
    fixed = [True] * n if entry.get("fixed") else settings.fixed
    init = values(settings.init).reshape(n)
    bounds = values(settings.bounds).reshape(n, 2)
    return _Numbers(init, bounds[:, 0], bounds[:, 1], values(fixed, bool).reshape(n), settings.constraint)


def _poi_index(poi_name, parameter_sets, slices) -> int | None:
    if poi_name is None:
        return None
    if poi_name not in slices:
        raise InvalidModel(
            f"the parameter of interest {poi_name!r} is not a parameter of the model; "
            f"its parameters are {[p.name for p in parameter_sets]}"
        )
    if slices[poi_name].stop - slices[poi_name].start != 1:
        raise InvalidModel(f"the parameter of interest {poi_name!r} has several components; it must be a scalar")
    return slices[poi_name].start


# --- constraints and auxiliary data ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Terms:
    """Constraint terms of one type, in parameter order: the parameter each
    constrains, the position of its auxiliary datum, and its width (Gaussian σ) or
    rate factor (Poisson τ)."""

    param: np.ndarray  # int64
    aux_index: np.ndarray  # int64
    scale: Any


@dataclasses.dataclass(frozen=True)
class _Constraints:
    gaussian: _Terms
    poisson: _Terms
    aux_values: Any  # (A,) nominal auxiliary data
    n_aux: int


def _constraints(parameter_sets, numbers, slices) -> _Constraints:
    """The auxiliary data follow the constrained parameter sets in parameter order,
    one datum per component."""
    gaussian, poisson = ([], [], []), ([], [], [])  # parameters, aux positions, σ or τ
    aux_values, position = [], 0
    for p, number in zip(parameter_sets, numbers):
        constraint, n = number.constraint, p.n_parameters
        if constraint is None:
            continue
        is_gaussian = isinstance(constraint, Gaussian)
        param, aux_index, scale = gaussian if is_gaussian else poisson
        param.append(slices[p.name].start + np.arange(n))
        aux_index.append(np.arange(position, position + n))
        scale.append(constraint.sigma if is_gaussian else constraint.tau)
        aux_values.append(constraint.aux_values(n))
        position += n

    def terms(param, aux_index, scale):
        return _Terms(_indices(param), _indices(aux_index), concatenate(scale))

    return _Constraints(terms(*gaussian), terms(*poisson), concatenate(aux_values), position)


def _indices(chunks) -> np.ndarray:
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)


# --- templates ---------------------------------------------------------------------


def _layout(channels, sample_names, slices) -> Layout:
    nbins = [channel.nbins for channel in channels.values()]
    offsets = dict(zip(channels, np.cumsum([0] + nbins[:-1]).tolist()))
    return Layout(channels, {s: i for i, s in enumerate(sample_names)}, offsets, int(sum(nbins)), slices)


@dataclasses.dataclass(frozen=True)
class _Templates:
    factor_index: np.ndarray  # (depth, S, B)
    normsys: Any  # modifiers.normsys.NormsysTemplates
    histosys: Any  # modifiers.histosys.HistosysTemplates


def _templates(modifiers, layout: Layout) -> _Templates:
    def of(kind):
        return [m for m in modifiers if m.kind == kind]

    return _Templates(
        _factor_index([m for m in modifiers if MODIFIERS[m.kind].effect == "factor"], layout),
        MODIFIERS["normsys"].templates(of("normsys"), layout),
        MODIFIERS["histosys"].templates(of("histosys"), layout),
    )


def _factor_index(modifiers, layout: Layout) -> np.ndarray:
    """(depth, S, B): the parameters multiplying each cell directly (normfactor,
    lumi and the per-bin kinds), in modifier order; P (one past the last
    parameter, read as a factor 1) where a cell has fewer than ``depth``."""
    direct = [[[] for _ in range(layout.n_bins)] for _ in range(layout.n_samples)]
    for modifier in modifiers:
        sample, first, nbins = layout.cells(modifier)
        indices = MODIFIERS[modifier.kind].factor_parameters(layout.slices[modifier.name].start, nbins)
        for b, index in zip(range(first, first + nbins), indices):
            direct[sample][b].append(index)
    n_pars = sum(s.stop - s.start for s in layout.slices.values())
    depth = max(1, max(len(cell) for row in direct for cell in row))
    factor_index = np.full((depth, layout.n_samples, layout.n_bins), n_pars, dtype=np.int64)
    for s, row in enumerate(direct):
        for b, cell in enumerate(row):
            for k, index in enumerate(cell):
                factor_index[k, s, b] = index
    return factor_index


def _hessian_colouring(parameter_sets, modifiers, layout: Layout) -> HessianColouring:
    """Which bins each parameter moves, and which parameters act on one bin only."""
    n_pars = sum(p.n_parameters for p in parameter_sets)
    affects = np.zeros((n_pars, layout.n_bins), bool)
    for modifier in modifiers:
        _, first, nbins = layout.cells(modifier)
        start = layout.slices[modifier.name].start
        if MODIFIERS[modifier.kind].per_bin:
            np.fill_diagonal(affects[start : start + nbins, first : first + nbins], True)
        else:
            affects[start, first : first + nbins] = True
    per_bin = np.zeros(n_pars, bool)
    for p in parameter_sets:
        if MODIFIERS[p.kind].per_bin:
            per_bin[layout.slices[p.name]] = True
    # A per-bin parameter tied across channels (shared shapefactor) moves several
    # bins: treat it as global, probed by its own product.
    per_bin &= affects.sum(axis=1) == 1
    return HessianColouring(affects, per_bin)


# --- assembly ----------------------------------------------------------------------


def _structure(layout, parameter_sets, constraints, templates, poi_name, poi_index, colouring,
               normsys_interp, histosys_interp) -> ModelStructure:
    return ModelStructure(
        channel_names=tuple(layout.channels),
        channel_nbins=tuple(channel.nbins for channel in layout.channels.values()),
        sample_names=tuple(layout.sample_index),
        parameter_sets=tuple(parameter_sets),
        slices_items=tuple((k, (v.start, v.stop)) for k, v in layout.slices.items()),
        n_parameters=sum(p.n_parameters for p in parameter_sets),
        n_aux=constraints.n_aux,
        poi_index=poi_index,
        poi_name=poi_name if poi_index is not None else None,
        factor_index=templates.factor_index,
        normsys_param=templates.normsys.param,
        normsys_mask=templates.normsys.mask,
        normsys_interp=normsys_interp,
        histosys_param=templates.histosys.param,
        histosys_sample_onehot=templates.histosys.sample_onehot,
        histosys_interp=histosys_interp,
        gaussian_param=constraints.gaussian.param,
        gaussian_aux_index=constraints.gaussian.aux_index,
        poisson_param=constraints.poisson.param,
        poisson_aux_index=constraints.poisson.aux_index,
        hessian_colouring=colouring,
    )


def _assemble(cls, structure, nominal, numbers, constraints, templates):
    """The model: its leaves become JAX arrays (float64; ``fixed`` bool), one
    conversion each."""

    def leaf(value, dtype=jnp.float64):
        return jnp.asarray(value, dtype)

    config = ModelConfig(
        init=leaf(concatenate([n.init for n in numbers])),
        lower=leaf(concatenate([n.lower for n in numbers])),
        upper=leaf(concatenate([n.upper for n in numbers])),
        fixed=leaf(concatenate([n.fixed for n in numbers], bool), bool),
        auxdata_values=leaf(constraints.aux_values),
        structure=structure,
    )
    return cls(
        nominal=leaf(nominal),
        normsys_hi=leaf(templates.normsys.hi),
        normsys_lo=leaf(templates.normsys.lo),
        histosys_up=leaf(templates.histosys.up),
        histosys_down=leaf(templates.histosys.down),
        gaussian_sigma=leaf(constraints.gaussian.scale),
        poisson_rate_factor=leaf(constraints.poisson.scale),
        config=config,
        structure=structure,
    )
