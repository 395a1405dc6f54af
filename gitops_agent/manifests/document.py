"""The vocabulary the steps of `manifests.parse` share: a YAML document with the line of every JSON path
(`Document`, where the steps report problems), the kinds and their order, paths as text, and the redaction of
Secret values from every message (`redacted`, the net under "no message quotes a Secret's value").
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .. import model
from ..errors import Problem

JsonPath = tuple[str | int, ...]

# kind -> apiVersion, in the order objects are sorted (dependencies first).
KINDS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "PersistentVolumeClaim": "v1",
    "Pod": "v1",
    "Deployment": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicationController": "v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
KIND_ORDER = {kind: index for index, kind in enumerate(KINDS)}


@dataclass
class Document:
    """One YAML document: its plain value, the line of every JSON path, and what it declares."""

    file: str
    body: dict[str, Any]
    lines: dict[JsonPath, int]
    kind: str = ""
    name: str = ""
    namespace: str = model.DEFAULT_NAMESPACE
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # accepted, with no effect on a node
    quoted: frozenset[JsonPath] = frozenset()  # paths of scalars written quoted (for `substitute`'s types)

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
        """A problem of this document found while reading or converting it (kept in `problems`)."""
        self.problems.append(self.problem(path, message))

    def warn(self, path: JsonPath, message: str) -> None:
        self.warnings.append(self.problem(path, message))

    def problem(self, path: JsonPath, message: str) -> Problem:
        """The problem at `path` of this document, labelled with its kind and name."""
        kind = self.kind or self.body.get("kind")  # an unsupported kind is still worth showing
        kind = kind if isinstance(kind, str) else ""
        label = f"{kind}/{self.name}" if kind and self.name else kind
        return Problem(self.file, self.line_of(path), label, json_path(path), message)


class Problems(list[Problem]):
    """What one check across documents finds (`checks`, `policy` return these): each problem at the document
    and path at fault, the documents themselves left alone."""

    def add(self, doc: Document, path: JsonPath, message: str) -> None:
        self.append(doc.problem(path, message))


_MIN_REDACTED = 4  # shorter values are left alone: they would blank out ordinary words of the messages


def _secret_values(documents: Iterable[Document]) -> list[str]:
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
                        values.add(b64decode(value).decode("utf-8"))
                    except ValueError:  # not base64, or not text: the schema reports it, without the value
                        pass
    return sorted((value for value in values if len(value) >= _MIN_REDACTED), key=len, reverse=True)


def b64decode(text: str) -> bytes:
    """A Secret's `data` or a ConfigMap's `binaryData` value: standard padded base64 whose line breaks are
    ignored, as Go's encoding/base64 does in Kubernetes. binascii.Error (a ValueError) for anything else."""
    return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)


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


def redacted(problems: list[Problem], documents: Iterable[Document]) -> Iterator[Problem]:
    """The problems with any Secret value in their messages replaced: no message quotes a Secret's value,
    and this is the net under that rule."""
    values = _secret_values(documents)
    for problem in problems:
        message = problem.message
        for value in values:
            message = message.replace(value, "<redacted>")
        yield problem if message == problem.message else replace(problem, message=message)


def json_path(path: JsonPath) -> str:
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


def short(value: Any) -> str:
    """repr() for messages, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "a list"), (dict, "a mapping"))


def describe(value: Any) -> str:
    """The JSON type of a YAML value, for messages."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


def identify(doc: Document) -> None:
    """The document's name and namespace, as far as its metadata gives them."""
    metadata = doc.body.get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name")
        doc.name = name if isinstance(name, str) else ""
        namespace = metadata.get("namespace", model.DEFAULT_NAMESPACE)
        doc.namespace = namespace if isinstance(namespace, str) else model.DEFAULT_NAMESPACE


POD_SPEC_PATHS: dict[str, JsonPath] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def is_zero(amount: int | str) -> bool:
    return int(str(amount).rstrip("%")) == 0


def normpath(path: str) -> str:
    """An absolute path without '..' (by the schema), with '.', repeated and trailing '/' removed."""
    return "/" + "/".join(part for part in path.split("/") if part not in ("", "."))


def is_under(path: str, prefix: str) -> bool:
    """`path` is `prefix` or below it, by whole components (/var/log/app is under /var/log; /var/logs is not)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def pod_spec_path(workload: model.Workload) -> JsonPath:
    return POD_SPEC_PATHS.get(workload.ref.kind, ("spec", "template", "spec"))


def every_container(template: model.PodTemplate) -> Iterator[tuple[str, int, model.Container]]:
    """(field, index, container) of the init containers, then of the app containers: every process of the pod."""
    for group, containers in (("initContainers", template.init_containers), ("containers", template.containers)):
        for i, container in enumerate(containers):
            yield group, i, container


def ref_field(kind: str, suffix: str) -> str:
    """`configMapKeyRef`, `secretRef`, ... for a referenced kind."""
    return ("configMap" if kind == "ConfigMap" else "secret") + suffix
