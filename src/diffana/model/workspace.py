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

import ast
import copy
import importlib.util
import json
import math
import numbers
import os
import pathlib
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diffana.errors import WorkspaceError

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


# --------------------------------------------------------------------------- schema


def _pyhf_schema_folder() -> tuple[Any, str]:
    """The folder of pyhf's installed schema files and their version (``"1.0.0"``).

    ``import pyhf.schema`` imports all of pyhf (scipy.stats among it): seconds in a
    fresh process, for three JSON files. So unless pyhf is imported already (then
    its ``pyhf.schema.path``, which a user may have redirected, is used), the files
    are found where pyhf installs them, without running pyhf, and the version is read
    from pyhf's ``schema/variables.py``; anything unexpected falls back to
    ``import pyhf.schema``."""
    module = sys.modules.get("pyhf.schema")
    if module is None:
        try:
            spec = importlib.util.find_spec("pyhf")
            root = pathlib.Path(spec.origin).parent
            tree = ast.parse((root / "schema" / "variables.py").read_text(encoding="utf-8"))
            version = next(
                node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "SCHEMA_VERSION" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            )
            folder = root / "schemas" / version
            if (folder / "defs.json").is_file():
                return folder, version
        except Exception:  # noqa: BLE001 - any surprise: ask pyhf itself
            pass
        import pyhf.schema as module
    return pathlib.Path(module.path) / str(module.version), str(module.version)


def _schema_documents():
    """pyhf's schema files, ``{$id: contents}``, the ``$id`` of ``defs.json`` and
    their folder. Read once per process."""
    cache = _schema_documents.__dict__.setdefault("cache", [])
    if not cache:
        folder, _ = _pyhf_schema_folder()
        documents = {}
        for name in ("defs.json", "workspace.json", "model.json", "measurement.json"):
            with open(folder / name, encoding="utf-8") as handle:
                contents = json.load(handle)
            documents[contents["$id"]] = contents
        defs_id = next(uri for uri in documents if uri.endswith("/defs.json"))
        cache.append((documents, defs_id, folder))
    return cache[0]


def _schema_registry():
    """pyhf's schema files as a ``referencing`` registry (for jsonschema)."""
    cache = _schema_registry.__dict__.setdefault("cache", [])
    if not cache:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT6

        documents, _, _ = _schema_documents()
        cache.append(Registry().with_resources(
            (uri, Resource.from_contents(contents, default_specification=DRAFT6))
            for uri, contents in documents.items()
        ))
    return cache[0]


def _schema_reference(schema_name: str) -> dict:
    """``{"$ref": <absolute URI>}`` of the definition a schema file names."""
    cache = _schema_reference.__dict__.setdefault("cache", {})
    if schema_name not in cache:
        _, defs_id, folder = _schema_documents()
        with open(folder / schema_name, encoding="utf-8") as handle:
            target = json.load(handle)["$ref"]  # e.g. "defs.json#/definitions/workspace"
        # Draft 6 ignores an "$id" beside "$ref", so resolve against defs.json's own id.
        cache[schema_name] = defs_id + target[len("defs.json"):]
    return {"$ref": cache[schema_name]}


def _schema_validator(schema_name: str):
    """A Draft-6 validator for one of pyhf's schema files (``workspace.json``,
    ``model.json``), resolving ``defs.json`` from pyhf's installed copy. Built
    once per process."""
    cache = _schema_validator.__dict__.setdefault("cache", {})
    if schema_name not in cache:
        import jsonschema

        cache[schema_name] = jsonschema.Draft6Validator(
            _schema_reference(schema_name), registry=_schema_registry()
        )
    return cache[schema_name]


# A fast yes/no check of the same schema. jsonschema spends ~0.3-0.6 s on a
# published likelihood: every one of its ~500 modifiers is tried against all seven
# modifier schemas of an ``anyOf``, through ``$ref`` lookups and a validator object
# per step. The schema is compiled once into plain Python predicates that answer
# exactly what jsonschema answers ("valid or not") for the keywords they
# implement; a schema using any other assertion keyword gets no fast check. Only
# documents the predicate accepts skip jsonschema: a rejected one is validated by
# jsonschema, which finds and words the errors (and has the last word).


class _Unsupported(Exception):
    """The schema uses a keyword the fast check does not implement."""


def _is_number(x) -> bool:  # jsonschema's draft-6 "number": not bool
    return not isinstance(x, bool) and isinstance(x, numbers.Number)


def _is_integer(x) -> bool:  # draft 6: 1.0 is an integer
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


_TYPE_TESTS = {
    "array": lambda x: isinstance(x, list),
    "boolean": lambda x: isinstance(x, bool),
    "integer": _is_integer,
    "null": lambda x: x is None,
    "number": _is_number,
    "object": lambda x: isinstance(x, dict),
    "string": lambda x: isinstance(x, str),
}

# The keywords jsonschema's Draft6Validator asserts (its VALIDATORS; a test checks
# the list), and those of them the compiler implements: any other makes it give up.
# Keywords jsonschema does not know ("definitions", "description") mean nothing to
# either.
_DRAFT6_KEYWORDS = frozenset(
    {"$ref", "additionalItems", "additionalProperties", "allOf", "anyOf", "const",
     "contains", "dependencies", "enum", "exclusiveMaximum", "exclusiveMinimum",
     "format", "items", "maxItems", "maxLength", "maxProperties", "maximum",
     "minItems", "minLength", "minProperties", "minimum", "multipleOf", "not",
     "oneOf", "pattern", "patternProperties", "properties", "propertyNames",
     "required", "type", "uniqueItems"}
)
_FAST_KEYWORDS = frozenset(
    {"$ref", "type", "properties", "required", "additionalProperties", "items",
     "minItems", "maxItems", "const", "anyOf"}
)


def _all_numbers(values: list) -> bool:
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int and not _is_number(value):
            return False
    return True


class _SchemaCompiler:
    """Compiles a Draft-6 schema into a predicate ``check(instance) -> bool``;
    ``$ref``s (resolved once each, within ``documents``, ``{$id: schema}``) are
    compiled once each."""

    def __init__(self, documents: Mapping[str, Any]):
        self._documents = documents
        self._compiled: dict[int, Any] = {}  # id(schema) -> predicate (or its cell)
        self._keep: list = []  # schemas whose id() keys _compiled stay alive

    def compile_root(self, schema, base):
        return self._compile(schema, base, root=True)

    def _lookup(self, ref: str, base: str):
        """The schema ``ref`` names, seen from the document ``base``, and the URI
        of the document it is in."""
        uri, _, fragment = urllib.parse.urljoin(base, ref).partition("#")
        if uri not in self._documents:
            raise _Unsupported(f"$ref {ref!r} outside pyhf's schema files")
        node = self._documents[uri]
        if fragment and not fragment.startswith("/"):
            raise _Unsupported(f"$ref {ref!r} to an anchor")
        for token in urllib.parse.unquote(fragment).split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(token)]
            elif isinstance(node, dict):
                node = node[token]
            else:
                raise _Unsupported(f"$ref {ref!r}")
        return node, uri

    def _resolve(self, schema, base):
        """Follow ``$ref`` chains: (resolved schema, its document's URI)."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            schema, base = self._lookup(schema["$ref"], base)
            seen += 1
            if seen > 100:
                raise _Unsupported("a $ref cycle")
        return schema, base

    def _compile(self, schema, base, root=False):
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, dict):
            raise _Unsupported(f"schema {schema!r:.40}")
        if "$ref" in schema:  # draft 6: siblings of $ref are ignored
            target, target_base = self._resolve(schema, base)
            key = id(target)
            if key not in self._compiled:
                cell: list = []
                self._compiled[key] = lambda x: cell[0](x)  # in case of recursion
                self._keep.append(target)
                cell.append(self._compile(target, target_base))
                self._compiled[key] = cell[0]
            return self._compiled[key]
        if "$id" in schema and not root:
            raise _Unsupported("$id in a subschema changes the resolution scope")
        unknown = (set(schema) & _DRAFT6_KEYWORDS) - _FAST_KEYWORDS
        if unknown:
            raise _Unsupported(f"keywords {sorted(unknown)}")
        checks = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if any(t not in _TYPE_TESTS for t in types):
                raise _Unsupported(f"type {types}")
            tests = [_TYPE_TESTS[t] for t in types]
            if len(tests) == 1:
                checks.append(tests[0])
            else:
                checks.append(lambda x, tests=tests: any(test(x) for test in tests))
        if "const" in schema:
            const = schema["const"]
            if not isinstance(const, str):
                raise _Unsupported("a non-string const")
            checks.append(lambda x, const=const: isinstance(x, str) and x == const)
        object_check = self._object_check(schema, base)
        if object_check is not None:
            checks.append(object_check)
        array_check = self._array_check(schema, base)
        if array_check is not None:
            checks.append(array_check)
        if "anyOf" in schema:
            checks.append(self._any_of(schema["anyOf"], base))
        if not checks:
            return lambda x: True
        if len(checks) == 1:
            return checks[0]

        def check(x, checks=tuple(checks)):
            for one in checks:
                if not one(x):
                    return False
            return True

        return check

    def _object_check(self, schema, base):
        if not any(k in schema for k in ("properties", "required", "additionalProperties")):
            return None
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise _Unsupported("properties")
        required = tuple(schema.get("required", ()))
        extra = schema.get("additionalProperties", True)
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        extra_check = None if extra is True else (lambda x: False) if extra is False else (
            self._compile(extra, base)
        )
        property_checks = tuple(
            (name, self._compile(sub, base)) for name, sub in properties.items()
        )

        def check(x):
            if not isinstance(x, dict):
                return True  # object keywords apply to objects only
            for name in required:
                if name not in x:
                    return False
            for name, sub in property_checks:
                if name in x and not sub(x[name]):
                    return False
            if extra_check is not None:
                for name in x:
                    if name not in properties and not extra_check(x[name]):
                        return False
            return True

        return check

    def _array_check(self, schema, base):
        if not any(k in schema for k in ("items", "minItems", "maxItems")):
            return None
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        items = schema.get("items", True)
        if isinstance(items, list):
            raise _Unsupported("tuple items")
        if isinstance(items, dict) and items == {"type": "number"}:
            item_check = _all_numbers
        elif items is True or items == {}:
            item_check = None
        else:
            one = self._compile(items, base)

            def item_check(values):
                for value in values:
                    if not one(value):
                        return False
                return True

        def check(x):
            if not isinstance(x, list):
                return True  # array keywords apply to arrays only
            if len(x) < low or (high is not None and len(x) > high):
                return False
            return item_check is None or item_check(x)

        return check

    def _any_of(self, branches, base):
        if not isinstance(branches, list) or not branches:
            raise _Unsupported("anyOf")
        compiled = [self._compile(branch, base) for branch in branches]
        # pyhf's modifiers: each branch an object requiring a "type" fixed by a
        # string const, all different. Only the branch the modifier's type names
        # can accept it; no branch accepts a non-object, one without "type", or
        # one with another type.
        table = {}
        for branch, check in zip(branches, compiled):
            target, _ = self._resolve(branch, base)
            kind = (
                target.get("properties", {}).get("type", {}).get("const")
                if isinstance(target, dict) and isinstance(target.get("properties"), dict)
                and isinstance(target["properties"].get("type"), dict)
                else None
            )
            if (
                not isinstance(kind, str)
                or target.get("type") != "object"
                or "type" not in target.get("required", ())
                or kind in table
            ):
                table = None
                break
            table[kind] = check
        if table is not None:

            def dispatch(x):
                if not isinstance(x, dict):
                    return False
                kind = x.get("type")
                check = table.get(kind) if isinstance(kind, str) else None
                return check is not None and check(x)

            return dispatch

        def any_of(x):
            for check in compiled:
                if check(x):
                    return True
            return False

        return any_of


def _fast_check(reference: str):
    """A predicate that says whether a value follows the pyhf schema definition
    ``reference`` (an absolute ``$ref``), exactly as jsonschema would; ``None``
    when the definition uses keywords the fast check does not implement. Built
    once per process and definition."""
    cache = _fast_check.__dict__.setdefault("cache", {})
    if reference not in cache:
        documents, defs_id, _ = _schema_documents()
        try:
            cache[reference] = _SchemaCompiler(documents).compile_root({"$ref": reference}, defs_id)
        except Exception:  # noqa: BLE001 - _Unsupported, or a $ref to nowhere
            cache[reference] = None
    return cache[reference]


def _fast_schema_check(schema_name: str):
    """:func:`_fast_check` of a whole pyhf schema file (``workspace.json``, ``model.json``)."""
    return _fast_check(_schema_reference(schema_name)["$ref"])


def _fast_definition_check(definition: str):
    """:func:`_fast_check` of ``defs.json#/definitions/<definition>`` (``channel``,
    ``sample``, ``observation``, ``measurement``, ...)."""
    _, defs_id, _ = _schema_documents()
    return _fast_check(f"{defs_id}#/definitions/{definition}")


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
    check = _fast_schema_check(schema_name)
    if check is not None and check(document):
        return
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


_ATOMS = frozenset({str, bool, type(None), int, float})
_NUMBERS = frozenset({int, float})


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy/JAX arrays become lists, numpy scalars floats."""
    kind = type(value)
    if kind in _ATOMS:  # the common cases first, as below
        return value
    if (kind is list or kind is tuple) and all(type(v) in _NUMBERS for v in value):
        return list(value)
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
            # _plain made a fresh copy: nothing else holds its lists and dicts.
            self._check_and_store(document, is_workspace, copied=True)
        except WorkspaceError as error:
            raise WorkspaceError(f"{source}: {error}") from None

    def _check_and_store(self, document: Mapping, is_workspace: bool, copied: bool = False) -> None:
        """Check ``document`` beyond the schema and keep its parts; they are
        deep-copied unless ``copied`` (the document is already a private copy)."""
        own = (lambda value: value) if copied else copy.deepcopy
        self.channel_bins = _channel_bins(document)
        channels = document["channels"]
        known_parameters = _parameter_names(channels)
        self.spec = {"channels": own(channels)}
        if "parameters" in document:
            _check_parameter_configs(document, ["parameters"], document["parameters"])
            self.spec["parameters"] = own(document["parameters"])
        self.version = document.get("version")
        self.observations: dict[str, list[float]] = {}
        self.measurements: list[dict] = own(list(document.get("measurements", [])))

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
        from diffana.model.model import Model

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
        import jax

        if not self.observations:
            raise WorkspaceError(f"{self.source}: a bare model spec has no observations")
        counts = []
        for name in self.model_channel_order(model):
            if name not in self.observations:
                raise WorkspaceError(
                    f"{self.source}: no observed counts for channel {name!r} of the model"
                )
            counts.extend(self.observations[name])
        # Assembled in numpy and moved to the device once: eager jnp operations
        # would each compile a small XLA program (~10 ms apiece at startup).
        main = np.asarray(counts, dtype=np.float64)
        if not include_auxdata:
            return jax.device_put(main)
        aux = np.asarray(model.config.auxdata, dtype=np.float64).reshape(-1)
        return jax.device_put(np.concatenate([main, aux]))

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
    return _pyhf_schema_folder()[1]
