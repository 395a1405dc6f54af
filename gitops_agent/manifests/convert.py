"""Step 4 of `manifests.parse`: one document -> a `model` object, or None with its problems.

`check_document` identifies the document (kind, apiVersion: an older one Kubernetes still serves is converted
first, `_ALSO_SERVED`), drops what an API server sets and the fields set to null (unset), validates it through
`schema`, then converts it with the converter of its kind, which may assume schema-valid input and reports what
the schema cannot express (per-document checks: ports, probes, quantities, security settings ...). Problems go to
the document (`Document.report`). It must not look at other documents.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from .. import config, desired, model, pullauth
from . import schema
from .document import (
    KINDS,
    POD_SPEC_PATHS,
    Document,
    JsonPath,
    b64decode,
    every_container,
    identify,
    is_zero,
    json_path,
    normpath,
    short,
)
from .autoscaler import V1 as autoscaler_v1
from .autoscaler import autoscaler, from_v1
from .batch import cronjob, job
from .dns import dns_settings
from .profiles import check_profile_annotations, security_profiles
from .statefulset import statefulset

_MAX_VALUE_BYTES = 511_999  # Podman's secret store holds 1 to 511999 bytes ("less than 512000")


# --- one document -------------------------------------------------------------


def _without_invalid_parts(doc: Document, faults: list[JsonPath]) -> model.Object | None:
    """The object of a schema-invalid document with the invalid fields (`faults`) left out, so that its other
    problems (policy, references, capacity) come in the same round; None when leaving them out does not make it
    valid. The document's problems reject the revision anyway: this object is only checked, never applied."""
    body = copy.deepcopy(doc.body)
    for key_path in faults:
        if not key_path or not _remove(body, key_path):
            return None
    if not schema.is_valid(doc.kind, body):
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


def check_document(doc: Document) -> model.Object | None:
    """Identify, schema-validate and convert one document; None if it is invalid.

    Problems go to `doc.problems`. A document whose identity is known is still
    counted by the cross-object checks even when its content is invalid."""
    body = doc.body
    identify(doc)
    kind = body.get("kind")
    if "kind" not in body:
        doc.report((), "missing required field 'kind'")
        return None
    if isinstance(kind, str) and kind in _NO_OP_KINDS and body.get("apiVersion") == _NO_OP_KINDS[kind]:
        doc.warn(("kind",), f"a {kind} has no effect on a node (it grants access to the Kubernetes API, which "
                            "gitops-agent does not have): ignored")
        return None
    if isinstance(kind, str) and kind in _REFUSED_KINDS:
        doc.report(("kind",), f"kind {kind} is not supported by gitops-agent, and ignoring it would "
                              f"{_REFUSED_KINDS[kind]}: remove it")
        return None
    if not isinstance(kind, str) or kind not in KINDS:
        doc.report(("kind",), f"kind {short(kind)} is not supported by gitops-agent (supported: {', '.join(KINDS)})")
        return None
    doc.kind = kind
    api_version = body.get("apiVersion")
    if isinstance(api_version, str) and (kind, api_version) in _ALSO_SERVED:
        _ALSO_SERVED[kind, api_version](doc)  # made the version the model is of
        api_version = body["apiVersion"]
    if api_version != KINDS[kind]:
        found = "missing" if api_version is None else short(api_version)
        doc.report(("apiVersion",), f"apiVersion for kind {kind} must be {KINDS[kind]!r}, not {found}")
        return None

    _drop_server_set(body)
    _drop_nulls(body)
    _drop_empty_defaults(body)
    if kind == "Service":
        _drop_unset_node_ports(body)
    problems, faults = schema.validate(kind, body)
    for path, message in problems:
        doc.report(path, message)
    if kind == "Secret":  # also when the values are invalid: every problem in one round
        _check_secret_type(doc)
    if problems:
        return _without_invalid_parts(doc, faults)
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


def _drop_nulls(value: Any) -> None:
    """Remove, at any depth, the fields whose value is null: null means unset in Kubernetes (`storageClassName: ~`
    is a claim of the default class). Not below a mapping whose keys are the user's (a label or a data key with a
    null value is still an error), nor a list's null items."""
    if isinstance(value, dict):
        for key in [key for key, item in value.items() if item is None]:
            del value[key]
        for key, item in value.items():
            if key not in _USER_KEYED:
                _drop_nulls(item)
    elif isinstance(value, list):
        for item in value:
            _drop_nulls(item)


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
# Older apiVersions Kubernetes still serves: (kind, apiVersion) -> the conversion of a document to KINDS' version.
_ALSO_SERVED: dict[tuple[str, str], Callable[[Document], None]] = {
    ("HorizontalPodAutoscaler", autoscaler_v1): from_v1,
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
    },
    "container": {
        "terminationMessagePath": "no termination message is collected: see the container's log",
        "terminationMessagePolicy": "no termination message is collected: see the container's log",
        "resizePolicy": "a change of resources is a new revision, which replaces the pod",
    },
    "service": {
        "sessionAffinity": "None is the default: a Service is a DNS name of its pods' addresses",
    },
}


def _warn_no_ops(doc: Document) -> None:
    """One warning per no-op field of a valid document."""
    scopes: list[tuple[JsonPath, Any, str]]
    if doc.kind == "Service":
        scopes = [(("spec",), doc.body["spec"], "service")]
    elif doc.kind in POD_SPEC_PATHS:
        path = POD_SPEC_PATHS[doc.kind]
        spec: Any = doc.body
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


def _drop_unset_node_ports(body: dict[str, Any]) -> None:
    """`nodePort: 0` means unset in Kubernetes (as `kubectl get -o yaml` of a ClusterIP Service may show)."""
    spec = body.get("spec")
    ports = spec.get("ports") if isinstance(spec, dict) else None
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict) and port.get("nodePort") == 0 and not isinstance(port["nodePort"], bool):
            del port["nodePort"]


def _namespace(doc: Document) -> model.Namespace:
    return model.Namespace(doc.ref, doc.origin)


# Secret type -> the keys it must hold (any one of them for basic-auth), as the API server checks them.
_SECRET_TYPE_KEYS = {
    "Opaque": ((), False),
    "kubernetes.io/tls": (("tls.crt", "tls.key"), False),
    "kubernetes.io/basic-auth": (("username", "password"), True),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",), False),
}


def _check_secret_type(doc: Document) -> None:
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


def _config_data(doc: Document) -> model.ConfigData:
    # (field, decoder) in merge order: Secret stringData wins over data.
    fields = (("data", str.encode), ("binaryData", b64decode)) if doc.kind == "ConfigMap" else \
        (("data", b64decode), ("stringData", str.encode))
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
    return model.ConfigData(doc.ref, doc.origin, data, type=secret_type, immutable=doc.body.get("immutable") is True)


def _check_pull_secret(doc: Document, secret_type: str, data: Mapping[str, bytes]) -> None:
    """A registry-credential Secret has its one key, a JSON object, as Kubernetes checks (its credentials are
    checked where imagePullSecrets name it: `checks`); no message quotes a value."""
    key = pullauth.SECRET_KEYS[secret_type]
    if key not in data:
        doc.report(("data",), f"a Secret of type {secret_type} needs the key {key!r} (in data or stringData)")
        return
    field_name = "stringData" if key in doc.body.get("stringData", {}) else "data"
    try:
        pullauth.check_secret_value(data[key])
    except ValueError as e:
        doc.report((field_name, key), str(e))


def _claim(doc: Document) -> model.Claim:
    storage = doc.body["spec"]["resources"]["requests"]["storage"]
    return model.Claim(doc.ref, doc.origin, storage=str(storage))


def _storage_class(doc: Document, path: JsonPath, spec: Mapping[str, Any],
                   classes: Mapping[str, model.StorageClass]) -> model.StorageClass | None:
    """The class a claim's spec (at `path`) names, None for the default; an unknown class is a problem."""
    name = spec.get("storageClassName", "")
    if not name:
        return None
    if name not in classes:
        known = ", ".join(sorted(classes)) or "none"
        doc.report(path + ("storageClassName",), f"storage class {name!r} is not in the agent config's "
                   f"storageClasses (known: {known}); define it there, or remove the field for the default volume")
        return None
    return classes[name]


def with_storage_class(
    doc: Document, obj: model.Object | None, classes: Mapping[str, model.StorageClass]
) -> model.Object | None:
    """A claim with its storageClassName's driver and options, a StatefulSet with those of its
    volumeClaimTemplates; an unknown class is a problem."""
    if isinstance(obj, model.Claim):
        return replace(obj, storage_class=_storage_class(doc, ("spec",), doc.body["spec"], classes))
    if not isinstance(obj, model.Workload) or doc.kind != "StatefulSet":
        return obj
    templates = doc.body["spec"].get("volumeClaimTemplates", ())
    chosen = ((t["metadata"]["name"], _storage_class(doc, ("spec", "volumeClaimTemplates", i, "spec"), t["spec"],
                                                     classes)) for i, t in enumerate(templates))
    return replace(obj, claim_classes=tuple((name, found) for name, found in chosen if found is not None))


def _pod(doc: Document) -> model.Workload:
    metadata = doc.body["metadata"]
    labels, annotations = metadata.get("labels", {}), metadata.get("annotations", {})
    template = _pod_template(doc, ("spec",), doc.body["spec"], labels, annotations)
    for key in annotations:
        if key.startswith(model.ROLLOUT_ANNOTATION_PREFIX):
            doc.report(("metadata", "annotations", key), "rollout knobs apply to Deployments and DaemonSets, not Pods")
    return model.Workload(
        doc.ref, doc.origin, template, replicas=1, strategy="Recreate", labels=labels, annotations=annotations
    )


def _deployment(doc: Document) -> model.Workload:
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


def _daemonset(doc: Document) -> model.Workload:
    """One pod per matching node; Kubernetes' DaemonSet rolling-update defaults (maxSurge 0, maxUnavailable 1)."""
    rolling = doc.body["spec"].get("updateStrategy", {}).get("rollingUpdate", {})
    rolling_update = model.RollingUpdate(rolling.get("maxSurge", 0), rolling.get("maxUnavailable", 1))
    _check_rolling_update(doc, ("spec", "updateStrategy", "rollingUpdate"), rolling_update)
    return _controller(doc, replicas=1, strategy="RollingUpdate", rolling_update=rolling_update)


def _label_selector(doc: Document, path: JsonPath, selector: dict[str, Any]
                    ) -> tuple[dict[str, str], tuple[model.Requirement, ...]]:
    """A labelSelector's matchLabels and matchExpressions (ANDed), with Kubernetes' checks of the values; an empty
    selector is refused, as the API server refuses it for a Deployment or DaemonSet."""
    labels = selector.get("matchLabels", {})
    expressions = selector.get("matchExpressions", ())
    if not labels and not expressions:
        doc.report(path, "must select at least one label (matchLabels or matchExpressions)")
    requirements = []
    for i, req in enumerate(expressions):
        values, operator = tuple(req.get("values", ())), req["operator"]
        if operator in ("In", "NotIn") and not values:
            doc.report(path + ("matchExpressions", i, "values"),
                       f"must have at least one value for operator {operator}")
        elif operator in ("Exists", "DoesNotExist") and values:
            doc.report(path + ("matchExpressions", i, "values"), f"must be empty for operator {operator}")
        else:  # an invalid requirement is reported once, not matched against the labels too
            requirements.append(model.Requirement(req["key"], operator, values))
    return labels, tuple(requirements)


def _shown(req: model.Requirement) -> str:
    """A requirement as kubectl writes it: `tier in (web,api)`, `!debug`."""
    if req.operator in ("Exists", "DoesNotExist"):
        return ("" if req.operator == "Exists" else "!") + req.key
    return f"{req.key} {'in' if req.operator == 'In' else 'notin'} ({','.join(req.values)})"


def _selects(labels: Mapping[str, str], match_labels: Mapping[str, str],
             expressions: tuple[model.Requirement, ...]) -> bool:
    """PURE: a labelSelector selects `labels` (every matchLabels pair and every expression holds)."""
    return (all(labels.get(k) == v for k, v in match_labels.items())
            and all(desired.requirement_met(req, labels) for req in expressions))


def _replication_controller(doc: Document) -> model.Workload:
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


def _replica_set(doc: Document) -> model.Workload:
    """A ReplicationController with an apps/v1 `matchLabels` selector: `plan` never rolls it either."""
    return _controller(doc, replicas=doc.body["spec"].get("replicas", 1), strategy="RollingUpdate",
                       rolling_update=model.RollingUpdate(0, 1))


def _controller(doc: Document, selector: Mapping[str, str] | None = None, **fields: Any) -> model.Workload:
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
    expressions: tuple[model.Requirement, ...] = ()
    if selector is None:
        selector, expressions = _label_selector(doc, ("spec", "selector"), spec["selector"])
    missing = [f"{key}={value}" for key, value in selector.items() if template.labels.get(key) != value]
    if missing:
        doc.report(
            ("spec", "selector") + (("matchLabels",) if doc.kind != "ReplicationController" else ()),
            f"selector does not match the template labels: {', '.join(missing)} not in spec.template.metadata.labels",
        )
    for i, req in enumerate(expressions):
        if not desired.requirement_met(req, template.labels):
            doc.report(("spec", "selector", "matchExpressions", i), f"selector does not match the template labels: "
                       f"{_shown(req)} is not true of spec.template.metadata.labels {short(dict(template.labels))}")
    annotations = metadata.get("annotations", {})
    return model.Workload(
        doc.ref,
        doc.origin,
        template,
        selector=selector,
        selector_expressions=expressions,
        revision_history_limit=spec.get("revisionHistoryLimit", 10),
        labels=metadata.get("labels", {}),
        annotations=annotations,
        min_ready_seconds=spec.get("minReadySeconds", 0),
        node_rollout=_node_rollout(doc, annotations),
        **fields,
    )


def _check_rolling_update(doc: Document, path: JsonPath, rolling_update: model.RollingUpdate) -> None:
    if is_zero(rolling_update.max_surge) and is_zero(rolling_update.max_unavailable):
        doc.report(path, "maxSurge and maxUnavailable cannot both be 0")


def _progress_deadline(doc: Document, spec: dict[str, Any]) -> int:
    """progressDeadlineSeconds, which Kubernetes requires to be greater than minReadySeconds."""
    deadline: int = spec.get("progressDeadlineSeconds", 600)
    min_ready: int = spec.get("minReadySeconds", 0)
    if deadline <= min_ready:
        given = "progressDeadlineSeconds" in spec
        path = ("spec", "progressDeadlineSeconds" if given else "minReadySeconds")
        shown = f"{deadline}" if given else f"{deadline}, the default"
        doc.report(path, f"progressDeadlineSeconds ({shown}) must be greater than minReadySeconds ({min_ready})")
    return deadline


def _node_rollout(doc: Document, annotations: Mapping[str, str]) -> model.NodeRollout:
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
            doc.report(path, f"unknown rollout knob {short(key)} ({hint})")
            continue
        name, parse_value, form = _KNOBS[knob]
        parsed = parse_value(value)
        if parsed is None:
            doc.report(path, f"must be {form}, not {short(value)}")
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


def _service(doc: Document) -> model.Service:
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


def _report_duplicates(doc: Document, items: Iterable[tuple[JsonPath, str]], what: str) -> None:
    seen: set[str] = set()
    for path, value in items:
        if value in seen:
            doc.report(path, f"duplicate {what} {value!r}")
        seen.add(value)


def _pod_template(
    doc: Document, prefix: JsonPath, spec: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]
) -> model.PodTemplate:
    pod_context = spec.get("securityContext", {})
    containers = tuple(
        _app_container(doc, prefix + ("containers", i), c, pod_context) for i, c in enumerate(spec["containers"])
    )
    if spec.get("hostNetwork", False):
        containers = tuple(_host_network_ports(doc, prefix + ("containers", i), c) for i, c in enumerate(containers))
    inits = tuple(
        _init_container(doc, prefix + ("initContainers", i), c, pod_context)
        for i, c in enumerate(spec.get("initContainers", ()))
    )
    volumes = tuple(_volume(doc, prefix + ("volumes", i), v) for i, v in enumerate(spec.get("volumes", ())))
    processes = model.PodTemplate({}, containers, volumes, init_containers=inits)  # what every check sees
    for i, volume in enumerate(volumes):
        if volume.kind == "emptyDir" and volume.size_limit == 0:
            doc.report(prefix + ("volumes", i, "emptyDir", "sizeLimit"),
                       "must be greater than zero (omit it for no limit)")
    _report_duplicates(
        doc, ((prefix + (group, i, "name"), c.name)
              for group, group_containers in (("initContainers", inits), ("containers", containers))
              for i, c in enumerate(group_containers)), "container name"
    )
    _report_duplicates(doc, ((prefix + ("volumes", i, "name"), v.name) for i, v in enumerate(volumes)), "volume name")
    for path, file in _downward_items(prefix, volumes) if doc.kind == "CronJob" else ():
        if file.field_path in ("metadata.name", "metadata.uid"):
            doc.report(path + ("fieldRef", "fieldPath"), f"{file.field_path} is not supported by gitops-agent in a "
                       "downwardAPI file of a CronJob's pods (each run names its pods when it starts); use env with "
                       "valueFrom.fieldRef for it")
    declared = {volume.name for volume in volumes}
    for group, i, container in every_container(processes):
        mounts = prefix + (group, i, "volumeMounts")
        _report_duplicates(
            doc, ((mounts + (j, "mountPath"), m.mount_path) for j, m in enumerate(container.volume_mounts)), "mountPath"
        )
        for j, mount in enumerate(container.volume_mounts):
            if mount.name not in declared:
                doc.report(mounts + (j, "name"), f"volume {mount.name!r} is not declared in the pod's volumes")
    _check_sub_paths_and_projected(doc, prefix, replace(processes, host_users=spec.get("hostUsers", True)), volumes)
    return _with_profiles_and_dns(doc, prefix, spec, model.PodTemplate(
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
        fs_group=pod_context.get("fsGroup"), init_containers=inits,
        service_account_name=_service_account(spec, processes),
        **_pod_level(doc, prefix, spec, processes, volumes),
    ))


def _with_profiles_and_dns(doc: Document, prefix: JsonPath, spec: dict[str, Any], template: model.PodTemplate
                           ) -> model.PodTemplate:
    """`template` with each container's seccomp and AppArmor profiles (`profiles`) and the pod's DNS (`dns`)."""
    pod_context = spec.get("securityContext", {})
    annotations = template.annotations
    check_profile_annotations(doc, annotations, {c.name for c in (*template.containers, *template.init_containers)})

    def profiled(group: str, i: int, c: model.Container) -> model.Container:
        own = spec[group][i].get("securityContext", {})
        path = prefix + (group, i, "securityContext")
        seccomp, apparmor = security_profiles(doc, path, own, pod_context, annotations, c.name)
        return replace(c, seccomp=seccomp, apparmor=apparmor)

    return replace(template, containers=tuple(profiled("containers", i, c) for i, c in enumerate(template.containers)),
                   init_containers=tuple(profiled("initContainers", i, c)
                                         for i, c in enumerate(template.init_containers)),
                   **dns_settings(doc, prefix, spec))


def _pod_level(doc: Document, prefix: JsonPath, spec: dict[str, Any], processes: model.PodTemplate,
               volumes: tuple[model.Volume, ...]) -> dict[str, Any]:
    """The PodTemplate fields of pod-level resources, hostAliases, shareProcessNamespace, hostUsers and nodeName,
    with Kubernetes' checks of them."""
    if spec.get("shareProcessNamespace") and spec.get("hostPID"):
        doc.report(prefix + ("shareProcessNamespace",), "cannot be true with hostPID: true (the pod would share "
                                                        "the node's PID namespace)")
    if spec.get("hostUsers", True) is False:
        _check_user_namespace(doc, prefix, spec, volumes)
    pod_resources = _pod_resources(doc, prefix, spec["resources"], processes) if "resources" in spec else None
    _check_resource_refs(doc, prefix, replace(processes, pod_resources=pod_resources))
    return {
        "pod_resources": pod_resources,
        "host_aliases": _host_aliases(doc, prefix + ("hostAliases",), spec.get("hostAliases", ())),
        "share_process_namespace": spec.get("shareProcessNamespace", False),
        "host_users": spec.get("hostUsers", True),
        "node_name": spec.get("nodeName"),
    }


def _host_aliases(doc: Document, path: JsonPath, aliases: Iterable[dict[str, Any]]) -> tuple[model.HostAlias, ...]:
    found = []
    for i, alias in enumerate(aliases):
        try:
            ip = str(ipaddress.ip_address(alias["ip"]))
        except ValueError:
            doc.report(path + (i, "ip"), f"must be an IPv4 or IPv6 address, not {short(alias['ip'])}")
            continue
        found.append(model.HostAlias(ip, tuple(alias.get("hostnames", ()))))
    return tuple(found)


# Ids a pod with hostUsers: false has: Podman's --userns=auto:size=65536, as many as the kubelet maps.
USER_NAMESPACE_IDS = 65536
_KEPT_IDS = ("is not supported by gitops-agent with hostUsers: false: a {what} outlives the pod, and its files "
             "keep the ids of the user namespace of the pod that wrote them (Podman 4.3 has no id-mapped mounts), "
             "which the next pod, in another namespace, cannot write; use an emptyDir, or hostUsers: true")


def _check_user_namespace(doc: Document, prefix: JsonPath, spec: dict[str, Any],
                          volumes: tuple[model.Volume, ...]) -> None:
    """What Kubernetes refuses in a pod with a user namespace of its own (host namespaces, ids beyond the
    namespace's), and what Podman cannot give it (volumes that outlive the pod)."""
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            doc.report(prefix + (key,), "cannot be true with hostUsers: false")
    for i, volume in enumerate(volumes):
        if volume.kind in ("persistentVolumeClaim", "hostPath"):
            what = "persistentVolumeClaim" if volume.kind != "hostPath" else "hostPath (the node's files)"
            doc.report(prefix + ("volumes", i, volume.kind), _KEPT_IDS.format(what=what))
    if doc.kind == "StatefulSet" and doc.body["spec"].get("volumeClaimTemplates"):
        doc.report(("spec", "volumeClaimTemplates"), _KEPT_IDS.format(what="claim of a volumeClaimTemplate"))
    contexts = [(prefix + ("securityContext",), spec.get("securityContext", {}))]
    contexts += [(prefix + (group, i, "securityContext"), c.get("securityContext", {}))
                 for group in ("initContainers", "containers") for i, c in enumerate(spec.get(group, ()))]
    for path, context in contexts:
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            if context.get(key, 0) >= USER_NAMESPACE_IDS:
                doc.report(path + (key,), f"must be less than {USER_NAMESPACE_IDS} with hostUsers: false (the ids "
                                          "of the pod's user namespace)")


# A pod's process count: at least 1 (Podman's pids limit; 0 would mean none).
_PIDS = (1, 2**63 - 1, "")


def _pod_resources(doc: Document, prefix: JsonPath, resources: dict[str, Any],
                   processes: model.PodTemplate) -> model.PodResources:
    """Pod-level resources with Kubernetes' checks: each request at most its limit, each container's limit at most
    the pod's, and the pod's request at least what its containers request (as the scheduler sums them)."""
    path = prefix + ("resources",)
    given = resources.get("limits", {})
    limits = _resources(doc, path + ("limits",), given)
    requests = _requests(doc, path + ("requests",), resources, limits)
    wanted = desired.pod_requests(model.PodResources(limits, requests))
    for group, i, c in every_container(processes):
        for name, own, bound in (("cpu", c.resources.cpu_millis, limits.cpu_millis),
                                 ("memory", c.resources.memory_bytes, limits.memory_bytes)):
            if own is not None and bound is not None and own > bound:
                doc.report(prefix + (group, i, "resources", "limits", name),
                           f"must be less than or equal to the pod's {name} limit ({short(given[name])})")
    for name, pod_amount in (("cpu", wanted.cpu_millis), ("memory", wanted.memory_bytes)):
        summed = desired.containers_request(processes, name)
        if pod_amount is not None and summed > pod_amount:
            shown = f"{summed}m" if name == "cpu" else f"{summed} bytes"
            doc.report(path + ("requests" if name in resources.get("requests", {}) else "limits", name),
                       f"must be at least what the pod's containers request ({shown} of {name})")
    pids = _quantity(doc, path + ("limits", "pids"), given.get("pids"), per_unit=1, bounds=_PIDS)
    return model.PodResources(limits, requests, pids)


def _service_account(spec: dict[str, Any], pod: model.PodTemplate) -> str:
    """The pod's serviceAccountName ("default" when unset; the deprecated serviceAccount when only it is set)
    when a fieldRef reads it, else "" (see `model.PodTemplate.service_account_name`)."""
    if not any(e.field_path == "spec.serviceAccountName" for _, _, c in every_container(pod) for e in c.env):
        return ""
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


# What Kubernetes refuses on an init container: it runs to completion, so it is never probed, hooked or served.
# A sidecar (restartPolicy Always) keeps running: it has them all, as an app container has.
_NOT_FOR_INIT = ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle")


def _app_container(
    doc: Document, path: JsonPath, container: dict[str, Any], pod_context: dict[str, Any]
) -> model.Container:
    if "restartPolicy" in container:
        doc.report(path + ("restartPolicy",), "may be set on an init container only (Always: a sidecar); remove it "
                                              "and set the pod's restartPolicy")
    return _container(doc, path, container, pod_context)


def _init_container(
    doc: Document, path: JsonPath, container: dict[str, Any], pod_context: dict[str, Any]
) -> model.Container:
    if container.get("restartPolicy") == "Always":
        return replace(_container(doc, path, container, pod_context), sidecar=True)
    for key in _NOT_FOR_INIT:
        if key in container:
            doc.report(path + (key,), "is not allowed in an init container (it runs to completion before the "
                                      "app containers start; with restartPolicy: Always it is a sidecar, which "
                                      "may have probes and hooks)")
    for i, port in enumerate(container.get("ports", ())):
        if "hostPort" in port:
            doc.report(path + ("ports", i, "hostPort"), "is not supported by gitops-agent in an init container (it "
                                                        "exits before the app containers start: publish the port "
                                                        "of an app container)")
    return _container(doc, path, {k: v for k, v in container.items() if k not in _NOT_FOR_INIT}, pod_context)


def _placement(doc: Document, prefix: JsonPath, spec: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
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
    spread = spec.get("topologySpreadConstraints", ())
    anti_terms += [(prefix + ("topologySpreadConstraints", i), t) for i, t in enumerate(spread) if "labelSelector" in t]
    for term_path, term in anti_terms:
        wanted, expressions = _label_selector(doc, term_path + ("labelSelector",), term["labelSelector"])
        if (wanted or expressions) and not _selects(labels, wanted, expressions):
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
        "topology_spread": _topology_spread(doc, prefix + ("topologySpreadConstraints",), spread),
        "tolerations": _tolerations(doc, prefix + ("tolerations",), spec.get("tolerations", ())),
    }


def _tolerations(doc: Document, path: JsonPath, items: Iterable[dict[str, Any]]) -> tuple[model.Toleration, ...]:
    """The pod's tolerations; Gt and Lt (Kubernetes 1.35) compare a key's value with a positive integer."""
    found = []
    for i, t in enumerate(items):
        toleration = model.Toleration(t.get("key", ""), t.get("operator", "Equal"), t.get("value", ""),
                                      t.get("effect", ""))
        if toleration.operator in ("Gt", "Lt"):
            if not toleration.key:
                doc.report(path + (i, "key"), f"is required with operator {toleration.operator}")
            if not re.fullmatch(desired.NUMERIC_TAINT_VALUE, toleration.value) or int(toleration.value) >= 1 << 63:
                doc.report(path + (i, "value"), f"must be a positive integer without leading zeros with operator "
                                                f"{toleration.operator} (found {toleration.value!r})")
        found.append(toleration)
    return tuple(found)


def _topology_spread(doc: Document, path: JsonPath, constraints: Iterable[dict[str, Any]]
                     ) -> tuple[model.TopologySpread, ...]:
    """topologySpreadConstraints over the node (kubernetes.io/hostname) or one other node label: placements the
    agent's spread satisfies for any maxSkew (a skew of at most 1), on the kinds whose replicas it spreads."""
    spread = tuple(model.TopologySpread(c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"] == "DoNotSchedule")
                   for c in constraints)
    keys = {c.key for c in spread}
    if spread and doc.kind in ("StatefulSet", "Job", "DaemonSet") and keys != {desired.HOSTNAME_LABEL}:
        where = "run on one node" if doc.kind != "DaemonSet" else "run one on every matching node"
        doc.report(path, f"is not supported by gitops-agent on a {doc.kind} except over {desired.HOSTNAME_LABEL}: "
                         f"its pods {where}, whatever the spread")
    elif spread and doc.kind in ("StatefulSet", "Job"):
        doc.report(path, f"is not supported by gitops-agent on a {doc.kind}: its pods run on one node (the first "
                         "that matches); use a Deployment, or remove it")
    elif len(keys) > 1:
        doc.report(path, f"spreads over {len(keys)} topology keys ({', '.join(sorted(keys))}); gitops-agent "
                         "spreads over one: kubernetes.io/hostname or one node label")
    return spread


def _term(doc: Document, path: JsonPath, term: dict[str, Any]) -> tuple[model.Requirement, ...]:
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


def _check_resource_refs(doc: Document, prefix: JsonPath, pod: model.PodTemplate) -> None:
    """Each resourceFieldRef names a container of the pod. A limit that neither the container nor the pod sets
    reads the node's allocatable amount, as in Kubernetes (`desired.node_allocatable`)."""
    by_name = {c.name: c for _, _, c in every_container(pod)}
    refs = [(prefix + (group, i, "env", j, "valueFrom", "resourceFieldRef"), env.resource)
            for group, i, container in every_container(pod) for j, env in enumerate(container.env) if env.resource]
    refs += [(path + ("resourceFieldRef",), file.resource)
             for path, file in _downward_items(prefix, pod.volumes) if file.resource]
    for path, ref in refs:
        if ref.container not in by_name:
            doc.report(path + ("containerName",), f"{ref.container!r} is not a container of this pod")


def _downward_items(prefix: JsonPath,
                    volumes: tuple[model.Volume, ...]) -> Iterator[tuple[JsonPath, model.DownwardFile]]:
    """Each file of the pod's downwardAPI volumes and projections, with the path of its item."""
    for i, volume in enumerate(volumes):
        if volume.kind == "downwardAPI":
            yield from ((prefix + ("volumes", i, "downwardAPI", "items", k), f) for k, f in enumerate(volume.files))
        for j, source in enumerate(volume.sources):
            where = prefix + ("volumes", i, "projected", "sources", j, "downwardAPI", "items")
            yield from ((where + (k,), f) for k, f in enumerate(source.files))


def _host_network_ports(doc: Document, path: JsonPath, container: model.Container) -> model.Container:
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
    doc: Document, path: JsonPath, container: dict[str, Any], pod_context: dict[str, Any]
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
    hooks: dict[str, Any] = {
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
        ephemeral_request=_quantity(doc, path + ("resources", "requests", "ephemeral-storage"),
                                    container.get("resources", {}).get("requests", {}).get("ephemeral-storage"),
                                    per_unit=1, bounds=_MEMORY_REQUEST_BYTES),
        volume_mounts=tuple(
            model.VolumeMount(mount["name"], mount["mountPath"], mount.get("readOnly", False),
                              normpath(mount.get("subPath", "")).lstrip("/"))
            for mount in container.get("volumeMounts", ())
        ),
        working_dir=container.get("workingDir"),
        stdin=container.get("stdin", False),
        tty=container.get("tty", False),
        **probes,
        **hooks,
        **_security_context(doc, path + ("securityContext",), container.get("securityContext", {}), pod_context),
    )


# Pod securityContext fields that are defaults of each container's, as in Kubernetes.
_POD_CONTEXT_DEFAULTS = ("runAsUser", "runAsGroup", "runAsNonRoot")


def _security_context(
    doc: Document, path: JsonPath, own: dict[str, Any], pod_context: dict[str, Any]
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
        "cgroup_writable": own.get("cgroupOptions", {}).get("mountMode") == "ReadWrite",
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
    doc: Document, path: JsonPath, probe: dict[str, Any], container: str, ports: tuple[model.ContainerPort, ...]
) -> model.Probe:
    """A probe with Kubernetes' defaults; a named port becomes its containerPort number."""
    (action,) = (name for name in _PROBE_ACTIONS if name in probe)  # exactly one, by the schema
    handler = probe[action]
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
    doc: Document, path: JsonPath, name: str, container: str, ports: tuple[model.ContainerPort, ...]
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


# fieldRef paths of env (known when the pod is created; status.podIP(s) once its infra container runs on the
# namespace network); metadata.labels/annotations take a key: ['KEY'].
_FIELD_PATHS = re.compile(r"metadata\.(name|namespace|uid)|spec\.(nodeName|serviceAccountName)"
                          r"|status\.(hostIPs?|podIPs?)|metadata\.(labels|annotations)\['([^'\]]+)'\]")
_ENV_FIELDS = ("metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], "
               "spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs")
# fieldRef paths of a downwardAPI volume's files (Kubernetes' own list): the whole labels and annotations too.
_FILE_FIELD_PATHS = re.compile(r"metadata\.(name|namespace|uid|labels|annotations)"
                               r"|metadata\.(labels|annotations)\['([^'\]]+)'\]")
_FILE_FIELDS = ("metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, "
                "metadata.labels['KEY'], metadata.annotations['KEY']")


def _env_var(doc: Document, path: JsonPath, env: dict[str, Any], container: str) -> model.EnvVar:
    if "valueFrom" not in env:
        return model.EnvVar(env["name"], value=env.get("value", ""))
    ((field_name, selector),) = env["valueFrom"].items()  # exactly one, by the schema
    where = path + ("valueFrom", field_name)
    if field_name == "fieldRef":
        field_path = selector["fieldPath"]
        if not _FIELD_PATHS.fullmatch(field_path):
            doc.report(where + ("fieldPath",), f"unknown fieldPath {short(field_path)} (supported: {_ENV_FIELDS})")
        return model.EnvVar(env["name"], field_path=field_path)
    if field_name == "resourceFieldRef":
        return model.EnvVar(env["name"], resource=_resource_ref(doc, where, selector, container))
    ref = model.KeyRef(_REF_KINDS[field_name], selector["name"], selector["key"], selector.get("optional", False))
    return model.EnvVar(env["name"], ref=ref)


def _resource_ref(doc: Document, where: JsonPath, selector: dict[str, Any], container: str) -> model.ResourceFieldRef:
    """A resourceFieldRef (of env, or of a downwardAPI file: `container` is then "" and the schema requires
    containerName), its divisor in millicores or bytes."""
    resource = selector["resource"]
    per_unit = 1000 if resource.endswith(".cpu") else 1
    divisor = _quantity(doc, where + ("divisor",), selector.get("divisor", 1), per_unit, (1, 2**63 - 1, ""))
    return model.ResourceFieldRef(selector.get("containerName", container), resource, divisor or 1)


def _downward_files(doc: Document, where: JsonPath, source: dict[str, Any],
                    mode: int) -> tuple[model.DownwardFile, ...]:
    """The items of a downwardAPI volume or projection: each a pod field or a container's limit or request."""
    files = []
    for k, item in enumerate(source.get("items", ())):
        path = where + ("items", k)
        field_ref, resource_ref = item.get("fieldRef"), item.get("resourceFieldRef")
        at = json_path(path)
        reported = any(p.path == at or p.path.startswith(at + ".") for p in doc.problems)  # the schema left it out
        if (field_ref is None) == (resource_ref is None) and not reported:
            doc.report(path, "needs exactly one of fieldRef or resourceFieldRef")
        field_path = None if field_ref is None else field_ref["fieldPath"]
        if field_path is not None and not _FILE_FIELD_PATHS.fullmatch(field_path):
            hint = "; use env with valueFrom.fieldRef for it" if _FIELD_PATHS.fullmatch(field_path) else ""
            doc.report(path + ("fieldRef", "fieldPath"), f"unknown fieldPath {short(field_path)} for a downwardAPI "
                                                          f"file (supported: {_FILE_FIELDS}){hint}")
        resource = None if resource_ref is None else _resource_ref(doc, path + ("resourceFieldRef",), resource_ref, "")
        files.append(model.DownwardFile(item["path"], field_path, resource, item.get("mode", mode)))
    return tuple(files)


def _env_from(source: dict[str, Any]) -> model.EnvFrom:
    field_name = "configMapRef" if "configMapRef" in source else "secretRef"
    selector = source[field_name]
    optional = selector.get("optional", False)
    return model.EnvFrom(_REF_KINDS[field_name], selector["name"], source.get("prefix", ""), optional)


VOLUME_SOURCES = {  # volume source -> (field naming the object, kind of that object)
    "configMap": ("name", "ConfigMap"),
    "secret": ("secretName", "Secret"),
    "persistentVolumeClaim": ("claimName", "PersistentVolumeClaim"),
}


# A tmpfs emptyDir is a Podman volume with mount options: its files are on the node only while a container mounts
# it whole, and a subPath of a named volume is a bind mount of its directory on the node (Podman 4.3 has no subpath
# mount option)
_NO_TMPFS_SUB_PATH = ("is not supported by gitops-agent on volume {name!r} (found {sub!r}): it is an emptyDir of "
                      "medium Memory, a tmpfs Podman volume whose files are on the node only while a container "
                      "mounts it whole, and Podman 4.3 mounts a subPath of a named volume as a bind mount of its "
                      "directory on the node; mount the whole volume and use the directory under it, or use an "
                      "emptyDir on the node's disk")
_NO_USERNS_SUB_PATH = ("is not supported by gitops-agent on volume {name!r} (found {sub!r}) with hostUsers: false: "
                       "the agent makes the subPath's directory as the node's root, which the pod's own user "
                       "namespace cannot write (Podman 4.3 has no id-mapped mounts); mount the whole emptyDir, "
                       "which Podman gives to the container's user")
_NO_IMAGE_SUB_PATH = ("is not supported by gitops-agent on volume {name!r} (found {sub!r}): it is an image volume, "
                      "which Podman 4.3 mounts only whole (its image mounts have no subpath option); mount the "
                      "whole image volume and use the directory under it")


def _check_sub_paths_and_projected(doc: Document, prefix: JsonPath, processes: model.PodTemplate,
                                   volumes: tuple[model.Volume, ...]) -> None:
    """A subPath mounts a file or directory of any volume but an image volume and a tmpfs emptyDir (Podman mounts
    those only whole)."""
    _check_projected(doc, prefix, volumes)
    kinds = {volume.name: (volume.kind, volume.medium) for volume in volumes}
    for group, i, container in every_container(processes):
        for j, mount in enumerate(container.volume_mounts):
            kind = kinds.get(mount.name, ("", ""))[0]
            if mount.sub_path and kinds.get(mount.name) == ("emptyDir", "Memory"):
                doc.report(prefix + (group, i, "volumeMounts", j, "subPath"),
                           _NO_TMPFS_SUB_PATH.format(name=mount.name, sub=mount.sub_path))
            elif mount.sub_path and kind == "emptyDir" and not processes.host_users:
                doc.report(prefix + (group, i, "volumeMounts", j, "subPath"),
                           _NO_USERNS_SUB_PATH.format(name=mount.name, sub=mount.sub_path))
            elif mount.sub_path and kind == "image":
                doc.report(prefix + (group, i, "volumeMounts", j, "subPath"),
                           _NO_IMAGE_SUB_PATH.format(name=mount.name, sub=mount.sub_path))


def _check_projected(doc: Document, prefix: JsonPath, volumes: tuple[model.Volume, ...]) -> None:
    """The files a projected volume's sources name with `items` do not collide (Kubernetes' own validation)."""
    for i, volume in enumerate(volumes):
        seen: set[str] = set()
        for j, source in enumerate(volume.sources):
            for k, item_path in enumerate([i.path for i in source.items] + [f.path for f in source.files]):
                path = "/".join(part for part in item_path.split("/") if part not in ("", "."))
                if path in seen:
                    doc.report(prefix + ("volumes", i, "projected", "sources", j, source.kind, "items", k, "path"),
                               f"duplicate path {path!r} in the projected volume")
                seen.add(path)


def _key_files(source: dict[str, Any]) -> tuple[model.KeyToPath, ...]:
    """The `items` of a configMap or secret volume or projection, each with its own mode if it has one."""
    return tuple(model.KeyToPath(item["key"], item["path"], item.get("mode")) for item in source.get("items", ()))


def _projected(doc: Document, where: JsonPath, name: str, source: dict[str, Any]) -> model.Volume:
    """A projected volume: its configMap, secret and downwardAPI sources (the only ones the schema admits), in
    order."""
    mode = source.get("defaultMode", 0o644)
    sources = []
    for j, projection in enumerate(source["sources"]):
        ((kind, ref),) = projection.items()  # exactly one, by the schema
        if kind == "downwardAPI":
            files = _downward_files(doc, where + ("sources", j, kind), ref, mode)
            sources.append(model.Volume(name, kind, "", default_mode=mode, files=files))
            continue
        sources.append(model.Volume(
            name=name, kind=kind, source=ref["name"], default_mode=mode, optional=ref.get("optional", False),
            items=_key_files(ref),
        ))
    return model.Volume(name, "projected", "", default_mode=mode, sources=tuple(sources))


def _volume(doc: Document, where: JsonPath, volume: dict[str, Any]) -> model.Volume:
    ((kind, source),) = ((k, v) for k, v in volume.items() if k != "name")  # exactly one, by the schema
    if kind == "projected":
        return _projected(doc, where + (kind,), volume["name"], source)
    if kind == "downwardAPI":
        mode = source.get("defaultMode", 0o644)
        files = _downward_files(doc, where + (kind,), source, mode)
        return model.Volume(volume["name"], kind, "", default_mode=mode, files=files)
    if kind == "hostPath":
        return model.Volume(volume["name"], kind, normpath(source["path"]), host_path_type=source.get("type", ""))
    if kind == "image":  # read-only, pulled as a container's image is
        reference = source["reference"]
        return model.Volume(volume["name"], kind, reference, read_only=True,
                            pull_policy=source.get("pullPolicy") or _default_pull_policy(reference))
    if kind == "emptyDir":
        limit = source.get("sizeLimit")
        return model.Volume(volume["name"], kind, "", medium=source.get("medium", ""),
                            size_limit=None if limit is None else config.quantity(limit, 1),
                            dir_mode=source.get("mode"))
    return model.Volume(
        name=volume["name"],
        kind=kind,
        source=source[VOLUME_SOURCES[kind][0]],
        items=_key_files(source),
        default_mode=source.get("defaultMode", 0o644),
        read_only=source.get("readOnly", False),
        optional=source.get("optional", False),
    )


# Linux capabilities (capabilities(7)), as Kubernetes names them; ALL is every one.
_CAPABILITIES = frozenset("""
    AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
    DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
    MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
    SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM ALL
""".split())


def _capabilities(doc: Document, path: JsonPath, names: list[str]) -> tuple[str, ...]:
    """Capability names in upper case without the CAP_ prefix (`drop: [all]` is ALL), one per list item
    (so indexes stay those of the manifest); an unknown name is a problem."""
    result = tuple(name.upper().removeprefix("CAP_") for name in names)
    for i, (name, bare) in enumerate(zip(names, result)):
        if bare not in _CAPABILITIES:
            close = difflib.get_close_matches(bare, _CAPABILITIES, n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            doc.report(path + (i,), f"unknown capability {short(name)}{suggestion}")
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


def _resources(doc: Document, path: JsonPath, limits: dict[str, Any]) -> model.Resources:
    return model.Resources(
        cpu_millis=_quantity(doc, path + ("cpu",), limits.get("cpu"), per_unit=1000, bounds=_CPU_MILLIS),
        memory_bytes=_quantity(doc, path + ("memory",), limits.get("memory"), per_unit=1, bounds=_MEMORY_BYTES),
    )


def _requests(doc: Document, path: JsonPath, resources: dict[str, Any], limits: model.Resources) -> model.Resources:
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
                                       f"({short(resources['limits'][name])})")
    return wanted


def _quantity(
    doc: Document, path: JsonPath, quantity: int | float | str | None, per_unit: int, bounds: tuple[int, int, str]
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


_CONVERTERS: dict[str, Callable[[Document], model.Object]] = {
    "Namespace": _namespace,
    "ConfigMap": _config_data,
    "Secret": _config_data,
    "PersistentVolumeClaim": _claim,
    "Pod": _pod,
    "Deployment": _deployment,
    "DaemonSet": _daemonset,
    "ReplicationController": _replication_controller,
    "ReplicaSet": _replica_set,
    "StatefulSet": statefulset,
    "Job": job,
    "CronJob": cronjob,
    "Service": _service,
    "HorizontalPodAutoscaler": autoscaler,
}
