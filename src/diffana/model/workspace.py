"""pyhf JSON workspaces in and out.

A pyhf workspace is a JSON document with ``channels`` (the model spec),
``observations`` (observed event counts per channel), ``measurements`` (which
parameter is the POI and how the other parameters are configured: luminosity
auxiliary data and width, bounds, initial values, fixed parameters) and a
``version``. :func:`load_workspace` reads one (or a bare model spec), checks it
against pyhf's own JSON schema — shipped with pyhf, no network — and against the
consistency rules the schema cannot express (one observation per channel, with as
many counts as the channel has bins; the measurement's POI exists), and every
error names the JSON path at fault. :meth:`Workspace.model` builds a
:class:`diffana.model.Model`; :meth:`Workspace.data` gives the observed data in
the model's bin order; :func:`to_workspace` writes a model spec and its
observations back as a pyhf workspace that ``pyhf.Workspace`` accepts.

Yields and observations are event counts (dimensionless); parameters are
dimensionless multipliers or pulls.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Workspace", "WorkspaceError", "load_workspace", "to_workspace"]

MODIFIER_TYPES = (
    "histosys",
    "lumi",
    "normfactor",
    "normsys",
    "shapefactor",
    "shapesys",
    "staterror",
)
"""The HistFactory modifier types pyhf's schema (version 1.0.0) knows."""


class WorkspaceError(ValueError):
    """A workspace or model spec that cannot be used; the message names the JSON
    path (``$.channels[0].samples[1]``, …) and the channel, sample or key at fault."""


# --------------------------------------------------------------------------- schema


def _schema_validator(schema_name: str):
    """A Draft-6 validator for one of pyhf's schema files (``workspace.json``,
    ``model.json``), resolving ``defs.json`` from pyhf's installed copy."""
    cache = _schema_validator.__dict__.setdefault("cache", {})
    if schema_name in cache:
        return cache[schema_name]
    import jsonschema
    import pyhf.schema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT6

    folder = pyhf.schema.path / pyhf.schema.version
    resources = []
    for name in ("defs.json", "workspace.json", "model.json", "measurement.json"):
        with open(folder / name, encoding="utf-8") as handle:
            contents = json.load(handle)
        resources.append(
            (contents["$id"], Resource.from_contents(contents, default_specification=DRAFT6))
        )
    registry = Registry().with_resources(resources)
    with open(folder / schema_name, encoding="utf-8") as handle:
        target = json.load(handle)["$ref"]  # e.g. "defs.json#/definitions/workspace"
    # Draft 6 ignores an "$id" beside "$ref", so resolve against defs.json's own id.
    defs_id = next(uri for uri, _ in resources if uri.endswith("/defs.json"))
    schema = {"$ref": defs_id + target[len("defs.json"):]}
    validator = jsonschema.Draft6Validator(schema, registry=registry)
    cache[schema_name] = validator
    return validator


def _json_path(document: Any, path: Sequence[Any]) -> str:
    """``$.channels[0].samples[1]`` followed by the names met on the way, e.g.
    ``(channel 'SR', sample 'background')``, so a user finds the culprit."""
    text = "$"
    names = []
    node = document
    kinds = {"channels": "channel", "samples": "sample", "modifiers": "modifier",
             "observations": "observation", "measurements": "measurement",
             "parameters": "parameter"}
    parent_key = None
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(key, int) and isinstance(node, Mapping) and "name" in node:
            names.append(f"{kinds.get(parent_key, 'item')} {node['name']!r}")
        parent_key = key
    return text + (f" ({', '.join(names)})" if names else "")


def _describe_schema_error(document: Any, error) -> str:
    """One readable line for a jsonschema error. pyhf's schema lists modifiers as
    ``anyOf`` seven types, whose raw error ("not valid under any of the given
    schemas") hides the cause; look inside for the branch the modifier meant."""
    instance = error.instance
    where = _json_path(document, list(error.absolute_path))
    if error.validator in ("anyOf", "oneOf") and isinstance(instance, Mapping):
        kind = instance.get("type")
        if "type" not in instance:
            return f"{where}: modifier has no 'type' (one of {', '.join(MODIFIER_TYPES)})"
        if kind not in MODIFIER_TYPES:
            return (
                f"{where}: unknown modifier type {kind!r} "
                f"(known types: {', '.join(MODIFIER_TYPES)})"
            )
        branches = error.schema.get(error.validator, [])
        relevant = [
            sub
            for sub in error.context
            if sub.relative_schema_path
            and isinstance(sub.relative_schema_path[0], int)
            and str(branches[sub.relative_schema_path[0]].get("$ref", "")).endswith(
                f"/{kind}"
            )
        ]
        if relevant:
            sub = max(relevant, key=lambda e: len(e.absolute_path))
            return _describe_schema_error(document, sub) + f" (a {kind} modifier)"
    return f"{where}: {error.message}"


def _validate_schema(document: Any, schema_name: str, source: str) -> None:
    validator = _schema_validator(schema_name)
    errors = sorted(
        validator.iter_errors(document),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if errors:
        # The deepest error is the most specific: the wrong key, not its container.
        error = max(errors, key=lambda e: len(e.absolute_path))
        more = f" (and {len(errors) - 1} more schema error(s))" if len(errors) > 1 else ""
        raise WorkspaceError(
            f"{source} does not follow pyhf's {schema_name} schema: "
            f"{_describe_schema_error(document, error)}{more}"
        )


# ------------------------------------------------------------------------ helpers


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy/JAX arrays become lists, numpy scalars floats."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool, type(None), int, float)):
        return value
    if hasattr(value, "__array__") or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.kind in "fiub":
            return array.astype(float).tolist() if array.dtype.kind == "f" else array.tolist()
        return array.tolist()
    return value


def _read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise WorkspaceError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise WorkspaceError(f"{os.fspath(path)}: is a directory, not a JSON file") from None
    except UnicodeDecodeError as error:
        raise WorkspaceError(f"{os.fspath(path)}: not a UTF-8 text file ({error.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkspaceError(
            f"{os.fspath(path)}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _finite_nonnegative(document: Mapping, path: list, what: str) -> None:
    values = document
    for key in path:
        values = values[key]
    for index, value in enumerate(values):
        if not math.isfinite(value):
            where = _json_path(document, path + [index])
            raise WorkspaceError(f"{where}: {what} is {value}, must be a finite number")
        if value < 0:
            where = _json_path(document, path + [index])
            raise WorkspaceError(f"{where}: {what} is {value}, must not be negative")


def _channel_bins(document: Mapping) -> dict[str, int]:
    """Bins per channel (the length of its samples' ``data``); samples of one
    channel must agree."""
    bins: dict[str, int] = {}
    for c, channel in enumerate(document["channels"]):
        name = channel["name"]
        if name in bins:
            raise WorkspaceError(
                f"{_json_path(document, ['channels', c])}: duplicate channel name {name!r}"
            )
        samples = channel["samples"]
        if not samples:
            raise WorkspaceError(f"{_json_path(document, ['channels', c])}: channel has no samples")
        first = samples[0]
        for s, sample in enumerate(samples):
            if len(sample["data"]) != len(first["data"]):
                raise WorkspaceError(
                    f"{_json_path(document, ['channels', c, 'samples', s, 'data'])}: "
                    f"sample {sample['name']!r} has {len(sample['data'])} bins but sample "
                    f"{first['name']!r} of channel {name!r} has {len(first['data'])}"
                )
        bins[name] = len(first["data"])
    return bins


def _parameter_names(channels: Sequence[Mapping]) -> set[str]:
    return {m["name"] for ch in channels for s in ch["samples"] for m in s["modifiers"]}


def _check_parameter_configs(document: Mapping, path: list, parameters: Sequence[Mapping]):
    seen = set()
    for p, parameter in enumerate(parameters):
        name = parameter["name"]
        if name in seen:
            raise WorkspaceError(
                f"{_json_path(document, path + [p])}: parameter {name!r} is configured twice"
            )
        seen.add(name)
        for key in ("bounds",):
            for b, bound in enumerate(parameter.get(key, [])):
                low, high = bound
                if not (math.isfinite(low) and math.isfinite(high) and low < high):
                    raise WorkspaceError(
                        f"{_json_path(document, path + [p, key, b])}: bounds {bound} of "
                        f"parameter {name!r} must be finite with lower < upper"
                    )


# ---------------------------------------------------------------------- Workspace


class Workspace:
    """A validated pyhf workspace (or bare model spec).

    Attributes:
        spec: the model spec ``{"channels": [...]}`` (plus ``"parameters"`` for a
            bare spec that has them), as plain JSON values.
        observations: observed event counts per channel name, ``{name: [n, ...]}``
            (empty for a bare spec).
        measurements: the measurement objects, each ``{"name", "config": {"poi",
            "parameters"}}`` (empty for a bare spec).
        channel_bins: number of bins per channel name.
        version: the workspace schema version (``"1.0.0"``), ``None`` for a spec.
    """

    def __init__(self, document: Mapping, source: str = "workspace"):
        document = _plain(document)
        if not isinstance(document, Mapping):
            raise WorkspaceError(
                f"{source}: expected a JSON object (a pyhf workspace or model spec), "
                f"got {type(document).__name__}"
            )
        is_workspace = any(k in document for k in ("observations", "measurements", "version"))
        _validate_schema(document, "workspace.json" if is_workspace else "model.json", source)
        self.source = source
        try:
            self._check_and_store(document, is_workspace)
        except WorkspaceError as error:
            raise WorkspaceError(f"{source}: {error}") from None

    def _check_and_store(self, document: Mapping, is_workspace: bool) -> None:
        self.channel_bins = _channel_bins(document)
        channels = document["channels"]
        known_parameters = _parameter_names(channels)
        self.spec = {"channels": copy.deepcopy(channels)}
        if "parameters" in document:
            _check_parameter_configs(document, ["parameters"], document["parameters"])
            self.spec["parameters"] = copy.deepcopy(document["parameters"])
        self.version = document.get("version")
        self.observations: dict[str, list[float]] = {}
        self.measurements: list[dict] = copy.deepcopy(list(document.get("measurements", [])))

        for o, observation in enumerate(document.get("observations", [])):
            name, counts = observation["name"], observation["data"]
            where = _json_path(document, ["observations", o, "data"])
            if name in self.observations:
                raise WorkspaceError(
                    f"{_json_path(document, ['observations', o])}: channel {name!r} has two observations"
                )
            if name not in self.channel_bins:
                raise WorkspaceError(
                    f"{_json_path(document, ['observations', o])}: observation for channel "
                    f"{name!r}, which the workspace does not define "
                    f"(channels: {', '.join(map(repr, self.channel_bins))})"
                )
            if len(counts) != self.channel_bins[name]:
                raise WorkspaceError(
                    f"{where}: {len(counts)} observed counts for channel {name!r}, "
                    f"which has {self.channel_bins[name]} bins"
                )
            _finite_nonnegative(document, ["observations", o, "data"], "observed count")
            self.observations[name] = [float(n) for n in counts]
        if is_workspace:
            missing = [name for name in self.channel_bins if name not in self.observations]
            if missing:
                raise WorkspaceError(
                    f"$.observations has no observed counts for channel(s) "
                    f"{', '.join(map(repr, missing))}"
                )

        names = set()
        for m, measurement in enumerate(self.measurements):
            where = _json_path(document, ["measurements", m])
            if measurement["name"] in names:
                raise WorkspaceError(f"{where}: duplicate measurement name {measurement['name']!r}")
            names.add(measurement["name"])
            poi = measurement["config"]["poi"]
            if poi not in known_parameters:
                raise WorkspaceError(
                    f"{_json_path(document, ['measurements', m, 'config', 'poi'])}: the POI {poi!r} of measurement "
                    f"{measurement['name']!r} is not a parameter of the model "
                    f"(modifiers: {', '.join(sorted(map(repr, known_parameters)))})"
                )
            _check_parameter_configs(
                document, ["measurements", m, "config", "parameters"],
                measurement["config"]["parameters"],
            )

    # ..................................................................... access

    @property
    def measurement_names(self) -> list[str]:
        """Names of the measurements, in file order."""
        return [m["name"] for m in self.measurements]

    @property
    def channel_names(self) -> list[str]:
        """Channel names in file order (a model may order them differently;
        :meth:`data` follows the model)."""
        return list(self.channel_bins)

    def get_measurement(self, measurement: str | None = None) -> dict:
        """The measurement called ``measurement``; the first one when ``None``
        (as pyhf does). Raises :class:`WorkspaceError` naming the known ones."""
        if not self.measurements:
            raise WorkspaceError(
                f"{self.source}: a bare model spec has no measurements; pass poi_name= instead"
            )
        if measurement is None:
            return self.measurements[0]
        for candidate in self.measurements:
            if candidate["name"] == measurement:
                return candidate
        raise WorkspaceError(
            f"{self.source}: no measurement called {measurement!r} "
            f"(measurements: {', '.join(map(repr, self.measurement_names))})"
        )

    def model(self, measurement: str | None = None, **model_kwargs):
        """Build the :class:`diffana.model.Model` of a measurement.

        Args:
            measurement: measurement name; the first measurement when ``None``.
                Ignored for a bare spec (its own ``parameters`` are used).
            **model_kwargs: passed to ``Model.from_spec`` (``normsys_interp``,
                ``histosys_interp``, …); ``poi_name`` overrides the measurement's
                POI, ``parameters`` is appended to its parameter configs.

        The measurement's POI and parameter configs (lumi auxdata/sigmas, bounds,
        inits, fixed) go to ``Model.from_spec(spec, poi_name=..., parameters=...)``.
        """
        from diffana.model import Model

        extra = list(model_kwargs.pop("parameters", None) or [])
        if self.measurements:
            chosen = self.get_measurement(measurement)
            poi_name = model_kwargs.pop("poi_name", chosen["config"]["poi"])
            parameters = list(chosen["config"]["parameters"])
        else:
            poi_name = model_kwargs.pop("poi_name", "mu")
            parameters = list(self.spec.get("parameters", []))
        if poi_name is not None and poi_name not in _parameter_names(self.spec["channels"]):
            raise WorkspaceError(
                f"{self.source}: the POI {poi_name!r} is not a parameter of the model "
                f"(modifiers: {', '.join(sorted(map(repr, _parameter_names(self.spec['channels']))))})"
            )
        # Configs later in the list win, so a caller's parameters override the file's.
        merged = {p["name"]: p for p in parameters + extra}
        return Model.from_spec(
            {"channels": self.spec["channels"]},
            poi_name=poi_name,
            parameters=list(merged.values()),
            **model_kwargs,
        )

    def model_channel_order(self, model) -> list[str]:
        """Channel names in the order the model concatenates their bins."""
        config = getattr(model, "config", None)
        channels = getattr(config, "channels", None)
        if channels is None:
            # pyhf's convention, which diffana follows: channels sorted by name.
            channels = sorted(self.channel_bins)
        return [str(c) for c in channels]

    def data(self, model, include_auxdata: bool = True):
        """Observed data for ``model``: each channel's observed counts in the
        model's channel order, followed by the model's auxiliary data
        (``model.config.auxdata``) when ``include_auxdata``. Returns a float64
        JAX array (events, then auxiliary measurements)."""
        import jax.numpy as jnp

        if not self.observations:
            raise WorkspaceError(f"{self.source}: a bare model spec has no observations")
        counts = []
        for name in self.model_channel_order(model):
            if name not in self.observations:
                raise WorkspaceError(
                    f"{self.source}: no observed counts for channel {name!r} of the model"
                )
            counts.extend(self.observations[name])
        main = jnp.asarray(counts, dtype=jnp.float64)
        if not include_auxdata:
            return main
        aux = jnp.asarray(model.config.auxdata, dtype=jnp.float64).reshape(-1)
        return jnp.concatenate([main, aux])

    def to_dict(self) -> dict:
        """The workspace as a pyhf JSON document (a bare spec stays a spec)."""
        if self.version is None:
            return copy.deepcopy(self.spec)
        return {
            "channels": copy.deepcopy(self.spec["channels"]),
            "observations": [{"name": n, "data": list(d)} for n, d in self.observations.items()],
            "measurements": copy.deepcopy(self.measurements),
            "version": self.version,
        }

    def __repr__(self) -> str:
        return (
            f"Workspace(channels={self.channel_bins}, "
            f"measurements={self.measurement_names})"
        )


def load_workspace(path_or_dict: str | os.PathLike | Mapping) -> Workspace:
    """Read and validate a pyhf workspace (or a bare model spec).

    Args:
        path_or_dict: a path to a JSON file, or the already-parsed document
            (lists, numpy or JAX arrays). Yields and observations in events.

    Returns:
        A :class:`Workspace`.

    Raises:
        WorkspaceError: malformed JSON, a schema violation (with the JSON path at
            fault, e.g. an unknown modifier type), observations whose length
            differs from the channel's bin count, negative or non-finite
            observations, a missing channel observation, a measurement whose POI
            is not a model parameter, duplicate names.
    """
    if isinstance(path_or_dict, Mapping):
        return Workspace(path_or_dict, source="workspace")
    if isinstance(path_or_dict, (str, os.PathLike)):
        return Workspace(_read_json(path_or_dict), source=os.fspath(path_or_dict))
    raise WorkspaceError(
        f"load_workspace expects a file path or a dict, got {type(path_or_dict).__name__}"
    )


def to_workspace(
    spec: Mapping,
    observations: Mapping[str, Sequence[float]] | Sequence[Mapping],
    measurement_name: str = "Measurement",
    poi_name: str = "mu",
    parameters: Sequence[Mapping] | None = None,
) -> dict:
    """Write a model spec and its observations as a pyhf workspace (JSON-ready dict).

    Args:
        spec: pyhf model spec ``{"channels": [...]}``; sample and modifier data may
            be numpy or JAX arrays (event counts). A spec-level ``"parameters"``
            list is merged into the measurement's.
        observations: observed counts per channel, ``{channel: counts}`` or pyhf's
            ``[{"name": channel, "data": counts}]``.
        measurement_name: name of the single measurement written.
        poi_name: the parameter of interest.
        parameters: measurement parameter configs (``name``, ``inits``,
            ``bounds``, ``fixed``, ``auxdata``, ``sigmas``).

    Returns:
        A dict that validates against pyhf's ``workspace.json`` schema and loads
        with both :func:`load_workspace` and ``pyhf.Workspace``.
    """
    spec = _plain(spec)
    if isinstance(observations, Mapping):
        observed = [{"name": str(k), "data": _plain(v)} for k, v in observations.items()]
    else:
        observed = [_plain(o) for o in observations]
    configs = {p["name"]: p for p in _plain(list(spec.get("parameters", [])))}
    configs.update({p["name"]: p for p in _plain(list(parameters or []))})
    document = {
        "channels": spec.get("channels"),
        "observations": observed,
        "measurements": [
            {
                "name": measurement_name,
                "config": {"poi": poi_name, "parameters": list(configs.values())},
            }
        ],
        "version": _schema_version(),
    }
    Workspace(document, source="to_workspace")  # every check load_workspace makes
    return document


def _schema_version() -> str:
    import pyhf.schema

    return str(pyhf.schema.version)
