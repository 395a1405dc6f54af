"""Per-node variables of one revision: where they come from, and what they make of each node's objects.

Sits between the checkout (its files already decrypted by `sops`, so a SOPS-encrypted `substituteFrom` Secret
is read in plaintext, in memory) and `manifests.parse`, which substitutes and validates per node:

- `sources`: the config's `substituteFrom` ConfigMaps and Secrets, read from the revision's own manifests as
  written (their own `${...}` are not substituted), each key a variable of the lowest precedence
  (`substitute.node_variables`). A missing entry that is not `optional` is a Problem naming it: the revision
  is rejected, never substituted with a variable silently gone.
- `for_node`: one node's variables (its `vars:`, labels, `${NODE_NAME}`, then the sources).
- `substituted`: every value substitution changes on one node, with its FILE:LINE, for `validate --node` and
  `diff` to show; a value taken from a Secret, or put into a Secret, is shown as `(from Secret x)` /
  `(in Secret x)`, one from a SOPS-encrypted ConfigMap as `(from ConfigMap x, SOPS-encrypted)`, never as itself.

Pure over its inputs: no Git, no Podman, no clock, no output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import NodeConfig, SubstituteFrom
from .errors import Problem, quote_path
from .manifests import SourceFile, read_documents, substitutions
from .manifests.document import Document, json_path
from .substitute import ANNOTATION, Variable, Where, node_variables, variables_from

Sources = tuple[Mapping[str, Variable], ...]


def _matches(doc: Document, entry: SubstituteFrom) -> bool:
    return doc.body.get("kind") == entry.kind and doc.name == entry.name and doc.namespace == entry.namespace


def _missing(index: int, entry: SubstituteFrom) -> Problem:
    message = (f"the {entry.kind} {entry.namespace}/{entry.name} is not in the revision's manifests (add it, or "
               "set optional: true to substitute without it)")
    return Problem("", 0, "", f"substituteFrom[{index}]", message)


def sources(files: Sequence[SourceFile], entries: Sequence[SubstituteFrom],
            encrypted: frozenset[str] = frozenset()) -> tuple[Sources, list[Problem]]:
    """The variables of each `substituteFrom` entry found in `files` (in the config's order: a later one wins),
    and the problems: a missing entry that is not optional, a key that is not a variable name, a Secret's
    `data` value that is not base64. `encrypted`: the paths `sops` decrypted (their values are never shown).
    No problem quotes a value."""
    if not entries:
        return (), []
    documents = read_documents(files)
    found: list[Mapping[str, Variable]] = []
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        doc = next((d for d in documents if _matches(d, entry)), None)
        if doc is None:
            if not entry.optional:
                problems.append(_missing(index, entry))
            continue
        where = Where(doc.file, f"{entry.kind}/{entry.name}", doc.line_of, doc.quoted.__contains__)
        variables, bad = variables_from(entry.kind, doc.body, where, doc.file in encrypted)
        found.append(variables)
        problems += bad
    return tuple(found), problems


def for_node(node: NodeConfig, found: Sources) -> dict[str, Variable]:
    """One node's variables: its `vars:`, its labels, the built-ins, then the `substituteFrom` sources."""
    return node_variables(node.name, node.vars, node.labels, found)


@dataclass(frozen=True)
class Change:
    """One value that substitution changes on a node: where it is, and how it may be shown."""

    file: str
    line: int
    object: str  # "Kind/name"
    path: str  # JSON path inside the object
    shown: str  # the value as JSON, or `(from Secret x)` / `(in Secret x)`

    def __str__(self) -> str:
        return f"{quote_path(self.file)}:{self.line}: {self.object}: {self.path}: {self.shown}"

    def to_json(self) -> dict[str, str | int]:
        return {"file": self.file, "line": self.line, "object": self.object, "path": self.path, "value": self.shown}


def substituted(files: Sequence[SourceFile], variables: Mapping[str, Variable],
                documents: Sequence[Document] | None = None) -> list[Change]:
    """Every value the node's `variables` change in the objects that opt in (of `documents`, the files' when
    None), sorted by file and line; a value from or in a Secret is shown as where it comes from
    (`substitute.Substituted.shown`)."""
    changes: list[Change] = []
    docs = read_documents(files) if documents is None else documents
    for _, where, result in substitutions(docs, files, variables):
        changes += [Change(where.file, where.line_of(item.path), where.object, json_path(item.path), item.shown())
                    for item in result.changed]
    return sorted(changes, key=lambda change: (change.file, change.line))


def shown(files: Sequence[SourceFile], entries: Sequence[SubstituteFrom], nodes: Sequence[NodeConfig],
          encrypted: frozenset[str] = frozenset()) -> dict[str, list[Change]]:
    """What `validate --node` and `diff` show: each node's substituted values (`substituted`); `encrypted`: the
    paths `sops` decrypted. The sources' problems are left out: `agent.parse_for_nodes` has rejected a
    revision that has any."""
    if not any(ANNOTATION.encode() in file.data for file in files):  # no object opts in
        return {node.name: [] for node in nodes}
    found, _ = sources(files, entries, encrypted)
    documents = read_documents(files)
    return {node.name: substituted(files, for_node(node, found), documents) for node in nodes}
