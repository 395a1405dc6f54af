"""TODO schema"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from ..errors import Problem
from .document import KINDS, Document, JsonPath, describe, json_path, short


def check_value(value: Any, schema: Mapping[str, Any]) -> list[Problem]:
    """`value` (already parsed, so without lines) checked against `schema`: every problem found."""
    return [Problem("", 0, "", path, message) for _, path, message in located_problems(value, {(): 0}, schema)]


def located_problems(value: Any, lines: Mapping[JsonPath, int], schema: Mapping[str, Any]) -> Iterator[tuple[int, str, str]]:
    """(line, JSON path, message) of every schema problem of `value`, in path order."""
    located = Document("", {}, dict(lines))
    found = []
    for error in _Validator(schema).iter_errors(value):
        for path, message in schema_problems(error):
            found.append((located.line_of(path), json_path(path), message))
    yield from sorted(dict.fromkeys(found))


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
def kind_validators() -> dict[str, jsonschema.protocols.Validator]:
    """One validator per kind, from `schemas/<kind>.json`; `_defs.json` resolved by `$ref`."""
    schemas = {entry.name: json.loads(entry.read_text(encoding="utf-8"))
               for entry in resources.files(_SCHEMA_PACKAGE).iterdir() if entry.name.endswith(".json")}
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return {kind: _Validator(schemas[f"{kind.lower()}.json"], registry=registry) for kind in KINDS}


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}


def schema_problems(error: jsonschema.ValidationError) -> Iterator[tuple[JsonPath, str]]:
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
                yield path + (key,), f"unknown field {short(key)}{suggestion}"
        return
    message = schema.get("errorMessage", {}).get(error.validator) or _message(error)
    if "propertyNames" in error.relative_schema_path:  # the instance is a key of the mapping at `path`
        yield path + (error.instance,), f"key {short(error.instance)} {message}"
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
            return f"must be {' or '.join(names)}, not {describe(instance)}"
        case "enum":
            return f"must be one of {', '.join(map(str, expected))}, not {short(instance)}"
        case "minimum":
            return f"must be at least {expected}"
        case "maximum":
            return f"must be at most {expected}"
        case "minItems":  # always 1 in these schemas
            return "must not be empty"
    return error.message  # keywords whose schemas all carry an errorMessage
