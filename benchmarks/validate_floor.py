"""The floor of `validate` (issue 14): the least work that still reads and schema-checks every manifest.

Every `.yaml`/`.yml` file under DIR is read, parsed with libyaml (`yaml.load_all(..., Loader=yaml.CSafeLoader)`)
and each document is checked with jsonschema against the project's own `schemas/<kind>.json` (`$ref`s resolved
through a `referencing` registry, as the schemas are written), collecting every error. No limits, no line
numbers, no cross-object checks, no conversion: what `manifests.parse` does on top is its overhead over this.

    python -m benchmarks.validate_floor DIR     # prints the seconds of one pass
"""

from __future__ import annotations

import json
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@cache
def validators() -> dict[str, Any]:
    """kind -> a Draft 2020-12 validator of `schemas/<kind>.json` (built once, like the agent's)."""
    schemas = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values())
    return {name: jsonschema.Draft202012Validator(s, registry=registry)
            for name, s in schemas.items() if not name.startswith("_")}


def check(root: Path, by_file: Mapping[str, Any] | None = None) -> int:
    """Parse and schema-check every manifest under `root`; the number of documents. `by_file`: other
    validators (file name -> validator) instead of the schemas as written."""
    by_file = validators() if by_file is None else by_file
    documents = 0
    for path in sorted(root.rglob("*.y*ml")):
        for doc in yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader):
            if isinstance(doc, dict):
                documents += 1
                validator = by_file.get(f"{str(doc.get('kind', '')).lower()}.json")
                if validator is not None:
                    list(validator.iter_errors(doc))
    return documents


def seconds(root: Path, by_file: Mapping[str, Any] | None = None) -> float:
    """The time of one `check(root, by_file)` (validators already built)."""
    validators()
    t0 = time.perf_counter()
    check(root, by_file)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"{seconds(Path(sys.argv[1])):.3f}")
