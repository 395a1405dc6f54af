"""Manifest files (a Git checkout or a local directory) -> a validated `model.Revision`.

Sits between the source (the Git checkout, or `load_directory` for the
`validate` command) and the desired-state model that `desired`/`plan` consume.
`parse` reads YAML safely, validates every document against `schemas/`, checks
the objects against each other, against what the node would refuse (Podman's
limits, on the names `desired` gives) and against the config's `limits:` (by
`desired`'s placement arithmetic, before any pod is built), and converts them
into `model` objects. `read_checked` reads the agent config file the same way,
against its own schema. No message quotes a Secret's value.

It must not talk to Git or Podman, follow symlinks, execute YAML tags, or
return a partial revision: either every document is valid and consistent, or
`errors.RevisionRejected` carries every problem found, sorted by file and line.
The only I/O is reading a local directory in `load_directory`.
"""

from __future__ import annotations

import base64
import copy
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from . import config, desired, model, pullauth
from .config import NodeConfig
from .errors import Problem, RevisionRejected, SourceUnavailable, quote_path

# --- public API ---------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    path: str  # repository-relative POSIX path, e.g. "apps/web/deploy.yaml"
    data: bytes
    is_symlink: bool = False
    size: int | None = None  # the real size when `data` is not read at all (too large)

    @property
    def length(self) -> int:
        return self.size if self.size is not None else len(self.data)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 1 << 20  # 1 MiB per file
    max_total_bytes: int = 32 << 20
    max_files: int = 5000
    max_yaml_nodes: int = 100_000  # per file, aliases expanded; defeats alias bombs


def is_manifest_path(path: str) -> bool:
    """True for `.yaml`/`.yml` files with no path component starting with "."."""
    parts = path.split("/")
    return path.endswith((".yaml", ".yml")) and not any(part.startswith(".") for part in parts)


def load_directory(root: Path) -> list[SourceFile]:
    """The manifest files under `root`, for validating a working copy.

    Dotfiles and dot-directories are skipped. Symlinks are never followed: a
    symlink with a manifest name is returned with `is_symlink=True` and no data,
    so that `parse` rejects it as Git sources do. Raises `SourceUnavailable`
    if the directory cannot be read.
    """

    def fail(error: OSError) -> None:
        raise error

    files = []
    try:
        for directory, subdirs, names in os.walk(root, onerror=fail):
            base = Path(directory)
            symlinked_dirs = [name for name in subdirs if (base / name).is_symlink()]
            subdirs[:] = sorted(name for name in subdirs if not name.startswith(".") and name not in symlinked_dirs)
            for name in sorted(names + symlinked_dirs):
                path = base / name
                relative = path.relative_to(root).as_posix()
                if not is_manifest_path(relative):
                    continue
                if path.is_symlink():
                    files.append(SourceFile(relative, b"", is_symlink=True))
                elif path.is_file():
                    files.append(SourceFile(relative, path.read_bytes()))
    except OSError as error:
        raise SourceUnavailable(f"cannot read {quote_path(str(error.filename or root))}: {error.strerror}") from error
    return sorted(files, key=lambda file: file.path)


def parse(
    files: Iterable[SourceFile],
    revision_id: str = "",
    limits: Limits = Limits(),
    policy: model.Policy = model.Policy(),
    nodes: Sequence[NodeConfig] = (NodeConfig("local"),),
    node_limits: model.NodeLimits = model.NodeLimits(),
    storage_classes: Mapping[str, model.StorageClass] | None = None,
) -> model.Revision:
    """Validate and convert the manifest files (other paths are ignored).

    `policy` (the agent config's `policy:`) says which privileged features
    (privileged containers, host namespaces, added capabilities, hostPath
    volumes) the workloads may use; the default denies them all. `nodes` and
    `node_limits` (the config's `nodes:` and `limits:`) bound the pods the
    revision places on each node; `storage_classes` (the config's
    `storageClasses:`) the classes a PersistentVolumeClaim may name. Raises
    `RevisionRejected` with every problem found, sorted by file and line.
    """
    problems: list[Problem] = []
    manifests = sorted((file for file in files if is_manifest_path(file.path)), key=lambda file: file.path)
    documents: list[_Document] = []
    total_bytes = 0
    for index, file in enumerate(manifests):
        total_bytes += file.length
        if index >= limits.max_files:
            problems.append(Problem(file.path, 1, "", "", f"more than {limits.max_files} manifest files, the limit"))
            break
        if total_bytes > limits.max_total_bytes:
            message = f"manifest files total more than {limits.max_total_bytes} bytes, the limit"
            problems.append(Problem(file.path, 1, "", "", message))
            break
        documents.extend(_read_file(file, limits, problems))

    entries = [(document, _check_document(document)) for document in documents]
    entries = [(doc, _with_storage_class(doc, obj, storage_classes or {}) if isinstance(obj, model.Claim) else obj)
               for doc, obj in entries]
    entries = _allocate_node_ports(entries)
    _check_revision(entries, policy)
    _check_capacity([(doc, obj) for doc, obj in entries if isinstance(obj, model.Workload)], tuple(nodes), node_limits)
    problems.extend(problem for document in documents for problem in document.problems)
    if problems:
        unique = dict.fromkeys(_redacted(problems, documents))
        raise RevisionRejected(sorted(unique, key=lambda problem: (problem.file, problem.line)), revision_id)
    objects = sorted((obj for _, obj in entries if obj is not None), key=_object_order)
    warnings = sorted((w for doc in documents for w in doc.warnings), key=lambda w: (w.file, w.line))
    return model.Revision(id=revision_id, digest=_digest(manifests), objects=tuple(objects),
                          warnings=tuple(str(warning) for warning in warnings))


def read_checked(file: SourceFile, schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """One YAML file holding one mapping (the agent config), read as safely as a manifest and checked
    against `schema`: its value ({} for an empty file) and every problem found, at FILE:LINE."""
    problems: list[Problem] = []
    documents = list(_read_file(file, Limits(), problems))
    for extra in documents[1:]:
        problems.append(Problem(file.path, extra.lines[()], "", "", "a second YAML document; the file holds one"))
    if not documents:
        return {}, problems
    body, lines = documents[0].body, documents[0].lines
    found = _checked(body, lines, schema)
    problems.extend(Problem(file.path, line, "", path, message) for line, path, message in found)
    return body, problems


def check_value(value: Any, schema: Mapping[str, Any]) -> list[Problem]:
    """`value` (already parsed, so without lines) checked against `schema`: every problem found."""
    return [Problem("", 0, "", path, message) for _, path, message in _checked(value, {(): 0}, schema)]


def _checked(value: Any, lines: Mapping[JsonPath, int], schema: Mapping[str, Any]) -> Iterator[tuple[int, str, str]]:
    """(line, JSON path, message) of every schema problem of `value`, in path order."""
    located = _Document("", {}, dict(lines))
    found = []
    for error in _Validator(schema).iter_errors(value):
        for path, message in _schema_problems(error):
            found.append((located.line_of(path), _json_path(path), message))
    yield from sorted(dict.fromkeys(found))


# --- documents and problems ---------------------------------------------------

JsonPath = tuple[str | int, ...]

# kind -> apiVersion, in the order objects are sorted (dependencies first).
_KINDS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "PersistentVolumeClaim": "v1",
    "Pod": "v1",
    "Deployment": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicationController": "v1",
    "Service": "v1",
}
_KIND_ORDER = {kind: index for index, kind in enumerate(_KINDS)}
_MAX_VALUE_BYTES = 511_999  # Podman's secret store holds 1 to 511999 bytes ("less than 512000")
_MAX_DEPTH = 64  # YAML nesting; far deeper than any manifest


@dataclass
class _Document:
    """One YAML document: its plain value, the line of every JSON path, and what it declares."""

    file: str
    body: dict[str, Any]
    lines: dict[JsonPath, int]
    kind: str = ""
    name: str = ""
    namespace: str = model.DEFAULT_NAMESPACE
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # accepted, with no effect on a node

    @property
    def ref(self) -> model.ObjectRef:
        # A Namespace is not namespaced; like `desired`, its ref carries its own name there.
        namespace = self.name if self.kind == "Namespace" else self.namespace
        return model.ObjectRef(self.kind, namespace, self.name)

    @property
    def origin(self) -> model.Origin:
        return model.Origin(self.file, self.lines[()])

    def line_of(self, path: JsonPath) -> int:
        """Line of the node at `path` (the key's line for a mapping entry), else of its nearest ancestor."""
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def report(self, path: JsonPath, message: str) -> None:
        self.problems.append(self._problem(path, message))

    def warn(self, path: JsonPath, message: str) -> None:
        self.warnings.append(self._problem(path, message))

    def _problem(self, path: JsonPath, message: str) -> Problem:
        kind = self.kind or self.body.get("kind")  # an unsupported kind is still worth showing
        kind = kind if isinstance(kind, str) else ""
        label = f"{kind}/{self.name}" if kind and self.name else kind
        return Problem(self.file, self.line_of(path), label, _json_path(path), message)


_MIN_REDACTED = 4  # shorter values are left alone: they would blank out ordinary words of the messages


def _secret_values(documents: Iterable[_Document]) -> list[str]:
    """Every Secret value of the revision as it could appear in a message: as written and base64-decoded."""
    values: set[str] = set()
    for doc in documents:
        if doc.body.get("kind") != "Secret":
            continue
        for name in ("data", "stringData"):
            for value in _strings(doc.body.get(name)):
                values.add(value)
                if name == "data":
                    try:
                        values.add(base64.b64decode(value, validate=True).decode("utf-8"))
                    except ValueError:  # not base64, or not text: the schema reports it, without the value
                        pass
    return sorted((value for value in values if len(value) >= _MIN_REDACTED), key=len, reverse=True)


def _strings(value: Any) -> Iterator[str]:
    """Every scalar inside a YAML value (and every key below its top level), as text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item)
            if isinstance(item, dict):
                yield from item
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def _redacted(problems: list[Problem], documents: Iterable[_Document]) -> Iterator[Problem]:
    """The problems with any Secret value in their messages replaced: no message quotes a Secret's value,
    and this is the net under that rule."""
    values = _secret_values(documents)
    for problem in problems:
        message = problem.message
        for value in values:
            message = message.replace(value, "<redacted>")
        yield problem if message == problem.message else replace(problem, message=message)


def _json_path(path: JsonPath) -> str:
    """`spec.containers[0].image`; keys that are not identifiers are quoted: `labels["app.kubernetes.io/name"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][-A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _digest(files: list[SourceFile]) -> str:
    digest = hashlib.sha256()
    for file in files:  # sorted by path
        path = file.path.encode()
        digest.update(b"%d:%s%d:" % (len(path), path, len(file.data)))
        digest.update(file.data)
    return f"sha256:{digest.hexdigest()}"


def _object_order(obj: model.Object) -> tuple[int, str, str]:
    return _KIND_ORDER[obj.ref.kind], obj.ref.namespace, obj.ref.name


# --- YAML ---------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _MAP, _SEQ, _MERGE = (_TAG + name for name in ("str", "null", "map", "seq", "merge"))
_SCALAR_TAGS = {_STR, _NULL, _TAG + "bool", _TAG + "int", _TAG + "float"}


class _YamlProblem(Exception):
    """A problem in one document; `fatal` when the rest of the file cannot be read either."""

    def __init__(self, line: int, message: str, path: JsonPath = (), fatal: bool = False) -> None:
        super().__init__(message)
        self.line, self.message, self.path, self.fatal = line, message, path, fatal


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader (its scanner takes what the pure-Python one refuses, such as a tab after a value),
    that, like Kubernetes' YAML decoder, keeps timestamp-like scalars as strings (and "=" as a string, not
    YAML's `value`). Nesting is bounded by `_check_depth` before libyaml composes (recursively) any node."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TAG + "timestamp", _TAG + "value")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_depth(text: str) -> None:
    """Raise a fatal `_YamlProblem` if the text nests deeper than `_MAX_DEPTH` (libyaml's parser is iterative,
    its composer is not). YAML errors are left to the loader that follows, which reports them the same way."""
    parser = yaml.cyaml.CParser(text)
    depth, line = 0, 1
    try:
        while (event := parser.get_event()) is not None:
            depth += isinstance(event, _OPENING) - isinstance(event, _CLOSING)
            line = event.start_mark.line + 1
            if depth > _MAX_DEPTH:
                break
    except yaml.MarkedYAMLError as error:  # libyaml's scanner has a nesting limit of its own: the same problem
        if "nesting depth" not in str(error.problem):
            return
        depth = _MAX_DEPTH + 1
    except (yaml.YAMLError, yaml.reader.ReaderError):
        return
    finally:
        parser.dispose()
    if depth > _MAX_DEPTH:
        raise _YamlProblem(line, f"YAML is nested deeper than {_MAX_DEPTH} levels", fatal=True)


class _Builder:
    """Builds plain values from one file's composed YAML nodes: aliases
    expanded (and counted, against alias bombs), `<<` merge keys applied,
    duplicate keys and non-string keys rejected, the line of every path kept."""

    def __init__(self, loader: _Loader, max_nodes: int) -> None:
        self.loader = loader
        self.max_nodes = max_nodes
        self.nodes = 0  # per file
        self.lines: dict[JsonPath, int] = {}
        self.duplicates: list[tuple[JsonPath, str]] = []  # per document: (path, message), at the later key

    def document(self, node: yaml.Node) -> tuple[Any, dict[JsonPath, int]]:
        self.lines = {(): _line(node)}
        self.duplicates = []
        return self.value(node, (), 0), self.lines

    def visit(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            message = f"YAML expands to more than {self.max_nodes} nodes (too many aliases?)"
            raise _YamlProblem(_line(node), message, fatal=True)
        if depth > _MAX_DEPTH:
            raise _YamlProblem(_line(node), f"YAML is nested deeper than {_MAX_DEPTH} levels")

    def value(self, node: yaml.Node, path: JsonPath, depth: int) -> Any:
        self.visit(node, depth)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = _line(item)
                items.append(self.value(item, path + (index,), depth + 1))
            return items
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
            return self.scalar(node, path)
        raise _YamlProblem(_line(node), f"YAML tag {node.tag!r} is not supported", path)

    def scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        # The value is never quoted: it may be a Secret's, and the line and path already point at it.
        tag = node.tag.removeprefix(_TAG)
        invalid = _YamlProblem(_line(node), f"value is not a valid {tag} (tag !!{tag})", path)
        # An explicit tag (`!!int abc`) must agree with what the value resolves to.
        if node.tag != _STR and self.loader.resolve(yaml.ScalarNode, node.value, (True, False)) != node.tag:
            raise invalid
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except ValueError as error:  # e.g. "0b_", or more digits than Python converts
            raise invalid from error

    def mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # `<<: *base` or `<<: [*a, *b]`: explicit keys win, then earlier sources.
        for source in reversed(self.merge_sources(node, path)):
            self.visit(source, depth + 1)
            result.update(self.mapping(source, path, depth + 1))
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                raise _YamlProblem(_line(key_node), "mapping keys must be strings (quote the key)", path)
            key = key_node.value
            if key in explicit:  # reported, and the document still checked (the later value is kept)
                self.duplicates.append((path + (key,), f"duplicate key {key!r}"))
            explicit.add(key)
            self.lines[path + (key,)] = _line(key_node)
            result[key] = self.value(value_node, path + (key,), depth + 1)
        return result

    @staticmethod
    def merge_sources(node: yaml.MappingNode, path: JsonPath) -> list[yaml.MappingNode]:
        sources = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in items:
                if not isinstance(item, yaml.MappingNode):
                    raise _YamlProblem(_line(item), "a merge key '<<' takes a mapping or a list of mappings", path)
                sources.append(item)
        return sources


def _read_file(file: SourceFile, limits: Limits, problems: list[Problem]) -> Iterator[_Document]:
    """The file's non-empty documents; file-level and YAML problems go to `problems`."""

    def problem(line: int, message: str, path: JsonPath = ()) -> None:
        problems.append(Problem(file.path, line, "", _json_path(path), message))

    if file.is_symlink:
        problem(1, "symlinks are not followed; commit the file itself")
        return
    if file.length > limits.max_file_bytes:
        problem(1, f"file is {file.length} bytes; the limit is {limits.max_file_bytes}")
        return
    if b"\0" in file.data:
        problem(file.data[: file.data.index(b"\0")].count(b"\n") + 1, "binary file (contains NUL bytes)")
        return
    try:
        text = file.data.decode("utf-8")
    except UnicodeDecodeError as error:
        problem(file.data[: error.start].count(b"\n") + 1, "file is not UTF-8 text")
        return

    loader: _Loader | None = None
    try:
        _check_depth(text)
        loader = _Loader(text)
        builder = _Builder(loader, limits.max_yaml_nodes)
        while loader.check_node():
            node = loader.get_node()
            if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
                continue  # an empty document
            try:
                body, lines = builder.document(node)
            except _YamlProblem as error:
                problem(error.line, error.message, error.path)
                if error.fatal:
                    return
                continue
            if isinstance(body, dict):
                document = _Document(file.path, body, lines)
                _identify(document)
                for path, message in builder.duplicates:
                    document.report(path, message)
                yield document
            else:
                problem(_line(node), f"a document must be a mapping, not {_describe(body)}")
    except _YamlProblem as error:
        problem(error.line, error.message, error.path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = min(mark.line + 1, text.count("\n") + 1) if mark else 1  # libyaml may mark the stream's end
        problem(line, f"invalid YAML: {error.problem or error.context}")
    except yaml.reader.ReaderError as error:
        problem(text[: error.position].count("\n") + 1, f"invalid YAML: {error.reason} (U+{error.character:04X})")
    finally:
        if loader is not None:
            loader.dispose()


def dump_yaml(data: Any) -> str:
    """JSON-shaped `data` as YAML text (the CLI's `-o yaml`): PyYAML's writer sits with its reader here."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _short(value: Any) -> str:
    """repr() for messages, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "a list"), (dict, "a mapping"))


def _describe(value: Any) -> str:
    """The JSON type of a YAML value, for messages."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


# --- schemas ------------------------------------------------------------------

# schemas/ at the top of the repository, installed as the data-only package `gitops_agent.schemas`
# (pyproject.toml's package-dir): the same name in a wheel, an editable install and a source checkout.
_SCHEMA_PACKAGE = "gitops_agent.schemas"


def _is_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: object, instance: object) -> bool:
    # JSON has no NaN or infinity, and 1.0 is not an integer in Kubernetes' Go types.
    return _is_integer(checker, instance) or (isinstance(instance, float) and math.isfinite(instance))


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    """One validator per kind, from `schemas/<kind>.json`; `_defs.json` resolved by `$ref`."""
    schemas = {entry.name: json.loads(entry.read_text(encoding="utf-8"))
               for entry in resources.files(_SCHEMA_PACKAGE).iterdir() if entry.name.endswith(".json")}
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return {kind: _Validator(schemas[f"{kind.lower()}.json"], registry=registry) for kind in _KINDS}


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}


def _schema_problems(error: jsonschema.ValidationError) -> Iterator[tuple[JsonPath, str]]:
    """(path, message) for one schema error; a key rather than its value where the key is at fault."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        known = schema.get("properties", {})
        unsupported = schema.get("x-unsupported", {})
        for key in error.instance:
            if key in known:
                continue
            pattern = next((hint for regex, hint in schema.get("x-unsupported-patterns", {}).items()
                            if re.fullmatch(regex, key)), None)
            if key in unsupported or pattern is not None:
                hint = unsupported.get(key, pattern)
                yield path + (key,), f"field {key!r} is not supported by gitops-agent" + (f" ({hint})" if hint else "")
            else:
                close = difflib.get_close_matches(key, known, n=1)
                suggestion = f" (did you mean {close[0]!r}?)" if close else ""
                yield path + (key,), f"unknown field {_short(key)}{suggestion}"
        return
    message = schema.get("errorMessage", {}).get(error.validator) or _message(error)
    if "propertyNames" in error.relative_schema_path:  # the instance is a key of the mapping at `path`
        yield path + (error.instance,), f"key {_short(error.instance)} {message}"
    else:
        yield path, message


def _message(error: jsonschema.ValidationError) -> str:
    expected, instance = error.validator_value, error.instance
    match error.validator:
        case "required":  # one error per missing field, all alike: merged with the other problems
            missing = [name for name in expected if name not in instance]
            return f"missing required field {missing[0]!r}" if len(missing) == 1 else \
                f"missing required fields {', '.join(map(repr, missing))}"
        case "type":
            names = [_TYPE_NAMES[name] for name in ([expected] if isinstance(expected, str) else expected)]
            return f"must be {' or '.join(names)}, not {_describe(instance)}"
        case "enum":
            return f"must be one of {', '.join(map(str, expected))}, not {_short(instance)}"
        case "minimum":
            return f"must be at least {expected}"
        case "maximum":
            return f"must be at most {expected}"
        case "minItems":  # always 1 in these schemas
            return "must not be empty"
    return error.message  # keywords whose schemas all carry an errorMessage


# --- one document -------------------------------------------------------------


def _without_invalid_parts(doc: _Document, errors: list[jsonschema.ValidationError]) -> model.Object | None:
    """The object of a schema-invalid document with the invalid fields left out, so that its other problems
    (policy, references, capacity) come in the same round; None when leaving them out does not make it valid.
    The document's problems reject the revision anyway: this object is only checked, never applied."""
    body = copy.deepcopy(doc.body)
    for error in errors:
        path = tuple(error.absolute_path)
        keys = [path + (key,) for key in error.instance if key not in error.schema.get("properties", {})] \
            if error.validator == "additionalProperties" and isinstance(error.instance, dict) else [path]
        for key_path in keys:
            if not key_path or not _remove(body, key_path):
                return None
    if any(True for _ in _validators()[doc.kind].iter_errors(body)):
        return None
    return _CONVERTERS[doc.kind](replace(doc, body=body))


def _remove(value: Any, path: JsonPath) -> bool:
    """Remove the item at `path` (a list item becomes None, keeping the other indexes); False if it is gone."""
    for part in path[:-1]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(value, dict) and path[-1] in value:
        del value[path[-1]]
        return True
    return False


def _identify(doc: _Document) -> None:
    """The document's name and namespace, as far as its metadata gives them."""
    metadata = doc.body.get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name")
        doc.name = name if isinstance(name, str) else ""
        namespace = metadata.get("namespace", model.DEFAULT_NAMESPACE)
        doc.namespace = namespace if isinstance(namespace, str) else model.DEFAULT_NAMESPACE


def _check_document(doc: _Document) -> model.Object | None:
    """Identify, schema-validate and convert one document; None if it is invalid.

    Problems go to `doc.problems`. A document whose identity is known is still
    counted by the cross-object checks even when its content is invalid."""
    body = doc.body
    _identify(doc)
    kind = body.get("kind")
    if "kind" not in body:
        doc.report((), "missing required field 'kind'")
        return None
    if isinstance(kind, str) and body.get("apiVersion") == _NO_OP_KINDS.get(kind):
        doc.warn(("kind",), f"a {kind} has no effect on a node (it grants access to the Kubernetes API, which "
                            "gitops-agent does not have): ignored")
        return None
    if isinstance(kind, str) and kind in _REFUSED_KINDS:
        doc.report(("kind",), f"kind {kind} is not supported by gitops-agent, and ignoring it would "
                              f"{_REFUSED_KINDS[kind]}: remove it")
        return None
    if not isinstance(kind, str) or kind not in _KINDS:
        doc.report(("kind",), f"kind {_short(kind)} is not supported by gitops-agent (supported: {', '.join(_KINDS)})")
        return None
    doc.kind = kind
    api_version = body.get("apiVersion")
    if api_version != _KINDS[kind]:
        found = "missing" if api_version is None else _short(api_version)
        doc.report(("apiVersion",), f"apiVersion for kind {kind} must be {_KINDS[kind]!r}, not {found}")
        return None

    _drop_server_set(body)
    _drop_empty_defaults(body)
    if kind == "Service":
        _drop_unset_node_ports(body)
    errors = list(_validators()[kind].iter_errors(body))
    for error in errors:
        for path, message in _schema_problems(error):
            doc.report(path, message)
    if kind == "Secret":  # also when the values are invalid: every problem in one round
        _check_secret_type(doc)
    if errors:
        return _without_invalid_parts(doc, errors)
    _warn_no_ops(doc)
    return _CONVERTERS[kind](doc)


# Fields the API server sets: ignored, as `kubectl apply` does, so that `kubectl create --dry-run=client -o yaml`
# and `podman kube generate` output is accepted as it is.
_SERVER_SET_METADATA = ("creationTimestamp", "uid", "resourceVersion", "generation", "managedFields", "selfLink")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What `podman kube generate` records about each container it ran (`io.kubernetes.cri-o.TTY/<container>`, ...).
_PODMAN_SET_ANNOTATIONS = ("io.kubernetes.cri-o.", "io.podman.annotations.")
# Keys whose empty mapping means "the defaults" in Kubernetes (never a volume source such as `emptyDir: {}`).
_EMPTY_MEANS_DEFAULTS = frozenset({
    "resources", "securityContext", "seLinuxOptions", "dnsConfig", "strategy", "updateStrategy", "rollingUpdate",
    "capabilities", "windowsOptions", "affinity", "nodeSelector", "limits", "requests",
})
_USER_KEYED = frozenset({"data", "stringData", "binaryData", "labels", "annotations"})  # keys are the user's


def _drop_server_set(body: dict[str, Any]) -> None:
    """Remove what the API server (or `podman kube generate`) sets (`status`, metadata's uid, timestamps, Podman's
    per-container annotations, a Pod's hostname equal to the one it gets anyway) before validation."""
    body.pop("status", None)
    spec = body.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    for owner in (body, template):
        metadata = owner.get("metadata") if isinstance(owner, dict) else None
        if not isinstance(metadata, dict):
            continue
        for key in _SERVER_SET_METADATA:
            metadata.pop(key, None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(_LAST_APPLIED, None)
            for key in [key for key in annotations if key.startswith(_PODMAN_SET_ANNOTATIONS)]:
                del annotations[key]
    pod_spec = spec if body.get("kind") == "Pod" and isinstance(spec, dict) else {}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("namespace", model.DEFAULT_NAMESPACE) == model.DEFAULT_NAMESPACE \
            and isinstance(pod_spec.get("hostname"), str) and pod_spec["hostname"] == metadata.get("name"):
        del pod_spec["hostname"]  # `podman kube generate` writes it: the hostname this Pod gets anyway


def _drop_empty_defaults(value: Any) -> None:
    """Remove, at any depth, the `{}` values of keys where an empty mapping means the defaults."""
    if isinstance(value, dict):
        for key in [key for key, item in value.items() if item == {} and key in _EMPTY_MEANS_DEFAULTS]:
            del value[key]
        for key, item in value.items():
            if key not in _USER_KEYED:
                _drop_empty_defaults(item)
    elif isinstance(value, list):
        for item in value:
            _drop_empty_defaults(item)


# Kinds that only grant access to the Kubernetes API: accepted with a warning (kind -> apiVersion).
_NO_OP_KINDS = {
    "ServiceAccount": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
}
# Kinds that would change security or traffic if they were ignored: errors (kind -> what ignoring would do).
_REFUSED_KINDS = {
    "NetworkPolicy": "leave open the traffic it denies",
    "Ingress": "leave unserved the traffic it routes",
    "PodSecurityPolicy": "let run the pods it forbids",
}
# Fields accepted without effect on a node (README, "No-op fields and kinds"): scope -> field -> why.
NO_OP_FIELDS: dict[str, dict[str, str]] = {
    "pod": {
        "serviceAccountName": "no Kubernetes API: pods get no service-account token",
        "serviceAccount": "no Kubernetes API: pods get no service-account token",
        "automountServiceAccountToken": "no Kubernetes API: pods get no service-account token",
        "priorityClassName": "no preemption: every pod that fits its node runs",
        "priority": "no preemption: every pod that fits its node runs",
        "preemptionPolicy": "no preemption: every pod that fits its node runs",
        "schedulerName": "gitops-agent places the pods itself",
        "enableServiceLinks": "no Service environment variables are set: Services are DNS names",
        "dnsPolicy": "ClusterFirst is the default: names resolve through the pod network's DNS server",
    },
    "container": {
        "terminationMessagePath": "no termination message is collected: see the container's log",
        "terminationMessagePolicy": "no termination message is collected: see the container's log",
    },
    "service": {
        "sessionAffinity": "None is the default: a Service is a DNS name of its pods' addresses",
    },
}


def _warn_no_ops(doc: _Document) -> None:
    """One warning per no-op field of a valid document."""
    if doc.kind == "Service":
        scopes = [(("spec",), doc.body["spec"], "service")]
    elif doc.kind in _POD_SPEC_PATHS:
        path = _POD_SPEC_PATHS[doc.kind]
        spec = doc.body
        for key in path:
            spec = spec[key]
        scopes = [(path, spec, "pod")]
        for group in ("initContainers", "containers"):
            scopes += [(path + (group, i), c, "container") for i, c in enumerate(spec.get(group, []))]
    else:
        return
    for path, value, scope in scopes:
        for key, why in NO_OP_FIELDS[scope].items():
            if key in value:
                doc.warn(path + (key,), f"{key} has no effect here ({why}): ignored")


_POD_SPEC_PATHS: dict[str, JsonPath] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
}


def _drop_unset_node_ports(body: dict[str, Any]) -> None:
    """`nodePort: 0` means unset in Kubernetes (as `kubectl get -o yaml` of a ClusterIP Service may show)."""
    spec = body.get("spec")
    ports = spec.get("ports") if isinstance(spec, dict) else None
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict) and port.get("nodePort") == 0 and not isinstance(port["nodePort"], bool):
            del port["nodePort"]


def _namespace(doc: _Document) -> model.Namespace:
    return model.Namespace(doc.ref, doc.origin)


# Secret type -> the keys it must hold (any one of them for basic-auth), as the API server checks them.
_SECRET_TYPE_KEYS = {
    "Opaque": ((), False),
    "kubernetes.io/tls": (("tls.crt", "tls.key"), False),
    "kubernetes.io/basic-auth": (("username", "password"), True),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",), False),
}


def _check_secret_type(doc: _Document) -> None:
    """The keys the Secret's type requires (an unknown type is the schema's problem)."""
    secret_type = doc.body.get("type", "Opaque")
    if not isinstance(secret_type, str) or secret_type not in _SECRET_TYPE_KEYS:
        return
    keys = {key for name in ("data", "stringData") if isinstance(doc.body.get(name), dict) for key in doc.body[name]}
    required, any_one = _SECRET_TYPE_KEYS[secret_type]
    missing = [key for key in required if key not in keys]
    if any_one and len(missing) == len(required):
        doc.report(("type",), f"a Secret of type {secret_type} needs key {' or '.join(map(repr, required))}")
    elif not any_one and missing:
        doc.report(("type",), f"a Secret of type {secret_type} needs key {', '.join(map(repr, missing))}")


def _config_data(doc: _Document) -> model.ConfigData:
    # (field, decoder) in merge order: Secret stringData wins over data.
    fields = (("data", str.encode), ("binaryData", base64.b64decode)) if doc.kind == "ConfigMap" else \
        (("data", base64.b64decode), ("stringData", str.encode))
    data: dict[str, bytes] = {}
    for name, decode in fields:
        for key, text in doc.body.get(name, {}).items():
            path = (name, key)
            if doc.kind == "ConfigMap" and key in data:
                doc.report(path, f"key {key!r} is also in data")
            value = decode(text)
            if len(value) > _MAX_VALUE_BYTES:
                doc.report(path, f"value is {len(value)} bytes; Podman's secret store holds at most {_MAX_VALUE_BYTES}")
            data[key] = value
    secret_type = doc.body.get("type", "Opaque") if doc.kind == "Secret" else "Opaque"
    if secret_type in pullauth.SECRET_KEYS:
        _check_pull_secret(doc, secret_type, data)
    return model.ConfigData(doc.ref, doc.origin, data, type=secret_type)


def _check_pull_secret(doc: _Document, secret_type: str, data: Mapping[str, bytes]) -> None:
    """A registry-credential Secret has its one key, in docker config format; no message quotes a value."""
    key = pullauth.SECRET_KEYS[secret_type]
    if key not in data:
        doc.report(("data",), f"a Secret of type {secret_type} needs the key {key!r} (in data or stringData)")
        return
    field_name = "stringData" if key in doc.body.get("stringData", {}) else "data"
    try:
        pullauth.parse(data[key], secret_type == pullauth.DOCKERCONFIGJSON, str(doc.ref))
    except ValueError as e:
        doc.report((field_name, key), str(e))


def _claim(doc: _Document) -> model.Claim:
    storage = doc.body["spec"]["resources"]["requests"]["storage"]
    return model.Claim(doc.ref, doc.origin, storage=str(storage))


def _with_storage_class(doc: _Document, claim: model.Claim, classes: Mapping[str, model.StorageClass]) -> model.Claim:
    """The claim with its storageClassName's driver and options; an unknown class is a problem."""
    name = doc.body["spec"].get("storageClassName", "")
    if not name:
        return claim
    if name not in classes:
        known = ", ".join(sorted(classes)) or "none"
        doc.report(("spec", "storageClassName"), f"storage class {name!r} is not in the agent config's "
                   f"storageClasses (known: {known}); define it there, or remove the field for the default volume")
        return claim
    return replace(claim, storage_class=classes[name])


def _pod(doc: _Document) -> model.Workload:
    metadata = doc.body["metadata"]
    labels, annotations = metadata.get("labels", {}), metadata.get("annotations", {})
    template = _pod_template(doc, ("spec",), doc.body["spec"], labels, annotations)
    for key in annotations:
        if key.startswith(model.ROLLOUT_ANNOTATION_PREFIX):
            doc.report(("metadata", "annotations", key), "rollout knobs apply to Deployments and DaemonSets, not Pods")
    return model.Workload(
        doc.ref, doc.origin, template, replicas=1, strategy="Recreate", labels=labels, annotations=annotations
    )


def _deployment(doc: _Document) -> model.Workload:
    spec = doc.body["spec"]
    strategy = spec.get("strategy", {})
    strategy_type = strategy.get("type", "RollingUpdate")
    rolling = strategy.get("rollingUpdate", {})
    rolling_update = model.RollingUpdate(rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"))
    if strategy_type == "RollingUpdate":
        _check_rolling_update(doc, ("spec", "strategy", "rollingUpdate"), rolling_update)
    return _controller(
        doc,
        replicas=spec.get("replicas", 1),
        strategy=strategy_type,
        rolling_update=rolling_update,
        progress_deadline_seconds=_progress_deadline(doc, spec),
    )


def _daemonset(doc: _Document) -> model.Workload:
    """One pod per matching node; Kubernetes' DaemonSet rolling-update defaults (maxSurge 0, maxUnavailable 1)."""
    rolling = doc.body["spec"].get("updateStrategy", {}).get("rollingUpdate", {})
    rolling_update = model.RollingUpdate(rolling.get("maxSurge", 0), rolling.get("maxUnavailable", 1))
    _check_rolling_update(doc, ("spec", "updateStrategy", "rollingUpdate"), rolling_update)
    return _controller(doc, replicas=1, strategy="RollingUpdate", rolling_update=rolling_update)


def _replication_controller(doc: _Document) -> model.Workload:
    """Pods of one template, like a Deployment's, that `plan` never rolls (see schemas/replicationcontroller.json)."""
    spec = doc.body["spec"]
    if "name" in spec["template"]["metadata"]:
        doc.warn(("spec", "template", "metadata", "name"),
                 "name has no effect here (pod names are derived from the ReplicationController's): ignored")
    selector = spec.get("selector") or spec["template"]["metadata"].get("labels", {})
    if not selector:
        doc.report(("spec", "selector"), "needs a selector or template labels to select its pods by")
    return _controller(doc, selector=selector, replicas=spec.get("replicas", 1), strategy="RollingUpdate",
                       rolling_update=model.RollingUpdate(0, 1))


def _controller(doc: _Document, selector: Mapping[str, str] | None = None, **fields: Any) -> model.Workload:
    """A Deployment, DaemonSet or ReplicationController: the fields they share, plus the kind-specific `fields`."""
    spec, metadata = doc.body["spec"], doc.body["metadata"]
    template_metadata = spec["template"]["metadata"]
    template = _pod_template(
        doc,
        ("spec", "template", "spec"),
        spec["template"]["spec"],
        template_metadata.get("labels", {}),
        template_metadata.get("annotations", {}),
    )
    selector = spec["selector"]["matchLabels"] if selector is None else selector
    missing = [f"{key}={value}" for key, value in selector.items() if template.labels.get(key) != value]
    if missing:
        doc.report(
            ("spec", "selector") + (("matchLabels",) if doc.kind != "ReplicationController" else ()),
            f"selector does not match the template labels: {', '.join(missing)} not in spec.template.metadata.labels",
        )
    annotations = metadata.get("annotations", {})
    return model.Workload(
        doc.ref,
        doc.origin,
        template,
        selector=selector,
        revision_history_limit=spec.get("revisionHistoryLimit", 10),
        labels=metadata.get("labels", {}),
        annotations=annotations,
        min_ready_seconds=spec.get("minReadySeconds", 0),
        node_rollout=_node_rollout(doc, annotations),
        **fields,
    )


def _check_rolling_update(doc: _Document, path: JsonPath, rolling_update: model.RollingUpdate) -> None:
    if _is_zero(rolling_update.max_surge) and _is_zero(rolling_update.max_unavailable):
        doc.report(path, "maxSurge and maxUnavailable cannot both be 0")


def _progress_deadline(doc: _Document, spec: dict[str, Any]) -> int:
    """progressDeadlineSeconds, which Kubernetes requires to be greater than minReadySeconds."""
    deadline, min_ready = spec.get("progressDeadlineSeconds", 600), spec.get("minReadySeconds", 0)
    if deadline <= min_ready:
        given = "progressDeadlineSeconds" in spec
        path = ("spec", "progressDeadlineSeconds" if given else "minReadySeconds")
        shown = f"{deadline}" if given else f"{deadline}, the default"
        doc.report(path, f"progressDeadlineSeconds ({shown}) must be greater than minReadySeconds ({min_ready})")
    return deadline


def _node_rollout(doc: _Document, annotations: Mapping[str, str]) -> model.NodeRollout:
    """The `rollout.gitops-agent.io/` annotations of a Deployment or DaemonSet."""
    knobs: dict[str, Any] = {}
    for key, value in annotations.items():
        knob = key.removeprefix(model.ROLLOUT_ANNOTATION_PREFIX)
        if knob == key:
            continue
        path = ("metadata", "annotations", key)
        if knob not in _KNOBS:
            close = difflib.get_close_matches(knob, _KNOBS, n=1)
            hint = f"did you mean {model.ROLLOUT_ANNOTATION_PREFIX + close[0]!r}?" if close else \
                f"known: {', '.join(model.ROLLOUT_ANNOTATION_PREFIX + name for name in _KNOBS)}"
            doc.report(path, f"unknown rollout knob {_short(key)} ({hint})")
            continue
        name, parse_value, form = _KNOBS[knob]
        parsed = parse_value(value)
        if parsed is None:
            doc.report(path, f"must be {form}, not {_short(value)}")
        else:
            knobs[name] = parsed
    return model.NodeRollout(**knobs)


def _parallel_nodes(value: str) -> int | str | None:
    """A count ("2" -> 2) or a percentage ("50%"); None unless the count is positive and the percentage 1-100."""
    match = re.fullmatch(r"([0-9]{1,9})(%?)", value)
    if match is None or int(match[1]) < 1 or (match[2] and int(match[1]) > 100):
        return None
    return f"{int(match[1])}%" if match[2] else int(match[1])


def _seconds(value: str) -> int | None:
    """Whole seconds ("60" -> 60); None unless a number from 0 to 2147483647."""
    if re.fullmatch(r"[0-9]{1,10}", value) is None or int(value) > 2**31 - 1:
        return None
    return int(value)


# rollout.gitops-agent.io/<knob> -> (NodeRollout field, parser returning None when invalid, the allowed form)
_KNOBS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "max-parallel-nodes": (
        "max_parallel_nodes",
        _parallel_nodes,
        'a positive number of nodes such as "2", or a percentage of the nodes from "1%" to "100%"',
    ),
    "auto-rollback": ("auto_rollback", {"true": True, "false": False}.get, '"true" or "false"'),
    "unreachable-node-timeout": (
        "unreachable_node_timeout",
        _seconds,
        'a whole number of seconds such as "60"',
    ),
}


def _is_zero(amount: int | str) -> bool:
    return int(str(amount).rstrip("%")) == 0


def _service(doc: _Document) -> model.Service:
    spec = doc.body["spec"]
    ports = tuple(
        model.ServicePort(
            port=port["port"],
            target_port=port.get("targetPort", port["port"]),
            protocol=port.get("protocol", "TCP"),
            node_port=port.get("nodePort"),
            name=port.get("name"),
        )
        for port in spec["ports"]
    )
    if len(ports) > 1:
        for index, port in enumerate(ports):
            if port.name is None:
                doc.report(("spec", "ports", index), "a Service with several ports must name each one")
    _report_duplicates(
        doc, ((("spec", "ports", i, "name"), p.name) for i, p in enumerate(ports) if p.name), "port name"
    )
    _report_duplicates(
        doc, ((("spec", "ports", i, "port"), f"{p.port}/{p.protocol}") for i, p in enumerate(ports)), "port"
    )
    return model.Service(doc.ref, doc.origin, spec["selector"], ports, spec.get("type", "ClusterIP"))


def _report_duplicates(doc: _Document, items: Iterable[tuple[JsonPath, str]], what: str) -> None:
    seen: set[str] = set()
    for path, value in items:
        if value in seen:
            doc.report(path, f"duplicate {what} {value!r}")
        seen.add(value)


def _pod_template(
    doc: _Document, prefix: JsonPath, spec: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]
) -> model.PodTemplate:
    pod_context = spec.get("securityContext", {})
    containers = tuple(
        _container(doc, prefix + ("containers", i), c, pod_context) for i, c in enumerate(spec["containers"])
    )
    if spec.get("hostNetwork", False):
        containers = tuple(_host_network_ports(doc, prefix + ("containers", i), c) for i, c in enumerate(containers))
    inits = tuple(
        _init_container(doc, prefix + ("initContainers", i), c, pod_context)
        for i, c in enumerate(spec.get("initContainers", ()))
    )
    processes = model.PodTemplate({}, containers, init_containers=inits)  # what the checks of every container see
    if not spec.get("hostNetwork", False):
        for group, i, container in _every_container(processes):
            for j, env in enumerate(container.env):
                if env.field_path == "status.podIP":
                    doc.report(prefix + (group, i, "env", j, "valueFrom", "fieldRef", "fieldPath"),
                               f"status.podIP is not supported by gitops-agent ({_POD_IP_ONLY_ON_HOST})")
    volumes = tuple(_volume(volume) for volume in spec.get("volumes", ()))
    for i, volume in enumerate(volumes):
        if volume.kind == "emptyDir" and volume.size_limit is not None and volume.medium != "Memory":
            doc.report(prefix + ("volumes", i, "emptyDir", "sizeLimit"), _DISK_SIZE_LIMIT)
        elif volume.kind == "emptyDir" and volume.size_limit == 0:
            doc.report(prefix + ("volumes", i, "emptyDir", "sizeLimit"),
                       "must be greater than zero (omit it for no limit)")
    _report_duplicates(
        doc, ((prefix + (group, i, "name"), c.name)
              for group, group_containers in (("initContainers", inits), ("containers", containers))
              for i, c in enumerate(group_containers)), "container name"
    )
    _report_duplicates(doc, ((prefix + ("volumes", i, "name"), v.name) for i, v in enumerate(volumes)), "volume name")
    _check_resource_refs(doc, prefix, processes)
    declared = {volume.name for volume in volumes}
    for group, i, container in _every_container(processes):
        mounts = prefix + (group, i, "volumeMounts")
        _report_duplicates(
            doc, ((mounts + (j, "mountPath"), m.mount_path) for j, m in enumerate(container.volume_mounts)), "mountPath"
        )
        for j, mount in enumerate(container.volume_mounts):
            if mount.name not in declared:
                doc.report(mounts + (j, "name"), f"volume {mount.name!r} is not declared in the pod's volumes")
    return model.PodTemplate(
        labels=labels,
        containers=containers,
        volumes=volumes,
        restart_policy=spec.get("restartPolicy", "Always"),
        termination_grace_period_seconds=spec.get("terminationGracePeriodSeconds", 30),
        node_selector=spec.get("nodeSelector", {}),
        annotations=annotations,
        host_network=spec.get("hostNetwork", False),
        host_pid=spec.get("hostPID", False),
        host_ipc=spec.get("hostIPC", False),
        image_pull_secrets=tuple(ref["name"] for ref in spec.get("imagePullSecrets", ())),
        **_placement(doc, prefix, spec, labels),
        fs_group=pod_context.get("fsGroup"),
        init_containers=inits,
    )


# What Kubernetes refuses on an init container: it runs to completion, so it is never probed, hooked or served.
_NOT_FOR_INIT = ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle")


def _init_container(
    doc: _Document, path: JsonPath, container: dict[str, Any], pod_context: dict[str, Any]
) -> model.Container:
    for key in _NOT_FOR_INIT:
        if key in container:
            doc.report(path + (key,), "is not allowed in an init container (it runs to completion before the "
                                      "app containers start)")
    for i, port in enumerate(container.get("ports", ())):
        if "hostPort" in port:
            doc.report(path + ("ports", i, "hostPort"), "is not supported by gitops-agent in an init container (it "
                                                        "exits before the app containers start: publish the port "
                                                        "of an app container)")
    return _container(doc, path, {k: v for k, v in container.items() if k not in _NOT_FOR_INIT}, pod_context)


def _placement(doc: _Document, prefix: JsonPath, spec: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The PodTemplate fields of `affinity` and `tolerations`, with Kubernetes' checks of the operators."""
    affinity = spec.get("affinity", {})
    node = affinity.get("nodeAffinity", {})
    path = prefix + ("affinity", "nodeAffinity")
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", ())
    preferred = node.get("preferredDuringSchedulingIgnoredDuringExecution", ())
    anti = affinity.get("podAntiAffinity", {})
    anti_terms = [(prefix + ("affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", i), t)
                  for i, t in enumerate(anti.get("requiredDuringSchedulingIgnoredDuringExecution", ()))]
    anti_terms += [(prefix + ("affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", i,
                              "podAffinityTerm"), t["podAffinityTerm"])
                   for i, t in enumerate(anti.get("preferredDuringSchedulingIgnoredDuringExecution", ()))]
    for term_path, term in anti_terms:
        wanted = term["labelSelector"]["matchLabels"]
        if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
            doc.report(term_path + ("labelSelector",), "must select this workload's own pods (a subset of its "
                       "labels): gitops-agent places each workload on its own, so only anti-affinity of a "
                       "workload's own pods is supported")
    required_path = path + ("requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
    preferred_path = path + ("preferredDuringSchedulingIgnoredDuringExecution",)
    return {
        "node_affinity": tuple(_term(doc, required_path + (i,), t) for i, t in enumerate(required)),
        "preferred_affinity": tuple(
            (p["weight"], _term(doc, preferred_path + (i, "preference"), p["preference"]))
            for i, p in enumerate(preferred)
        ),
        "one_per_node": bool(anti.get("requiredDuringSchedulingIgnoredDuringExecution")),
        "tolerations": tuple(
            model.Toleration(t.get("key", ""), t.get("operator", "Equal"), t.get("value", ""), t.get("effect", ""))
            for t in spec.get("tolerations", ())
        ),
    }


def _term(doc: _Document, path: JsonPath, term: dict[str, Any]) -> tuple[model.Requirement, ...]:
    """A nodeSelectorTerm's requirements (ANDed); matchFields name the node as metadata.name."""
    requirements = []
    for field_name in ("matchExpressions", "matchFields"):
        for i, req in enumerate(term.get(field_name, ())):
            where = path + (field_name, i)
            values = tuple(req.get("values", ()))
            operator = req["operator"]
            if field_name == "matchFields" and req["key"] != "metadata.name":
                doc.report(where + ("key",), "must be metadata.name, the only node field there is")
            if operator in ("In", "NotIn") and not values:
                doc.report(where + ("values",), f"must have at least one value for operator {operator}")
            elif operator in ("Exists", "DoesNotExist") and values:
                doc.report(where + ("values",), f"must be empty for operator {operator}")
            elif operator in ("Gt", "Lt") and (len(values) != 1 or not re.fullmatch(r"-?[0-9]+", values[0])):
                doc.report(where + ("values",), f"must be one integer for operator {operator}")
            requirements.append(model.Requirement(req["key"], operator, values))
    return tuple(requirements)


def _check_resource_refs(doc: _Document, prefix: JsonPath, pod: model.PodTemplate) -> None:
    """Each resourceFieldRef names a container of the pod, and a limit that container sets (Kubernetes would
    use the node's allocatable amount, which gitops-agent does not know)."""
    by_name = {c.name: c for _, _, c in _every_container(pod)}
    for group, i, container in _every_container(pod):
        for j, env in enumerate(container.env):
            if env.resource is None:
                continue
            path = prefix + (group, i, "env", j, "valueFrom", "resourceFieldRef")
            target = by_name.get(env.resource.container)
            if target is None:
                doc.report(path + ("containerName",), f"{env.resource.container!r} is not a container of this pod")
            elif env.resource.resource.startswith("limits.") and desired.resource_amount(target, env.resource) is None:
                doc.report(path + ("resource",), f"container {target.name!r} sets no {env.resource.resource}: "
                           "gitops-agent does not know the node's allocatable amount; set the limit")


def _host_network_ports(doc: _Document, path: JsonPath, container: model.Container) -> model.Container:
    """On the host network a containerPort is a port of the node: as in Kubernetes, hostPort defaults to
    containerPort and must equal it."""
    ports = []
    for j, port in enumerate(container.ports):
        if port.host_port is not None and port.host_port != port.container_port:
            doc.report(path + ("ports", j, "hostPort"),
                       f"must equal containerPort ({port.container_port}) with hostNetwork: true")
        ports.append(replace(port, host_port=port.container_port))
    return replace(container, ports=tuple(ports))


_REF_KINDS = {
    "configMapKeyRef": "ConfigMap",
    "secretKeyRef": "Secret",
    "configMapRef": "ConfigMap",
    "secretRef": "Secret",
}


def _container(
    doc: _Document, path: JsonPath, container: dict[str, Any], pod_context: dict[str, Any]
) -> model.Container:
    ports = tuple(
        model.ContainerPort(port["containerPort"], port.get("protocol", "TCP"), port.get("hostPort"), port.get("name"))
        for port in container.get("ports", ())
    )
    probes: dict[str, Any] = {
        field_name: _probe(doc, path + (key,), container[key], container["name"], ports)
        for key, field_name in _PROBE_FIELDS.items()
        if key in container
    }
    limits = _resources(doc, path + ("resources", "limits"), container.get("resources", {}).get("limits", {}))
    hooks = {
        field_name: _probe(doc, path + ("lifecycle", key), container["lifecycle"][key], container["name"], ports)
        for key, field_name in (("postStart", "post_start"), ("preStop", "pre_stop"))
        if key in container.get("lifecycle", {})
    }
    return model.Container(
        name=container["name"],
        image=container["image"],
        image_pull_policy=container.get("imagePullPolicy") or _default_pull_policy(container["image"]),
        command=tuple(container.get("command", ())),
        args=tuple(container.get("args", ())),
        env=tuple(_env_var(doc, path + ("env", i), env, container["name"])
                  for i, env in enumerate(container.get("env", ()))),
        env_from=tuple(_env_from(source) for source in container.get("envFrom", ())),
        ports=ports,
        resources=limits,
        requests=_requests(doc, path + ("resources", "requests"), container.get("resources", {}), limits),
        volume_mounts=tuple(
            model.VolumeMount(mount["name"], mount["mountPath"], mount.get("readOnly", False))
            for mount in container.get("volumeMounts", ())
        ),
        working_dir=container.get("workingDir"),
        **probes,
        **hooks,
        **_security_context(doc, path + ("securityContext",), container.get("securityContext", {}), pod_context),
    )


# Pod securityContext fields that are defaults of each container's, as in Kubernetes.
_POD_CONTEXT_DEFAULTS = ("runAsUser", "runAsGroup", "runAsNonRoot")


def _security_context(
    doc: _Document, path: JsonPath, own: dict[str, Any], pod_context: dict[str, Any]
) -> dict[str, Any]:
    """The container fields of a securityContext, the pod's values as defaults, with Kubernetes'
    consistency checks."""
    context = {**{k: pod_context[k] for k in _POD_CONTEXT_DEFAULTS if k in pod_context}, **own}
    capabilities = context.get("capabilities", {})
    fields: dict[str, Any] = {
        "privileged": context.get("privileged", False),
        "cap_add": _capabilities(doc, path + ("capabilities", "add"), capabilities.get("add", [])),
        "cap_drop": _capabilities(doc, path + ("capabilities", "drop"), capabilities.get("drop", [])),
        "read_only_root_fs": context.get("readOnlyRootFilesystem", False),
        "run_as_user": context.get("runAsUser"),
        "run_as_group": context.get("runAsGroup"),
        "allow_privilege_escalation": context.get("allowPrivilegeEscalation", True),
        "supplemental_groups": tuple(dict.fromkeys(pod_context.get("supplementalGroups", ()))),
        "run_as_non_root": bool(context.get("runAsNonRoot", False)),
    }
    def where(key: str) -> JsonPath:  # the container's own field, or the pod's it came from
        return path + (key,) if key in own else path[:-3] + ("securityContext", key)

    if "runAsGroup" in context and "runAsUser" not in context:
        doc.report(where("runAsGroup"), "runAsGroup needs runAsUser (Podman sets the user and group together)")
    if context.get("runAsNonRoot") and context.get("runAsUser") == 0:  # without runAsUser the node checks the image
        doc.report(where("runAsNonRoot"), "runAsNonRoot: true contradicts runAsUser: 0")
    if not fields["allow_privilege_escalation"]:  # Kubernetes' own validation
        if fields["privileged"]:
            doc.report(path + ("allowPrivilegeEscalation",), "cannot be false with privileged: true")
        elif "SYS_ADMIN" in fields["cap_add"]:
            doc.report(path + ("allowPrivilegeEscalation",), "cannot be false with capability SYS_ADMIN")
    return fields


_PROBE_FIELDS = {
    "livenessProbe": "liveness_probe",
    "readinessProbe": "readiness_probe",
    "startupProbe": "startup_probe",
}
_PROBE_ACTIONS = ("exec", "httpGet", "tcpSocket", "grpc")


def _probe(
    doc: _Document, path: JsonPath, probe: dict[str, Any], container: str, ports: tuple[model.ContainerPort, ...]
) -> model.Probe:
    """A probe with Kubernetes' defaults; a named port becomes its containerPort number."""
    (action,) = (name for name in _PROBE_ACTIONS if name in probe)  # exactly one, by the schema
    handler = probe[action]
    if action == "grpc" and path[-1] == "livenessProbe":
        doc.report(path + ("grpc",), "a gRPC liveness probe cannot run: liveness is Podman's healthcheck, which runs "
                   "in the container (so it works while the agent is down) and speaks no gRPC; use grpc in a "
                   "readinessProbe or startupProbe (run by the agent), or an exec liveness probe with a health client "
                   "from the image (such as grpc_health_probe)")
    port = handler.get("port", 0)
    return model.Probe(
        action=action,
        command=tuple(handler.get("command", ())),
        port=_probe_port(doc, path + (action, "port"), port, container, ports) if isinstance(port, str) else port,
        path=handler.get("path", "/"),
        scheme=handler.get("scheme", "HTTP"),
        host=handler.get("host", ""),
        headers=tuple((header["name"], header["value"]) for header in handler.get("httpHeaders", ())),
        service=handler.get("service", ""),
        initial_delay_seconds=probe.get("initialDelaySeconds", 0),
        period_seconds=probe.get("periodSeconds", 10),
        timeout_seconds=probe.get("timeoutSeconds", 1),
        success_threshold=int(probe.get("successThreshold", 1)),  # `const: 1` also admits 1.0
        failure_threshold=probe.get("failureThreshold", 3),
    )


def _probe_port(
    doc: _Document, path: JsonPath, name: str, container: str, ports: tuple[model.ContainerPort, ...]
) -> int:
    """The containerPort named `name` in the probe's own container; 0 (and a problem) if there is none."""
    for port in ports:
        if port.name == name:
            return port.container_port
    names = [port.name for port in ports if port.name]
    available = f"its port names: {', '.join(map(repr, names))}" if names else "it has no named ports"
    doc.report(path, f"port {name!r} is not a containerPort name of container {container!r} ({available})")
    return 0


def _default_pull_policy(image: str) -> str:
    """Kubernetes' default: Always for tag `latest` or no tag and no digest, else IfNotPresent."""
    reference, _, digest = image.partition("@")
    tag = reference.rsplit("/", 1)[-1].partition(":")[2]
    return "Always" if tag == "latest" or not (tag or digest) else "IfNotPresent"


# fieldRef paths known when the pod is created; metadata.labels/annotations take a key: ['KEY'].
_FIELD_PATHS = re.compile(r"metadata\.name|metadata\.namespace|spec\.nodeName|status\.hostIP|status\.podIP"
                          r"|metadata\.(labels|annotations)\['([^'\]]+)'\]")
_LATE_FIELDS = {
    "status.podIPs": "use status.podIP, with hostNetwork: true",
    "status.hostIPs": "use status.hostIP",
}
_POD_IP_ONLY_ON_HOST = ("Podman assigns a pod's address when it starts, after its environment is fixed; inside the "
                        "pod its hostname (metadata.name) resolves to it. With hostNetwork: true it is the node's "
                        "address (nodes[].address)")


def _env_var(doc: _Document, path: JsonPath, env: dict[str, Any], container: str) -> model.EnvVar:
    if "valueFrom" not in env:
        return model.EnvVar(env["name"], value=env.get("value", ""))
    ((field_name, selector),) = env["valueFrom"].items()  # exactly one, by the schema
    where = path + ("valueFrom", field_name)
    if field_name == "fieldRef":
        field_path = selector["fieldPath"]
        if field_path in _LATE_FIELDS:
            doc.report(where + ("fieldPath",), f"{field_path} is not supported by gitops-agent "
                                               f"({_LATE_FIELDS[field_path]})")
        elif not _FIELD_PATHS.fullmatch(field_path):
            doc.report(where + ("fieldPath",), f"unknown fieldPath {_short(field_path)} (supported: metadata.name, "
                       "metadata.namespace, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, "
                       "status.hostIP, status.podIP)")
        return model.EnvVar(env["name"], field_path=field_path)
    if field_name == "resourceFieldRef":
        resource = selector["resource"]
        per_unit = 1000 if resource.endswith(".cpu") else 1
        divisor = _quantity(doc, where + ("divisor",), selector.get("divisor", 1), per_unit, (1, 2**63 - 1, ""))
        return model.EnvVar(env["name"], resource=model.ResourceFieldRef(
            selector.get("containerName", container), resource, divisor or 1))
    ref = model.KeyRef(_REF_KINDS[field_name], selector["name"], selector["key"], selector.get("optional", False))
    return model.EnvVar(env["name"], ref=ref)


def _env_from(source: dict[str, Any]) -> model.EnvFrom:
    field_name = "configMapRef" if "configMapRef" in source else "secretRef"
    selector = source[field_name]
    optional = selector.get("optional", False)
    return model.EnvFrom(_REF_KINDS[field_name], selector["name"], source.get("prefix", ""), optional)


_VOLUME_SOURCES = {  # volume source -> (field naming the object, kind of that object)
    "configMap": ("name", "ConfigMap"),
    "secret": ("secretName", "Secret"),
    "persistentVolumeClaim": ("claimName", "PersistentVolumeClaim"),
}


_DISK_SIZE_LIMIT = ("is not supported by gitops-agent for an emptyDir on the node's disk (Podman cannot limit the "
                    "size of a local volume without project quotas); remove it, or use medium: Memory (a tmpfs of "
                    "that size)")


def _volume(volume: dict[str, Any]) -> model.Volume:
    ((kind, source),) = ((k, v) for k, v in volume.items() if k != "name")  # exactly one, by the schema
    if kind == "hostPath":
        return model.Volume(volume["name"], kind, _normpath(source["path"]), host_path_type=source.get("type", ""))
    if kind == "emptyDir":
        limit = source.get("sizeLimit")
        return model.Volume(volume["name"], kind, "", medium=source.get("medium", ""),
                            size_limit=None if limit is None else config.quantity(limit, 1))
    return model.Volume(
        name=volume["name"],
        kind=kind,
        source=source[_VOLUME_SOURCES[kind][0]],
        items=tuple(model.KeyToPath(item["key"], item["path"]) for item in source.get("items", ())),
        default_mode=source.get("defaultMode", 0o644),
        read_only=source.get("readOnly", False),
        optional=source.get("optional", False),
    )


def _normpath(path: str) -> str:
    """An absolute path without '..' (by the schema), with '.', repeated and trailing '/' removed."""
    return "/" + "/".join(part for part in path.split("/") if part not in ("", "."))


def _under(path: str, prefix: str) -> bool:
    """`path` is `prefix` or below it, by whole components (/var/log/app is under /var/log; /var/logs is not)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


# Linux capabilities (capabilities(7)), as Kubernetes names them; ALL is every one.
_CAPABILITIES = frozenset("""
    AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
    DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
    MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
    SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM ALL
""".split())


def _capabilities(doc: _Document, path: JsonPath, names: list[str]) -> tuple[str, ...]:
    """Capability names in upper case without the CAP_ prefix (`drop: [all]` is ALL), one per list item
    (so indexes stay those of the manifest); an unknown name is a problem."""
    result = tuple(name.upper().removeprefix("CAP_") for name in names)
    for i, (name, bare) in enumerate(zip(names, result)):
        if bare not in _CAPABILITIES:
            close = difflib.get_close_matches(bare, _CAPABILITIES, n=1)
            doc.report(path + (i,), f"unknown capability {_short(name)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return result


# The range the node accepts, in sub-units, and why the minimum. CPU becomes a CFS quota of millicores x
# 100 us per 100 ms period: the kernel refuses a quota under 1 ms (Podman: "cannot be less than 1ms") or
# over 2^44-1 us. Memory: runc's own start needs about 2.5 MB in the container's cgroup, so a limit of
# 3 MiB fails every start and 4 MiB works (measured); the count is an int64.
_CPU_MILLIS = (10, (2**44 - 1) // 100, "must be at least 10m: the kernel refuses a CPU quota under 1 ms per 100 ms")
_MEMORY_BYTES = (4 << 20, 2**63 - 1, "must be at least 4Mi: the container runtime alone needs about 2.5 MB to start")


# Requests may be zero (no claim); a CPU request is a CPU-shares weight, which the kubelet floors at 2.
_CPU_REQUEST_MILLIS = (0, (2**44 - 1) // 100, "")
_MEMORY_REQUEST_BYTES = (0, 2**63 - 1, "")


def _resources(doc: _Document, path: JsonPath, limits: dict[str, Any]) -> model.Resources:
    return model.Resources(
        cpu_millis=_quantity(doc, path + ("cpu",), limits.get("cpu"), per_unit=1000, bounds=_CPU_MILLIS),
        memory_bytes=_quantity(doc, path + ("memory",), limits.get("memory"), per_unit=1, bounds=_MEMORY_BYTES),
    )


def _requests(doc: _Document, path: JsonPath, resources: dict[str, Any], limits: model.Resources) -> model.Resources:
    """`resources.requests`, each at most its limit (Kubernetes' own validation)."""
    requests = resources.get("requests", {})
    wanted = model.Resources(
        cpu_millis=_quantity(doc, path + ("cpu",), requests.get("cpu"), per_unit=1000, bounds=_CPU_REQUEST_MILLIS),
        memory_bytes=_quantity(
            doc, path + ("memory",), requests.get("memory"), per_unit=1, bounds=_MEMORY_REQUEST_BYTES
        ),
    )
    for name, asked, limit in (("cpu", wanted.cpu_millis, limits.cpu_millis),
                               ("memory", wanted.memory_bytes, limits.memory_bytes)):
        if asked is not None and limit is not None and asked > limit:
            doc.report(path + (name,), f"must be less than or equal to the {name} limit "
                                       f"({_short(resources['limits'][name])})")
    return wanted


def _quantity(
    doc: _Document, path: JsonPath, quantity: int | float | str | None, per_unit: int, bounds: tuple[int, int, str]
) -> int | None:
    """A schema-valid quantity in whole (rounded-up) sub-units: millicores for CPU, bytes for memory."""
    if quantity is None:
        return None
    amount = config.quantity(quantity, per_unit)  # schema-valid: digits, at most one ".", an optional suffix
    if amount <= 0 and bounds[0] == 0:
        return None  # a zero request claims nothing
    if amount <= 0:
        doc.report(path, "must be greater than zero (omit the limit for no limit)")
    elif amount < bounds[0]:
        doc.report(path, bounds[2])
    elif amount > bounds[1]:
        doc.report(path, "is too large")
    return amount


_CONVERTERS: dict[str, Callable[[_Document], model.Object]] = {
    "Namespace": _namespace,
    "ConfigMap": _config_data,
    "Secret": _config_data,
    "PersistentVolumeClaim": _claim,
    "Pod": _pod,
    "Deployment": _deployment,
    "DaemonSet": _daemonset,
    "ReplicationController": _replication_controller,
    "Service": _service,
}


# --- across documents ---------------------------------------------------------


def _check_revision(entries: list[tuple[_Document, model.Object | None]], policy: model.Policy) -> None:
    """Checks between objects and against the agent's policy; problems go to the document at fault."""
    declared: dict[model.ObjectRef, _Document] = {}
    for doc, _ in entries:
        if not (doc.kind and doc.name):
            continue
        first = declared.setdefault(doc.ref, doc)
        if first is not doc:
            where = f"{quote_path(first.file)}:{first.lines[()]}"
            doc.report(("metadata", "name"), f"duplicate object: {doc.ref} is also declared at {where}")
    _check_pod_name_clashes(declared.values())
    namespaces = {ref.name for ref in declared if ref.kind == "Namespace"}
    for doc, _ in entries:
        if doc.kind and doc.kind != "Namespace" and doc.namespace != model.DEFAULT_NAMESPACE \
                and doc.namespace not in namespaces:
            doc.report(("metadata", "namespace"), f"namespace {doc.namespace!r} is not declared in the repository")

    config = {obj.ref: obj for _, obj in entries if isinstance(obj, model.ConfigData)}
    workloads = [(doc, obj) for doc, obj in entries if isinstance(obj, model.Workload)]
    services = [(doc, obj) for doc, obj in entries if isinstance(obj, model.Service)]
    for doc, workload in workloads:
        _check_references(doc, workload, declared.keys(), config)
        _check_policy(doc, workload, policy)
        _check_podman_secrets(doc, workload, config)
    for doc, obj in entries:
        if isinstance(obj, model.Claim):
            _check_name_length(doc, "volume", desired.volume_name(obj.ref.namespace, obj.ref.name))
        elif isinstance(obj, model.Namespace):
            _check_name_length(doc, "network", desired.network_name(obj.ref.name))
    for doc, service in services:
        _check_service(doc, service, [workload for _, workload in workloads])
    _check_host_ports(workloads, services)


_NODE_PORTS = (30000, 32767)  # Kubernetes' default service-node-port-range


def _allocate_node_ports(
    entries: list[tuple[_Document, model.Object | None]]
) -> list[tuple[_Document, model.Object | None]]:
    """Each NodePort Service port without a nodePort gets one, as Kubernetes would allocate it, but
    deterministic: the port a hash of namespace, name, port and protocol picks in 30000-32767, or the next
    free one after it (wrapping) if a given nodePort, a LoadBalancer port, a hostPort or an earlier allocation
    holds it; allocations are made in the order of the picked ports, so a port moves only if a newly added
    Service picks the same one and sorts first. The same revision always gets the same ports; `status` shows
    them."""
    low, high = _NODE_PORTS
    taken = {(port, p.protocol) for _, o in entries if isinstance(o, model.Service) for port, p in o.published()}
    taken |= {(port.host_port, port.protocol) for _, o in entries if isinstance(o, model.Workload)
              for c in o.template.containers for port in c.ports if port.host_port}
    wanted: list[tuple[int, str, model.Service, int, _Document]] = []
    for doc, obj in entries:
        if isinstance(obj, model.Service) and obj.type == "NodePort":
            for i, port in enumerate(obj.ports):
                if port.node_port is None:
                    key = f"{obj.ref.namespace}/{obj.ref.name}/{port.port}/{port.protocol}"
                    pick = low + int(hashlib.sha256(key.encode()).hexdigest(), 16) % (high - low + 1)
                    wanted.append((pick, key, obj, i, doc))
    chosen: dict[tuple[model.ObjectRef, int], int] = {}
    for pick, _, service, i, doc in sorted(wanted, key=lambda w: (w[0], w[1])):
        protocol = service.ports[i].protocol
        port = next((low + (pick - low + step) % (high - low + 1) for step in range(high - low + 1)
                     if (low + (pick - low + step) % (high - low + 1), protocol) not in taken), None)
        if port is None:
            doc.report(("spec", "ports", i), f"no free node port is left in {low}-{high} for {protocol}")
            continue
        taken.add((port, protocol))
        chosen[(service.ref, i)] = port
    if not chosen:
        return entries
    return [(doc, replace(obj, ports=tuple(
                replace(p, node_port=chosen.get((obj.ref, i), p.node_port)) for i, p in enumerate(obj.ports))))
            if isinstance(obj, model.Service) else (doc, obj) for doc, obj in entries]


def _check_pod_name_clashes(docs: Iterable[_Document]) -> None:
    """A Deployment and a DaemonSet of one name and namespace would give their pods the same names."""
    owners: dict[tuple[str, str], _Document] = {}
    for doc in docs:  # in file order
        if doc.kind not in ("Deployment", "DaemonSet"):
            continue
        first = owners.setdefault((doc.namespace, doc.name), doc)
        if first is not doc:
            where = f"{quote_path(first.file)}:{first.lines[()]}"
            doc.report(
                ("metadata", "name"),
                f"{first.kind} {doc.name!r} at {where} has the same name in namespace {doc.namespace!r}; "
                "pods are named after their workload, so rename one",
            )


# Longest name Podman 4.3 accepts, per object (measured): a volume is a directory `<name>` (NAME_MAX), a
# network a file `<name>.json`, a secret name is at most 64 characters. Pods and containers have none
# (334-character container names work; the pod's hostname is cut to 63 by `podman`).
PODMAN_NAME_LIMITS = {"volume": 255, "network": 250, "secret": 64}


def _check_name_length(
    doc: _Document, what: str, name: str, path: JsonPath = ("metadata", "name"), subject: str = "its"
) -> None:
    limit = PODMAN_NAME_LIMITS[what]
    if len(name) > limit:
        doc.report(path, f"{subject} Podman {what} would be named {_short(name)} ({len(name)} characters), "
                         f"longer than Podman's limit of {limit}: use a shorter name")


def _check_podman_secrets(
    doc: _Document, workload: model.Workload, config: Mapping[model.ObjectRef, model.ConfigData]
) -> None:
    """Every key that becomes a Podman secret (a file of a mounted configMap/secret volume, a Secret's key
    in the environment) gets a name Podman accepts; a file is not empty, since Podman refuses a 0-byte
    secret (an empty Secret value in the environment is plain env: `desired` never stores it)."""
    prefix = _pod_spec_path(workload)
    namespace = workload.ref.namespace

    def check(path: JsonPath, kind: str, name: str, keys: Iterable[str] | None, use: str) -> None:
        source = config.get(model.ObjectRef(kind, namespace, name))
        if source is None:
            return  # absent (optional, or reported by _check_references) or itself invalid
        for key in sorted(source.data) if keys is None else keys:
            if key not in source.data:
                continue
            if not source.data[key]:
                if use == "mounted as a file":
                    doc.report(path, f"{kind} {name!r} key {key!r} is empty and {use}: Podman keeps files as "
                                     "secrets, and Podman secrets cannot be empty; give the key a value or leave "
                                     "it out of items")
                continue  # in the environment: plain env
            sname = desired.secret_name(source.ref, key, source.data[key])
            _check_name_length(doc, "secret", sname, path, f"{kind} {name!r} key {key!r} is {use}; its")

    volumes = {volume.name: (i, volume) for i, volume in enumerate(workload.template.volumes)}
    mounted = {mount.name for _, _, container in _every_container(workload.template)
               for mount in container.volume_mounts}
    for name in sorted(mounted & volumes.keys()):
        i, volume = volumes[name]
        if volume.kind not in ("configMap", "secret"):
            continue
        kind = _VOLUME_SOURCES[volume.kind][1]
        source = prefix + ("volumes", i, volume.kind)
        if volume.items:
            for j, item in enumerate(volume.items):
                check(source + ("items", j, "key"), kind, volume.source, [item.key], "mounted as a file")
        else:
            check(source + (_VOLUME_SOURCES[volume.kind][0],), kind, volume.source, None, "mounted as a file")
    for group, i, container in _every_container(workload.template):
        for j, env in enumerate(container.env):
            if env.ref is not None and env.ref.kind == "Secret":
                path = prefix + (group, i, "env", j, "valueFrom", "secretKeyRef", "key")
                check(path, "Secret", env.ref.name, [env.ref.key], "in the environment")
        for j, env_from in enumerate(container.env_from):
            if env_from.kind == "Secret":
                path = prefix + (group, i, "envFrom", j, "secretRef", "name")
                check(path, "Secret", env_from.name, None, "in the environment")


def _check_capacity(
    workloads: list[tuple[_Document, model.Workload]], nodes: tuple[NodeConfig, ...], limits: model.NodeLimits
) -> None:
    """The revision stays within the config's `limits:`, counted from placement alone (no pod is built)."""
    for doc, workload in workloads:
        if len(workload.template.containers) > limits.max_containers_per_pod:
            doc.report(_pod_spec_path(workload) + ("containers",),
                       f"{len(workload.template.containers)} containers in one pod; "
                       f"limits.maxContainersPerPod is {limits.max_containers_per_pod}")
    if not workloads:
        return
    per_node = {node.name: [(desired.replicas_on(w, node, nodes), doc) for doc, w in workloads] for node in nodes}
    total = sum(count for counts in per_node.values() for count, _ in counts)

    def largest(counts: Iterable[tuple[int, _Document]]) -> _Document:
        return max(counts, key=lambda item: item[0])[1]

    def report(doc: _Document, message: str) -> None:
        doc.report(("spec", "replicas") if doc.kind == "Deployment" else (), message)

    if total > limits.max_replicas_per_revision:
        summed = [(sum(counts[i][0] for counts in per_node.values()), doc) for i, (doc, _) in enumerate(workloads)]
        report(largest(summed), f"the revision would run {total} pods over all nodes; "
                                f"limits.maxReplicasPerRevision is {limits.max_replicas_per_revision}")
    full = sorted(((sum(c for c, _ in counts), name) for name, counts in per_node.items()
                   if sum(c for c, _ in counts) > limits.max_pods_per_node), reverse=True)
    if full:
        shown = ", ".join(f"{name} {count}" for count, name in full[:3])
        shown += f" and {len(full) - 3} more" if len(full) > 3 else ""
        report(largest(per_node[full[0][1]]), f"{len(full)} node(s) would run more than limits.maxPodsPerNode "
                                              f"({limits.max_pods_per_node}) pods: {shown}")
    for node in nodes:
        placed = [(count, doc, w) for (count, doc), (_, w) in zip(per_node[node.name], workloads)]
        _check_requests(node, placed)
        if node.address is None:
            _check_host_ip(node, placed)


def _check_host_ip(node: NodeConfig, placed: list[tuple[int, _Document, model.Workload]]) -> None:
    """status.hostIP (and a hostNetwork pod's status.podIP) is the node's `address` in the agent config."""
    for count, doc, workload in placed:
        for group, i, container in _every_container(workload.template) if count else ():
            for j, env in enumerate(container.env):
                if env.field_path == "status.hostIP" or (env.field_path == "status.podIP"
                                                         and workload.template.host_network):
                    path = _pod_spec_path(workload) + (group, i, "env", j, "valueFrom", "fieldRef", "fieldPath")
                    doc.report(path, f"{env.field_path} is the node's address, and node {node.name} has none in the "
                                     "agent config: set its nodes[].address")


def _check_requests(node: NodeConfig, placed: list[tuple[int, _Document, model.Workload]]) -> None:
    """The pods placed on a node that declares a capacity request no more than it (Kubernetes' scheduler
    would leave them pending; here the revision is rejected, naming the node)."""
    for resource, capacity, show in (("cpu", node.cpu_millis, lambda m: f"{m}m"),
                                     ("memory", node.memory_bytes, lambda b: f"{b} bytes")):
        if capacity is None:
            continue
        asks = [(count * _pod_request(w.template, resource), doc, w)
                for count, doc, w in placed if count]
        total = sum(amount for amount, _, _ in asks)
        if total <= capacity:
            continue
        amount, doc, w = max(asks, key=lambda item: item[0])
        doc.report(_pod_spec_path(w) + ("containers",),
                   f"the pods placed on node {node.name} request {show(total)} of {resource} in all, more than its "
                   f"capacity.{resource} ({show(capacity)}); {w.ref.kind}/{w.ref.name} requests {show(amount)} there")


def _pod_request(template: model.PodTemplate, resource: str) -> int:
    """What one pod requests, as Kubernetes' scheduler counts it: its app containers' sum, or its largest init
    container's request when that is larger (init containers run one at a time, before the app containers)."""
    return max(sum(_request(c, resource) for c in template.containers),
               max((_request(c, resource) for c in template.init_containers), default=0))


def _request(container: model.Container, resource: str) -> int:
    requests = desired.effective_requests(container)
    return (requests.cpu_millis if resource == "cpu" else requests.memory_bytes) or 0


def _pod_spec_path(workload: model.Workload) -> JsonPath:
    return ("spec",) if workload.ref.kind == "Pod" else ("spec", "template", "spec")


def _check_references(
    doc: _Document,
    workload: model.Workload,
    declared: Set[model.ObjectRef],
    config: Mapping[model.ObjectRef, model.ConfigData],
) -> None:
    """ConfigMaps, Secrets, their keys and claims named by the pod exist in its namespace (unless optional)."""
    namespace = workload.ref.namespace

    def check(path: JsonPath, kind: str, name: str, keys: Iterable[tuple[JsonPath, str]] = ()) -> None:
        ref = model.ObjectRef(kind, namespace, name)
        if ref not in declared:
            doc.report(path, f"{kind} {name!r} does not exist in namespace {namespace!r}")
            return
        source = config.get(ref)  # None when that object is itself invalid: nothing more to check
        for key_path, key in keys:
            if source is not None and key not in source.data:
                doc.report(key_path, f"{kind} {name!r} has no key {key!r}")

    prefix = _pod_spec_path(workload)
    for i, name in enumerate(workload.template.image_pull_secrets):
        path = prefix + ("imagePullSecrets", i, "name")
        check(path, "Secret", name)
        secret = config.get(model.ObjectRef("Secret", namespace, name))
        if secret is not None and secret.type not in pullauth.SECRET_KEYS:
            doc.report(path, f"Secret {name!r} is of type {secret.type}; imagePullSecrets need type "
                             f"{pullauth.DOCKERCONFIGJSON} or {pullauth.DOCKERCFG}")
    for group, i, container in _every_container(workload.template):
        for j, env in enumerate(container.env):
            if env.ref is not None and not env.ref.optional:
                selector = prefix + (group, i, "env", j, "valueFrom", _ref_field(env.ref.kind, "KeyRef"))
                check(selector + ("name",), env.ref.kind, env.ref.name, [(selector + ("key",), env.ref.key)])
        for j, env_from in enumerate(container.env_from):
            if not env_from.optional:
                selector = prefix + (group, i, "envFrom", j, _ref_field(env_from.kind, "Ref"))
                check(selector + ("name",), env_from.kind, env_from.name)
    for i, volume in enumerate(workload.template.volumes):
        if volume.optional or volume.kind in ("hostPath", "emptyDir"):
            continue
        source = prefix + ("volumes", i, volume.kind)
        name_field, kind = _VOLUME_SOURCES[volume.kind]
        keys = [(source + ("items", j, "key"), item.key) for j, item in enumerate(volume.items)]
        check(source + (name_field,), kind, volume.source, keys)


def _check_policy(doc: _Document, workload: model.Workload, policy: model.Policy) -> None:
    """Every privileged feature the pod asks for is allowed by the agent's policy, reported at its field."""
    prefix = _pod_spec_path(workload)
    template = workload.template
    for used, allowed, key, what in (
        (template.host_network, policy.allow_host_network, "hostNetwork", "the host network"),
        (template.host_pid, policy.allow_host_pid, "hostPID", "the host PID namespace"),
        (template.host_ipc, policy.allow_host_ipc, "hostIPC", "the host IPC namespace"),
    ):
        if used and not allowed:
            doc.report(prefix + (key,), f"{what} is not allowed by the agent policy (policy.allow{key[0].upper()}{key[1:]})")
    allowed_caps = set(policy.allowed_capabilities)
    shown_caps = ", ".join(policy.allowed_capabilities) or "none"
    for group, i, container in _every_container(template):
        context = prefix + (group, i, "securityContext")
        if container.privileged and not policy.allow_privileged:
            doc.report(context + ("privileged",),
                       "privileged containers are not allowed by the agent policy (policy.allowPrivileged)")
        if "*" in allowed_caps:
            continue
        for j, cap in enumerate(container.cap_add):
            if cap not in allowed_caps:
                doc.report(context + ("capabilities", "add", j),
                           f"capability {cap} is not in policy.allowedCapabilities (allowed: {shown_caps})")
    rules = policy.allowed_host_paths
    shown_paths = ", ".join(map(str, rules)) or "none"
    for i, volume in enumerate(template.volumes):
        if volume.kind != "hostPath":
            continue
        matching = [rule for rule in rules if _under(volume.source, rule.path_prefix)]
        if not matching:
            doc.report(prefix + ("volumes", i, "hostPath", "path"),
                       f"hostPath {volume.source} is outside policy.allowedHostPaths (allowed: {shown_paths})")
            continue
        if any(not rule.read_only for rule in matching):
            continue
        for group, c, container in _every_container(template):
            for j, mount in enumerate(container.volume_mounts):
                if mount.name == volume.name and not mount.read_only:
                    doc.report(
                        prefix + (group, c, "volumeMounts", j),
                        "a writable hostPath mount needs an allowedHostPaths entry without readOnly "
                        f"({volume.source} matches only {', '.join(map(str, matching))}); set readOnly: true on the mount",
                    )


def _every_container(template: model.PodTemplate) -> Iterator[tuple[str, int, model.Container]]:
    """(field, index, container) of the init containers, then of the app containers: every process of the pod."""
    for group, containers in (("initContainers", template.init_containers), ("containers", template.containers)):
        for i, container in enumerate(containers):
            yield group, i, container


def _ref_field(kind: str, suffix: str) -> str:
    """`configMapKeyRef`, `secretRef`, ... for a referenced kind."""
    return ("configMap" if kind == "ConfigMap" else "secret") + suffix


def _selects(service: model.Service, workload: model.Workload) -> bool:
    return workload.ref.namespace == service.ref.namespace and all(
        workload.template.labels.get(key) == value for key, value in service.selector.items()
    )


def _check_service(doc: _Document, service: model.Service, workloads: list[model.Workload]) -> None:
    """Named target ports exist in the selected pods; a NodePort Service selects at most one pod."""
    selected = [workload for workload in workloads if _selects(service, workload)]
    for workload in selected:
        if workload.template.host_network:
            doc.report(
                ("spec", "selector"),
                f"selects {workload.ref.kind}/{workload.ref.name}, which uses hostNetwork: its pods are not on the "
                "namespace network, so they get no Service name or node port; reach them at the node's address",
            )
    for i, port in enumerate(service.ports):
        if not isinstance(port.target_port, str):
            continue
        for workload in selected:
            names = {p.name for container in workload.template.containers for p in container.ports}
            if port.target_port not in names:
                owner = f"{workload.ref.kind}/{workload.ref.name}"
                message = f"targetPort {port.target_port!r} is not a container port name of {owner}"
                doc.report(("spec", "ports", i, "targetPort"), message)
    pods = sum(workload.replicas for workload in selected)
    if service.published() and pods > 1:
        described = ", ".join(f"{w.replicas} of {w.ref.kind}/{w.ref.name}" for w in selected if w.replicas)
        doc.report(
            ("spec", "selector"),
            f"a {service.type} Service selects {pods} pods ({described}), but only one pod on a node can own "
            "a node port",
        )


@dataclass(frozen=True)
class _HostPort:
    """A port bound on the node, by a container's hostPort or a Service's nodePort."""

    port: int
    protocol: str
    doc: _Document
    path: JsonPath

    @property
    def where(self) -> str:
        return f"{self.doc.kind}/{self.doc.name} at {quote_path(self.doc.file)}:{self.doc.line_of(self.path)}"


def _check_host_ports(
    workloads: list[tuple[_Document, model.Workload]], services: list[tuple[_Document, model.Service]]
) -> None:
    """All pods of a revision run on one node, so a (port, protocol) can be bound once."""
    claims: list[_HostPort] = []
    for doc, workload in workloads:
        prefix = _pod_spec_path(workload)
        for i, container in enumerate(workload.template.containers):
            for j, port in enumerate(container.ports):
                if port.host_port is None:
                    continue
                path = prefix + ("containers", i, "ports", j, "hostPort")
                claim = _HostPort(port.host_port, port.protocol, doc, path)
                claims.append(claim)
                _check_single_owner(claim, workload, f"hostPort {port.host_port}/{port.protocol}")
    for doc, service in services:
        key = "nodePort" if service.type == "NodePort" else "port"
        for host_port, sport in service.published():
            i = service.ports.index(sport)
            path = ("spec", "ports", i, key) if key in doc.body["spec"]["ports"][i] else ("spec", "ports", i)
            claim = _HostPort(host_port, sport.protocol, doc, path)
            claims.append(claim)
            for workload in (w for _, w in workloads if _selects(service, w) and w.replicas > 0):
                what = f"{key} {host_port}/{sport.protocol} is served by {workload.ref.kind}/{workload.ref.name}"
                _check_surge(claim, workload, what)

    owners: dict[tuple[int, str], _HostPort] = {}
    for claim in sorted(claims, key=lambda c: (c.doc.file, c.doc.line_of(c.path))):
        first = owners.setdefault((claim.port, claim.protocol), claim)
        if first is not claim:
            claim.doc.report(
                claim.path, f"host port {claim.port}/{claim.protocol} is already used by {first.where}"
            )


def _check_single_owner(claim: _HostPort, workload: model.Workload, what: str) -> None:
    """A workload binding a host port can run one pod at a time on the node."""
    if workload.replicas > 1:
        claim.doc.report(
            claim.path,
            f"{what}: {workload.replicas} replicas would run {workload.replicas} pods on one node, "
            "and only one of them can bind the port; use replicas: 1",
        )
    _check_surge(claim, workload, what)


def _check_surge(claim: _HostPort, workload: model.Workload, what: str) -> None:
    if workload.strategy == "RollingUpdate" and not _is_zero(workload.rolling_update.max_surge):
        fix = "use maxSurge: 0" if workload.ref.kind == "DaemonSet" else "use strategy Recreate or maxSurge: 0"
        claim.doc.report(
            claim.path,
            f"{what}: a RollingUpdate with maxSurge {workload.rolling_update.max_surge} starts the new pod "
            f"while the old one still holds the port; {fix}",
        )
