"""Manifest files (a Git checkout or a local directory) -> a validated `model.Revision`.

Sits between the source (the Git checkout, or `load_directory` for the `validate` command) and the desired-state
model that `desired`/`plan` consume. `parse` is a short pipeline over the package's modules; intake, yamlload,
schema, checks and policy return the problems they find, convert (per document) keeps them on the `Document`:

    intake     files within the limits (count, total and file size), as UTF-8 text; `load_directory`
    yamlload   the hardened line-tracking YAML loader (libyaml; alias bombs, deep nesting, tags refused)
    schema     jsonschema validation against `schemas/` and its messages
    convert    per kind, a schema-valid document -> a `model` object (and the per-document checks)
    checks     the objects against each other and against what the node would refuse (Podman's limits)
    policy     the config's `policy:` (privileged features) and `limits:` (placement arithmetic)

`read_checked` reads the agent config file the same way, against its own schema. No message quotes a Secret's
value (`document.redacted` is the net under that rule).

It must not talk to Git or Podman, follow symlinks, execute YAML tags, or return a partial revision: either every
document is valid and consistent, or `errors.RevisionRejected` carries every problem found, sorted by file and
line. The only I/O is reading a local directory in `intake.load_directory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import model
from ..config import NodeConfig
from ..errors import PolicyViolation, Problem, RevisionRejected
from .autoscaler import at_most
from .checks import PODMAN_NAME_LIMITS, allocate_node_ports, allocated_node_ports, check_revision
from .convert import NO_OP_FIELDS, check_document, with_storage_class
from .document import KIND_ORDER, Document, redacted
from .immutable import check_immutable
from .intake import (
    Limits,
    SourceFile,
    is_manifest_path,
    load_directory,
    revision_digest,
    text_of,
    within_limits,
)
from .policy import check_capacity, check_node_names
from .schema import check_value, located_problems
from .yamlload import dump_yaml, read_file
from ..substitute import Result as SubstitutionResult, Variable, Where, file_opts_in, substitute

__all__ = ["NO_OP_FIELDS", "PODMAN_NAME_LIMITS", "Limits", "SourceFile", "check_immutable", "check_value", "dump_yaml",
           "is_manifest_path", "load_directory", "parse", "read_checked", "read_documents", "substitutions"]


def _documents(files: list[SourceFile], limits: Limits) -> tuple[list[Document], list[Problem]]:
    """Every YAML document of the files, and the file-level and YAML problems, in file order."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for file in files:
        text, found = text_of(file, limits)
        problems += found
        if text is not None:
            docs, found = read_file(file.path, text, limits.max_yaml_nodes)
            documents += docs
            problems += found
    return documents, problems


def read_documents(files: Iterable[SourceFile], limits: Limits = Limits()) -> list[Document]:
    """The YAML documents of the manifest files, as written, without their problems (`parse` reports those):
    what `variables` reads `substituteFrom` objects and substitutions from."""
    kept, _ = within_limits(files, limits)
    return _documents(kept, limits)[0]


def substitutions(documents: Sequence[Document], files: Sequence[SourceFile], variables: Mapping[str, Variable]
                  ) -> list[tuple[Document, Where, SubstitutionResult]]:
    """Each document, where it is, and what one node's variables make of it (`substitute.substitute`); the
    documents themselves are not changed."""
    opted = {file.path for file in files if file_opts_in(file.data)}
    found = []
    for doc in documents:
        kind = doc.body.get("kind")
        label = f"{kind if isinstance(kind, str) else ''}/{doc.name}"
        where = Where(doc.file, label, doc.line_of, doc.quoted.__contains__)
        found.append((doc, where, substitute(doc.body, variables, where, doc.file in opted)))
    return found


def _substituted(documents: list[Document], files: list[SourceFile], variables: Mapping[str, Variable]
                 ) -> list[Problem]:
    """Every opted-in document's body with one node's variables substituted (`substitute.substitute`)."""
    problems: list[Problem] = []
    for doc, _, result in substitutions(documents, files, variables):
        doc.body = result.body
        problems += result.problems
    return problems


_DEFAULT_NODES = (NodeConfig("local"),)  # where `parse` places the workloads without a config's nodes


def parse(
    files: Iterable[SourceFile],
    revision_id: str = "",
    limits: Limits = Limits(),
    policy: model.Policy = model.Policy(),
    nodes: Sequence[NodeConfig] | None = None,
    node_limits: model.NodeLimits = model.NodeLimits(),
    storage_classes: Mapping[str, model.StorageClass] | None = None,
    node_ports: Mapping[str, int] | None = None,
    variables: Mapping[str, Variable] | None = None,
    forwarder_image: str = "",
) -> model.Revision:
    """Validate and convert the manifest files (other paths are ignored).

    `policy` (the agent config's `policy:`) says which privileged features
    (privileged containers, host namespaces, added capabilities, hostPath
    volumes) the workloads may use; the default denies them all. `nodes` and
    `node_limits` (the config's `nodes:` and `limits:`) bound the pods the
    revision places on each node (without `nodes`: one node `local`, and no
    nodeName is checked); `storage_classes` (the config's `storageClasses:`) the
    classes a PersistentVolumeClaim may name; `node_ports` the node ports
    recorded for earlier revisions (`Revision.node_ports`), kept where still free (`allocate_node_ports`); `variables`
    (one node's, `substitute.node_variables`) are substituted into the objects that
    opt in, after parsing and before validation; `forwarder_image` the config's `serviceForwarder.image`
    (`Revision.forwarder_image`). Raises
    `RevisionRejected` with every problem found, sorted by file and line.
    """
    manifests = sorted((file for file in files if is_manifest_path(file.path)), key=lambda file: file.path)
    kept, problems = within_limits(manifests, limits)
    documents, found = _documents(kept, limits)
    problems += found
    if variables is not None:
        problems += _substituted(documents, kept, variables)

    entries = [(document, check_document(document)) for document in documents]
    entries = [(doc, with_storage_class(doc, obj, storage_classes or {})) for doc, obj in entries]
    unallocated = [obj for _, obj in entries]
    entries = allocate_node_ports(entries, node_ports)
    across = check_revision(entries, policy)
    placed_on = _DEFAULT_NODES if nodes is None else tuple(nodes)
    across += check_capacity(at_most(entries), placed_on, node_limits)  # autoscaled: at maxReplicas
    if nodes is not None:
        across += check_node_names(at_most(entries), tuple(nodes))
    problems.extend(problem for document in documents for problem in document.problems)
    problems += across  # after each document's own: the sort below is stable
    if problems:
        unique = dict.fromkeys(redacted(problems, documents))
        rejected = PolicyViolation if any(p.policy for p in unique) else RevisionRejected
        raise rejected(sorted(unique, key=lambda problem: (problem.file, problem.line)), revision_id)
    objects = sorted((obj for _, obj in entries if obj is not None), key=_object_order)
    warnings = sorted((w for doc in documents for w in doc.warnings), key=lambda w: (w.file, w.line))
    return model.Revision(id=revision_id, digest=revision_digest(manifests), objects=tuple(objects),
                          warnings=tuple(str(warning) for warning in warnings),
                          node_ports=tuple(sorted(allocated_node_ports(unallocated, objects).items())),
                          forwarder_image=forwarder_image)


def read_checked(file: SourceFile, schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """One YAML file holding one mapping (the agent config), read as safely as a manifest and checked
    against `schema`: its value ({} for an empty file) and every problem found, at FILE:LINE."""
    documents, problems = _documents([file], Limits())
    for extra in documents[1:]:
        problems.append(Problem(file.path, extra.lines[()], "", "", "a second YAML document; the file holds one"))
    if not documents:
        return {}, problems
    body, lines = documents[0].body, documents[0].lines
    found = located_problems(body, lines, schema)
    problems.extend(Problem(file.path, line, "", path, message) for line, path, message in found)
    return body, problems


def _object_order(obj: model.Object) -> tuple[int, str, str]:
    return KIND_ORDER[obj.ref.kind], obj.ref.namespace, obj.ref.name
