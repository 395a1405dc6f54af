"""Step 3 of `manifests.parse`: jsonschema validation against `schemas/` and its messages.

`validate(kind, body)` returns every (path, message) and the parts at fault; `located_problems`/`check_value`
check a value against another schema (the agent config's). The schemas' `$ref`s are inlined when the validators
are built (`_inlined`), which takes reference look-ups off the per-document path. The only module that imports
jsonschema and `referencing`. It must not convert documents or check objects against each other.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urljoin

import jsonschema
from referencing import Registry, Resource

from ..errors import Problem
from .document import KINDS, Document, JsonPath, describe, json_path, short


def check_value(value: Any, schema: Mapping[str, Any]) -> list[Problem]:
    """`value` (already parsed, so without lines) checked against `schema`: every problem found."""
    return [Problem("", 0, "", path, message) for _, path, message in located_problems(value, {(): 0}, schema)]


def located_problems(
    value: Any, lines: Mapping[JsonPath, int], schema: Mapping[str, Any]
) -> Iterator[tuple[int, str, str]]:
    """(line, JSON path, message) of every schema problem of `value`, in path order."""
    located = Document("", {}, dict(lines))
    found = []
    for error in _Validator(schema).iter_errors(value):
        for path, message in schema_problems(error):
            found.append((located.line_of(path), json_path(path), message))
    yield from sorted(dict.fromkeys(found))



# schemas/ at the top of the repository, installed as the data-only package `gitops_agent.schemas`
# (pyproject.toml's package-dir): the same name in a wheel, an editable install and a source checkout.
_SCHEMA_PACKAGE = "gitops_agent.schemas"


def _is_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: object, instance: object) -> bool:
    # JSON has no NaN or infinity, and 1.0 is not an integer in Kubernetes' Go types.
    return _is_integer(checker, instance) or (isinstance(instance, float) and math.isfinite(instance))


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


@cache
def kind_validators(inline: bool = True) -> dict[str, jsonschema.protocols.Validator]:
    """One validator per kind, from `schemas/<kind>.json`, its `$ref`s to `_defs.json` inlined (`_inlined`);
    the registry still resolves any that are left. `inline=False`: the schemas as written (for the test that
    both give the same errors)."""
    schemas = {entry.name: json.loads(entry.read_text(encoding="utf-8"))
               for entry in resources.files(_SCHEMA_PACKAGE).iterdir() if entry.name.endswith(".json")}
    by_id = {schema["$id"]: schema for schema in schemas.values()}
    registry: Registry = Registry().with_resources((uri, Resource.from_contents(s)) for uri, s in by_id.items())
    validators = {}
    for kind in KINDS:
        schema = schemas[f"{kind.lower()}.json"]
        compiled = _inlined(schema, schema["$id"], by_id, ()) if inline else schema
        validators[kind] = _Validator(compiled, registry=registry)
    return validators


def _inlined(schema: Any, base: str, by_id: Mapping[str, Any], resolving: tuple[str, ...]) -> Any:
    """`schema` with every `{"$ref": R}` that has no other keyword replaced by the (inlined) schema R names, so
    that validating does not look references up (two thirds of jsonschema's time on a manifest, profiled). The
    result accepts and rejects exactly what the original does, with the same errors (the same keywords, at the
    same instance paths, in the same order). A reference that sits beside other keywords, or that is being
    inlined already (a cycle), stays a reference, made absolute so that it resolves from anywhere."""
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        uri = urljoin(base, ref)
        if len(schema) == 1 and uri not in resolving:
            document, _, pointer = uri.partition("#")
            target: Any = by_id[document]
            for part in pointer.split("/")[1:]:
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _inlined(target, document, by_id, resolving + (uri,))
        # {"$ref": R, ...} is {"allOf": [R], ...} in Draft 2020-12 (none of the schemas has an allOf beside a $ref)
        if uri not in resolving and "allOf" not in schema:
            schema = {("allOf" if key == "$ref" else key): ([{"$ref": uri}] if key == "$ref" else value)
                      for key, value in schema.items()}
        else:
            schema = {**schema, "$ref": uri}
    inlined = dict(schema)
    for key, value in schema.items():
        if key in _SUBSCHEMA:
            inlined[key] = _inlined(value, base, by_id, resolving)
        elif key in _SUBSCHEMAS and isinstance(value, list):
            inlined[key] = [_inlined(item, base, by_id, resolving) for item in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            inlined[key] = {name: _inlined(item, base, by_id, resolving) for name, item in value.items()}
    return inlined


# Draft 2020-12 keywords whose value is a subschema, a list of them, a mapping of them; the others hold data.
_SUBSCHEMA = frozenset({"items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "not", "if",
                        "then", "else", "propertyNames", "contains", "additionalItems"})
_SUBSCHEMAS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})


def validate(kind: str, body: Any) -> tuple[list[tuple[JsonPath, str]], list[JsonPath]]:
    """`body` checked against the schema of `kind`: every (path, message), and the paths of the parts at fault
    (the value at each, or each key `additionalProperties` refuses) for `convert` to leave out."""
    problems: list[tuple[JsonPath, str]] = []
    faults: list[JsonPath] = []
    for error in kind_validators()[kind].iter_errors(body):
        problems.extend(schema_problems(error, reveal=kind != "Secret"))
        path = tuple(error.absolute_path)
        instance: Any = error.instance
        if error.validator == "additionalProperties" and isinstance(instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            faults += [path + (key,) for key in instance if key not in known]
        else:
            faults.append(path)
    return problems, faults


def is_valid(kind: str, body: Any) -> bool:
    return not any(True for _ in kind_validators()[kind].iter_errors(body))


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}


def schema_problems(error: jsonschema.ValidationError, reveal: bool = True) -> Iterator[tuple[JsonPath, str]]:
    """(path, message) for one schema error; a key rather than its value where the key is at fault. `reveal`:
    whether a message may show the value found (never in a Secret)."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance: Any = error.instance
    if error.validator == "additionalProperties":
        known = schema.get("properties", {})
        unsupported = schema.get("x-unsupported", {})
        for key in instance:
            if key in known:
                continue
            pattern = next((hint for regex, hint in schema.get("x-unsupported-patterns", {}).items()
                            if re.fullmatch(regex, key)), None)
            if key in unsupported or pattern is not None:
                yield path + (key,), not_supported(key, instance[key], unsupported.get(key) or pattern or "", reveal)
            else:
                close = difflib.get_close_matches(key, known, n=1)
                suggestion = f" (did you mean {close[0]!r}?)" if close else ""
                yield path + (key,), f"unknown field {short(key)}{suggestion}"
        return
    message = schema.get("errorMessage", {}).get(error.validator) or _message(error)
    if "{found}" in message:  # a schema's own message that shows the value
        message = message.replace("{found}", f" (found {short(instance)})" if reveal else "")
    if "propertyNames" in error.relative_schema_path:  # the instance is a key of the mapping at `path`
        yield path + (instance,), f"key {short(instance)} {message}"
    else:
        yield path, message


def _message(error: jsonschema.ValidationError) -> str:
    expected: Any = error.validator_value
    instance: Any = error.instance
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


def not_supported(key: str, value: Any, hint: str, reveal: bool = True) -> str:
    """The one wording of a Kubernetes field gitops-agent does not accept: the field, the value found (a mapping by
    its keys; nothing when `reveal` is False: a Secret's), and what to do (the schema's hint, else `WHAT_TO_DO`'s)."""
    if isinstance(value, dict):  # its keys only: a volume source's options may hold credentials
        text = "{" + ", ".join(str(key) for key in value) + "}" if value else "{}"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)  # as YAML writes it: true, "1Gi", [...]
    found = f" (found {text if len(text) <= 60 else text[:57] + '...'})" if reveal else ""
    todo = hint or WHAT_TO_DO.get(key, "remove it: gitops-agent has no equivalent of it on a node")
    return f"field {key!r} is not supported by gitops-agent{found}: {todo}"


_HOST_PATH_INSTEAD = ("mount the storage on the node and use a hostPath volume of it (allowed by "
                      "policy.allowedHostPaths): gitops-agent drives no network or cloud volume plugin")
_ONE_NODE = "remove it: a PersistentVolumeClaim is a local Podman volume of its own, bound to no PersistentVolume"
_NO_SELINUX = "remove it: Podman gives each container its own SELinux label"
_OWN_PODS = "remove it: anti-affinity applies to the workload's own pods, in their namespace"
_OWNED = "remove it: gitops-agent owns what it creates by its labels, with no API server to collect or finalize it"
# What to do about each field the schemas list in `x-unsupported` without a hint of their own.
WHAT_TO_DO: dict[str, str] = {
    **{name: _HOST_PATH_INSTEAD for name in (
        "nfs", "iscsi", "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume",
        "flocker", "gcePersistentDisk", "glusterfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd",
        "scaleIO", "storageos", "vsphereVolume", "csi")},
    "ownerReferences": _OWNED, "finalizers": _OWNED, "spec": _OWNED,
    "generateName": "use metadata.name: gitops-agent needs a fixed name",
    "namespace": "remove it: pods are in their workload's namespace",
    "fileKeyRef": "put the file's content in a ConfigMap or Secret and use configMapKeyRef or secretKeyRef",
    "claims": "remove it: dynamic resource allocation needs a Kubernetes scheduler and its drivers",
    "hugepages-2Mi": "remove it if the application works without reserved huge pages: gitops-agent reserves none",
    "hugepages-1Gi": "remove it if the application works without reserved huge pages: gitops-agent reserves none",
    "subPathExpr": "mount the whole volume and use the file under it (env values are not expanded in mounts)",
    "mountPropagation": "remove it: mounts are private, as with Kubernetes' default None",
    "recursiveReadOnly": "remove it: readOnly: true makes the mount read-only (its submounts are not, as with "
                         "Disabled)",
    "terminationGracePeriodSeconds": "set the pod's terminationGracePeriodSeconds: it is the grace of every stop",
    "stdinOnce": "remove it: gitops-agent runs containers detached, with nothing attached to their standard input "
                 "to close it",
    "volumeDevices": "use volumeMounts with a filesystem volume: raw block volumes are not supported",
    "restartPolicyRules": "remove it: a container is restarted by its pod's restartPolicy (a sidecar's: Always), "
                          "as Podman's restart policy does it, whatever the exit code; no rule restarts a pod's "
                          "other containers",
    "stopSignal": "set STOPSIGNAL in the image: Podman stops a container with its image's stop signal",
    "seLinuxOptions": _NO_SELINUX, "seLinuxChangePolicy": _NO_SELINUX,
    "appArmorProfile": "remove it: Podman applies its default AppArmor profile where AppArmor is enabled",
    "windowsOptions": "remove it: gitops-agent runs Linux containers",
    "os": "remove it: gitops-agent runs Linux containers",
    "procMount": "remove it: /proc is masked as with procMount Default",
    "namespaces": _OWN_PODS, "namespaceSelector": _OWN_PODS, "matchLabelKeys": _OWN_PODS,
    "mismatchLabelKeys": _OWN_PODS,
    "fsGroupChangePolicy": "remove it: gitops-agent gives fsGroup the top directory of each read-write volume",
    "sysctls": "set the sysctl on the node, or remove it: gitops-agent sets no sysctls in a pod",
    "supplementalGroupsPolicy": "remove it: supplementalGroups are added to the image's groups, as with Merge",
    "serviceAccountToken": "remove it: a service-account token is issued by an API server, which gitops-agent does "
                           "not have; put a token the application needs in a Secret source",
    "clusterTrustBundle": "put the certificates in a ConfigMap source: ClusterTrustBundles live in an API server, "
                          "which gitops-agent does not have",
    "podCertificate": "put the certificate and key in a Secret source: pod certificates are issued through an API "
                      "server, which gitops-agent does not have",
    "ephemeral": "use an emptyDir: a volume that lives and dies with the pod",
    "gitRepo": "use an initContainer that clones the repository into an emptyDir (gitRepo is deprecated)",
    "hostname": "remove it: a pod's hostname is its pod name",
    "setHostnameAsFQDN": "remove it: a pod's hostname is its pod name",
    "subdomain": "remove it: pods are reached by the names of the Services that select them",
    "ephemeralContainers": "remove it: debug a running container with `podman exec` on its node",
    "dnsConfig": "remove it: pods use their namespace network's DNS server (Podman's aardvark-dns)",
    "minDomains": "remove it: replicas are spread over the label values the agent config's nodes declare, "
                  "however many there are",
    "runtimeClassName": "remove it: containers run with the node's default OCI runtime",
    "readinessGates": "use readinessProbes: they are what makes a pod ready here",
    "overhead": "remove it: it is set by a RuntimeClass, which gitops-agent does not have",
    "schedulingGates": "remove it: gitops-agent places pods at once",
    "resourceClaims": "remove it: dynamic resource allocation needs a Kubernetes scheduler and its drivers",
    "activeDeadlineSeconds": "remove it: a pod runs until its workload changes",
    "paused": "remove it: gitops-agent rolls out every commit of the branch; hold a change back by not merging it",
    "volumeMode": "remove it: volumes are filesystems (Filesystem)",
    "volumeName": _ONE_NODE, "selector": _ONE_NODE,
    "dataSource": "remove it and fill the new volume with an initContainer: a new volume starts empty",
    "dataSourceRef": "remove it and fill the new volume with an initContainer: a new volume starts empty",
    "volumeAttributesClassName": "remove it: volume attributes are set by the storage class (storageClasses:)",
    "limits": "remove it: a claim's size is its requests.storage",
    "clusterIPs": "remove it: a Service is a DNS name of its pods' addresses, with no virtual IP",
    "externalIPs": "use type NodePort or LoadBalancer to publish the Service on the node's addresses",
    "externalName": "use the external DNS name in the client's configuration (type ExternalName is not supported)",
    "externalTrafficPolicy": "remove it: traffic goes to the pod on the node that publishes the port, as with Local",
    "internalTrafficPolicy": "remove it: a Service's DNS name gives the addresses of its pods on the node",
    "healthCheckNodePort": "remove it: there is no cloud load balancer to check the node",
    "loadBalancerIP": "remove it: a LoadBalancer Service is served on the node's addresses",
    "loadBalancerClass": "remove it: a LoadBalancer Service is served on the node's addresses",
    "loadBalancerSourceRanges": "remove it only together with a firewall rule on the node that keeps the other "
                                "sources out: gitops-agent cannot restrict them",
    "allocateLoadBalancerNodePorts": "remove it: a LoadBalancer Service is served on its port, with no node port",
    "publishNotReadyAddresses": "remove it: a Service's DNS name gives the addresses of its running pods",
    "sessionAffinityConfig": "remove it: one node serves a Service's port, with no load balancing to pin",
    "trafficDistribution": "remove it: one node serves a Service's port, with no load balancing to distribute",
    "appProtocol": "remove it: a port carries its protocol over TCP or UDP as it is",
}

