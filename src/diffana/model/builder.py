"""Turn a pyhf model spec into a :class:`~diffana.model.Model`.

Validation happens here, with messages that name the channel, sample and modifier at
fault. Checks on values (NaN, negative yields) run when the templates are concrete;
inside ``jit`` they are tracers and cannot be inspected.

Concrete templates (lists, numpy or JAX arrays) are combined with numpy and become
JAX arrays once, at the end: an eager JAX operation costs ~0.3-0.5 ms to dispatch
(and a compilation the first time each shape is met), and a published likelihood's
~500 modifiers took ~2000 of them. Only values that are tracers (a model built
inside ``jit``/``grad``/``vmap`` from traced yields) go through ``jax.numpy``, so
such a model stays differentiable in them; the result is the same either way.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from diffana.model.interpolation import HISTOSYS_CODES, NORMSYS_CODES
from diffana.model.model import (
    MODIFIER_TYPES,
    HessianColouring,
    PER_BIN_TYPES,
    InvalidModel,
    ModelConfig,
    ParameterSet,
    _as_float_array,
    _bad_shape,
    _check_non_negative,
    _is_concrete,
    _Structure,
)


def _traced(value) -> bool:
    """Whether ``value`` is a JAX tracer, or a list/tuple holding one."""
    if isinstance(value, jax.core.Tracer):
        return True
    if isinstance(value, (list, tuple)):
        return any(_traced(v) for v in value)
    return False


def _xp(*values):
    """``jax.numpy`` if any of ``values`` is a tracer, else ``numpy``."""
    return jnp if any(isinstance(v, jax.core.Tracer) for v in values) else np


def _values(value, dtype=np.float64):
    """``value`` as an array: numpy when concrete, JAX when it holds tracers."""
    return jnp.asarray(value, dtype) if _traced(value) else np.asarray(value, dtype)


def _float_values(values, where: str):
    """Template values as a one-dimensional float64 array, with
    ``_as_float_array``'s checks and messages; a concrete input becomes a numpy
    array (a fresh one or a read-only view: never written to), a tracer stays one."""
    if isinstance(values, jax.core.Tracer):
        return _as_float_array(values, where)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidModel(f"{where}: expected a list of numbers, got {values!r}") from error
    if array.ndim != 1:
        _bad_shape(where, array.shape)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array)).tolist()
        raise InvalidModel(f"{where}: non-finite values (NaN or inf) in bins {bad}")
    return array


def _concatenate(chunks, dtype=np.float64):
    """The chunks (scalars or 1-d) end to end; numpy unless one is traced."""
    if not chunks:
        return np.zeros(0, dtype)
    xp = _xp(*chunks)
    return xp.concatenate([xp.atleast_1d(xp.asarray(c, dtype)) for c in chunks])


# Modifier types that may share one parameter under the same name (both are
# Gaussian-constrained, start at 0 and live in [-5, 5]), as in HistFactory.
_SHAREABLE = {frozenset({"normsys", "histosys"})}
_TYPE_RANK = {kind: rank for rank, kind in enumerate(MODIFIER_TYPES)}


def _where(channel, sample=None, modifier=None):
    text = f"channel {channel!r}"
    if sample is not None:
        text += f", sample {sample!r}"
    if modifier is not None:
        text += f", modifier {modifier!r}"
    return text


def _parse_channels(spec):
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
        samples = channel.get("samples")
        if not isinstance(samples, (list, tuple)) or not samples:
            raise InvalidModel(f"{_where(name)} has no samples")
        parsed_samples = {}
        nbins = None
        for sample in samples:
            if not isinstance(sample, Mapping) or "name" not in sample or "data" not in sample:
                raise InvalidModel(f"{_where(name)}: each sample needs 'name' and 'data'")
            sname = sample["name"]
            if sname in parsed_samples:
                raise InvalidModel(f"{_where(name, sname)} is defined twice")
            data = _float_values(sample["data"], f"{_where(name, sname)} data")
            _check_non_negative(data, f"{_where(name, sname)} data")
            if nbins is None:
                nbins = data.shape[0]
            elif data.shape[0] != nbins:
                raise InvalidModel(
                    f"{_where(name, sname)} has {data.shape[0]} bins, but other samples of the channel have {nbins}"
                )
            modifiers = sample.get("modifiers", [])
            if not isinstance(modifiers, (list, tuple)):
                raise InvalidModel(f"{_where(name, sname)}: 'modifiers' must be a list")
            parsed_samples[sname] = (data, list(modifiers))
        if nbins == 0:
            raise InvalidModel(f"{_where(name)} has no bins")
        parsed[name] = (nbins, parsed_samples)
    return OrderedDict(sorted(parsed.items()))


def _parse_modifier(modifier, channel, sample, nbins):
    if not isinstance(modifier, Mapping) or "name" not in modifier or "type" not in modifier:
        raise InvalidModel(f"{_where(channel, sample)}: each modifier needs 'name' and 'type', got {modifier!r:.80}")
    name, kind = modifier["name"], modifier["type"]
    where = _where(channel, sample, name)
    if kind not in MODIFIER_TYPES:
        raise InvalidModel(f"{where}: unknown modifier type {kind!r}; known types are {', '.join(MODIFIER_TYPES)}")
    data = modifier.get("data")
    if kind == "normsys":
        if not isinstance(data, Mapping) or "hi" not in data or "lo" not in data:
            raise InvalidModel(f"{where}: normsys data must be {{'hi': factor, 'lo': factor}}")
        hi, lo = data["hi"], data["lo"]
        for label, value in (("hi", hi), ("lo", lo)):
            if _is_concrete(value) and not (np.isfinite(value) and float(value) > 0):
                raise InvalidModel(f"{where}: normsys '{label}' factor must be positive and finite, got {value}")
        data = (_values(hi), _values(lo))
    elif kind == "histosys":
        if not isinstance(data, Mapping) or "hi_data" not in data or "lo_data" not in data:
            raise InvalidModel(f"{where}: histosys data must be {{'hi_data': [...], 'lo_data': [...]}}")
        hi = _float_values(data["hi_data"], f"{where} hi_data")
        lo = _float_values(data["lo_data"], f"{where} lo_data")
        for label, array in (("hi_data", hi), ("lo_data", lo)):
            if array.shape[0] != nbins:
                raise InvalidModel(f"{where}: {label} has {array.shape[0]} bins, the channel has {nbins}")
        data = (hi, lo)
    elif kind in ("shapesys", "staterror"):
        data = _float_values(data, f"{where} data")
        if data.shape[0] != nbins:
            raise InvalidModel(f"{where}: {kind} data has {data.shape[0]} bins, the channel has {nbins}")
        _check_non_negative(data, f"{where} {kind} uncertainties")
    else:
        data = None
    return name, kind, data


def _user_configs(parameters):
    configs = {}
    for config in parameters or ():
        if not isinstance(config, Mapping) or "name" not in config:
            raise InvalidModel(f"each parameter configuration needs a 'name', got {config!r:.80}")
        if config["name"] in configs:
            raise InvalidModel(f"parameter {config['name']!r} is configured twice")
        configs[config["name"]] = config
    return configs


def build_model(cls, spec, *, poi_name, parameters, normsys_interp, histosys_interp):
    if normsys_interp not in NORMSYS_CODES:
        raise InvalidModel(f"normsys_interp must be one of {NORMSYS_CODES}, got {normsys_interp!r}")
    if histosys_interp not in HISTOSYS_CODES:
        raise InvalidModel(f"histosys_interp must be one of {HISTOSYS_CODES}, got {histosys_interp!r}")
    channels = _parse_channels(spec)
    channel_names = list(channels)
    channel_nbins = [channels[c][0] for c in channel_names]
    offsets = dict(zip(channel_names, np.cumsum([0] + channel_nbins[:-1]).tolist()))
    n_bins = int(sum(channel_nbins))
    sample_names = sorted({s for c in channel_names for s in channels[c][1]})
    sample_index = {s: i for i, s in enumerate(sample_names)}
    n_samples = len(sample_names)

    # Nominal yields (S, B): zero where a sample does not appear in a channel.
    rows = []
    for s in sample_names:
        pieces = [
            channels[c][1][s][0] if s in channels[c][1] else np.zeros(channels[c][0], np.float64)
            for c in channel_names
        ]
        rows.append(_xp(*pieces).concatenate(pieces))
    nominal = _xp(*rows).stack(rows)

    # Collect modifier instances in pyhf's iteration order.
    instances = []  # (name, kind, channel, sample, data)
    kinds_of = OrderedDict()  # name -> set of kinds
    first_seen = {}  # (kind, name) -> order of first appearance
    for c in channel_names:
        nbins, samples = channels[c]
        for s in sorted(samples):
            parsed = [_parse_modifier(m, c, s, nbins) for m in samples[s][1]]
            seen_here = set()
            for name, kind, data in sorted(parsed, key=lambda item: item[0]):
                if (name, kind) in seen_here:
                    raise InvalidModel(f"{_where(c, s, name)}: the {kind} modifier is listed twice on this sample")
                seen_here.add((name, kind))
                kinds = kinds_of.setdefault(name, set())
                kinds.add(kind)
                if len(kinds) > 1 and frozenset(kinds) not in _SHAREABLE:
                    raise InvalidModel(
                        f"{_where(c, s, name)}: the name {name!r} is used by modifiers of types "
                        f"{sorted(kinds)}, which cannot share a parameter"
                    )
                first_seen.setdefault((kind, name), len(first_seen))
                instances.append((name, kind, c, s, data))

    instances_of = {}  # name -> its instances, in order
    for instance in instances:
        instances_of.setdefault(instance[0], []).append(instance)

    # Parameter sets, ordered as pyhf does.
    def order_key(name):
        kinds = kinds_of[name]
        kind = min(kinds, key=_TYPE_RANK.get)
        return (_TYPE_RANK[kind], first_seen[(kind, name)])

    parameter_sets = []
    for name in sorted(kinds_of, key=order_key):
        kind = min(kinds_of[name], key=_TYPE_RANK.get)
        if kind in PER_BIN_TYPES:
            chans = sorted({c for (_, _, c, _, _) in instances_of[name]})
            # A shapefactor may tie channels of equal binning bin by bin (as in pyhf).
            shared_shapefactor = kind == "shapefactor" and len({channels[c][0] for c in chans}) == 1
            if len(chans) > 1 and not shared_shapefactor:
                raise InvalidModel(
                    f"the {kind} modifier {name!r} appears in channels {chans}; a per-bin modifier "
                    "must belong to one channel"
                )
            if kind == "shapesys":
                samples_with = [s for (_, _, _, s, _) in instances_of[name]]
                if len(samples_with) > 1:
                    raise InvalidModel(
                        f"the shapesys modifier {name!r} appears on samples {samples_with}; shapesys "
                        "parameters are per sample (use staterror to share)"
                    )
            parameter_sets.append(ParameterSet(name, kind, channels[chans[0]][0], chans[0]))
        else:
            parameter_sets.append(ParameterSet(name, kind, 1, None))
    slices, start = {}, 0
    for p in parameter_sets:
        slices[p.name] = slice(start, start + p.n_parameters)
        start += p.n_parameters
    n_pars = start
    by_name = {p.name: p for p in parameter_sets}

    configs = _user_configs(parameters)
    for name in configs:
        if name not in by_name:
            warnings.warn(f"the measurement configures parameter {name!r}, which no modifier defines; ignored")

    # Per-set numbers: inits, bounds, fixed, constraint widths and auxiliary data.
    init, lower, upper, fixed = [], [], [], []
    gaussian_param, gaussian_sigma, gaussian_aux_value = [], [], []
    poisson_param, poisson_tau = [], []
    aux_kinds = []  # ("g" | "p", index into the gaussian/poisson lists), in aux order

    def staterror_sigmas(name, channel):
        nbins = channels[channel][0]
        members = [(s, d) for (_, k, _, s, d) in instances_of[name] if k == "staterror"]
        nominals = [channels[channel][1][s][0] for s, _ in members]
        xp = _xp(*nominals, *(d for _, d in members))
        nominal_sum = sum(nominals)
        safe = xp.where(nominal_sum > 0, nominal_sum, 1.0)
        relative = sum(xp.where(nominal_sum > 0, (d / safe) ** 2, 0.0) for _, d in members)
        relative = xp.sqrt(relative) * xp.ones(nbins)
        return relative

    for p in parameter_sets:
        cfg = configs.get(p.name, {})
        n = p.n_parameters

        def configured(key, default):
            value = cfg.get(key)
            if value is None:
                return default
            if isinstance(default, list) and len(value) != len(default):
                raise InvalidModel(
                    f"parameter {p.name!r}: {len(value)} values for {key!r}, the parameter has {len(default)}"
                )
            return value

        if p.kind == "normfactor":
            p_init, p_bounds, p_fixed = configured("inits", [1.0]), configured("bounds", [[0.0, 10.0]]), [False]
        elif p.kind == "shapefactor":
            p_init, p_bounds, p_fixed = configured("inits", [1.0] * n), configured("bounds", [[0.0, 10.0]] * n), [False] * n
        elif p.kind in ("normsys", "histosys"):
            p_init, p_bounds, p_fixed = configured("inits", [0.0]), configured("bounds", [[-5.0, 5.0]]), [False]
            sigma = configured("sigmas", [1.0])
            gaussian_param.append(slices[p.name].start)
            gaussian_sigma.append(_values(sigma))
            gaussian_aux_value.append(_values(configured("auxdata", [0.0])))
            aux_kinds.append(("g", len(gaussian_param) - 1, 1))
        elif p.kind == "lumi":
            if cfg.get("auxdata") is None or cfg.get("sigmas") is None:
                raise InvalidModel(
                    f"the lumi modifier {p.name!r} needs a measurement parameter configuration with "
                    "'auxdata' (the nominal luminosity) and 'sigmas' (its uncertainty)"
                )
            aux = configured("auxdata", [1.0])
            p_init = configured("inits", list(aux))
            p_bounds = configured("bounds", [[0.0, 10.0 * float(aux[0])]])
            p_fixed = [False]
            gaussian_param.append(slices[p.name].start)
            gaussian_sigma.append(_values(configured("sigmas", [1.0])))
            gaussian_aux_value.append(_values(aux))
            aux_kinds.append(("g", len(gaussian_param) - 1, 1))
        elif p.kind == "staterror":
            sigmas = staterror_sigmas(p.name, p.channel)
            zero = sigmas == 0
            p_init, p_bounds = configured("inits", [1.0] * n), configured("bounds", [[1e-10, 10.0]] * n)
            p_fixed = zero  # array, possibly traced
            gaussian_param.append(slices[p.name].start + np.arange(n))
            gaussian_sigma.append(_xp(sigmas).where(zero, 1.0, sigmas))
            gaussian_aux_value.append(np.ones(n, np.float64))
            aux_kinds.append(("g", len(gaussian_param) - 1, n))
        elif p.kind == "shapesys":
            (c, s, d) = next((c, s, d) for (_, _, c, s, d) in instances_of[p.name])
            nom = channels[c][1][s][0]
            xp = _xp(nom, d)
            valid = (nom > 0) & (d > 0)
            tau = xp.where(valid, nom**2 / xp.where(valid, d, 1.0) ** 2, 1.0)
            p_init, p_bounds = configured("inits", [1.0] * n), configured("bounds", [[1e-10, 10.0]] * n)
            p_fixed = ~valid
            poisson_param.append(slices[p.name].start + np.arange(n))
            poisson_tau.append(tau)
            aux_kinds.append(("p", len(poisson_param) - 1, n))
        else:  # pragma: no cover - all kinds handled above
            raise AssertionError(p.kind)
        if cfg.get("fixed"):
            p_fixed = [True] * n
        init.append(_values(p_init).reshape(n))
        bounds = _values(p_bounds).reshape(n, 2)
        lower.append(bounds[:, 0])
        upper.append(bounds[:, 1])
        fixed.append(_values(p_fixed, bool).reshape(n))

    poi_index = None
    if poi_name is not None:
        if poi_name not in by_name:
            raise InvalidModel(
                f"the parameter of interest {poi_name!r} is not a parameter of the model; "
                f"its parameters are {[p.name for p in parameter_sets]}"
            )
        if by_name[poi_name].n_parameters != 1:
            raise InvalidModel(f"the parameter of interest {poi_name!r} has several components; it must be a scalar")
        poi_index = slices[poi_name].start

    # Auxiliary data layout.
    gaussian_aux_index, poisson_aux_index, aux_values = [], [], []
    position = 0
    g_params = [np.atleast_1d(np.asarray(g)) for g in gaussian_param]
    p_params = [np.atleast_1d(np.asarray(q)) for q in poisson_param]
    g_index_chunks, p_index_chunks = [None] * len(g_params), [None] * len(p_params)
    for kind, k, n in aux_kinds:
        idx = np.arange(position, position + n)
        position += n
        if kind == "g":
            g_index_chunks[k] = idx
            aux_values.append(_xp(gaussian_aux_value[k]).broadcast_to(gaussian_aux_value[k], (n,)))
        else:
            p_index_chunks[k] = idx
            aux_values.append(poisson_tau[k])
    n_aux = position
    gaussian_aux_index = np.concatenate(g_index_chunks) if g_index_chunks else np.zeros(0, int)
    poisson_aux_index = np.concatenate(p_index_chunks) if p_index_chunks else np.zeros(0, int)
    gaussian_param_arr = np.concatenate(g_params) if g_params else np.zeros(0, int)
    poisson_param_arr = np.concatenate(p_params) if p_params else np.zeros(0, int)

    # Multiplicative factors that are parameters themselves: gather table (K, S, B).
    direct = [[[] for _ in range(n_bins)] for _ in range(n_samples)]
    normsys_param, normsys_hi, normsys_lo, normsys_masks = [], [], [], []
    histosys_param, histosys_up, histosys_down, histosys_samples = [], [], [], []
    histosys_bins = []  # (first bin, number of bins) of each histosys's channel
    for name, kind, c, s, data in instances:
        si, b0, nb = sample_index[s], offsets[c], channels[c][0]
        start = slices[name].start
        if kind in ("normfactor", "lumi"):
            for b in range(b0, b0 + nb):
                direct[si][b].append(start)
        elif kind in PER_BIN_TYPES:
            for i, b in enumerate(range(b0, b0 + nb)):
                direct[si][b].append(start + i)
        elif kind == "normsys":
            mask = np.zeros((n_samples, n_bins), bool)
            mask[si, b0 : b0 + nb] = True
            normsys_param.append(start)
            normsys_hi.append(data[0])
            normsys_lo.append(data[1])
            normsys_masks.append(mask)
        elif kind == "histosys":
            nom = channels[c][1][s][0]
            hi, lo = data
            histosys_param.append(start)
            histosys_up.append(hi - nom)
            histosys_down.append(nom - lo)
            histosys_bins.append((b0, nb))
            histosys_samples.append(si)
    depth = max(1, max(len(cell) for row in direct for cell in row))
    factor_index = np.full((depth, n_samples, n_bins), n_pars, dtype=np.int64)
    for si in range(n_samples):
        for b in range(n_bins):
            for k, idx in enumerate(direct[si][b]):
                factor_index[k, si, b] = idx
    onehot = np.zeros((len(histosys_samples), n_samples))
    onehot[np.arange(len(histosys_samples)), histosys_samples] = 1.0

    structure = _Structure(
        channel_names=tuple(channel_names),
        channel_nbins=tuple(channel_nbins),
        sample_names=tuple(sample_names),
        parameter_sets=tuple(parameter_sets),
        slices_items=tuple((k, (v.start, v.stop)) for k, v in slices.items()),
        n_parameters=n_pars,
        n_aux=n_aux,
        poi_index=poi_index,
        poi_name=poi_name if poi_index is not None else None,
        factor_index=factor_index,
        normsys_param=np.asarray(normsys_param, np.int64),
        normsys_mask=np.asarray(normsys_masks, bool).reshape(len(normsys_param), n_samples, n_bins),
        normsys_interp=normsys_interp,
        histosys_param=np.asarray(histosys_param, np.int64),
        histosys_sample_onehot=onehot,
        histosys_interp=histosys_interp,
        gaussian_param=gaussian_param_arr.astype(np.int64),
        gaussian_aux_index=gaussian_aux_index.astype(np.int64),
        poisson_param=poisson_param_arr.astype(np.int64),
        poisson_aux_index=poisson_aux_index.astype(np.int64),
    )
    structure.__dict__["slices"] = slices
    structure.__dict__["hessian_colouring"] = _hessian_colouring(
        parameter_sets, slices, n_pars, n_bins, instances, offsets, channels
    )

    # The leaves: JAX arrays (float64; ``fixed`` bool), one conversion each.
    def leaf(value, dtype=jnp.float64):
        return jnp.asarray(value, dtype)

    config = ModelConfig(
        init=leaf(_concatenate(init)),
        lower=leaf(_concatenate(lower)),
        upper=leaf(_concatenate(upper)),
        fixed=leaf(_concatenate(fixed, bool), bool),
        auxdata_values=leaf(_concatenate(aux_values)),
        structure=structure,
    )
    return cls(
        nominal=leaf(nominal),
        normsys_hi=leaf(_concatenate(normsys_hi)),
        normsys_lo=leaf(_concatenate(normsys_lo)),
        histosys_up=leaf(_histosys_table(histosys_up, histosys_bins, n_bins)),
        histosys_down=leaf(_histosys_table(histosys_down, histosys_bins, n_bins)),
        gaussian_sigma=leaf(_concatenate(gaussian_sigma)),
        poisson_rate_factor=leaf(_concatenate(poisson_tau)),
        config=config,
        structure=structure,
    )


def _histosys_table(deltas, bins, n_bins):
    """(H, B): each histosys's per-bin shift in its channel's bins, zero elsewhere."""
    if any(isinstance(d, jax.core.Tracer) for d in deltas):
        return jnp.stack([jnp.pad(d, (b0, n_bins - b0 - nb)) for d, (b0, nb) in zip(deltas, bins)])
    table = np.zeros((len(deltas), n_bins), np.float64)
    for row, (delta, (b0, nb)) in zip(table, zip(deltas, bins)):
        row[b0 : b0 + nb] = delta
    return table


def _hessian_colouring(parameter_sets, slices, n_pars, n_bins, instances, offsets, channels):
    """Which bins each parameter moves, and which parameters act on one bin only."""
    affects = np.zeros((n_pars, n_bins), bool)
    for name, kind, c, _, _ in instances:
        start, b0, nb = slices[name].start, offsets[c], channels[c][0]
        if kind in PER_BIN_TYPES:
            for i in range(nb):
                affects[start + i, b0 + i] = True
        else:
            affects[start, b0 : b0 + nb] = True
    per_bin = np.zeros(n_pars, bool)
    for p in parameter_sets:
        if p.kind in PER_BIN_TYPES:
            per_bin[slices[p.name]] = True
    # A per-bin parameter tied across channels (shared shapefactor) moves several
    # bins: treat it as global, probed by its own product.
    per_bin &= affects.sum(axis=1) == 1
    return HessianColouring(affects, per_bin)
