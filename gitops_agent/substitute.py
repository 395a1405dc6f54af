"""Per-node variables: Flux's `postBuild.substitute` syntax in the string values of parsed manifests.

Sits between YAML parsing (`manifests` reads a file into plain values and the line of every JSON path)
and validation: for each node, every object that opts in is copied with its `${NAME}` references
replaced by that node's variables, and the result is validated per node. Pure: no I/O, no clock.

- Syntax: `${NAME}`, `${NAME:=default}` and `${NAME:-default}` (both use the default when NAME is
  undefined or empty), `$${NAME}` for the literal text `${NAME}`. A `$` not followed by `{` is text.
  NAME is `[A-Za-z_][A-Za-z0-9_]*`. An undefined variable without a default is a Problem, never "".
- Values only, after parsing: keys and structure are never touched, so a variable cannot inject YAML.
- Types: a plain (unquoted) scalar that is exactly one reference, such as `replicas: ${R}`, takes the
  type its text has in JSON/YAML 1.2 (`3` an int, `0.5` a float, `true`/`false` a bool); anything else
  stays a string: a quoted scalar (`value: "${PORT}"`), text around the reference (`app:${TAG}`),
  and ambiguous text (`007`, `yes`, `null`, `1_000`). This matches what Flux's text substitution gives
  for the usual cases, without YAML 1.1's surprises.
- Opt-in per object: the annotation `gitops-agent.io/substitute: enabled`; or per file: the comment
  line `# gitops-agent.io/substitute: enabled` among the comments that open the file (`file_opts_in`),
  for every object in it but those annotated `gitops-agent.io/substitute: disabled`. Off by default,
  because `${...}` is common in what is not a template (a shell script in a ConfigMap, a Grafana
  dashboard), and such an object must neither be changed nor rejected for an "undefined variable".
- Variables, by precedence: the node's `vars:`, its labels (`${NODE_LABEL_<key>}`, every character
  of the key that is not a letter, digit or `_` written `_`: `topology.kubernetes.io/zone` is
  `${NODE_LABEL_topology_kubernetes_io_zone}`), built-ins (`${NODE_NAME}`), then `substituteFrom`.
- Secrets: a variable from a Secret may be substituted only into a Secret's `data` or `stringData`
  (anywhere else its value would show in `diff`, `status` and `history`); every such value used is
  returned, for the redaction of messages. No message quotes a value or a manifest's text. Every value
  changed is listed (`Result.changed`, for `validate --node` and `diff`), a Secret's as its source only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, Problem

JsonPath = tuple[str | int, ...]
ANNOTATION = "gitops-agent.io/substitute"
ENABLED = "enabled"
DISABLED = "disabled"
FILE_MARKER = f"# {ANNOTATION}: {ENABLED}"
LABEL_PREFIX = "NODE_LABEL_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[=-])(?P<default>.*))?", re.DOTALL)
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass(frozen=True)
class Variable:
    """A variable's value (text) and where it comes from (for messages; never the value itself)."""

    value: str
    source: str
    secret: bool = False
    encrypted: bool = False  # read from a SOPS-encrypted file: shown as its source, never as itself


@dataclass(frozen=True)
class Where:
    """Where an object sits in the repository: what a Problem names. `line_of` and `quoted` come from the
    YAML loader: the line of a JSON path, and whether the scalar at a path was written quoted."""

    file: str
    object: str  # "Kind/name"
    line_of: Callable[[JsonPath], int]
    quoted: Callable[[JsonPath], bool]


@dataclass(frozen=True)
class Substituted:
    """One value that substitution changed, as `validate --node` and `diff` show it: its path, and what it
    became, or instead `hidden`: the Secret its variable came from, or the Secret it is in."""

    path: JsonPath
    value: Any
    hidden: str = ""

    def shown(self) -> str:
        """The value as JSON (`3`, `"8080"`), or `(from Secret x)` / `(in Secret x)`: never a Secret's value."""
        return self.hidden or json.dumps(self.value, ensure_ascii=False)


@dataclass(frozen=True)
class Result:
    """One object after substitution: the new body (the input is not changed), every problem found, the
    Secret-sourced values it now holds (to redact from any later message), and every value it changed."""

    body: dict[str, Any]
    problems: tuple[Problem, ...] = ()
    secret_values: frozenset[str] = field(default_factory=frozenset)
    changed: tuple[Substituted, ...] = ()


def label_variable(key: str) -> str:
    """The variable name of a node label: `NODE_LABEL_` and the key with every other character `_`."""
    return LABEL_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", key)


def node_variables(node: str, node_vars: Mapping[str, str], labels: Mapping[str, str],
                   sources: Sequence[Mapping[str, Variable]] = ()) -> dict[str, Variable]:
    """A node's variables: `sources` (substituteFrom, a later one winning) under the built-ins, under the
    labels, under the node's `vars:`. Two label keys with one variable name are a ConfigError."""
    found: dict[str, Variable] = {}
    for source in sources:
        found.update(source)
    found["NODE_NAME"] = Variable(node, "built-in")
    keys: dict[str, str] = {}
    for key, value in labels.items():
        name = label_variable(key)
        if name in keys:
            raise ConfigError(f"node {node}: labels {keys[name]!r} and {key!r} are both ${{{name}}}; rename one")
        keys[name] = key
        found[name] = Variable(value, f"label {key} of node {node}")
    for name, value in node_vars.items():
        if not NAME.fullmatch(name):
            raise ConfigError(f"node {node}: vars: {name!r} is not a variable name (letters, digits, _)")
        found[name] = Variable(value, f"vars of node {node}")
    return found


def variables_from(kind: str, body: Mapping[str, Any], where: Where,
                   encrypted: bool = False) -> tuple[dict[str, Variable], list[Problem]]:
    """The variables of a `substituteFrom` ConfigMap (`data`) or Secret (`data` base64-decoded, and
    `stringData`, which wins): one per key; a key that is not a variable name is a Problem. `encrypted`: the
    object's file was SOPS-encrypted (its values are then never shown, even a ConfigMap's)."""
    secret = kind == "Secret"
    found: dict[str, Variable] = {}
    problems: list[Problem] = []
    fields = ("data", "stringData") if secret else ("data",)
    for section in fields:
        for key, raw in (body.get(section) or {}).items():
            path: JsonPath = (section, key)
            if not NAME.fullmatch(key):
                problems.append(_problem(where, path, f"key {key!r} is not a variable name (letters, digits, _)"))
                continue
            text = str(raw)
            if secret and section == "data":
                try:
                    # line breaks ignored, as in Kubernetes (manifests.document.b64decode)
                    text = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    problems.append(_problem(where, path, "value is not base64-encoded UTF-8 text"))
                    continue
            found[key] = Variable(text, f"{kind} {where.object.partition('/')[2] or where.object}", secret, encrypted)
    return found, problems


def file_opts_in(data: bytes) -> bool:
    """True when the comment lines that open the file (before its first other line) include
    `# gitops-agent.io/substitute: enabled`: every object of the file opts in."""
    for raw in data.splitlines():
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        if not line.startswith("#"):
            return False
        if " ".join(line.split()) == FILE_MARKER:
            return True
    return False


def enabled(body: Mapping[str, Any], file_enabled: bool = False) -> bool:
    """True when the object opts in: `metadata.annotations["gitops-agent.io/substitute"]` is "enabled", or
    its file opts in (`file_opts_in`) and the annotation is not "disabled"."""
    metadata = body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    setting = annotations.get(ANNOTATION) if isinstance(annotations, Mapping) else None
    return setting == ENABLED or (file_enabled and setting != DISABLED)


def _problem(where: Where, path: JsonPath, message: str) -> Problem:
    return Problem(where.file, where.line_of(path), where.object, _json_path(path), message)


def _json_path(path: JsonPath) -> str:
    """`spec.replicas`, `env[0].value`, `labels["app.kubernetes.io/name"]` (as manifests prints them)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][-A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return text


def typed(text: str) -> bool | int | float | str:
    """What a plain scalar `${X}` becomes: the JSON/YAML 1.2 int, float or bool its text spells, else text."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return _BOOLS.get(text, text)


@dataclass
class _Expansion:
    text: str
    whole: bool  # the text was exactly one reference
    errors: list[str] = field(default_factory=list)
    used: list[Variable] = field(default_factory=list)


_SYNTAX = "${NAME}, ${NAME:=default} or ${NAME:-default}"


def _reference(text: str, start: int, end: int, variables: Mapping[str, Variable], found: _Expansion) -> str:
    """The replacement of the reference `text[start:end]` (without `${` and `}`)."""
    match = _REFERENCE.fullmatch(text, start, end)
    if match is None:
        found.errors.append(f"invalid variable reference at character {start - 1} (expected {_SYNTAX})")
        return text[start - 2:end + 1]
    name, has_default = match.group("name"), match.group("op") is not None
    variable = variables.get(name)
    if variable is not None and (variable.value or not has_default):
        found.used.append(variable)
        return variable.value
    if has_default:
        return match.group("default")
    found.errors.append(f"undefined variable {name} (no default: set it in the node's vars or labels, "
                        f"substituteFrom, or write ${{{name}:=default}})")
    return ""


def expand(text: str, variables: Mapping[str, Variable]) -> _Expansion:
    """`text` with every reference replaced; errors name variables and character positions, never text."""
    found = _Expansion("", whole=bool(re.fullmatch(r"\$\{[^}]*\}", text)))
    parts: list[str] = []
    position = 0
    while (dollar := text.find("$", position)) != -1:
        if text.startswith("$${", dollar):  # the literal text "${"
            parts.append(text[position:dollar] + "${")
            position = dollar + 3
        elif not text.startswith("${", dollar):
            parts.append(text[position:dollar + 1])
            position = dollar + 1
        elif (close := text.find("}", dollar + 2)) == -1:
            found.errors.append(f"unterminated reference at character {dollar + 1} "
                                "(close it with }, or write $${ for the text ${)")
            break
        else:
            parts.append(text[position:dollar] + _reference(text, dollar + 2, close, variables, found))
            position = close + 1
    parts.append(text[position:])
    found.text = "".join(parts)
    return found


@dataclass
class _Pass:
    """One object's substitution under way: what every value is checked against, and what was found."""

    variables: Mapping[str, Variable]
    where: Where
    secret_object: bool
    problems: list[Problem] = field(default_factory=list)
    secret_values: set[str] = field(default_factory=set)
    changed: list[Substituted] = field(default_factory=list)


def _hidden(found: _Expansion, run: _Pass, in_secret_data: bool) -> str:
    """How a changed value is shown: `(from Secret x)` when a Secret's variable is in it (or `(from ConfigMap x,
    SOPS-encrypted)`), `(in Secret x)` when it sits in a Secret's data; else "" (the value itself is shown)."""
    secret = next((variable for variable in found.used if variable.secret or variable.encrypted), None)
    if secret is not None:
        return f"(from {secret.source})" if secret.secret else f"(from {secret.source}, SOPS-encrypted)"
    return f"(in Secret {run.where.object.partition('/')[2]})" if in_secret_data else ""


def _scalar(text: str, path: JsonPath, run: _Pass) -> Any:
    """One string value after substitution (typed when it was a plain, whole reference outside a Secret)."""
    if "$" not in text:
        return text
    found = expand(text, run.variables)
    run.problems.extend(_problem(run.where, path, error) for error in found.errors)
    in_secret_data = run.secret_object and len(path) >= 2 and path[0] in ("data", "stringData")
    for variable in found.used:
        if not variable.secret:
            continue
        run.secret_values.add(variable.value)
        if not in_secret_data:
            run.problems.append(_problem(run.where, path, f"a variable from {variable.source} may be substituted "
                                         "only into a Secret's data or stringData (elsewhere diff, status and "
                                         "history would show it)"))
    value: Any = found.text
    if found.whole and not found.errors and not in_secret_data and not run.where.quoted(path):
        value = typed(found.text)
    if value != text:
        run.changed.append(Substituted(path, value, _hidden(found, run, in_secret_data)))
    return value


def _walk(value: Any, path: JsonPath, run: _Pass) -> Any:
    """A copy of `value` with its strings substituted; keys are kept as they are."""
    if isinstance(value, dict):
        return {key: _walk(item, path + (key,), run) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, path + (index,), run) for index, item in enumerate(value)]
    if isinstance(value, str):
        return _scalar(value, path, run)
    return value


def substitute(body: dict[str, Any], variables: Mapping[str, Variable], where: Where,
               file_enabled: bool = False) -> Result:
    """The object `body` for one node: unchanged unless it opts in (`enabled`: its annotation, or its file's
    comment, `file_enabled`, given by `file_opts_in`); else a copy with every
    reference in its string values replaced, the problems found (FILE:LINE of each value), and the
    Secret-sourced values it now holds, and the values it changed (`Substituted`). Problems never quote a value."""
    if not enabled(body, file_enabled):
        return Result(body)
    run = _Pass(variables, where, secret_object=body.get("kind") == "Secret")
    substituted = _walk(body, (), run)
    return Result(substituted, tuple(run.problems), frozenset(run.secret_values), tuple(run.changed))
