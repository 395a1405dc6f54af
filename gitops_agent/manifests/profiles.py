"""Part of step 4 of `manifests.parse` (`convert`): a container's seccomp and AppArmor profiles.

`security_profiles` gives a container's `seccomp` and `apparmor` (`model.SecurityProfile`) from, in Kubernetes'
order of precedence, its securityContext's field, the annotation of the same meaning (the beta AppArmor
annotation `container.apparmor.security.beta.kubernetes.io/<container>`, the alpha seccomp ones
`container.seccomp.security.alpha.kubernetes.io/<container>` and `seccomp.security.alpha.kubernetes.io/pod`,
which the API server copies into the fields), and the pod's securityContext. Whether Unconfined is allowed is the
policy's (`policy.check_policy`); whether a Localhost profile exists is the node's, at apply. Pure: it must not
read files or the agent config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import SecurityProfile
from .document import Document, JsonPath

APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_ANNOTATED_TYPES = {"runtime/default": "RuntimeDefault", "docker/default": "RuntimeDefault",
                    "unconfined": "Unconfined"}
_FIELDS = (("seccompProfile", "seccomp", SECCOMP_ANNOTATION), ("appArmorProfile", "apparmor", APPARMOR_ANNOTATION))


def security_profiles(doc: Document, path: JsonPath, own: Mapping[str, Any], pod_context: Mapping[str, Any],
                      annotations: Mapping[str, str], container: str) -> tuple[SecurityProfile, SecurityProfile]:
    """(seccomp, apparmor) of the container at `path` (its securityContext at `path`): its own field, else its
    annotation, else the pod's field (or, for seccomp, the pod's annotation), else RuntimeDefault."""
    found: dict[str, SecurityProfile] = {}
    for key, name, prefix in _FIELDS:
        annotation = prefix + container
        annotated = _annotated(doc, annotation, annotations.get(annotation))
        field = _field(doc, path + (key,), own.get(key))
        if field is not None and annotated is not None and field != annotated:
            doc.report(_annotation_path(doc, annotation), f"annotation {annotation} must match securityContext.{key}"
                                                          " of the container (remove the annotation)")
        pod_field = _field(doc, path[:-3] + ("securityContext", key), pod_context.get(key))
        if name == "seccomp" and pod_field is None:
            pod_field = _annotated(doc, SECCOMP_POD_ANNOTATION, annotations.get(SECCOMP_POD_ANNOTATION))
        found[name] = field or annotated or pod_field or SecurityProfile()
    return found["seccomp"], found["apparmor"]


def check_profile_annotations(doc: Document, annotations: Mapping[str, str], containers: set[str]) -> None:
    """Each per-container profile annotation names a container of the pod, as the API server checks."""
    for key in annotations:
        for prefix in (APPARMOR_ANNOTATION, SECCOMP_ANNOTATION):
            if key.startswith(prefix) and key[len(prefix):] not in containers:
                doc.report(_annotation_path(doc, key), f"annotation {key} names no container of the pod (its "
                                                       f"containers: {', '.join(sorted(containers))})")


def _field(doc: Document, path: JsonPath, value: Mapping[str, Any] | None) -> SecurityProfile | None:
    """A schema-checked profile field; localhostProfile is required with Localhost and only there."""
    if value is None:
        return None
    kind, localhost = value["type"], value.get("localhostProfile", "")
    if kind == "Localhost" and not localhost and path + ("localhostProfile",) not in doc.lines:  # else: invalid
        doc.report(path + ("localhostProfile",), "is required with type Localhost (the profile to use)")
    elif kind != "Localhost" and "localhostProfile" in value:
        doc.report(path + ("localhostProfile",), f"must not be set with type {kind} (only with Localhost)")
    return SecurityProfile(kind, localhost if kind == "Localhost" else "")


def _annotated(doc: Document, key: str, value: str | None) -> SecurityProfile | None:
    """A profile annotation's value: runtime/default, docker/default (seccomp), unconfined or localhost/<profile>."""
    if value is None:
        return None
    if value in _ANNOTATED_TYPES and not (value == "docker/default" and "apparmor" in key):
        return SecurityProfile(_ANNOTATED_TYPES[value])
    profile = value.removeprefix("localhost/")
    if value.startswith("localhost/") and profile and not ("seccomp" in key and (
            profile.startswith("/") or ".." in profile.split("/"))):
        return SecurityProfile("Localhost", profile)
    doc.report(_annotation_path(doc, key), f"annotation {key} must be runtime/default, localhost/<profile> "
                                           "(a seccomp profile's path relative, without '..') or unconfined")
    return None


def _annotation_path(doc: Document, key: str) -> JsonPath:
    """Where a template's (or a Pod's) annotation `key` is written."""
    for path in (("spec", "template", "metadata", "annotations", key), ("spec", "jobTemplate", "spec", "template",
                                                                        "metadata", "annotations", key)):
        if path in doc.lines:
            return path
    return ("metadata", "annotations", key)
