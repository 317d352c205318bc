"""Published likelihoods: a background-only workspace, its signal patches, and whole
patchsets stacked for one compiled, vmapped computation.

LHC experiments publish a likelihood as a background-only pyhf workspace plus one
JSON patch (RFC 6902) per signal hypothesis, usually collected in a pyhf *patchset*
(named patches, with the sha256 digest of the background-only workspace they were
made for). This module reads patchset files and plain JSON-patch files
(:func:`read_patches`), applies patches with errors naming the patch and the
operation that fails (:func:`apply_patch`), and turns the patched workspaces into
as few groups as possible of *one* model structure (:func:`stack_workspaces`): a
group is one stacked :class:`~diffana.model.Model` (leading member axis) and a
stacked data array, which ``diffana.infer.patchsets.stacked_hypotest`` and
``stacked_upper_limit`` evaluate in one call. pyhf provides the file format, the
schema, the digest and the patch objects; jsonpatch applies them.

Harmonisation rule
------------------
Signal patches give models of different structure: each mass point names its
signal sample differently, carries its own set of systematics, or leaves a
channel without signal. Members are made structurally equal without changing any
member's likelihood:

- *Samples* are matched per channel by name when the name belongs to the
  background-only workspace (by default: to every member of the stack). Samples
  the patches add are matched by their order among the added samples of that
  channel and take one canonical name, that of the first member that has them.
  A member lacking a matched sample gets a copy with zero yield.
- *Modifiers* are the union over members per (channel, sample, name, type). The
  shapesys modifiers of an added sample (one per-sample MC-statistics parameter
  whose name usually embeds the signal's own name) are matched by their order on
  that sample and renamed to the first member's name, together with any
  measurement configuration of them; renaming a parameter does not change a
  likelihood.
- A member lacking a modifier gets a no-op: normsys ``hi = lo = 1``; histosys
  ``hi_data = lo_data = `` its nominal; shapesys and staterror uncertainties 0 on a
  zero-yield sample (diffana fixes bins with zero nominal or zero uncertainty
  through ``config.fixed``); normfactor, lumi and shapefactor only where the
  member's sample yield is zero. A member lacking a *parameter* entirely has it
  fixed at its initial value through its own ``config.fixed`` row; then any
  modifier of it is also a no-op on a non-zero yield when that initial value is 1
  (normfactor, lumi, shapefactor factors; shapesys and staterror with 0
  uncertainty, whose bins are fixed).
- A member that cannot be padded exactly (different channels, binning or POI, a
  normfactor missing on a non-zero yield while the member has that parameter
  elsewhere, names that clash after the union, …) goes into another group: members
  are grouped greedily in input order, never refused.

The padded member's parameters are its own plus fixed no-ops, its auxiliary data
its own plus the nominal values of the no-op constraints (constant terms), so its
test statistics and CLs equal those of its unpadded workspace (tested to 1e-9
relative; differences are rounding from the changed parameter order).

Yields and observations are event counts; parameters are dimensionless.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana.errors import PatchError
from diffana.model.model import InvalidModel, Model
from diffana.model.workspace import Workspace, WorkspaceError, _plain, _read_json, _validate_schema, load_workspace

__all__ = [
    "GroupMember",
    "NamedPatch",
    "PatchError",
    "PatchedWorkspaces",
    "WorkspaceGroup",
    "apply_patch",
    "load_patchset",
    "read_patches",
    "select_patches",
    "stack_workspaces",
]

_MESSAGE_LIMIT = 160  # characters of a library's error text quoted in ours (jsonpointer quotes whole documents)


def _short(text: Any) -> str:
    """One line of at most ``_MESSAGE_LIMIT`` characters of a library's message."""
    line = " ".join(str(text).split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


# ------------------------------------------------------------------------ reading


@dataclasses.dataclass(frozen=True)
class NamedPatch:
    """One JSON patch (RFC 6902) and the name its results are reported under.

    Attributes:
        name: the patch's name in its patchset, or a plain JSON-patch file's stem.
        operations: the patch's operations (``{"op", "path", ...}`` dicts).
        source: the file it was read from.
        values: its coordinates along the patchset's labels (e.g. masses in GeV);
            empty for a plain JSON patch.
    """

    name: str
    operations: tuple
    source: str
    values: tuple = ()


def read_patches(
    paths: Sequence[str | os.PathLike],
    background: Mapping | None = None,
    background_source: str = "the background-only workspace",
) -> list[NamedPatch]:
    """Read pyhf patchset files and plain JSON-patch files, in order.

    Args:
        paths: files; a JSON object with ``patches`` is a pyhf patchset (schema
            checked by pyhf), a JSON list is one plain JSON patch named by the
            file's stem (e.g. ``patch_C1N2_WZ_500p0_300p0``).
        background: the background-only workspace document; when given, each
            patchset's digests are checked against it.
        background_source: how to name ``background`` in errors (its file).

    Returns:
        The patches of all files, in file order then patchset order.

    Raises:
        PatchError: unreadable or malformed files, a digest mismatch, two patches
            of one name.
    """
    patches: list[NamedPatch] = []
    for path in paths:
        patches.extend(_read_patch_file(path, background, background_source))
    _check_unique_names(patches)
    return patches


def _read_patch_file(path, background, background_source) -> list[NamedPatch]:
    source = os.fspath(path)
    try:
        document = _read_json(source)
    except WorkspaceError as error:
        raise PatchError(str(error)) from None
    if isinstance(document, list):
        return [_plain_patch(document, source)]
    if isinstance(document, Mapping) and "patches" in document:
        return _patchset_patches(document, source, background, background_source)
    raise PatchError(
        f"{source}: neither a pyhf patchset (an object with 'metadata' and 'patches') "
        "nor a JSON patch (a list of operations)"
    )


def _plain_patch(operations: list, source: str) -> NamedPatch:
    """A plain JSON-patch file's patch, named by the file's stem; jsonpatch checks
    the operations' form (without importing pyhf, which takes seconds)."""
    import jsonpatch

    try:
        jsonpatch.JsonPatch(operations)
    except jsonpatch.InvalidJsonPatch as error:
        raise PatchError(f"{source}: not a valid JSON patch: {_short(error)}") from None
    name = os.path.splitext(os.path.basename(source))[0]
    return NamedPatch(name=name, operations=tuple(operations), source=source)


def _patchset_patches(document, source, background, background_source) -> list[NamedPatch]:
    import pyhf.exceptions
    import pyhf.patchset

    try:
        patchset = pyhf.patchset.PatchSet(document)
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidPatchSet) as error:
        raise PatchError(f"{source}: not a valid pyhf patchset: {_short(error)}") from None
    if background is not None:
        _verify_digests(patchset, source, background, background_source)
    return [
        NamedPatch(name=p.name, operations=tuple(p.patch), source=source, values=tuple(p.values))
        for p in patchset
    ]


def _verify_digests(patchset, source, background, background_source) -> None:
    """pyhf's check that a patchset was made for this background-only workspace,
    with an error that names the file and both digests."""
    import pyhf.exceptions
    import pyhf.utils

    try:
        patchset.verify(background)
    except pyhf.exceptions.PatchSetVerificationError:
        for algorithm, expected in patchset.digests.items():
            found = pyhf.utils.digest(background, algorithm=algorithm)
            if found != expected:
                raise PatchError(
                    f"{source} was made for another background-only workspace: it expects the "
                    f"{algorithm} digest {expected}, {background_source} has {found}"
                ) from None
        raise  # pragma: no cover - verify failed although every digest matched


def _check_unique_names(patches: Sequence[NamedPatch]) -> None:
    seen: dict[str, str] = {}
    for patch in patches:
        if patch.name in seen:
            raise PatchError(
                f"two patches are named {patch.name!r} (in {seen[patch.name]} and {patch.source}); "
                "results are keyed by patch name"
            )
        seen[patch.name] = patch.source


def select_patches(patches: Sequence[NamedPatch], names: Sequence[str]) -> list[NamedPatch]:
    """The patches called ``names``, in that order (duplicates once).

    Raises:
        PatchError: a name that no patch has, listing some available names.
    """
    by_name = {patch.name: patch for patch in patches}
    for name in names:
        if name not in by_name:
            shown = list(by_name)[:8]
            more = f", … ({len(by_name)} in all)" if len(by_name) > len(shown) else ""
            sources = sorted({patch.source for patch in patches})
            where = sources[0] if len(sources) == 1 else f"the {len(sources)} patch files"
            raise PatchError(f"no patch named {name!r} in {where}; available: {', '.join(shown)}{more}")
    return [by_name[name] for name in dict.fromkeys(names)]


# ----------------------------------------------------------------------- applying


def apply_patch(background: Mapping, patch: NamedPatch) -> dict:
    """Apply ``patch`` to a copy of the ``background`` workspace document.

    Operations are applied one at a time (by jsonpatch) so that a failure names the
    operation: ``patch 'X' (file): operation 2 (add /channels/7/samples/5) does not
    apply: ...``.
    """
    import jsonpatch
    import jsonpointer

    document = _json_copy(background)
    for index, operation in enumerate(patch.operations):
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
                KeyError, IndexError, TypeError) as error:
            what = f"{operation.get('op')} {operation.get('path')}" if isinstance(operation, Mapping) else "?"
            raise PatchError(
                f"patch {patch.name!r} ({patch.source}): operation {index} ({what}) does not apply: "
                f"{_short(error)}"
            ) from None
    return document


def _json_copy(document: Mapping) -> dict:
    """A deep copy of a JSON document: through the json module's C code, ~10x faster
    than ``copy.deepcopy`` (0.5 s for 60 patches of a published likelihood); other
    Python objects fall back to ``copy.deepcopy``."""
    try:
        return json.loads(json.dumps(document))
    except (TypeError, ValueError):
        return copy.deepcopy(dict(document))


@dataclasses.dataclass(frozen=True)
class PatchedWorkspaces:
    """A background-only workspace and the workspaces its patches make.

    Attributes:
        background: the background-only workspace document.
        workspaces: the validated patched workspaces by patch name, in order.
    """

    background: dict
    workspaces: dict

    def stack(self, measurement: str | None = None, **model_kwargs) -> list["WorkspaceGroup"]:
        """:func:`stack_workspaces` of the patched workspaces, matching samples by
        the background-only workspace's names."""
        return stack_workspaces(self.workspaces, measurement, background=self.background, **model_kwargs)


def load_patchset(
    background: str | os.PathLike | Mapping,
    paths: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
) -> PatchedWorkspaces:
    """Read patches, check their digests, apply them to the background-only
    workspace and validate every patched workspace.

    Args:
        background: path of the background-only workspace, or its document.
        paths: pyhf patchset files and/or plain JSON-patch files.
        names: only these patches (all when ``None``).

    Raises:
        PatchError, WorkspaceError: bad files, a digest mismatch, an unknown patch
            name, a patch that does not apply, a patched workspace that is invalid
            (the error names the patch).
    """
    if isinstance(background, Mapping):
        document, source = _plain(background), "the background-only workspace"
    else:
        source = os.fspath(background)
        document = _read_json(source)
    if not isinstance(document, Mapping):
        raise WorkspaceError(f"{source}: expected a pyhf workspace (a JSON object), got {type(document).__name__}")
    # Its POI may live only in the patches, so the schema is all it must satisfy alone.
    _validate_schema(document, "workspace.json", source)
    patches = read_patches(paths, background=document, background_source=source)
    if names:
        patches = select_patches(patches, names)
    # Workspace errors start with their source, so they name the patch.
    workspaces = {
        patch.name: Workspace(apply_patch(document, patch), source=f"{source} + patch {patch.name!r}")
        for patch in patches
    }
    return PatchedWorkspaces(background=document, workspaces=workspaces)


# ------------------------------------------------------------------ harmonising

_NO_OP_ANYWHERE = ("normsys", "histosys")  # a no-op template exists for any yield
_PER_BIN = ("shapefactor", "shapesys", "staterror")


class _Member(NamedTuple):
    """A workspace seen slot by slot: samples keyed by (channel, sample key), where
    the sample key is ("name", name) for a background sample and ("added", i) for
    the i-th added one; modifiers keyed by (type, name), or (type, j) for the j-th
    shapesys of an added sample (renamed to the group's canonical name)."""

    name: str
    workspace: Workspace
    poi: str | None
    parameters: list  # measurement parameter configs
    channels: dict  # channel -> number of bins
    samples: dict  # slot -> sample dict
    modifiers: dict  # slot -> {modifier key: modifier dict}


@dataclasses.dataclass
class _Union:
    """The structure a group of members is padded to (in first-seen order)."""

    channels: dict  # channel -> bins
    poi: str | None
    sample_names: dict  # slot -> canonical sample name
    modifiers: dict  # slot -> {modifier key: canonical parameter name}
    configs: dict  # parameter name -> config of the first member that has and configures it

    def copy(self) -> "_Union":
        return _Union(dict(self.channels), self.poi, dict(self.sample_names),
                      {slot: dict(keys) for slot, keys in self.modifiers.items()}, dict(self.configs))

    def parameter_names(self) -> set:
        return {name for keys in self.modifiers.values() for name in keys.values()}


def _measurement_settings(workspace: Workspace, measurement, model_kwargs) -> tuple:
    """POI name and parameter configs, as ``Workspace.model`` chooses them."""
    extra = list(model_kwargs.get("parameters") or [])
    if workspace.measurements:
        chosen = workspace.get_measurement(measurement)
        poi = model_kwargs.get("poi_name", chosen["config"]["poi"])
        parameters = list(chosen["config"]["parameters"])
    else:
        poi = model_kwargs.get("poi_name", "mu")
        parameters = list(workspace.spec.get("parameters", []))
    merged = {p["name"]: p for p in parameters + extra}  # later configs win, as in Workspace.model
    return poi, list(merged.values())


def _modifier_keys(name: str, channel: str, sample: Mapping, added: bool) -> dict:
    keys: dict = {}
    shapesys_seen = 0
    for modifier in sample.get("modifiers", []):
        kind = modifier["type"]
        if added and kind == "shapesys":
            key = (kind, shapesys_seen)
            shapesys_seen += 1
        else:
            key = (kind, modifier["name"])
        if key in keys:
            raise InvalidModel(
                f"{name}: channel {channel!r}, sample {sample['name']!r}: the {kind} modifier "
                f"{modifier['name']!r} is listed twice on this sample"
            )
        keys[key] = modifier
    return keys


def _member(name, workspace, base_names, measurement, model_kwargs) -> _Member:
    if not workspace.observations:
        raise WorkspaceError(f"{name}: a bare model spec has no observations; stacking needs workspaces")
    poi, parameters = _measurement_settings(workspace, measurement, model_kwargs)
    samples, modifiers = {}, {}
    for channel in workspace.spec["channels"]:
        cname, n_added = channel["name"], 0
        for sample in channel["samples"]:
            added = sample["name"] not in base_names.get(cname, ())
            key = ("added", n_added) if added else ("name", sample["name"])
            n_added += added
            samples[(cname, key)] = sample
            modifiers[(cname, key)] = _modifier_keys(name, cname, sample, added)
    member = _Member(name, workspace, poi, parameters, dict(workspace.channel_bins), samples, modifiers)
    _check_values(member)
    return member


def _check_values(member: _Member) -> None:
    """Values the builder rejects (NaN, negative yields, …), found before padding:
    the padded spec renames added samples, so on a bad value the member's own model
    is built, for the builder's message with the member's own names."""
    ok = True
    for slot, sample in member.samples.items():
        data = np.asarray(sample["data"], float)
        ok &= bool(np.all(np.isfinite(data)) and np.all(data >= 0))
        for (kind, _), modifier in member.modifiers[slot].items():
            values = modifier.get("data")
            if kind == "normsys":
                factors = np.asarray([values["hi"], values["lo"]], float)
                ok &= bool(np.all(np.isfinite(factors)) and np.all(factors > 0))
            elif kind == "histosys":
                ok &= bool(np.all(np.isfinite(np.asarray([values["hi_data"], values["lo_data"]], float))))
            elif kind in ("shapesys", "staterror"):
                sigma = np.asarray(values, float)
                ok &= bool(np.all(np.isfinite(sigma)) and np.all(sigma >= 0))
    if not ok:
        try:
            Model.from_spec({"channels": member.workspace.spec["channels"]}, poi_name=member.poi,
                            parameters=member.parameters)
        except InvalidModel as error:
            raise InvalidModel(f"{member.name}: {error}") from None
        raise InvalidModel(f"{member.name}: non-finite or negative yields or uncertainties")  # pragma: no cover


def _extend(union: _Union | None, member: _Member) -> _Union:
    """The union of a group's structure with a member's (canonical names of new
    slots and renamed modifiers are the member's)."""
    if union is None:
        union = _Union(dict(member.channels), member.poi, {}, {}, {})
    else:
        union = union.copy()
    for slot, sample in member.samples.items():
        union.sample_names.setdefault(slot, sample["name"])
        keys = union.modifiers.setdefault(slot, {})
        for key, modifier in member.modifiers[slot].items():
            keys.setdefault(key, modifier["name"])
    configured = {config["name"]: config for config in member.parameters}
    renames = _renames(member, union)
    for own_name in _own_parameter_names(member):
        canonical = renames.get(own_name, own_name)
        if own_name in configured and canonical not in union.configs:
            union.configs[canonical] = dict(configured[own_name], name=canonical)
    return union


def _own_parameter_names(member: _Member) -> set:
    return {m["name"] for keys in member.modifiers.values() for m in keys.values()}


def _renames(member: _Member, union: _Union) -> dict:
    """The member's own names of renamed (added-sample shapesys) parameters -> canonical."""
    renames = {}
    for slot, keys in member.modifiers.items():
        for key, modifier in keys.items():
            canonical = union.modifiers[slot][key]
            if canonical != modifier["name"]:
                renames[modifier["name"]] = canonical
    return renames


def _present(member: _Member, union: _Union) -> set:
    """Canonical names of the parameters the member has."""
    return {union.modifiers[slot][key] for slot, keys in member.modifiers.items() for key in keys}


def _union_problem(union: _Union) -> str | None:
    """Why the union is no valid model structure (names clashing after the union),
    or None. The builder's other rules are caught when the group is built."""
    kinds, places = defaultdict(set), defaultdict(list)
    for (channel, sample_key), keys in union.modifiers.items():
        for (kind, _), name in keys.items():
            kinds[name].add(kind)
            places[name].append((channel, sample_key, kind))
    for name, types in kinds.items():
        if len(types) > 1 and not types <= set(_NO_OP_ANYWHERE):
            return f"the name {name!r} is used by modifiers of types {sorted(types)}"
        kind = next(iter(types))
        channels = {channel for channel, _, _ in places[name]}
        shared_shapefactor = kind == "shapefactor" and len({union.channels[c] for c in channels}) == 1
        if kind in _PER_BIN and len(channels) > 1 and not shared_shapefactor:
            return f"the {kind} {name!r} would act in channels {sorted(channels)}"
        if kind == "shapesys" and len(places[name]) > 1:
            return f"the shapesys {name!r} would act on {len(places[name])} samples"
    per_channel = defaultdict(list)
    for (channel, _), name in union.sample_names.items():
        per_channel[channel].append(name)
    for channel, names in per_channel.items():
        if len(set(names)) < len(names):
            return f"two samples of channel {channel!r} would share a name"
    return None


def _initial_values(kind: str, config: Mapping | None) -> list:
    """A parameter's initial values as the builder sets them (lumi: its auxdata)."""
    config = config or {}
    if config.get("inits") is not None:
        return [float(v) for v in config["inits"]]
    if kind == "lumi" and config.get("auxdata") is not None:
        return [float(v) for v in config["auxdata"]]
    return [1.0]


def _padding_problem(member: _Member, union: _Union) -> str | None:
    """Why padding ``member`` to ``union`` would change its likelihood, or None."""
    if member.channels != union.channels:
        return f"channels or bins {member.channels} differ from {union.channels}"
    if member.poi != union.poi:
        return f"its POI {member.poi!r} differs from {union.poi!r}"
    present = _present(member, union)
    configured = {config["name"]: config for config in member.parameters}
    for slot, keys in union.modifiers.items():
        sample = member.samples.get(slot)
        empty = sample is None or not np.any(np.asarray(sample["data"], float))
        own = member.modifiers.get(slot, {})
        for key, name in keys.items():
            kind = key[0]
            if key in own or kind in _NO_OP_ANYWHERE or empty:
                continue
            where = f"channel {slot[0]!r}, sample {sample['name']!r}"
            if name in present:
                return f"it has the {kind} {name!r}, but not on {where} (non-zero yield)"
            config = configured.get(name, union.configs.get(name))
            if any(value != 1.0 for value in _initial_values(kind, config)):
                return f"the {kind} {name!r} it lacks would start at {_initial_values(kind, config)}, not 1, on {where}"
    return None


class _Group(NamedTuple):
    members: list
    union: _Union


def _group_members(members: Sequence[_Member]) -> list[_Group]:
    """Greedy first fit: each member joins the first group whose members (itself
    included) can all be padded exactly to the group's grown union."""
    groups: list[_Group] = []
    for member in members:
        for index, group in enumerate(groups):
            if member.channels != group.union.channels or member.poi != group.union.poi:
                continue
            union = _extend(group.union, member)
            if _union_problem(union) is not None:
                continue
            # Members already in the group need re-checking only when the union grew.
            candidates = group.members + [member] if union != group.union else [member]
            if all(_padding_problem(m, union) is None for m in candidates):
                groups[index] = _Group(group.members + [member], union)
                break
        else:
            groups.append(_Group([member], _extend(None, member)))
    return groups


# --------------------------------------------------------------------- stacking


class GroupMember(NamedTuple):
    """One member of a :class:`WorkspaceGroup`: its name, model and data."""

    name: str
    model: Model
    data: jax.Array


class WorkspaceGroup(eqx.Module):
    """Workspaces of one harmonised structure, stacked along a leading axis.

    Attributes:
        names: the members' names (patch names), in stacking order.
        model: one :class:`~diffana.model.Model` whose array leaves have a leading
            axis of ``len(names)`` members (``infer.stack_models`` layout).
        data: ``(len(names), nmaindata + nauxdata)``: each member's observed
            counts (events) followed by its auxiliary data.
    """

    names: tuple = eqx.field(static=True)
    model: Model
    data: jax.Array

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of the member called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no member named {name!r} in this group ({len(self.names)} members)") from None

    def member(self, name: str) -> GroupMember:
        """The harmonised model and data of one member (unstacked)."""
        i = self.index(name)
        model = jax.tree_util.tree_map(lambda leaf: leaf[i], self.model)
        return GroupMember(name=name, model=model, data=self.data[i])


def stack_workspaces(
    workspaces: Mapping[str, Any] | Sequence[Any],
    measurement: str | None = None,
    *,
    background: str | os.PathLike | Mapping | Workspace | None = None,
    **model_kwargs,
) -> list[WorkspaceGroup]:
    """Harmonise workspaces (the module docstring's rule) into as few groups of one
    structure as possible and stack each group.

    Args:
        workspaces: ``{name: workspace}`` or a sequence (named ``"0"``, ``"1"``, …);
            each a :class:`Workspace`, a workspace document or a path.
        measurement: measurement name in every workspace (the first when ``None``).
        background: the background-only workspace (path, document or
            :class:`Workspace`) whose sample names are matched by name; by default
            the samples present in every workspace of a channel.
        **model_kwargs: ``normsys_interp``, ``histosys_interp``, ``poi_name``,
            ``parameters``, as for ``Workspace.model``.

    Returns:
        The groups, in order of their first member; every name once.
    """
    named = _named_workspaces(workspaces)
    if not named:
        raise ValueError("stack_workspaces needs at least one workspace")
    base_names = _base_names(named, background)
    members = [_member(name, ws, base_names, measurement, model_kwargs) for name, ws in named.items()]
    build_kwargs = {k: v for k, v in model_kwargs.items() if k not in ("poi_name", "parameters")}
    groups = []
    for group in _group_members(members):
        groups.extend(_build_or_split(group, build_kwargs))
    return groups


def _named_workspaces(workspaces) -> dict:
    items = workspaces.items() if isinstance(workspaces, Mapping) else ((str(i), w) for i, w in enumerate(workspaces))
    named = {}
    for name, workspace in items:
        if not isinstance(workspace, Workspace):
            workspace = load_workspace(workspace)
        named[str(name)] = workspace
    return named


def _base_names(named: Mapping[str, Workspace], background) -> dict:
    """Per channel, the sample names matched by name."""
    if background is not None:
        if isinstance(background, Workspace):
            channels = background.spec["channels"]
        else:
            document = background if isinstance(background, Mapping) else _read_json(os.fspath(background))
            channels = document.get("channels", [])
        return {c["name"]: {s["name"] for s in c["samples"]} for c in channels}
    common: dict = {}
    for workspace in named.values():
        for channel in workspace.spec["channels"]:
            names = {s["name"] for s in channel["samples"]}
            common[channel["name"]] = common.get(channel["name"], names) & names
    return common


def _build_or_split(group: _Group, build_kwargs) -> list[WorkspaceGroup]:
    """Build a group; if its union breaks a builder rule the checks do not know,
    split it in halves (a single member always builds, being itself)."""
    try:
        return [_build_group(group, build_kwargs)]
    except InvalidModel as error:
        if len(group.members) == 1:
            raise InvalidModel(f"{group.members[0].name}: {error}") from None
    half = len(group.members) // 2
    built = []
    for part in (group.members[:half], group.members[half:]):
        union = None
        for member in part:
            union = _extend(union, member)
        built.extend(_build_or_split(_Group(part, union), build_kwargs))
    return built


def _slots_of(union: _Union, channel: str) -> list:
    return [slot for slot in union.modifiers if slot[0] == channel]


def _no_op_data(kind: str, nominal: list):
    """Modifier data that leaves a sample with yields ``nominal`` unchanged at every
    parameter value (normfactor, lumi, shapefactor: no data; they are no-ops where
    the rule allows them, see the module docstring)."""
    if kind == "normsys":
        return {"hi": 1.0, "lo": 1.0}
    if kind == "histosys":
        return {"hi_data": list(nominal), "lo_data": list(nominal)}
    if kind in ("shapesys", "staterror"):
        return [0.0] * len(nominal)  # zero uncertainty: the builder fixes these bins
    return None


def _padded_sample(member: _Member, union: _Union, slot, nbins: int) -> dict:
    """The member's sample in ``slot`` (a zero-yield copy if it has none) with the
    union's modifiers under canonical names, no-ops where it lacks them."""
    sample = member.samples.get(slot)
    nominal = list(sample["data"]) if sample is not None else [0.0] * nbins
    own = member.modifiers.get(slot, {})
    modifiers = [
        {"name": name, "type": key[0], "data": own[key].get("data") if key in own else _no_op_data(key[0], nominal)}
        for key, name in union.modifiers[slot].items()
    ]
    return {"name": union.sample_names[slot], "data": nominal, "modifiers": modifiers}


def _padded_spec(member: _Member, union: _Union) -> dict:
    """The member's model spec in the union's structure."""
    return {"channels": [
        {"name": channel, "samples": [_padded_sample(member, union, slot, nbins) for slot in _slots_of(union, channel)]}
        for channel, nbins in union.channels.items()
    ]}


def _member_parameters(member: _Member, union: _Union) -> list:
    """The member's parameter configs under canonical names, plus the group's
    configs of parameters it lacks (a lumi needs its auxdata and width even when
    fixed)."""
    renames = _renames(member, union)
    configs = {}
    for config in member.parameters:
        name = renames.get(config["name"], config["name"])
        configs[name] = dict(config, name=name)
    present = _present(member, union)
    for name, config in union.configs.items():
        if name not in present and name not in configs:
            configs[name] = dict(config)
    return list(configs.values())


def _build_group(group: _Group, build_kwargs) -> WorkspaceGroup:
    """Build every member's padded model and stack them (``infer.stack_models``,
    which refuses models of different structure)."""
    from diffana.infer.lee import stack_models  # lazy: diffana.infer imports diffana.model

    members, union = group.members, group.union
    # The builder warns once per build (e.g. a configured parameter no modifier
    # defines); repeat each distinct warning once, not once per member.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = [
            Model.from_spec(_padded_spec(m, union), poi_name=union.poi, parameters=_member_parameters(m, union),
                            **build_kwargs)
            for m in members
        ]
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(message, stacklevel=4)
    try:
        model = stack_models(models)
    except ValueError as error:
        raise InvalidModel(str(error)) from None  # a structure the checks did not foresee: split the group
    model = _fix_absent_parameters(model, members, union)
    return WorkspaceGroup(names=tuple(m.name for m in members), model=model, data=_stacked_data(model, members))


def _fix_absent_parameters(model: Model, members, union) -> Model:
    """Fix, per member, the parameters it lacks entirely (their modifiers are
    no-ops there; free, a normfactor on zero yields would be a flat direction)."""
    fixed = np.array(model.config.fixed)
    for i, member in enumerate(members):
        for name in union.parameter_names() - _present(member, union):
            fixed[i, model.config.par_slice(name)] = True
    return eqx.tree_at(lambda m: m.config.fixed, model, jnp.asarray(fixed))


def _stacked_data(model: Model, members) -> jax.Array:
    """Each member's observed counts in the model's channel order, then its
    auxiliary data."""
    channels = model.config.channels
    main = np.array([np.concatenate([m.workspace.observations[c] for c in channels]) for m in members], float)
    return jnp.concatenate([jnp.asarray(main), model.config.auxdata_values], axis=1)
