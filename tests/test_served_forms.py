"""Forms of a manifest the Kubernetes API server accepts and the documentation's examples use, from literals:
base64 with line breaks, null for unset, the IP family fields on single-stack networks, autoscaling/v1."""

from __future__ import annotations

import base64
import json

from gitops_agent import model
from gitops_agent.manifests import parse
from test_manifests import files, ok, problems, y

CERT = b"-----BEGIN CERTIFICATE-----\nMIIB" + bytes(range(256)) + b"\n-----END CERTIFICATE-----\n"


def test_base64_data_may_have_line_breaks_as_in_kubernetes() -> None:
    """Go's encoding/base64 ignores CR and LF: a value wrapped at 76 columns (or anywhere) decodes to the same
    bytes, in a Secret's data and a ConfigMap's binaryData; any other character is still an error, its value not
    shown."""
    encoded = base64.b64encode(CERT).decode()
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    odd = encoded[:5] + "\r\n" + encoded[5:-1] + "\n" + encoded[-1:] + "\n"  # a break inside a quad, CRLF too
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\ndata:\n" \
        "  tls.crt: %s\n  tls.key: %s\n"
    cmap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bin}\nbinaryData:\n  cert: %s\n"
    objects = ok({"s.yaml": secret % (json.dumps(wrapped), json.dumps(odd)),
                  "c.yaml": cmap % ("|\n    " + wrapped.replace("\n", "\n    "))}).objects
    data = {o.ref.name: o.data for o in objects if isinstance(o, model.ConfigData)}
    assert data == {"tls": {"tls.crt": CERT, "tls.key": CERT}, "bin": {"cert": CERT}}
    bad = "must be standard padded base64 (line breaks are allowed; other characters are not)"
    # the documentation's secret/tls-auth-secret.yaml: its placeholders are not base64 (Kubernetes refuses them too)
    assert problems({"s.yaml": secret % ("REPLACE_WITH_BASE64_CERT", json.dumps(encoded[:8] + " " + encoded[8:]))}) == [
        f"s.yaml:6: Secret/tls: data[\"tls.crt\"]: {bad}", f"s.yaml:7: Secret/tls: data[\"tls.key\"]: {bad}"]
    assert problems({"s.yaml": secret % (encoded[:-1], json.dumps(wrapped + "="))}) == [
        f"s.yaml:6: Secret/tls: data[\"tls.crt\"]: {bad}", f"s.yaml:7: Secret/tls: data[\"tls.key\"]: {bad}"]


def test_a_multiline_base64_secret_value_is_redacted_from_messages() -> None:
    """The net under "no message quotes a Secret's value" decodes wrapped base64 too."""
    value = "wrapped-secret-value-abc123xyz"
    encoded = base64.b64encode(value.encode()).decode()
    wrapped = "\n".join(encoded[i:i + 7] for i in range(0, len(encoded), 7))
    texts = {"s.yaml": f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{v: {json.dumps(wrapped)}}}\n",
             "p.yaml": f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  hostname: {value}\n"
                       "  containers: [{name: c, image: busybox}]\n"}
    found = problems(texts)
    assert found == ["p.yaml:5: Pod/p: spec.hostname: field 'hostname' is not supported by gitops-agent (found "
                     "\"<redacted>\"): remove it: a pod's hostname is its pod name"]


def test_null_means_unset_as_in_kubernetes() -> None:
    """`storageClassName:` with no value (policy/gold-vac-pvc.yaml) is a claim of the default volume; null
    command, replicas or ports are their defaults; a null label or data value is still an error (its key is the
    user's, not a field)."""
    claim = y("""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: data}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 2Gi}}
          storageClassName:
    """)
    deployment = y("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, labels: null}
        spec:
          replicas: ~
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: c, image: busybox, command: null, ports: null}]
    """)
    objects = {o.ref.kind: o for o in ok({"c.yaml": claim, "d.yaml": deployment}).objects}
    claimed, web = objects["PersistentVolumeClaim"], objects["Deployment"]
    assert isinstance(claimed, model.Claim) and claimed.storage_class is None and claimed.storage == "2Gi"
    assert isinstance(web, model.Workload) and web.replicas == 1
    assert web.template.containers[0].command == () and web.template.containers[0].ports == ()
    assert problems({"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: null}\n"}) == [
        "c.yaml:4: ConfigMap/c: data.k: must be a string, not null"]


SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n" \
    "  ports: [{port: 80}]\n%s"


def test_ip_family_fields_of_a_single_stack_cluster_are_accepted_and_ipv6_is_refused_with_why() -> None:
    """The namespace networks are IPv4 only: SingleStack, PreferDualStack and [IPv4] give what a single-stack
    Kubernetes cluster gives (service/networking/dual-stack-preferred-svc.yaml); RequireDualStack and IPv6 are
    errors there too."""
    for fields in ("  ipFamilyPolicy: SingleStack\n", "  ipFamilyPolicy: PreferDualStack\n",
                   "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4]\n", "  ipFamilies: [IPv4]\n"):
        (svc,) = ok({"s.yaml": SERVICE % fields}).objects
        assert isinstance(svc, model.Service) and svc.ports[0].port == 80
    assert problems({"s.yaml": SERVICE % "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n"}) == [
        "s.yaml:7: Service/web: spec.ipFamilyPolicy: must be SingleStack or PreferDualStack: the namespace networks "
        "are IPv4 only, as on a single-stack Kubernetes cluster, which rejects RequireDualStack too; remove it",
        "s.yaml:8: Service/web: spec.ipFamilies: must be [IPv4]: the namespace networks are IPv4 only (a "
        "single-stack cluster)",
        "s.yaml:8: Service/web: spec.ipFamilies[0]: must be IPv4: the namespace networks are IPv4 only, as on a "
        "single-stack IPv4 Kubernetes cluster, which rejects IPv6 too (not configured on this cluster); remove it "
        "or use IPv4",
    ]


DEPLOYMENT = y("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: c, image: busybox, resources: {limits: {cpu: 100m}}}]
""")
HPA_V1 = y("""
    apiVersion: autoscaling/v1
    kind: HorizontalPodAutoscaler
    metadata: {name: web}
    spec:
      scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
      minReplicas: 2
      maxReplicas: 10
      targetCPUUtilizationPercentage: 50
""")


def test_an_autoscaling_v1_autoscaler_is_the_v2_one_kubernetes_stores() -> None:
    """targetCPUUtilizationPercentage is a cpu Utilization metric; without it, 80 % of the CPU as in v2; v2's
    fields in a v1 document, and a percentage that is not a positive integer, are errors at their line."""
    def autoscaler(text: str) -> model.Autoscaler:
        (found,) = [o for o in parse(files({"d.yaml": DEPLOYMENT, "h.yaml": text}), "").objects
                    if isinstance(o, model.Autoscaler)]
        return found
    v1 = autoscaler(HPA_V1)
    assert (v1.target, v1.min_replicas, v1.max_replicas, v1.metrics, v1.scale_up_window, v1.scale_down_window) == \
        (model.ObjectRef("Deployment", "default", "web"), 2, 10, (model.Metric("cpu", 50),), 0, 300)
    assert autoscaler(HPA_V1.replace("  targetCPUUtilizationPercentage: 50\n", "")).metrics == (
        model.Metric("cpu", 80),)
    assert problems({"d.yaml": DEPLOYMENT, "h.yaml": HPA_V1.replace("50", "0") + "  behavior: {}\n"}) == [
        "h.yaml:8: HorizontalPodAutoscaler/web: spec.targetCPUUtilizationPercentage: must be an integer of at "
        "least 1 (a percentage of the containers' cpu limits)",
        "h.yaml:9: HorizontalPodAutoscaler/web: spec.behavior: field 'behavior' is autoscaling/v2's: set "
        "apiVersion autoscaling/v2, or use targetCPUUtilizationPercentage (autoscaling/v1 has only that)",
    ]
    no_limit = DEPLOYMENT.replace(", resources: {limits: {cpu: 100m}}", "")
    (problem,) = problems({"d.yaml": no_limit, "h.yaml": HPA_V1})
    assert problem.startswith("h.yaml:8: HorizontalPodAutoscaler/web: spec.targetCPUUtilizationPercentage: the cpu "
                              "utilisation is measured against the containers' limits"), problem
