"""Unit tests of `gitops_agent.manifests`: YAML text in, `model` objects or problems out."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops_agent import forwarder, model
from gitops_agent.errors import RevisionRejected, SourceUnavailable
from gitops_agent.manifests import Limits, SourceFile, is_manifest_path, load_directory, parse

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def y(text: str) -> str:
    """YAML written indented inside a test, without the indentation."""
    return textwrap.dedent(text).lstrip("\n")


def files(named: dict[str, str | bytes]) -> list[SourceFile]:
    return [SourceFile(path, data.encode() if isinstance(data, str) else data) for path, data in named.items()]


def ok(named: dict[str, str], revision_id: str = "") -> model.Revision:
    return parse(files(named), revision_id)


def problems(named: dict[str, str | bytes], limits: Limits = Limits()) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parse(files(named), "main@sha1:" + "0" * 40, limits)
    return [str(problem) for problem in rejected.value.problems]


def by_ref(revision: model.Revision) -> dict[str, model.Object]:
    return {str(obj.ref): obj for obj in revision.objects}


NAMESPACE = y("""
    apiVersion: v1
    kind: Namespace
    metadata:
      name: shop
""")

CONFIGMAP = y("""
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: web-config
      namespace: shop
    data:
      LOG_LEVEL: info
      released: 2024-01-01
    binaryData:
      logo.png: aGVsbG8=
""")

SECRET = y("""
    apiVersion: v1
    kind: Secret
    metadata:
      name: db
      namespace: shop
    type: Opaque
    data:
      password: czNjcjN0
      user: aWdub3JlZA==
    stringData:
      user: admin
""")

PVC = y("""
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata:
      name: data
      namespace: shop
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
""")

DEPLOYMENT = y("""
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      namespace: shop
      labels: {app: web}
    spec:
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web, tier: front}
          annotations: {note: hi}
        spec:
          containers:
            - name: web
              image: nginx
              command: [nginx]
              args: ["-g", "daemon off;"]
              workingDir: /srv
              env:
                - name: LOG_LEVEL
                  valueFrom:
                    configMapKeyRef: {name: web-config, key: LOG_LEVEL}
                - name: PLAIN
                  value: "x"
              envFrom:
                - secretRef: {name: db}
                  prefix: DB_
              ports:
                - {containerPort: 80, name: http}
              resources:
                limits: {cpu: 500m, memory: 128Mi}
              volumeMounts:
                - {name: cfg, mountPath: /etc/web, readOnly: true}
                - {name: data, mountPath: /data}
              livenessProbe:
                exec: {command: ["true"]}
                periodSeconds: 5
          volumes:
            - name: cfg
              configMap:
                name: web-config
                items: [{key: LOG_LEVEL, path: level}]
            - name: data
              persistentVolumeClaim: {claimName: data}
""")

SERVICE = y("""
    apiVersion: v1
    kind: Service
    metadata:
      name: web
      namespace: shop
    spec:
      selector: {app: web}
      ports:
        - {port: 8080, targetPort: http}
""")

FULL_SET = {
    "namespace.yaml": NAMESPACE,
    "web/config.yaml": CONFIGMAP + "---\n" + SECRET,
    "web/pvc.yml": PVC,
    "web/deployment.yaml": DEPLOYMENT,
    "web/service.yaml": SERVICE,
}


def deployment(
    spec_patch: str = "", container_patch: str = "", name: str = "web", labels: str = "{app: web}",
    metadata_patch: str = "", kind: str = "Deployment",
) -> str:
    """A minimal valid Deployment (or DaemonSet) in `default`, with extra lines for its metadata, its spec and its
    only container. Without `metadata_patch` the container's lines start at line 15."""
    text = y(f"""
        apiVersion: apps/v1
        kind: {kind}
        metadata:
          name: {name}
        spec:
          selector:
            matchLabels: {labels}
          template:
            metadata:
              labels: {labels}
            spec:
              containers:
                - name: main
                  image: app:1
    """)
    for patch, indent in ((container_patch, 10), (spec_patch, 2)):
        text += textwrap.indent(y(patch).rstrip("\n") + "\n", " " * indent) if patch else ""
    if metadata_patch:
        extra = textwrap.indent(y(metadata_patch).rstrip("\n") + "\n", "  ")
        text = text.replace(f"  name: {name}\n", f"  name: {name}\n{extra}", 1)
    return text


def daemonset(spec_patch: str = "", container_patch: str = "", name: str = "agent", labels: str = "{app: agent}",
              metadata_patch: str = "") -> str:
    """A minimal valid DaemonSet in `default`; the same layout as `deployment`."""
    return deployment(spec_patch, container_patch, name, labels, metadata_patch, kind="DaemonSet")


def only_workload(text: str) -> model.Workload:
    (workload,) = ok({"w.yaml": text}).objects
    assert isinstance(workload, model.Workload)
    return workload


# --- the happy path -----------------------------------------------------------


def test_full_set_becomes_model_objects_in_kind_order() -> None:
    """A valid repository yields every object, sorted Namespace, ConfigMap, Secret, PVC, Pod, Deployment, Service."""
    revision = ok(FULL_SET, "main@sha1:" + "a" * 40)
    assert revision.id == "main@sha1:" + "a" * 40
    assert [str(obj.ref) for obj in revision.objects] == [
        "Namespace/shop/shop",
        "ConfigMap/shop/web-config",
        "Secret/shop/db",
        "PersistentVolumeClaim/shop/data",
        "Deployment/shop/web",
        "Service/shop/web",
    ]
    objects = by_ref(revision)
    assert objects["Namespace/shop/shop"] == model.Namespace(
        model.ObjectRef("Namespace", "shop", "shop"), model.Origin("namespace.yaml", 1)
    )
    assert objects["PersistentVolumeClaim/shop/data"] == model.Claim(
        model.ObjectRef("PersistentVolumeClaim", "shop", "data"), model.Origin("web/pvc.yml", 1), storage="1Gi"
    )
    assert objects["Service/shop/web"] == model.Service(
        model.ObjectRef("Service", "shop", "web"),
        model.Origin("web/service.yaml", 1),
        selector={"app": "web"},
        ports=(model.ServicePort(port=8080, target_port="http"),),
    )


def test_deployment_fields_and_defaults() -> None:
    """Every accepted Deployment field lands in the Workload, and omitted ones get Kubernetes' defaults."""
    workload = by_ref(ok(FULL_SET))["Deployment/shop/web"]
    assert workload == model.Workload(
        ref=model.ObjectRef("Deployment", "shop", "web"),
        origin=model.Origin("web/deployment.yaml", 1),
        template=model.PodTemplate(
            labels={"app": "web", "tier": "front"},
            annotations={"note": "hi"},
            containers=(
                model.Container(
                    name="web",
                    image="nginx",
                    image_pull_policy="Always",
                    command=("nginx",),
                    args=("-g", "daemon off;"),
                    working_dir="/srv",
                    env=(
                        model.EnvVar("LOG_LEVEL", ref=model.KeyRef("ConfigMap", "web-config", "LOG_LEVEL")),
                        model.EnvVar("PLAIN", value="x"),
                    ),
                    env_from=(model.EnvFrom("Secret", "db", prefix="DB_"),),
                    ports=(model.ContainerPort(80, name="http"),),
                    resources=model.Resources(cpu_millis=500, memory_bytes=128 << 20),
                    volume_mounts=(
                        model.VolumeMount("cfg", "/etc/web", read_only=True),
                        model.VolumeMount("data", "/data"),
                    ),
                    liveness_probe=model.Probe("exec", command=("true",), period_seconds=5),
                ),
            ),
            volumes=(
                model.Volume("cfg", "configMap", "web-config", items=(model.KeyToPath("LOG_LEVEL", "level"),)),
                model.Volume("data", "persistentVolumeClaim", "data"),
            ),
            restart_policy="Always",
            termination_grace_period_seconds=30,
        ),
        replicas=1,
        selector={"app": "web"},
        strategy="RollingUpdate",
        rolling_update=model.RollingUpdate("25%", "25%"),
        revision_history_limit=10,
        labels={"app": "web"},
    )


def test_config_data_is_decoded() -> None:
    """ConfigMap binaryData and Secret data are base64-decoded, Secret stringData wins, dates stay text."""
    objects = by_ref(ok(FULL_SET))
    config = objects["ConfigMap/shop/web-config"]
    secret = objects["Secret/shop/db"]
    assert isinstance(config, model.ConfigData) and isinstance(secret, model.ConfigData)
    assert dict(config.data) == {"LOG_LEVEL": b"info", "released": b"2024-01-01", "logo.png": b"hello"}
    assert dict(secret.data) == {"password": b"s3cr3t", "user": b"admin"}
    assert secret.is_secret and not config.is_secret


def test_bare_pod_is_a_single_replica_recreate_workload() -> None:
    """A Pod becomes a Workload of kind Pod with one replica, strategy Recreate and its labels on the template."""
    pod = y("""
        apiVersion: v1
        kind: Pod
        metadata:
          name: job
          labels: {app: job}
          annotations: {a: b}
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 5
          nodeSelector: {disk: ssd}
          containers:
            - {name: main, image: "busybox:1.36", imagePullPolicy: Never}
    """)
    workload = ok({"pod.yaml": pod}).objects[0]
    assert isinstance(workload, model.Workload)
    assert workload.ref == model.ObjectRef("Pod", "default", "job")
    assert (workload.replicas, workload.strategy, workload.labels) == (1, "Recreate", {"app": "job"})
    assert workload.template == model.PodTemplate(
        labels={"app": "job"},
        annotations={"a": "b"},
        containers=(model.Container("main", "busybox:1.36", "Never"),),
        restart_policy="OnFailure",
        termination_grace_period_seconds=5,
        node_selector={"disk": "ssd"},
    )


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("localhost:5000/team/app", "Always"),
        ("localhost:5000/team/app:2", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy_defaults_like_kubernetes(image: str, policy: str) -> None:
    """imagePullPolicy defaults to Always for `latest` or no tag and no digest, else IfNotPresent."""
    workload = ok({"d.yaml": deployment().replace("image: app:1", f"image: {image}")}).objects[0]
    assert isinstance(workload, model.Workload)
    assert workload.template.containers[0].image_pull_policy == policy


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        ('"500m"', '"128Mi"', model.Resources(500, 128 * 2**20)),
        ('"1"', '"1G"', model.Resources(1000, 10**9)),
        ('"0.5"', '"10000000"', model.Resources(500, 10_000_000)),
        ("2", "10000000", model.Resources(2000, 10_000_000)),
        ("0.25", '"4.5Mi"', model.Resources(250, 4_718_592)),
        ('".5"', '".5Gi"', model.Resources(500, 2**29)),  # valid Kubernetes quantities without a leading 0
    ],
)
def test_quantities_convert_to_millicores_and_bytes(cpu: str, memory: str, expected: model.Resources) -> None:
    """CPU and memory limits, as strings or numbers, become cpu_millis and memory_bytes."""
    text = deployment(container_patch=f"resources: {{limits: {{cpu: {cpu}, memory: {memory}}}}}")
    workload = ok({"d.yaml": text}).objects[0]
    assert isinstance(workload, model.Workload)
    assert workload.template.containers[0].resources == expected


def test_deployment_strategy_and_counts() -> None:
    """replicas, revisionHistoryLimit and rollingUpdate values are kept exactly as written."""
    text = deployment(spec_patch="""
        replicas: 3
        revisionHistoryLimit: 2
        strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: "50%"}}
    """)
    workload = ok({"d.yaml": text}).objects[0]
    assert isinstance(workload, model.Workload)
    assert (workload.replicas, workload.revision_history_limit) == (3, 2)
    assert workload.rolling_update == model.RollingUpdate(1, "50%")


def test_nodeport_service_and_default_target_port() -> None:
    """A NodePort Service keeps its nodePort; targetPort defaults to port."""
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: NodePort
          selector: {app: web}
          ports:
            - {name: http, port: 80, nodePort: 30080, protocol: UDP}
    """)
    (obj,) = ok({"s.yaml": service}).objects
    assert obj == model.Service(
        model.ObjectRef("Service", "default", "web"),
        model.Origin("s.yaml", 1),
        selector={"app": "web"},
        ports=(model.ServicePort(80, 80, "UDP", 30080, "http"),),
        type="NodePort",
    )


def test_empty_documents_are_skipped_and_merge_keys_apply() -> None:
    """Empty and null documents are skipped; aliases and `<<` merge keys are expanded (explicit keys win)."""
    text = y("""
        ---
        # only a comment
        ---
        --- null
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: &name merged
          labels: {app: *name}
        data:
          <<: [{a: one, b: one}, {b: two, c: two}]
          c: own
    """)
    (config,) = ok({"c.yaml": text}).objects
    assert config.origin == model.Origin("c.yaml", 6)
    assert isinstance(config, model.ConfigData)
    assert dict(config.data) == {"a": b"one", "b": b"one", "c": b"own"}


def test_digest_ignores_file_order_and_non_manifests() -> None:
    """The digest depends on manifest paths and bytes only, not on the order files are given in."""
    forward = parse(files(FULL_SET))
    backward = parse(files(dict(reversed(FULL_SET.items())) | {"README.md": "hi", ".hidden/x.yaml": "junk"}))
    assert forward.digest == backward.digest
    assert forward.digest.startswith("sha256:") and len(forward.digest) == 7 + 64
    changed = parse(files(FULL_SET | {"web/pvc.yml": PVC.replace("1Gi", "2Gi")}))
    moved = parse(files({("other/" + path): text for path, text in FULL_SET.items()}))
    assert len({forward.digest, changed.digest, moved.digest}) == 3


def test_no_files_is_an_empty_revision() -> None:
    """A repository without manifests is a valid, empty revision (pruning safety is not decided here)."""
    assert parse([], "r").objects == ()


# --- unsupported and unknown --------------------------------------------------


def test_unsupported_field_differs_from_unknown_field() -> None:
    """A known Kubernetes field is 'not supported by gitops-agent'; a misspelt one is 'unknown'."""
    text = deployment(container_patch="imagee: nginx\nstdinOnce: true\n").replace(
        "      containers:", "      subdomain: web\n      containers:"
    )
    assert problems({"d.yaml": text}) == [
        "d.yaml:12: Deployment/web: spec.template.spec.subdomain: field 'subdomain' is not supported by gitops-agent "
        "(found \"web\"): remove it: pods are reached by the names of the Services that select them",
        "d.yaml:16: Deployment/web: spec.template.spec.containers[0].imagee: unknown field 'imagee' (did you mean 'image'?)",
        "d.yaml:17: Deployment/web: spec.template.spec.containers[0].stdinOnce: "
        "field 'stdinOnce' is not supported by gitops-agent (found true): remove it: gitops-agent runs containers "
        "detached, with nothing attached to their standard input to close it",
    ]


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ("resources: {limits: {ephemeral-storage: 1Gi}}", "containers[0].resources.limits.ephemeral-storage",
         "field 'ephemeral-storage' is not supported by gitops-agent (found \"1Gi\"): remove it: Podman's overlay "
         "storage can limit a container's writable layer only on XFS with project quotas, which gitops-agent "
         "does not require of a node, so no size would be enforced (a request of ephemeral-storage is accepted: "
         "it places the pod)"),
        ("readinessProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 5}",
         "containers[0].readinessProbe.terminationGracePeriodSeconds",
         "field 'terminationGracePeriodSeconds' is not supported by gitops-agent (found 5): set the pod's "
         "terminationGracePeriodSeconds: it is the grace of every stop"),
        ("securityContext: {seccompProfile: {type: Unconfined}}", "containers[0].securityContext.seccompProfile.type",
         "seccomp profile Unconfined (no seccomp confinement) is not allowed by the agent policy "
         "(policy.allowUnconfined; Pod Security's baseline level forbids it too): use RuntimeDefault or a "
         "Localhost profile"),
        ("securityContext: {runAsNonRoot: true, runAsUser: 0}", "containers[0].securityContext.runAsNonRoot",
         "runAsNonRoot: true contradicts runAsUser: 0"),
        ("volumeMounts: [{name: v, mountPath: /v, subPathExpr: x}]", "containers[0].volumeMounts[0].subPathExpr",
         "field 'subPathExpr' is not supported by gitops-agent (found \"x\"): mount the whole volume and use the "
         "file under it (env values are not expanded in mounts)"),
        ("env: [{name: A, valueFrom: {fileKeyRef: {path: a, key: b}}}]",
         "containers[0].env[0].valueFrom.fileKeyRef", "field 'fileKeyRef' is not supported by gitops-agent (found "
         "{path, key}): put the file's content in a ConfigMap or Secret and use configMapKeyRef or secretKeyRef"),
    ],
)
def test_unsupported_container_fields(patch: str, path: str, message: str) -> None:
    """Well-known container fields that the agent cannot honour are named as unsupported, at their key."""
    found = problems({"d.yaml": deployment(container_patch=patch)})
    undeclared = "d.yaml:15: Deployment/web: spec.template.spec.containers[0].volumeMounts[0].name: " \
        "volume 'v' is not declared in the pod's volumes"  # the input's other problem, in the same round
    assert found == [f"d.yaml:15: Deployment/web: spec.template.spec.{path}: {message}"] + \
        ([undeclared] if "volumeMounts" in patch else [])


def test_unsupported_volume_source_and_deployment_fields() -> None:
    """ephemeral volumes and paused are unsupported, each at its own line (an empty matchExpressions beside
    matchLabels is no problem)."""
    text = y("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          paused: true
          selector:
            matchLabels: {app: web}
            matchExpressions: []
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: main, image: "app:1"}]
              volumes:
                - name: scratch
                  ephemeral: {}
    """)
    assert problems({"d.yaml": text}) == [
        "d.yaml:5: Deployment/web: spec.paused: field 'paused' is not supported by gitops-agent (found true): "
        "remove it: gitops-agent rolls out every commit of the branch; hold a change back by not merging it",
        "d.yaml:15: Deployment/web: spec.template.spec.volumes[0].ephemeral: "
        "field 'ephemeral' is not supported by gitops-agent (found {}): use an emptyDir: a volume that lives and dies "
        "with the pod",
    ]


def test_unsupported_kind_and_wrong_api_version() -> None:
    """An unknown kind lists the supported ones; a known kind with the wrong apiVersion names the right one."""
    text = y("""
        apiVersion: v1
        kind: PodTemplate
        metadata: {name: db}
        ---
        apiVersion: extensions/v1beta1
        kind: Deployment
        metadata: {name: old}
        ---
        metadata: {name: nokind}
    """)
    assert problems({"k.yaml": text}) == [
        "k.yaml:2: PodTemplate/db: kind: kind 'PodTemplate' is not supported by gitops-agent "
        "(supported: Namespace, ConfigMap, Secret, PersistentVolumeClaim, Pod, Deployment, DaemonSet, "
        "ReplicationController, ReplicaSet, StatefulSet, Job, CronJob, Service, HorizontalPodAutoscaler)",
        "k.yaml:5: Deployment/old: apiVersion: apiVersion for kind Deployment must be 'apps/v1', not 'extensions/v1beta1'",
        "k.yaml:9: missing required field 'kind'",
    ]


# --- schema errors ------------------------------------------------------------


def test_schema_errors_point_at_the_offending_line() -> None:
    """Type, enum, pattern, required and const errors carry the line and JSON path of the node at fault."""
    text = y("""
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: Web_1
          labels: {"bad key!": x}
        spec:
          replicas: many
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: web}
            spec:
              restartPolicy: Never
              containers:
                - name: main
                  imagePullPolicy: Sometimes
                  resources: {limits: {cpu: lots}}
    """)
    assert problems({"d.yaml": text}) == [
        "d.yaml:4: Deployment/Web_1: metadata.name: must be a DNS-1123 subdomain: dot-separated lowercase labels of "
        "letters, digits and '-', each starting and ending with a letter or digit",
        "d.yaml:5: Deployment/Web_1: metadata.labels[\"bad key!\"]: key 'bad key!' must be a qualified name: an optional "
        "DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with "
        "a letter or digit",
        "d.yaml:7: Deployment/Web_1: spec.replicas: must be an integer, not a string",
        "d.yaml:14: Deployment/Web_1: spec.template.spec.restartPolicy: must be Always in a Deployment",
        "d.yaml:16: Deployment/Web_1: spec.template.spec.containers[0]: missing required field 'image'",
        "d.yaml:17: Deployment/Web_1: spec.template.spec.containers[0].imagePullPolicy: "
        "must be one of Always, IfNotPresent, Never, not 'Sometimes'",
        "d.yaml:18: Deployment/Web_1: spec.template.spec.containers[0].resources.limits.cpu: "
        "must be a CPU quantity such as \"500m\", \"1\" or \"0.5\"",
    ]


def test_volume_sources_are_validated_one_per_volume() -> None:
    """Each volume is checked on its own: no source, two sources, or a single valid one."""
    template = y("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: main, image: "app:1"}]
          volumes:
            - name: none
            - {name: two, configMap: {name: c, optional: true}, secret: {secretName: s, optional: true}}
            - {name: fine, configMap: {name: c, optional: true}}
    """)
    message = ("needs a name and exactly one source: configMap, secret, downwardAPI, projected, persistentVolumeClaim, "
               "hostPath, emptyDir or image")
    assert problems({"p.yaml": template}) == [
        f"p.yaml:7: Pod/p: spec.volumes[0]: {message}",
        f"p.yaml:8: Pod/p: spec.volumes[1]: {message}",
    ]


def test_nodeport_may_be_left_out() -> None:
    """A NodePort Service without nodePort is valid: the agent allocates one."""
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: NodePort
          selector: {app: web}
          ports:
            - port: 80
    """)
    (svc,) = ok({"s.yaml": service}).objects
    assert isinstance(svc, model.Service) and svc.ports[0].node_port is not None  # allocated (test_mappings.py)


def test_secret_type_and_base64_are_checked() -> None:
    """A typed Secret must hold its type's keys, and data values must be base64: both problems in one round."""
    secret = y("""
        apiVersion: v1
        kind: Secret
        metadata: {name: tls}
        type: kubernetes.io/tls
        data:
          key: not base64!
    """)
    assert problems({"s.yaml": secret}) == [
        "s.yaml:4: Secret/tls: type: a Secret of type kubernetes.io/tls needs key 'tls.crt', 'tls.key'",
        "s.yaml:6: Secret/tls: data.key: must be standard padded base64 (line breaks are allowed; other characters "
        "are not)",
    ]


SECRET_OF_TYPE = """
    apiVersion: v1
    kind: Secret
    metadata: {{name: s}}
    type: {type}
    stringData: {{{keys}}}
"""


@pytest.mark.parametrize(
    ("secret_type", "keys"),
    [
        ("kubernetes.io/tls", "tls.crt: CERT-TEXT, tls.key: KEY-TEXT"),
        ("kubernetes.io/basic-auth", "username: admin"),
        ("kubernetes.io/basic-auth", "password: PASSWORD-TEXT"),
        ("kubernetes.io/ssh-auth", "ssh-privatekey: KEY-TEXT, known_hosts: HOSTS"),
        ("Opaque", "anything: VALUE"),
    ],
)
def test_typed_secrets_with_their_keys_are_used_as_usual(secret_type: str, keys: str) -> None:
    revision = ok({"s.yaml": y(SECRET_OF_TYPE.format(type=secret_type, keys=keys))})
    (secret,) = revision.objects
    assert isinstance(secret, model.ConfigData)
    assert sorted(secret.data) == sorted(pair.split(":")[0].strip() for pair in keys.split(","))


@pytest.mark.parametrize(
    ("secret_type", "keys", "message"),
    [
        ("kubernetes.io/tls", "tls.crt: CERT-TEXT", "type: a Secret of type kubernetes.io/tls needs key 'tls.key'"),
        ("kubernetes.io/basic-auth", "user: admin",
         "type: a Secret of type kubernetes.io/basic-auth needs key 'username' or 'password'"),
        ("kubernetes.io/ssh-auth", "id_rsa: KEY-TEXT",
         "type: a Secret of type kubernetes.io/ssh-auth needs key 'ssh-privatekey'"),
        ("kubernetes.io/service-account-token", "token: TOKEN-TEXT",
         "type: type must be Opaque, kubernetes.io/tls, kubernetes.io/basic-auth, kubernetes.io/ssh-auth, "
         "kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg (a kubernetes.io/service-account-token Secret is filled by the API server, which gitops-agent does not have: "
         "remove it, or use an Opaque Secret with the token)"),
    ],
)
def test_typed_secrets_without_their_keys_are_rejected(secret_type: str, keys: str, message: str) -> None:
    reported = problems({"s.yaml": y(SECRET_OF_TYPE.format(type=secret_type, keys=keys))})
    assert reported == [f"s.yaml:4: Secret/s: {message}"]
    assert not any(value in reported[0] for value in ("CERT-TEXT", "KEY-TEXT", "TOKEN-TEXT"))


def test_values_over_podman_secret_limit_are_rejected() -> None:
    """A value of 512000 bytes or more after decoding is an error: Podman's secret store holds less than 512000."""
    secret = y(f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: big}}
        stringData:
          small: x
          fits: {"x" * 511_999}
          large: {"x" * 512_000}
    """)
    assert problems({"s.yaml": secret}) == [
        "s.yaml:7: Secret/big: stringData.large: value is 512000 bytes; Podman's secret store holds at most 511999",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: x}\nbinaryData: {k: eA==}\n",
            "c.yaml:5: ConfigMap/c: binaryData.k: key 'k' is also in data",
        ),
        (
            deployment(container_patch="resources: {limits: {memory: 0}}"),
            "c.yaml:15: Deployment/web: spec.template.spec.containers[0].resources.limits.memory: "
            "must be greater than zero (omit the limit for no limit)",
        ),
        (
            deployment(spec_patch="strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}"),
            "c.yaml:15: Deployment/web: spec.strategy.rollingUpdate: maxSurge and maxUnavailable cannot both be 0",
        ),
        (
            deployment(spec_patch="strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}"),
            "c.yaml:15: Deployment/web: spec.strategy.rollingUpdate: may not be set when the strategy type is Recreate",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {a: b}\n"
            "  ports: [{name: x, port: 80}, {port: 81}]\n",
            "c.yaml:6: Service/s: spec.ports[1]: a Service with several ports must name each one",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {a: b}\n"
            "  ports: [{port: 80, nodePort: 30080}]\n",
            "c.yaml:6: Service/s: spec.ports[0].nodePort: is only allowed when the Service type is NodePort",
        ),
    ],
)
def test_single_object_rules(text: str, problem: str) -> None:
    """Rules within one object that go beyond field shapes are enforced with a precise location."""
    assert problems({"c.yaml": text}) == [problem]


# --- YAML and files -----------------------------------------------------------


def test_duplicate_keys_are_rejected() -> None:
    """A key given twice in one mapping is an error at the second one, not a silent override."""
    text = y("""
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: a
        data:
          k: one
          k: two
    """)
    assert problems({"c.yaml": text}) == ["c.yaml:7: ConfigMap/a: data.k: duplicate key 'k'"]
    # The document's other problems come in the same round.
    assert problems({"c.yaml": text + "immutable: 'yes'\n"}) == [
        "c.yaml:7: ConfigMap/a: data.k: duplicate key 'k'",
        "c.yaml:8: ConfigMap/a: immutable: must be a boolean, not a string",
    ]


def test_alias_bomb_is_stopped() -> None:
    """A billion-laughs document stops at the node limit with one problem instead of exhausting memory."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert problems({"bomb.yaml": "\n".join(levels)}) == [
        "bomb.yaml:1: YAML expands to more than 100000 nodes (too many aliases?)",
    ]


def test_alias_expansion_is_counted_against_the_limit() -> None:
    """Each alias expansion counts as nodes, so a small limit rejects a small file that expands a lot."""
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: &d {a: b, c: d}\nx: [*d, *d, *d]\n"
    assert problems({"c.yaml": text}, Limits(max_yaml_nodes=15)) == [
        "c.yaml:4: YAML expands to more than 15 nodes (too many aliases?)",
    ]


def test_deep_and_recursive_yaml_is_rejected() -> None:
    """Deep nesting and self-referencing anchors are rejected instead of overflowing the stack."""
    assert problems({"deep.yaml": "a: " + "[" * 5000 + "]" * 5000, "loop.yaml": "a: &a [*a]\n"}) == [
        "deep.yaml:1: YAML is nested deeper than 64 levels",
        "loop.yaml:1: YAML is nested deeper than 64 levels",
    ]


def test_unsafe_and_exotic_tags_are_not_executed() -> None:
    """Python object tags and other non-JSON tags are errors; nothing is constructed."""
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: !!python/object/apply:os.system [echo]\n"
    assert problems({"c.yaml": text}) == [
        "c.yaml:4: data: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not supported",
    ]


def test_binary_non_utf8_and_syntax_errors() -> None:
    """Binary files, non-UTF-8 text, invalid YAML and non-mapping documents are reported with their line."""
    assert problems({
        "a.yaml": b"kind: x\n\x00\x01",
        "b.yaml": b"a: 1\nb: \xff\n",
        "c.yaml": "a: [1, 2\n",
        "d.yaml": "- just\n- a list\n",
        "e.yaml": "key: 1\n key2: 2\n",
    }) == [
        "a.yaml:2: binary file (contains NUL bytes)",
        "b.yaml:2: file is not UTF-8 text",
        "c.yaml:2: invalid YAML: did not find expected ',' or ']'",
        "d.yaml:1: a document must be a mapping, not a list",
        "e.yaml:2: invalid YAML: mapping values are not allowed in this context",
    ]


def test_tabs_after_values_are_whitespace() -> None:
    """A tab after a value (or a key) is whitespace, as in Kubernetes (libyaml's scanner; the pure-Python one
    refused it: "found character '\\t' that cannot start any token")."""
    text = "apiVersion: v1\t\nkind: ConfigMap\t\t\nmetadata:\t\n  name: c\t\ndata:\n  k: v\t\n"
    (config,) = ok({"c.yaml": text}).objects
    assert isinstance(config, model.ConfigData) and config.data == {"k": b"v"}


def test_symlinks_and_size_limits() -> None:
    """Symlinks are rejected; a file over max_file_bytes is rejected without being parsed."""
    with pytest.raises(RevisionRejected) as rejected:
        parse(
            [SourceFile("link.yaml", b"", is_symlink=True), SourceFile("big.yaml", b"# " + b"x" * 100)],
            limits=Limits(max_file_bytes=100),
        )
    assert [str(problem) for problem in rejected.value.problems] == [
        "big.yaml:1: file is 102 bytes; the limit is 100",
        "link.yaml:1: symlinks are not followed; commit the file itself",
    ]


def test_file_count_and_total_size_limits() -> None:
    """Too many files, or too many bytes in total, stop reading with one problem at the first file over the limit."""
    three = {"a.yaml": "# a\n", "b.yaml": "# b\n", "c.yaml": "# c\n"}
    assert problems(three, Limits(max_files=2)) == ["c.yaml:1: more than 2 manifest files, the limit"]
    assert problems(three, Limits(max_total_bytes=6)) == [
        "b.yaml:1: manifest files total more than 6 bytes, the limit",
    ]


def test_dotfiles_and_other_files_are_ignored() -> None:
    """Only .yaml/.yml files outside dot-directories are manifests."""
    assert is_manifest_path("apps/web/deploy.yaml") and is_manifest_path("x.yml")
    assert not any(map(is_manifest_path, [".hidden.yaml", ".github/ci.yaml", "a/.b/c.yaml", "README.md", "x.json"]))
    assert parse(files({".github/workflow.yaml": "not: [valid", "notes.txt": "\x00"})).objects == ()


def test_load_directory_skips_dotfiles_and_reports_symlinks(tmp_path: Path) -> None:
    """load_directory reads manifests recursively, skips dot entries, and never follows symlinks."""
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "ns.yaml").write_text(NAMESPACE)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.yaml").write_text("x")
    (tmp_path / ".hidden.yml").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    os.symlink(tmp_path / "apps" / "ns.yaml", tmp_path / "link.yaml")
    os.symlink(tmp_path / "apps", tmp_path / "linked.yaml")
    assert load_directory(tmp_path) == [
        SourceFile("apps/ns.yaml", NAMESPACE.encode()),
        SourceFile("link.yaml", b"", is_symlink=True),
        SourceFile("linked.yaml", b"", is_symlink=True),
    ]


def test_load_directory_of_a_missing_path_is_source_unavailable(tmp_path: Path) -> None:
    """An unreadable or missing directory is SourceUnavailable, not an OSError."""
    with pytest.raises(SourceUnavailable, match="No such file or directory"):
        load_directory(tmp_path / "missing")


# --- checks across objects ----------------------------------------------------


def test_undeclared_namespace_and_duplicates() -> None:
    """Objects outside 'default' need their Namespace; the same Kind/namespace/name twice is an error."""
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {ns}\n"
    assert problems({
        "a.yaml": config.format(ns="default"),
        "b.yaml": config.format(ns="default"),
        "c.yaml": config.format(ns="prod"),
    }) == [
        "b.yaml:4: ConfigMap/c: metadata.name: duplicate object: ConfigMap/default/c is also declared at a.yaml:1",
        "c.yaml:5: ConfigMap/c: metadata.namespace: namespace 'prod' is not declared in the repository",
    ]


def test_references_to_missing_objects_and_keys() -> None:
    """env, envFrom and volumes must name existing ConfigMaps, Secrets, keys and claims, unless optional."""
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {present: x}\n"
    pod = y("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: main
              image: "app:1"
              env:
                - name: A
                  valueFrom: {configMapKeyRef: {name: cfg, key: absent}}
                - name: B
                  valueFrom: {secretKeyRef: {name: nosecret, key: k}}
                - name: C
                  valueFrom: {secretKeyRef: {name: nosecret, key: k, optional: true}}
              envFrom:
                - configMapRef: {name: nocfg}
                - secretRef: {name: nosecret, optional: true}
              volumeMounts:
                - {name: undeclared, mountPath: /x}
          volumes:
            - name: files
              configMap:
                name: cfg
                items: [{key: present, path: a}, {key: missing, path: b}]
            - name: claim
              persistentVolumeClaim: {claimName: noclaim}
    """)
    assert problems({"config.yaml": config, "pod.yaml": pod}) == [
        "pod.yaml:10: Pod/p: spec.containers[0].env[0].valueFrom.configMapKeyRef.key: ConfigMap 'cfg' has no key 'absent'",
        "pod.yaml:12: Pod/p: spec.containers[0].env[1].valueFrom.secretKeyRef.name: "
        "Secret 'nosecret' does not exist in namespace 'default'",
        "pod.yaml:16: Pod/p: spec.containers[0].envFrom[0].configMapRef.name: "
        "ConfigMap 'nocfg' does not exist in namespace 'default'",
        "pod.yaml:19: Pod/p: spec.containers[0].volumeMounts[0].name: volume 'undeclared' is not declared in the pod's volumes",
        "pod.yaml:24: Pod/p: spec.volumes[0].configMap.items[1].key: ConfigMap 'cfg' has no key 'missing'",
        "pod.yaml:26: Pod/p: spec.volumes[1].persistentVolumeClaim.claimName: "
        "PersistentVolumeClaim 'noclaim' does not exist in namespace 'default'",
    ]


def test_references_look_in_the_pods_namespace_only() -> None:
    """A ConfigMap of the same name in another namespace does not satisfy a reference."""
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: other}\n"
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n"
    text = deployment(container_patch="envFrom: [{configMapRef: {name: cfg}}]")
    assert problems({"c.yaml": config, "d.yaml": text, "ns.yaml": namespace}) == [
        "d.yaml:15: Deployment/web: spec.template.spec.containers[0].envFrom[0].configMapRef.name: "
        "ConfigMap 'cfg' does not exist in namespace 'default'",
    ]


def test_pod_internal_consistency() -> None:
    """Duplicate container names and a selector that does not match the template labels are errors."""
    text = y("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector:
            matchLabels: {app: web, tier: front}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - {name: main, image: "app:1"}
                - {name: main, image: "app:2"}
    """)
    assert problems({"d.yaml": text}) == [
        "d.yaml:6: Deployment/web: spec.selector.matchLabels: "
        "selector does not match the template labels: tier=front not in spec.template.metadata.labels",
        "d.yaml:12: Deployment/web: spec.template.spec.containers[1].name: duplicate container name 'main'",
    ]


def test_host_port_conflicts_between_workloads_and_node_ports() -> None:
    """Two pods binding the same host port and protocol conflict, and a nodePort counts as a host port."""
    first = deployment(name="a", labels="{app: a}", spec_patch="strategy: {type: Recreate}",
                       container_patch="ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 53, hostPort: 53}]")
    second = deployment(name="b", labels="{app: b}", spec_patch="strategy: {type: Recreate}",
                        container_patch="ports: [{containerPort: 80, hostPort: 8080}, "
                                        "{containerPort: 53, hostPort: 53, protocol: UDP}]")
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        spec:
          type: NodePort
          selector: {app: nothing}
          ports: [{name: a, port: 80, nodePort: 30053}, {name: b, port: 81, nodePort: 30080}]
    """)
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n" \
          "    - {name: m, image: x, ports: [{containerPort: 1, hostPort: 30080}]}\n"
    assert problems({"a.yaml": first, "b.yaml": second, "p.yaml": pod, "s.yaml": service}) == [
        "b.yaml:15: Deployment/b: spec.template.spec.containers[0].ports[0].hostPort: "
        "host port 8080/TCP is already used by Deployment/a at a.yaml:15",
        "s.yaml:7: Service/s: spec.ports[1].nodePort: host port 30080/TCP is already used by Pod/p at p.yaml:6",
    ]


def test_host_port_workload_must_not_run_two_pods() -> None:
    """A hostPort Deployment with several replicas, or a surging RollingUpdate, conflicts with itself."""
    def web(name: str, host_port: int, spec_patch: str) -> str:
        ports = f"ports: [{{containerPort: 80, hostPort: {host_port}}}]"
        return deployment(name=name, labels=f"{{app: {name}}}", container_patch=ports, spec_patch=spec_patch)

    assert problems({
        "replicas.yaml": web("replicas", 8080, "replicas: 2\nstrategy: {type: Recreate}"),
        "surge.yaml": web("surge", 8081, ""),
        "fine.yaml": web("fine", 8082, "strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}"),
    }) == [
        "replicas.yaml:15: Deployment/replicas: spec.template.spec.containers[0].ports[0].hostPort: hostPort 8080/TCP: "
        "2 replicas would run 2 pods on one node, and only one of them can bind the port; use replicas: 1",
        "surge.yaml:15: Deployment/surge: spec.template.spec.containers[0].ports[0].hostPort: hostPort 8081/TCP: "
        "a RollingUpdate with maxSurge 25% starts the new pod while the old one still holds the port; "
        "use strategy Recreate or maxSurge: 0",
    ]


def test_nodeport_service_selecting_several_pods() -> None:
    """A NodePort Service selecting several pods that surge is accepted: its forwarder owns the node port
    (gitops_agent/forwarder.py, tests/test_forwarder.py); once rejected ("only one pod on a node can own a node
    port", "a RollingUpdate with maxSurge 25% starts the new pod while the old one still holds the port")."""
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: NodePort
          selector: {app: web}
          ports: [{port: 80, targetPort: http, nodePort: 30080}]
    """)
    web = deployment(spec_patch="replicas: 3", container_patch="ports: [{containerPort: 80, name: http}]")
    rev = ok({"d.yaml": web, "s.yaml": service})
    (svc,) = [o for o in rev.objects if isinstance(o, model.Service)]
    assert forwarder.forwarded(svc, [o for o in rev.objects if isinstance(o, model.Workload)])


def test_service_target_port_name_must_exist() -> None:
    """A named targetPort must be a container port name of every selected workload."""
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n" \
              "  ports: [{port: 80, targetPort: http}]\n"
    assert problems({"d.yaml": deployment(), "s.yaml": service}) == [
        "s.yaml:6: Service/web: spec.ports[0].targetPort: targetPort 'http' is not a container port name of Deployment/web",
    ]


def test_all_problems_are_reported_at_once_sorted_by_file_and_line() -> None:
    """Problems from several files and several check stages come together, sorted by file then line."""
    bad_config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nowhere}\nimmutable: 'yes'\n"
    rejected = problems({
        "z.yaml": deployment(container_patch="envFrom: [{secretRef: {name: s}}]"),
        "a.yaml": bad_config,
        "m.yaml": "a: [",
    })
    assert rejected == [
        "a.yaml:3: ConfigMap/c: metadata.namespace: namespace 'nowhere' is not declared in the repository",
        "a.yaml:4: ConfigMap/c: immutable: must be a boolean, not a string",
        "m.yaml:1: invalid YAML: did not find expected node content",
        "z.yaml:15: Deployment/web: spec.template.spec.containers[0].envFrom[0].secretRef.name: "
        "Secret 's' does not exist in namespace 'default'",
    ]


def test_rejection_carries_the_revision_id() -> None:
    """RevisionRejected names the revision so the loop can record which commit was bad."""
    with pytest.raises(RevisionRejected) as rejected:
        parse(files({"a.yaml": "- x"}), "main@sha1:" + "b" * 40)
    assert rejected.value.revision == "main@sha1:" + "b" * 40
    assert str(rejected.value).startswith("revision main@sha1:" + "b" * 40 + " rejected: 1 problem(s)\n")


# --- probes -------------------------------------------------------------------


def test_probes_of_every_kind_and_handler() -> None:
    """exec, httpGet and tcpSocket probes become model.Probe, a named port resolved to its containerPort."""
    text = deployment(container_patch="""
        ports:
          - {containerPort: 8080, name: http}
          - {containerPort: 9090, name: metrics}
        livenessProbe:
          httpGet:
            path: /healthz?full=1
            port: metrics
            host: localhost
            scheme: HTTPS
            httpHeaders:
              - {name: X-Probe, value: "yes please"}
              - {name: X-Probe, value: again}
          initialDelaySeconds: 3
          periodSeconds: 7
          timeoutSeconds: 2
          successThreshold: 1
          failureThreshold: 4
        readinessProbe:
          tcpSocket: {port: 8080, host: 10.0.0.1}
          successThreshold: 2
        startupProbe:
          exec: {command: [cat, /tmp/ready]}
          failureThreshold: 30
    """)
    (container,) = only_workload(text).template.containers
    assert container.liveness_probe == model.Probe(
        "httpGet",
        port=9090,
        path="/healthz?full=1",
        scheme="HTTPS",
        host="localhost",
        headers=(("X-Probe", "yes please"), ("X-Probe", "again")),
        initial_delay_seconds=3,
        period_seconds=7,
        timeout_seconds=2,
        success_threshold=1,
        failure_threshold=4,
    )
    assert container.readiness_probe == model.Probe("tcpSocket", port=8080, host="10.0.0.1", success_threshold=2)
    assert container.startup_probe == model.Probe("exec", command=("cat", "/tmp/ready"), failure_threshold=30)


def test_probe_defaults() -> None:
    """Omitted probe fields get Kubernetes' defaults: path "/", scheme HTTP, host "", 0/10/1/1/3."""
    text = deployment(container_patch="""
        ports: [{containerPort: 80, name: web}]
        livenessProbe: {tcpSocket: {port: web}}
        readinessProbe: {httpGet: {port: 80}}
    """)
    (container,) = only_workload(text).template.containers
    expected = model.Probe("tcpSocket", port=80, path="/", scheme="HTTP", host="", initial_delay_seconds=0,
                           period_seconds=10, timeout_seconds=1, success_threshold=1, failure_threshold=3)
    assert container.liveness_probe == expected
    assert container.readiness_probe == model.Probe("httpGet", port=80)
    assert container.startup_probe is None


def test_probes_on_pods_and_daemonsets() -> None:
    """Pods and DaemonSets take the same probes as Deployments."""
    pod = y("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: main
              image: "app:1"
              ports: [{containerPort: 5432, name: pg}]
              readinessProbe: {tcpSocket: {port: pg}}
    """)
    (pod_container,) = only_workload(pod).template.containers
    assert pod_container.readiness_probe == model.Probe("tcpSocket", port=5432)
    text = daemonset(container_patch="startupProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}")
    (ds_container,) = only_workload(text).template.containers
    assert ds_container.startup_probe == model.Probe("exec", command=("true",), period_seconds=1)


_HANDLER = "exactly one of exec, httpGet, tcpSocket, grpc"


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ("readinessProbe: {periodSeconds: 5}", "readinessProbe", f"needs {_HANDLER}"),
        ("readinessProbe: {}", "readinessProbe", f"needs {_HANDLER}"),
        ("livenessProbe: 5", "livenessProbe", "must be a mapping, not an integer"),
        ("livenessProbe: {exec: {command: [x]}, tcpSocket: {port: 80}}", "livenessProbe", f"needs {_HANDLER}"),
        ("startupProbe: {httpGet: {port: 80}, tcpSocket: {port: 80}}", "startupProbe", f"needs {_HANDLER}"),
        ("livenessProbe: {exec: {command: [x]}, successThreshold: 3}", "livenessProbe.successThreshold",
         "must be 1 for a liveness probe"),
        ("startupProbe: {exec: {command: [x]}, successThreshold: 2}", "startupProbe.successThreshold",
         "must be 1 for a startup probe"),
        ("readinessProbe: {exec: {command: [x]}, successThreshold: 0}", "readinessProbe.successThreshold",
         "must be at least 1"),
        ("readinessProbe: {exec: {command: []}}", "readinessProbe.exec.command", "must not be empty"),
        ("readinessProbe: {exec: {}}", "readinessProbe.exec", "missing required field 'command'"),
        ("readinessProbe: {httpGet: {path: /}}", "readinessProbe.httpGet", "missing required field 'port'"),
        ("readinessProbe: {tcpSocket: {host: a}}", "readinessProbe.tcpSocket", "missing required field 'port'"),
        ("readinessProbe: {httpGet: {port: 80, path: healthz}}", "readinessProbe.httpGet.path",
         "must be a URL path starting with '/', of printable ASCII characters without spaces (percent-encode others)"),
        ("readinessProbe: {httpGet: {port: 80, path: /a b}}", "readinessProbe.httpGet.path",
         "must be a URL path starting with '/', of printable ASCII characters without spaces (percent-encode others)"),
        ("readinessProbe: {httpGet: {port: 0}}", "readinessProbe.httpGet.port", "must be at least 1"),
        ("readinessProbe: {tcpSocket: {port: 65536}}", "readinessProbe.tcpSocket.port", "must be at most 65535"),
        ("readinessProbe: {tcpSocket: {port: Web_Port}}", "readinessProbe.tcpSocket.port",
         "must be a port number or an IANA port name: lowercase letters, digits and single '-', with at least one letter"),
        ("readinessProbe: {tcpSocket: {port: a-very-long-port-name}}", "readinessProbe.tcpSocket.port",
         "must be a port number or an IANA port name of at most 15 characters"),
        ("readinessProbe: {tcpSocket: {port: true}}", "readinessProbe.tcpSocket.port",
         "must be an integer or a string, not a boolean"),
        ("readinessProbe: {httpGet: {port: 80, scheme: FTP}}", "readinessProbe.httpGet.scheme",
         "must be one of HTTP, HTTPS, not 'FTP'"),
        ("readinessProbe: {httpGet: {port: 80, host: 'a b'}}", "readinessProbe.httpGet.host",
         "must be a host name or an IPv4 address"),
        ("readinessProbe: {httpGet: {port: 80, httpHeaders: [{name: 'X Y', value: v}]}}",
         "readinessProbe.httpGet.httpHeaders[0].name",
         "must be an HTTP header name: letters, digits and !#$%&'*+-.^_`|~"),
        ("readinessProbe: {httpGet: {port: 80, httpHeaders: [{name: X, value: \"a\\r\\nEvil: 1\"}]}}",
         "readinessProbe.httpGet.httpHeaders[0].value", "must not contain control characters such as a line break"),
        ("readinessProbe: {httpGet: {port: 80, httpHeaders: [{name: X}]}}",
         "readinessProbe.httpGet.httpHeaders[0]", "missing required field 'value'"),
        ("readinessProbe: {exec: {command: [x]}, periodSeconds: 0}", "readinessProbe.periodSeconds",
         "must be at least 1"),
        ("readinessProbe: {exec: {command: [x]}, timeoutSeconds: 0}", "readinessProbe.timeoutSeconds",
         "must be at least 1"),
        ("readinessProbe: {exec: {command: [x]}, failureThreshold: 0}", "readinessProbe.failureThreshold",
         "must be at least 1"),
        ("readinessProbe: {exec: {command: [x]}, initialDelaySeconds: -1}", "readinessProbe.initialDelaySeconds",
         "must be at least 0"),
        ("readinessProbe: {exec: {command: [x]}, periodSecond: 5}", "readinessProbe.periodSecond",
         "unknown field 'periodSecond' (did you mean 'periodSeconds'?)"),
        ("readinessProbe: {httpGet: {port: http}}", "readinessProbe.httpGet.port",
         "port 'http' is not a containerPort name of container 'main' (it has no named ports)"),
    ],
)
def test_probe_errors(patch: str, path: str, message: str) -> None:
    """Probe shapes, handlers, thresholds and port names are checked, each at its own path."""
    assert problems({"d.yaml": deployment(container_patch=patch)}) == [
        f"d.yaml:15: Deployment/web: spec.template.spec.containers[0].{path}: {message}",
    ]


def test_probe_port_name_must_be_in_the_same_container() -> None:
    """A named probe port resolves only within its own container; the error lists that container's port names."""
    pod = y("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: app
              image: "app:1"
              ports: [{containerPort: 80, name: http}, {containerPort: 81, name: admin}, {containerPort: 82}]
              livenessProbe:
                httpGet: {port: metrics}
            - name: sidecar
              image: "exporter:1"
              ports: [{containerPort: 9100, name: metrics}]
    """)
    assert problems({"p.yaml": pod}) == [
        "p.yaml:10: Pod/p: spec.containers[0].livenessProbe.httpGet.port: "
        "port 'metrics' is not a containerPort name of container 'app' (its port names: 'http', 'admin')",
    ]


# --- Deployment timing --------------------------------------------------------


def test_deployment_min_ready_and_progress_deadline() -> None:
    """minReadySeconds and progressDeadlineSeconds are kept; they default to 0 and 600."""
    workload = only_workload(deployment(spec_patch="minReadySeconds: 10\nprogressDeadlineSeconds: 120"))
    assert (workload.min_ready_seconds, workload.progress_deadline_seconds) == (10, 120)
    default = only_workload(deployment())
    assert (default.min_ready_seconds, default.progress_deadline_seconds) == (0, 600)


@pytest.mark.parametrize(
    ("patch", "line", "path", "message"),
    [
        ("minReadySeconds: 30\nprogressDeadlineSeconds: 30", 16, "spec.progressDeadlineSeconds",
         "progressDeadlineSeconds (30) must be greater than minReadySeconds (30)"),
        ("progressDeadlineSeconds: 5\nminReadySeconds: 60", 15, "spec.progressDeadlineSeconds",
         "progressDeadlineSeconds (5) must be greater than minReadySeconds (60)"),
        ("minReadySeconds: 900", 15, "spec.minReadySeconds",
         "progressDeadlineSeconds (600, the default) must be greater than minReadySeconds (900)"),
        ("progressDeadlineSeconds: 0", 15, "spec.progressDeadlineSeconds", "must be at least 1"),
        ("minReadySeconds: -1", 15, "spec.minReadySeconds", "must be at least 0"),
        ("minReadySeconds: \"5\"", 15, "spec.minReadySeconds", "must be an integer, not a string"),
    ],
)
def test_deployment_timing_errors(patch: str, line: int, path: str, message: str) -> None:
    """Kubernetes requires progressDeadlineSeconds > minReadySeconds; both must be whole, in range."""
    assert problems({"d.yaml": deployment(spec_patch=patch)}) == [f"d.yaml:{line}: Deployment/web: {path}: {message}"]


# --- DaemonSet ----------------------------------------------------------------


def test_daemonset_fields() -> None:
    """Every accepted DaemonSet field lands in the Workload: one replica, RollingUpdate, its own rolling values."""
    text = y("""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata:
          name: agent
          labels: {app: agent}
          annotations: {team: edge}
        spec:
          minReadySeconds: 5
          revisionHistoryLimit: 3
          updateStrategy:
            type: RollingUpdate
            rollingUpdate: {maxSurge: "50%", maxUnavailable: 0}
          selector:
            matchLabels: {app: agent}
          template:
            metadata:
              labels: {app: agent}
              annotations: {a: b}
            spec:
              containers: [{name: main, image: "app:1"}]
    """)
    assert only_workload(text) == model.Workload(
        ref=model.ObjectRef("DaemonSet", "default", "agent"),
        origin=model.Origin("w.yaml", 1),
        template=model.PodTemplate(
            labels={"app": "agent"},
            annotations={"a": "b"},
            containers=(model.Container("main", "app:1", "IfNotPresent"),),
        ),
        replicas=1,
        selector={"app": "agent"},
        strategy="RollingUpdate",
        rolling_update=model.RollingUpdate(max_surge="50%", max_unavailable=0),
        revision_history_limit=3,
        labels={"app": "agent"},
        annotations={"team": "edge"},
        min_ready_seconds=5,
        progress_deadline_seconds=600,
    )


def test_daemonset_defaults() -> None:
    """A minimal DaemonSet gets Kubernetes' DaemonSet defaults: maxSurge 0, maxUnavailable 1, 10 revisions."""
    workload = only_workload(daemonset())
    assert workload.ref == model.ObjectRef("DaemonSet", "default", "agent")
    assert (workload.replicas, workload.strategy, workload.rolling_update) == (
        1, "RollingUpdate", model.RollingUpdate(max_surge=0, max_unavailable=1),
    )
    assert (workload.min_ready_seconds, workload.progress_deadline_seconds, workload.revision_history_limit) == (
        0, 600, 10,
    )
    assert workload.node_rollout == model.NodeRollout()
    only_surge = only_workload(daemonset(spec_patch="updateStrategy: {rollingUpdate: {maxSurge: 1}}"))
    assert only_surge.rolling_update == model.RollingUpdate(max_surge=1, max_unavailable=1)


def test_daemonset_sorts_after_deployment() -> None:
    """DaemonSets come right after Deployments in the revision's object order."""
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: x}\n  ports: [{port: 80}]\n"
    revision = ok({"a.yaml": service, "b.yaml": daemonset(), "c.yaml": deployment(),
                   "d.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: m, image: x}]\n"})
    assert [obj.ref.kind for obj in revision.objects] == ["Pod", "Deployment", "DaemonSet", "Service"]


@pytest.mark.parametrize(
    ("patch", "line", "path", "message"),
    [
        ("replicas: 3", 15, "spec.replicas", "a DaemonSet has no replicas: it runs one pod on every matching node"),
        ("updateStrategy: {type: OnDelete}", 15, "spec.updateStrategy.type",
         "must be RollingUpdate (OnDelete is not supported by gitops-agent)"),
        ("updateStrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}", 15, "spec.updateStrategy.rollingUpdate",
         "maxSurge and maxUnavailable cannot both be 0"),
        ("updateStrategy: {rollingUpdate: {maxUnavailable: 0}}", 15, "spec.updateStrategy.rollingUpdate",
         "maxSurge and maxUnavailable cannot both be 0"),
        ("updateStrategy: {rollingUpdate: {maxSurge: 150%}}", 15, "spec.updateStrategy.rollingUpdate.maxSurge",
         "must be a number of pods or a percentage from \"0%\" to \"100%\""),
        ("updateStrategy: {rollingUpdate: {maxUnavailable: -1}}", 15,
         "spec.updateStrategy.rollingUpdate.maxUnavailable", "must be at least 0"),
        ("updateStrategy: {rollingUpdate: {partition: 1}}", 15, "spec.updateStrategy.rollingUpdate.partition",
         "unknown field 'partition'"),
        ("strategy: {type: RollingUpdate}", 15, "spec.strategy",
         "unknown field 'strategy' (did you mean 'updateStrategy'?)"),
        ("progressDeadlineSeconds: 600", 15, "spec.progressDeadlineSeconds",
         "unknown field 'progressDeadlineSeconds'"),
        ("minReadySeconds: -5", 15, "spec.minReadySeconds", "must be at least 0"),
        ("revisionHistoryLimit: -1", 15, "spec.revisionHistoryLimit", "must be at least 0"),
    ],
)
def test_daemonset_spec_errors(patch: str, line: int, path: str, message: str) -> None:
    """DaemonSet spec rules: no replicas, RollingUpdate only, not both 0, Deployment-only fields unknown."""
    assert problems({"ds.yaml": daemonset(spec_patch=patch)}) == [f"ds.yaml:{line}: DaemonSet/agent: {path}: {message}"]


def test_daemonset_template_errors() -> None:
    """The selector must match the template labels, restartPolicy must be Always, and pod names are derived."""
    text = y("""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent}
        spec:
          selector:
            matchLabels: {app: agent, tier: node}
          template:
            metadata: {name: fixed, labels: {app: agent}}
            spec:
              restartPolicy: OnFailure
              containers: [{name: main, image: "app:1"}]
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent2}
        spec:
          selector: {matchLabels: {app: agent2}}
          template:
            metadata: {labels: {app: agent2, tier: node}}
            spec:
              containers: [{name: main, image: "app:1"}]
        ---
        apiVersion: extensions/v1beta1
        kind: DaemonSet
        metadata: {name: old}
    """)
    assert problems({"ds.yaml": text}) == [
        "ds.yaml:6: DaemonSet/agent: spec.selector.matchLabels: selector does not match the template labels: "
        "tier=node not in spec.template.metadata.labels",  # found in the same round as the schema problems
        "ds.yaml:8: DaemonSet/agent: spec.template.metadata.name: "
        "field 'name' is not supported by gitops-agent (found \"fixed\"): remove it: pod names are derived from "
        "the DaemonSet's",
        "ds.yaml:10: DaemonSet/agent: spec.template.spec.restartPolicy: must be Always in a DaemonSet",
        "ds.yaml:23: DaemonSet/old: apiVersion: apiVersion for kind DaemonSet must be 'apps/v1', not 'extensions/v1beta1'",
    ]
    mismatch = text.split("---\n")[0].replace("name: fixed, ", "").replace("      restartPolicy: OnFailure\n", "")
    assert problems({"ds.yaml": mismatch}) == [
        "ds.yaml:6: DaemonSet/agent: spec.selector.matchLabels: "
        "selector does not match the template labels: tier=node not in spec.template.metadata.labels",
    ]


def test_daemonset_cross_object_checks() -> None:
    """References, namespaces, duplicates and Service target ports are checked for DaemonSets as for Deployments."""
    text = y("""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent}
        spec:
          selector: {matchLabels: {app: agent}}
          template:
            metadata: {labels: {app: agent}}
            spec:
              containers:
                - name: main
                  image: "app:1"
                  envFrom: [{configMapRef: {name: missing}}]
                  volumeMounts: [{name: data, mountPath: /data}]
              volumes: [{name: data, persistentVolumeClaim: {claimName: nope}}]
    """)
    other_ns = daemonset(name="elsewhere").replace("  name: elsewhere\n", "  name: elsewhere\n  namespace: prod\n")
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: agent}\n" \
              "  ports: [{port: 80, targetPort: http}]\n"
    assert problems({"a.yaml": text, "b.yaml": daemonset(), "c.yaml": other_ns, "s.yaml": service}) == [
        "a.yaml:12: DaemonSet/agent: spec.template.spec.containers[0].envFrom[0].configMapRef.name: "
        "ConfigMap 'missing' does not exist in namespace 'default'",
        "a.yaml:14: DaemonSet/agent: spec.template.spec.volumes[0].persistentVolumeClaim.claimName: "
        "PersistentVolumeClaim 'nope' does not exist in namespace 'default'",
        "b.yaml:4: DaemonSet/agent: metadata.name: duplicate object: DaemonSet/default/agent is also declared at a.yaml:1",
        "c.yaml:5: DaemonSet/elsewhere: metadata.namespace: namespace 'prod' is not declared in the repository",
        "s.yaml:6: Service/s: spec.ports[0].targetPort: targetPort 'http' is not a container port name of DaemonSet/agent",
    ]


def test_daemonset_and_deployment_may_not_share_a_name() -> None:
    """A Deployment and a DaemonSet of one name and namespace would give their pods the same names."""
    assert problems({"a.yaml": deployment(name="web"), "b.yaml": daemonset(name="web")}) == [
        "b.yaml:4: DaemonSet/web: metadata.name: Deployment 'web' at a.yaml:1 has the same name in namespace "
        "'default'; pods are named after their workload, so rename one",
    ]
    other = daemonset(name="web").replace("  name: web\n", "  name: web\n  namespace: shop\n")
    assert len(ok({"a.yaml": deployment(name="web"), "b.yaml": other, "ns.yaml": NAMESPACE}).objects) == 3


def test_daemonset_host_ports() -> None:
    """A DaemonSet binding a host port conflicts with other pods using it, and must not surge."""
    ports = "ports: [{containerPort: 80, hostPort: 8080}]"
    assert problems({
        "a.yaml": daemonset(name="a", labels="{app: a}", container_patch=ports),
        "b.yaml": deployment(name="b", labels="{app: b}", container_patch=ports, spec_patch="strategy: {type: Recreate}"),
        "c.yaml": daemonset(name="c", labels="{app: c}", spec_patch="updateStrategy: {rollingUpdate: {maxSurge: 1}}",
                            container_patch="ports: [{containerPort: 80, hostPort: 9090}]"),
    }) == [
        "b.yaml:15: Deployment/b: spec.template.spec.containers[0].ports[0].hostPort: "
        "host port 8080/TCP is already used by DaemonSet/a at a.yaml:15",
        "c.yaml:15: DaemonSet/c: spec.template.spec.containers[0].ports[0].hostPort: hostPort 9090/TCP: "
        "a RollingUpdate with maxSurge 1 starts the new pod while the old one still holds the port; use maxSurge: 0",
    ]


def test_nodeport_service_selecting_a_daemonset() -> None:
    """A DaemonSet runs one pod per node, so a NodePort Service may select it and its pod owns the port; a surging
    one is accepted with a forwarder (once rejected: "a RollingUpdate with maxSurge 25% starts the new pod ...")."""
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: agent}
        spec:
          type: NodePort
          selector: {app: agent}
          ports: [{port: 80, targetPort: http, nodePort: 30080}]
    """)
    ports = "ports: [{containerPort: 80, name: http}]"
    def is_forwarded(rev: model.Revision) -> bool:
        (svc,) = [o for o in rev.objects if isinstance(o, model.Service)]
        return forwarder.forwarded(svc, [o for o in rev.objects if isinstance(o, model.Workload)])

    direct = ok({"d.yaml": daemonset(container_patch=ports), "s.yaml": service})
    assert len(direct.objects) == 2 and not is_forwarded(direct)
    surging = daemonset(container_patch=ports, spec_patch="updateStrategy: {rollingUpdate: {maxSurge: 25%}}")
    assert is_forwarded(ok({"d.yaml": surging, "s.yaml": service}))


# --- rollout knobs ------------------------------------------------------------

KNOB = model.ROLLOUT_ANNOTATION_PREFIX


@pytest.mark.parametrize("make", [deployment, daemonset])
@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ("{}", model.NodeRollout()),
        (f'{{{KNOB}max-parallel-nodes: "2"}}', model.NodeRollout(max_parallel_nodes=2)),
        (f'{{{KNOB}max-parallel-nodes: "50%"}}', model.NodeRollout(max_parallel_nodes="50%")),
        (f'{{{KNOB}max-parallel-nodes: "100%"}}', model.NodeRollout(max_parallel_nodes="100%")),
        (f'{{{KNOB}auto-rollback: "false"}}', model.NodeRollout(auto_rollback=False)),
        (f'{{{KNOB}auto-rollback: "true"}}', model.NodeRollout(auto_rollback=True)),
        (f'{{{KNOB}unreachable-node-timeout: "0"}}', model.NodeRollout(unreachable_node_timeout=0)),
        (
            f'{{{KNOB}max-parallel-nodes: "1", {KNOB}auto-rollback: "false", {KNOB}unreachable-node-timeout: "300"}}',
            model.NodeRollout(max_parallel_nodes=1, auto_rollback=False, unreachable_node_timeout=300),
        ),
    ],
)
def test_rollout_knobs(make: Any, annotations: str, expected: model.NodeRollout) -> None:
    """rollout.gitops-agent.io/ annotations of a Deployment or DaemonSet become its NodeRollout."""
    workload = only_workload(make(metadata_patch=f"annotations: {annotations}"))
    assert workload.node_rollout == expected
    assert workload.annotations == yaml.safe_load(annotations)


def test_other_annotations_are_kept_beside_the_knobs() -> None:
    """All metadata annotations stay in Workload.annotations; only the knobs are interpreted."""
    text = deployment(metadata_patch=f"""
        annotations:
          team: edge
          example.com/owner: ops
          {KNOB}max-parallel-nodes: "3"
    """)
    workload = only_workload(text)
    assert workload.annotations == {"team": "edge", "example.com/owner": "ops", f"{KNOB}max-parallel-nodes": "3"}
    assert workload.node_rollout == model.NodeRollout(max_parallel_nodes=3)
    assert workload.template.annotations == {}


_PARALLEL = 'must be a positive number of nodes such as "2", or a percentage of the nodes from "1%" to "100%"'
_TIMEOUT = 'must be a whole number of seconds such as "60"'


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("max-parallel-nodes", '"0"', f"{_PARALLEL}, not '0'"),
        ("max-parallel-nodes", '"0%"', f"{_PARALLEL}, not '0%'"),
        ("max-parallel-nodes", '"101%"', f"{_PARALLEL}, not '101%'"),
        ("max-parallel-nodes", '"two"', f"{_PARALLEL}, not 'two'"),
        ("max-parallel-nodes", '"1.5"', f"{_PARALLEL}, not '1.5'"),
        ("max-parallel-nodes", '" 2"', f"{_PARALLEL}, not ' 2'"),
        ("max-parallel-nodes", '"99999999999"', f"{_PARALLEL}, not '99999999999'"),
        ("max-parallel-nodes", "2", "must be a string, not an integer"),
        ("auto-rollback", '"yes"', "must be \"true\" or \"false\", not 'yes'"),
        ("auto-rollback", '"True"', "must be \"true\" or \"false\", not 'True'"),
        ("auto-rollback", "false", "must be a string, not a boolean"),
        ("unreachable-node-timeout", '"-1"', f"{_TIMEOUT}, not '-1'"),
        ("unreachable-node-timeout", '"1m"', f"{_TIMEOUT}, not '1m'"),
        ("unreachable-node-timeout", '"2147483648"', f"{_TIMEOUT}, not '2147483648'"),
        ("unreachable-node-timeout", "60", "must be a string, not an integer"),
        ("max-parallel-node", '"2"',
         f"unknown rollout knob '{KNOB}max-parallel-node' (did you mean '{KNOB}max-parallel-nodes'?)"),
        ("autorollback", '"true"', f"unknown rollout knob '{KNOB}autorollback' (did you mean '{KNOB}auto-rollback'?)"),
        ("colour", '"blue"',
         f"unknown rollout knob '{KNOB}colour' (known: {KNOB}max-parallel-nodes, {KNOB}auto-rollback, "
         f"{KNOB}unreachable-node-timeout)"),
    ],
)
def test_rollout_knob_errors(knob: str, value: str, message: str) -> None:
    """A bad knob value names the allowed form; an unknown knob suggests the closest one; values are strings."""
    text = daemonset(metadata_patch=f"annotations: {{{KNOB}{knob}: {value}}}")
    assert problems({"ds.yaml": text}) == [f'ds.yaml:5: DaemonSet/agent: metadata.annotations["{KNOB}{knob}"]: {message}']


def test_rollout_knobs_on_a_pod_are_rejected() -> None:
    """A bare Pod has no rollout: any rollout.gitops-agent.io/ annotation on it is an error; others are kept."""
    pod = y(f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          annotations:
            note: fine
            {KNOB}max-parallel-nodes: "2"
            {KNOB}whatever: "x"
        spec:
          containers: [{{name: main, image: "app:1"}}]
    """)
    assert problems({"p.yaml": pod}) == [
        f'p.yaml:7: Pod/p: metadata.annotations["{KNOB}max-parallel-nodes"]: '
        "rollout knobs apply to Deployments and DaemonSets, not Pods",
        f'p.yaml:8: Pod/p: metadata.annotations["{KNOB}whatever"]: '
        "rollout knobs apply to Deployments and DaemonSets, not Pods",
    ]
    fine = only_workload(pod.replace(f'    {KNOB}max-parallel-nodes: "2"\n', "").replace(f'    {KNOB}whatever: "x"\n', ""))
    assert fine.annotations == {"note": "fine"} and fine.template.annotations == {"note": "fine"}


# --- the agent's policy: privileged features --------------------------------


def pod(spec_patch: str = "", container_patch: str = "") -> str:
    """A bare Pod; `spec_patch` lines start at line 5, its container's extra lines right after `image`."""
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
    text += textwrap.indent(y(spec_patch).rstrip("\n") + "\n", "  ") if spec_patch else ""
    text += "  containers:\n    - name: main\n      image: app:1\n"
    text += textwrap.indent(y(container_patch).rstrip("\n") + "\n", "      ") if container_patch else ""
    return text


def checked(text: str, policy: model.Policy) -> list[str]:
    """Problems of one file under `policy` ([] when valid)."""
    try:
        parse(files({"p.yaml": text}), "", policy=policy)
    except RevisionRejected as rejected:
        return [str(problem) for problem in rejected.problems]
    return []


ALLOW_ALL = model.Policy(
    allow_privileged=True, allow_host_network=True, allow_host_pid=True, allow_host_ipc=True,
    allowed_capabilities=("*",), allowed_host_paths=(model.HostPathRule("/"),),
)
HOST_LOG = "volumes: [{name: log, hostPath: {path: /var/log}}]\n"


@pytest.mark.parametrize(
    ("spec_patch", "container_patch", "expected"),
    [
        ("", "securityContext: {privileged: true}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.privileged: "
         "privileged containers are not allowed by the agent policy (policy.allowPrivileged)"),
        ("hostNetwork: true", "",
         "p.yaml:5: Pod/p: spec.hostNetwork: the host network is not allowed by the agent policy (policy.allowHostNetwork)"),
        ("hostPID: true", "",
         "p.yaml:5: Pod/p: spec.hostPID: the host PID namespace is not allowed by the agent policy (policy.allowHostPID)"),
        ("hostIPC: true", "",
         "p.yaml:5: Pod/p: spec.hostIPC: the host IPC namespace is not allowed by the agent policy (policy.allowHostIPC)"),
        ("", "securityContext:\n  capabilities:\n    add: [CHOWN, CAP_NET_ADMIN]",
         "p.yaml:10: Pod/p: spec.containers[0].securityContext.capabilities.add[0]: "
         "capability CHOWN is not in policy.allowedCapabilities (allowed: none)"),
        ("volumes:\n  - name: etc\n    hostPath: {path: /etc, type: Directory}", "volumeMounts: [{name: etc, mountPath: /h}]",
         "p.yaml:7: Pod/p: spec.volumes[0].hostPath.path: hostPath /etc is outside policy.allowedHostPaths (allowed: none)"),
    ],
)
def test_default_policy_denies_privileged_features(spec_patch: str, container_patch: str, expected: str) -> None:
    """Each privileged feature is a problem at its own field under the default policy, naming the policy key."""
    found = checked(pod(spec_patch, container_patch), model.Policy())
    assert found[0] == expected
    assert checked(pod(spec_patch, container_patch), ALLOW_ALL) == []


def test_every_denied_capability_is_reported() -> None:
    """Each denied capability at its own list index, with or without CAP_, repeated or not; drop needs no policy."""
    text = pod(container_patch="securityContext: {capabilities: {add: [SYS_TIME, CHOWN, CHOWN, CAP_NET_ADMIN], drop: [ALL]}}")
    assert checked(text, model.Policy(allowed_capabilities=("SYS_TIME",))) == [
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[1]: "
        "capability CHOWN is not in policy.allowedCapabilities (allowed: SYS_TIME)",
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[2]: "
        "capability CHOWN is not in policy.allowedCapabilities (allowed: SYS_TIME)",
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[3]: "
        "capability NET_ADMIN is not in policy.allowedCapabilities (allowed: SYS_TIME)",
    ]
    assert checked(text, model.Policy(allowed_capabilities=("SYS_TIME", "CHOWN", "NET_ADMIN"))) == []
    assert checked(text, model.Policy(allowed_capabilities=("*",))) == []
    assert checked(pod(container_patch="securityContext: {capabilities: {add: [ALL]}}"), model.Policy()) == [
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[0]: "
        "capability ALL is not in policy.allowedCapabilities (allowed: none)",
    ]


def test_policy_problems_in_deployments_point_into_the_template() -> None:
    text = deployment(container_patch="securityContext: {privileged: true}").replace(
        "      containers:", "      hostNetwork: true\n      containers:"
    )
    with pytest.raises(RevisionRejected) as rejected:
        parse(files({"d.yaml": text}))  # the default policy
    assert [str(problem) for problem in rejected.value.problems] == [
        "d.yaml:12: Deployment/web: spec.template.spec.hostNetwork: "
        "the host network is not allowed by the agent policy (policy.allowHostNetwork)",
        "d.yaml:16: Deployment/web: spec.template.spec.containers[0].securityContext.privileged: "
        "privileged containers are not allowed by the agent policy (policy.allowPrivileged)",
    ]


def test_allowed_features_reach_the_model() -> None:
    text = pod(
        "hostNetwork: true\nhostPID: true\nhostIPC: true\n" + HOST_LOG,
        """
        securityContext:
          privileged: true
          capabilities: {add: [NET_ADMIN, CAP_SYS_TIME, NET_ADMIN], drop: [CAP_CHOWN]}
          readOnlyRootFilesystem: true
          runAsUser: 1000
          runAsGroup: 2000
          allowPrivilegeEscalation: true
        volumeMounts: [{name: log, mountPath: /host/log, readOnly: true}]
        """,
    )
    policy = model.Policy(
        allow_privileged=True, allow_host_network=True, allow_host_pid=True, allow_host_ipc=True,
        allowed_capabilities=("NET_ADMIN", "SYS_TIME"), allowed_host_paths=(model.HostPathRule("/var/log", read_only=True),),
    )
    (workload,) = parse(files({"p.yaml": text}), policy=policy).objects
    assert isinstance(workload, model.Workload)
    template = workload.template
    assert (template.host_network, template.host_pid, template.host_ipc) == (True, True, True)
    assert template.volumes == (model.Volume("log", "hostPath", "/var/log"),)
    (container,) = template.containers
    assert container.privileged and container.read_only_root_fs and container.allow_privilege_escalation
    assert (container.cap_add, container.cap_drop) == (("NET_ADMIN", "SYS_TIME", "NET_ADMIN"), ("CHOWN",))
    assert (container.run_as_user, container.run_as_group) == (1000, 2000)


def test_defaults_deny_nothing_that_is_not_used() -> None:
    """Without securityContext, host namespaces or hostPath, the model holds the safe defaults."""
    (container,) = only_workload(pod()).template.containers
    assert container == model.Container("main", "app:1", "IfNotPresent")
    assert not container.privileged and container.cap_add == () and container.run_as_user is None
    template = only_workload(pod()).template
    assert (template.host_network, template.host_pid, template.host_ipc) == (False, False, False)


@pytest.mark.parametrize(
    ("path", "rules", "expected"),
    [
        ("/var/log", ("/var/log",), None),
        ("/var/log/app/", ("/var/log",), None),
        ("/var//log/./app", ("/var/log",), None),
        ("/anything", ("/",), None),
        ("/var/logs", ("/var/log",), "hostPath /var/logs is outside policy.allowedHostPaths (allowed: /var/log)"),
        ("/var", ("/var/log", "/srv"), "hostPath /var is outside policy.allowedHostPaths (allowed: /var/log, /srv)"),
        ("/etc", ("/var/log:ro",),
         "hostPath /etc is outside policy.allowedHostPaths (allowed: /var/log read-only)"),
    ],
)
def test_host_paths_match_whole_components(path: str, rules: tuple[str, ...], expected: str | None) -> None:
    policy = model.Policy(allowed_host_paths=tuple(
        model.HostPathRule(rule.removesuffix(":ro"), read_only=rule.endswith(":ro")) for rule in rules
    ))
    text = pod(f"volumes: [{{name: h, hostPath: {{path: {json.dumps(path)}}}}}]",
               "volumeMounts: [{name: h, mountPath: /h, readOnly: true}]")
    assert checked(text, policy) == ([] if expected is None else [f"p.yaml:5: Pod/p: spec.volumes[0].hostPath.path: {expected}"])


def test_read_only_host_path_rules_need_read_only_mounts() -> None:
    """A readOnly allowedHostPaths entry allows the path only if every mount of it is read-only."""
    text = pod(HOST_LOG, """
        volumeMounts: [{name: log, mountPath: /a, readOnly: true}, {name: log, mountPath: /b}]
    """)
    read_only = model.Policy(allowed_host_paths=(model.HostPathRule("/var/log", read_only=True),))
    assert checked(text, read_only) == [
        "p.yaml:9: Pod/p: spec.containers[0].volumeMounts[1]: a writable hostPath mount needs an allowedHostPaths "
        "entry without readOnly (/var/log matches only /var/log read-only); set readOnly: true on the mount",
    ]
    writable = model.Policy(allowed_host_paths=(model.HostPathRule("/var/log", read_only=True), model.HostPathRule("/var")))
    assert checked(text, writable) == []


@pytest.mark.parametrize(
    ("spec_patch", "container_patch", "expected"),
    [
        ("volumes: [{name: h, hostPath: {path: var/log}}]", "",
         "p.yaml:5: Pod/p: spec.volumes[0].hostPath.path: must be an absolute path without '..' components"),
        ("volumes: [{name: h, hostPath: {path: /var/log/../../etc}}]", "",
         "p.yaml:5: Pod/p: spec.volumes[0].hostPath.path: must be an absolute path without '..' components"),
        ("volumes: [{name: h, hostPath: {path: /var/log, type: DirectoryOrCreate}}]", "",
         "p.yaml:5: Pod/p: spec.volumes[0].hostPath.type: must be one of Directory, File, Socket, CharDevice, "
         "BlockDevice or \"\" (DirectoryOrCreate and FileOrCreate are not supported: gitops-agent does not create "
         "paths on the node)"),
        ("", "securityContext: {capabilities: {add: [net-admin]}}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[0]: "
         "must be a capability name such as NET_ADMIN, net_admin or CAP_NET_ADMIN"),
        ("", "securityContext: {capabilities: {drop: [NET_ADMN]}}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.drop[0]: "
         "unknown capability 'NET_ADMN' (did you mean 'NET_ADMIN'?)"),
        ("", "securityContext: {privileged: yes please}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.privileged: must be a boolean, not a string"),
        ("", "securityContext: {runAsGroup: 5}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.runAsGroup: "
         "runAsGroup needs runAsUser (Podman sets the user and group together)"),
        ("", "securityContext: {runAsUser: -1}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.runAsUser: must be at least 0"),
        ("", "securityContext: {privileged: true, allowPrivilegeEscalation: false}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false with privileged: true"),
        ("", "securityContext: {capabilities: {add: [CAP_SYS_ADMIN]}, allowPrivilegeEscalation: false}",
         "p.yaml:8: Pod/p: spec.containers[0].securityContext.allowPrivilegeEscalation: "
         "cannot be false with capability SYS_ADMIN"),
        ("hostNetwork: 1", "",
         "p.yaml:5: Pod/p: spec.hostNetwork: must be a boolean, not an integer"),
        ("securityContext: {sysctls: []}", "",
         "p.yaml:5: Pod/p: spec.securityContext.sysctls: field 'sysctls' is not supported by gitops-agent "
         "(found []): set the sysctl on the node, or remove it: gitops-agent sets no sysctls in a pod"),
    ],
)
def test_security_field_errors(spec_patch: str, container_patch: str, expected: str) -> None:
    """Form errors are reported whatever the policy allows."""
    assert checked(pod(spec_patch, container_patch), ALLOW_ALL) == [expected]


def test_host_network_ports_are_node_ports() -> None:
    """With hostNetwork a containerPort is bound on the node: hostPort defaults to it and must equal it, and two
    pods cannot both bind it."""
    text = pod("hostNetwork: true", "ports: [{containerPort: 80}, {containerPort: 81, hostPort: 8081}]")
    assert checked(text, ALLOW_ALL) == [
        "p.yaml:9: Pod/p: spec.containers[0].ports[1].hostPort: must equal containerPort (81) with hostNetwork: true",
    ]
    (workload,) = parse(files({"p.yaml": pod("hostNetwork: true", "ports: [{containerPort: 80}]")}), policy=ALLOW_ALL).objects
    assert isinstance(workload, model.Workload)
    assert workload.template.containers[0].ports == (model.ContainerPort(80, "TCP", 80),)
    other = deployment(container_patch="ports: [{containerPort: 80}]", spec_patch="strategy: {type: Recreate}").replace(
        "      containers:", "      hostNetwork: true\n      containers:"
    )
    with pytest.raises(RevisionRejected) as rejected:
        parse(files({"a.yaml": pod("hostNetwork: true", "ports: [{containerPort: 80}]"), "b.yaml": other}), policy=ALLOW_ALL)
    assert [str(problem) for problem in rejected.value.problems] == [
        "b.yaml:16: Deployment/web: spec.template.spec.containers[0].ports[0].hostPort: "
        "host port 80/TCP is already used by Pod/p at a.yaml:9",
    ]


def test_a_service_cannot_select_a_host_network_pod() -> None:
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          selector: {app: web}
          ports: [{port: 80}]
    """)
    text = pod("hostNetwork: true").replace("metadata: {name: p}", "metadata: {name: p, labels: {app: web}}")
    with pytest.raises(RevisionRejected) as rejected:
        parse(files({"p.yaml": text, "s.yaml": service}), policy=ALLOW_ALL)
    assert [str(problem) for problem in rejected.value.problems] == [
        "s.yaml:5: Service/web: spec.selector: selects Pod/p, which uses hostNetwork: its pods are not on the namespace "
        "network, so they get no Service name or node port; reach them at the node's address",
    ]


# --- schemas themselves -------------------------------------------------------


def test_schemas_are_valid_and_closed() -> None:
    """Every schema is valid draft 2020-12, and every object either forbids unknown fields or is a typed map
    (an `if` condition only tests, so it may be open)."""
    names = sorted(path.name for path in SCHEMAS.glob("*.json"))
    assert names == [
        "_defs.json", "configmap.json", "cronjob.json", "daemonset.json", "deployment.json",
        "horizontalpodautoscaler.json", "job.json", "namespace.json",
        "persistentvolumeclaim.json", "pod.json", "replicaset.json", "replicationcontroller.json", "secret.json",
        "service.json", "statefulset.json",
    ]

    def open_objects(node: object, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node and "$ref" not in node:
                yield where
            for key, value in node.items():
                if key != "if":  # a condition only selects a branch; it validates nothing
                    yield from open_objects(value, f"{where}/{key}")

    for name in names:
        schema = json.loads((SCHEMAS / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert list(open_objects(schema, name)) == []


# --- robustness ---------------------------------------------------------------

DAEMONSET = y(f"""
    apiVersion: apps/v1
    kind: DaemonSet
    metadata:
      name: agent
      annotations:
        {model.ROLLOUT_ANNOTATION_PREFIX}max-parallel-nodes: "50%"
        {model.ROLLOUT_ANNOTATION_PREFIX}auto-rollback: "false"
    spec:
      minReadySeconds: 5
      updateStrategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
      selector: {{matchLabels: {{app: agent}}}}
      template:
        metadata: {{labels: {{app: agent}}}}
        spec:
          containers:
            - name: main
              image: "agent:1"
              ports: [{{containerPort: 9100, name: metrics}}]
              readinessProbe:
                httpGet: {{port: metrics, path: /ready, httpHeaders: [{{name: X-A, value: b}}]}}
              livenessProbe: {{tcpSocket: {{port: 9100}}}}
""")
_VALID_DOCS = list(yaml.safe_load_all(SECRET + "---\n" + DEPLOYMENT + "---\n" + DAEMONSET + "---\n" + SERVICE))
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def _mutated_manifests(draw: st.DrawFn) -> bytes:
    """The valid documents with one value somewhere replaced by arbitrary JSON-ish data."""
    docs = json.loads(json.dumps(_VALID_DOCS))
    node = draw(st.sampled_from(docs))
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        if not isinstance(node[key], (dict, list)) or not node[key]:
            node[key] = draw(_JSONISH)
            break
        node = node[key]
    return yaml.safe_dump_all(docs).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode), _mutated_manifests()))
def test_any_input_is_either_accepted_or_rejected_cleanly(data: bytes) -> None:
    """Arbitrary bytes, text or mangled manifests never raise anything but RevisionRejected."""
    try:
        revision = parse([SourceFile("fuzz.yaml", data)])
    except RevisionRejected as rejected:
        assert rejected.problems and all(problem.file == "fuzz.yaml" for problem in rejected.problems)
    else:
        assert revision.digest.startswith("sha256:")


KUBECTL_CREATE_OUTPUT = y("""
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      creationTimestamp: "2026-12-01T10:00:00Z"
      uid: 0b6f4a8e-4f43-4a8e-9c3c-0d1c2f3e4a5b
      resourceVersion: "4711"
      generation: 3
      selfLink: /apis/apps/v1/namespaces/default/deployments/web
      managedFields:
      - {manager: kubectl-client-side-apply, operation: Update}
      annotations:
        kubectl.kubernetes.io/last-applied-configuration: |
          {"apiVersion":"apps/v1","kind":"Deployment"}
        team: shop
      labels:
        app: web
      name: web
    spec:
      replicas: 1
      selector:
        matchLabels:
          app: web
      strategy: {}
      template:
        metadata:
          creationTimestamp: null
          labels:
            app: web
        spec:
          dnsConfig: {}
          containers:
          - image: nginx
            name: nginx
            resources: {}
            securityContext:
              seLinuxOptions: {}
    status:
      replicas: 1
      conditions: [{type: Available, status: "True"}]
""")


def test_server_set_fields_and_empty_defaults_are_ignored_like_kubectl_apply() -> None:
    """`kubectl create --dry-run=client -o yaml` / `kubectl get -o yaml` output is accepted as it is: status and
    the server's metadata are dropped (the last-applied annotation too), empty mappings mean the defaults."""
    (workload,) = ok({"d.yaml": KUBECTL_CREATE_OUTPUT}).objects
    assert isinstance(workload, model.Workload)
    assert workload.annotations == {"team": "shop"}
    assert workload.template.containers[0].resources == model.Resources(None, None)
    assert workload.strategy == "RollingUpdate"


def test_an_empty_volume_source_is_not_taken_for_defaults() -> None:
    """Only keys where `{}` means the defaults are dropped: a `{}` ConfigMap value is still an error."""
    text = y("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data: {resources: {}}
    """)
    assert problems({"c.yaml": text}) == ["c.yaml:4: ConfigMap/c: data.resources: must be a string, not a mapping"]


def test_node_port_zero_means_unset() -> None:
    """`nodePort: 0` is Kubernetes' unset: a ClusterIP Service with it is accepted (not "only allowed when the type
    is NodePort"), and a NodePort Service with it gets a port allocated, as without the field (test_mappings.py)."""
    service = y("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: {type}
          selector: {app: web}
          ports: [{port: 80, nodePort: 0}]
    """)
    assert ok({"s.yaml": service.replace("{type}", "ClusterIP")}).objects[0].ref.name == "web"
    (svc,) = ok({"s.yaml": service.replace("{type}", "NodePort")}).objects
    assert isinstance(svc, model.Service) and svc.ports[0].node_port is not None
    assert 30000 <= svc.ports[0].node_port <= 32767


NO_OPS = y("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          serviceAccountName: web
          automountServiceAccountToken: false
          priorityClassName: high
          schedulerName: default-scheduler
          dnsPolicy: ClusterFirst
          enableServiceLinks: false
          containers:
          - name: app
            image: app:1
            terminationMessagePath: /dev/termination-log
            terminationMessagePolicy: File
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: web}
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata: {name: web}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
""")


def test_no_op_fields_and_kinds_are_accepted_with_one_warning_each() -> None:
    revision = ok({"d.yaml": NO_OPS})
    assert [str(obj.ref) for obj in revision.objects] == ["Deployment/default/web"]
    prefix = "d.yaml:{}: Deployment/web: spec.template.spec."
    api = "no Kubernetes API: pods get no service-account token"
    assert revision.warnings == (
        prefix.format(9) + f"serviceAccountName: serviceAccountName has no effect here ({api}): ignored",
        prefix.format(10) + f"automountServiceAccountToken: automountServiceAccountToken has no effect here ({api}):"
        " ignored",
        prefix.format(11) + "priorityClassName: priorityClassName has no effect here (no preemption: every pod that"
        " fits its node runs): ignored",
        prefix.format(12) + "schedulerName: schedulerName has no effect here (gitops-agent places the pods itself):"
        " ignored",
        prefix.format(14) + "enableServiceLinks: enableServiceLinks has no effect here (no Service environment"
        " variables are set: Services are DNS names): ignored",
        prefix.format(18) + "containers[0].terminationMessagePath: terminationMessagePath has no effect here (no"
        " termination message is collected: see the container's log): ignored",
        prefix.format(19) + "containers[0].terminationMessagePolicy: terminationMessagePolicy has no effect here (no"
        " termination message is collected: see the container's log): ignored",
        "d.yaml:22: ServiceAccount/web: kind: a ServiceAccount has no effect on a node (it grants access to the"
        " Kubernetes API, which gitops-agent does not have): ignored",
        "d.yaml:26: ClusterRoleBinding/web: kind: a ClusterRoleBinding has no effect on a node (it grants access to"
        " the Kubernetes API, which gitops-agent does not have): ignored",
    )


def test_a_document_without_apiversion_is_an_error_not_a_no_op_kind() -> None:
    """A Pod with no apiVersion (one of the Kubernetes documentation's examples has none) is rejected, as
    Kubernetes rejects it; it was once taken for a no-op kind and silently ignored with a warning."""
    text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: nginx}]\n"
    assert problems({"p.yaml": text}) == [
        "p.yaml:1: Pod/p: apiVersion: apiVersion for kind Pod must be 'v1', not missing"]


def test_a_no_op_field_with_a_value_that_would_mean_something_is_still_an_error() -> None:
    text = NO_OPS.replace("dnsPolicy: ClusterFirst", "dnsPolicy: ClusterFirstWithHostNet")
    assert "d.yaml:13: Deployment/web: spec.template.spec.dnsPolicy: must be ClusterFirst (the default: names " \
        "resolve through the pod network's DNS server), Default (the node's /etc/resolv.conf) or None (dnsConfig " \
        "only): ClusterFirstWithHostNet is not supported by gitops-agent" in problems({"d.yaml": text})


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("NetworkPolicy", "leave open the traffic it denies"),
        ("Ingress", "leave unserved the traffic it routes"),
        ("PodSecurityPolicy", "let run the pods it forbids"),
    ],
)
def test_kinds_that_change_security_or_traffic_stay_errors_that_say_why(kind: str, why: str) -> None:
    text = f"apiVersion: networking.k8s.io/v1\nkind: {kind}\nmetadata: {{name: x}}\n"
    assert problems({"k.yaml": text}) == [
        f"k.yaml:2: {kind}/x: kind: kind {kind} is not supported by gitops-agent, and ignoring it would {why}: "
        "remove it"
    ]


def test_a_replication_controller_is_a_workload_selecting_by_its_template_labels() -> None:
    text = y("""
        apiVersion: v1
        kind: ReplicationController
        metadata: {name: nginx}
        spec:
          replicas: 3
          template:
            metadata:
              name: nginx
              labels: {app: nginx}
            spec:
              containers: [{name: nginx, image: nginx, ports: [{containerPort: 80}]}]
    """)
    revision = ok({"rc.yaml": text})
    (workload,) = revision.objects
    assert isinstance(workload, model.Workload)
    assert (str(workload.ref), workload.replicas, workload.selector) == \
        ("ReplicationController/default/nginx", 3, {"app": "nginx"})
    assert revision.warnings == (
        "rc.yaml:8: ReplicationController/nginx: spec.template.metadata.name: name has no effect here (pod names are"
        " derived from the ReplicationController's): ignored",
    )
    assert problems({"rc.yaml": text.replace("replicas: 3", "replicas: 3\n  selector: {app: web}")}) == [
        "rc.yaml:6: ReplicationController/nginx: spec.selector: selector does not match the template labels: "
        "app=web not in spec.template.metadata.labels",
    ]


def test_a_replica_set_is_a_workload_selecting_by_match_labels() -> None:
    text = y("""
        apiVersion: apps/v1
        kind: ReplicaSet
        metadata: {name: frontend}
        spec:
          replicas: 3
          selector: {matchLabels: {tier: frontend}}
          template:
            metadata: {labels: {tier: frontend}}
            spec:
              containers: [{name: php-redis, image: us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5}]
    """)
    (workload,) = ok({"rs.yaml": text}).objects
    assert isinstance(workload, model.Workload)
    assert (str(workload.ref), workload.replicas, workload.selector) == \
        ("ReplicaSet/default/frontend", 3, {"tier": "frontend"})
    assert problems({"rs.yaml": text.replace("{tier: frontend}}", "{tier: backend}}", 1)}) == [
        "rs.yaml:6: ReplicaSet/frontend: spec.selector.matchLabels: selector does not match the template labels: "
        "tier=backend not in spec.template.metadata.labels",
    ]
    assert problems({"rs.yaml": text.replace("apps/v1", "v1")}) == [
        "rs.yaml:1: ReplicaSet/frontend: apiVersion: apiVersion for kind ReplicaSet must be 'apps/v1', not 'v1'",
    ]


CLAIM_OF_CLASS = y("""
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: {name}
      resources: {requests: {storage: 1Gi}}
""")


def test_a_storage_class_names_a_volume_driver_and_options_of_the_agent_config() -> None:
    scratch = model.StorageClass("local", {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"})
    files_of = {"c.yaml": CLAIM_OF_CLASS.replace("{name}", "scratch")}
    (claim,) = parse(files(files_of), storage_classes={"scratch": scratch}).objects
    assert isinstance(claim, model.Claim) and claim.storage_class == scratch
    (default,) = parse(files({"c.yaml": CLAIM_OF_CLASS.replace("{name}", '""')})).objects
    assert isinstance(default, model.Claim) and default.storage_class is None
    with pytest.raises(RevisionRejected) as rejected:
        parse(files({"c.yaml": CLAIM_OF_CLASS.replace("{name}", "fast")}), storage_classes={"scratch": scratch})
    assert [str(p) for p in rejected.value.problems] == [
        "c.yaml:6: PersistentVolumeClaim/data: spec.storageClassName: storage class 'fast' is not in the agent "
        "config's storageClasses (known: scratch); define it there, or remove the field for the default volume",
    ]



def test_a_documents_policy_and_reference_problems_come_with_its_schema_problems() -> None:
    """Every problem in one round: the hostPath policy problem and the missing ConfigMap of a DaemonSet are not
    hidden behind its unsupported field."""
    text = y("""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent}
        spec:
          selector: {matchLabels: {app: agent}}
          template:
            metadata: {labels: {app: agent}}
            spec:
              runtimeClassName: gvisor
              containers:
              - name: a
                image: app:1
                envFrom: [{configMapRef: {name: missing}}]
                volumeMounts: [{name: logs, mountPath: /logs}]
              volumes:
              - {name: logs, hostPath: {path: /var/log}}
    """)
    assert problems({"ds.yaml": text}) == [
        "ds.yaml:9: DaemonSet/agent: spec.template.spec.runtimeClassName: field 'runtimeClassName' is not "
        "supported by gitops-agent (found \"gvisor\"): remove it: containers run with the node's default OCI runtime",
        "ds.yaml:13: DaemonSet/agent: spec.template.spec.containers[0].envFrom[0].configMapRef.name: ConfigMap "
        "'missing' does not exist in namespace 'default'",
        "ds.yaml:16: DaemonSet/agent: spec.template.spec.volumes[0].hostPath.path: hostPath /var/log is outside "
        "policy.allowedHostPaths (allowed: none)",
    ]



def test_an_extended_resource_limit_has_the_wording_of_every_unsupported_field() -> None:
    text = deployment(container_patch='resources: {limits: {"nvidia.com/gpu": 1, ephemeral-storage: 1Gi}}')
    assert sorted(problems({"d.yaml": text})) == [
        "d.yaml:15: Deployment/web: spec.template.spec.containers[0].resources.limits.ephemeral-storage: "
        "field 'ephemeral-storage' is not supported by gitops-agent (found \"1Gi\"): remove it: Podman's overlay "
        "storage can limit a container's writable layer only on XFS with project quotas, which gitops-agent does "
        "not require of a node, so no size would be enforced (a request of ephemeral-storage is accepted: it "
        "places the pod)",
        'd.yaml:15: Deployment/web: spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]: '
        "field 'nvidia.com/gpu' is not supported by gitops-agent (found 1): remove it: gitops-agent neither "
        "schedules nor passes through extended resources such as devices, so a container that needs one must get "
        "it another way (a hostPath volume of its /dev node, allowed by policy.allowedHostPaths)",
    ]


def test_a_pod_hostname_is_dropped_only_when_it_is_the_pods_own_name() -> None:
    """`podman kube generate` writes `hostname: <pod name>`: the hostname the Pod gets anyway. Another hostname,
    or one on a Deployment's pods, is still an unsupported field; a document without a name does not crash."""
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: gen}\nspec:\n  hostname: %s\n" \
        "  containers: [{name: a, image: b}]\n"
    assert ok({"p.yaml": pod % "gen"}).objects[0].ref.name == "gen"
    assert problems({"p.yaml": pod % "other"}) == [
        "p.yaml:5: Pod/gen: spec.hostname: field 'hostname' is not supported by gitops-agent (found \"other\"): "
        "remove it: a pod's hostname is its pod name"]
    assert problems({"p.yaml": (pod % "gen").replace("metadata: {name: gen}", "metadata: {name: null}")}) == [
        "p.yaml:3: Pod: metadata: missing required field 'name'",  # null is unset, as in Kubernetes
        "p.yaml:5: Pod: spec.hostname: field 'hostname' is not supported by gitops-agent (found \"gen\"): "
        "remove it: a pod's hostname is its pod name",
    ]


def _schema_errors(validator: Any, document: Any) -> list[tuple[Any, ...]]:
    """Each error as the parser sees it: where, which keyword, the message, and its (path, message) problems."""
    from gitops_agent.manifests import schema

    return [(tuple(e.absolute_path), e.validator, e.message, list(schema.schema_problems(e)))
            for e in validator.iter_errors(document)]


def test_inlined_schemas_report_exactly_what_the_written_schemas_report() -> None:
    """The validators whose `$ref`s are inlined at load (issue 14) give the same errors, in the same order, as
    the schemas as written, on every document of the real corpus, the sample repository and mutated copies."""
    from gitops_agent.manifests import schema

    inlined, written = schema.kind_validators(), schema.kind_validators(inline=False)
    assert not any('"$ref": "#' in json.dumps(v.schema) for v in inlined.values())  # no local reference left
    root = Path(__file__).resolve().parent.parent
    paths = sorted([*(root / "tests" / "corpus" / "real").rglob("*.y*ml"), *(root / "sample-repo").rglob("*.y*ml")])
    checked = 0
    for path in paths:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
        for document in documents:
            kind = document.get("kind")
            if kind not in inlined:
                continue
            broken = json.loads(json.dumps(document, default=str))
            broken.setdefault("metadata", {})["nmae"] = 1  # an unknown field, and a type error below
            broken["spec"] = [] if "spec" in broken else {"x": 1}
            for variant in (document, broken):
                assert _schema_errors(inlined[kind], variant) == _schema_errors(written[kind], variant), path
                checked += 1
    assert checked > 400


def test_the_manifests_package_keeps_its_functions_short_and_its_lines_within_120() -> None:
    """Issue 9's bounds for the package: no function over 60 lines, no line over 120 characters (complexity
    <= 15 and mypy --strict are checked with ruff's C901 and mypy, which the project does not install)."""
    import ast

    package = Path(__file__).resolve().parent.parent / "gitops_agent" / "manifests"
    too_long = []
    for path in sorted(package.glob("*.py")):
        source = path.read_text()
        too_long += [f"{path.name}:{n}" for n, line in enumerate(source.splitlines(), 1) if len(line) > 120]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                if node.end_lineno - node.lineno + 1 > 60:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}")
    assert len(list(package.glob("*.py"))) == 14
    assert too_long == []


def _selector_deployment(selector: str, anti: str = "") -> str:
    affinity = ("\n      affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
                f"[{{topologyKey: kubernetes.io/hostname, labelSelector: {anti}}}]}}}}" if anti else "")
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {selector}\n"
            "  template:\n    metadata: {labels: {app: web, tier: front}}\n    spec:\n"
            f"      containers: [{{name: main, image: 'app:1'}}]{affinity}\n")


def test_match_expressions_select_a_workloads_pods() -> None:
    """matchExpressions (In, NotIn, Exists, DoesNotExist) are accepted beside or instead of matchLabels, on a
    workload's selector and on a podAntiAffinity term, as long as they select the template's labels."""
    rev = parse([SourceFile("d.yaml", _selector_deployment(
        "{matchExpressions: [{key: app, operator: In, values: [web, api]}, {key: debug, operator: DoesNotExist},"
        " {key: tier, operator: Exists}, {key: app, operator: NotIn, values: [db]}]}",
        anti="{matchExpressions: [{key: tier, operator: In, values: [front]}]}").encode())])
    (w,) = [o for o in rev.objects if isinstance(o, model.Workload)]
    assert w.selector == {} and w.template.one_per_node
    assert w.selector_expressions == (
        model.Requirement("app", "In", ("web", "api")), model.Requirement("debug", "DoesNotExist"),
        model.Requirement("tier", "Exists"), model.Requirement("app", "NotIn", ("db",)))


def test_match_expressions_that_do_not_select_the_template_or_have_bad_values_are_refused() -> None:
    """A selector that does not hold for the template's labels is refused with the requirement as kubectl shows
    it; In/NotIn need values, Exists/DoesNotExist take none; an empty selector selects nothing; Gt is only for
    nodes."""
    assert problems({"d.yaml": _selector_deployment(
        "{matchExpressions: [{key: app, operator: NotIn, values: [web]}, {key: x, operator: In},"
        " {key: tier, operator: Exists, values: [a]}]}")}) == [
        "d.yaml:5: Deployment/web: spec.selector.matchExpressions[1].values: must have at least one value for "
        "operator In",
        "d.yaml:5: Deployment/web: spec.selector.matchExpressions[2].values: must be empty for operator Exists",
        "d.yaml:5: Deployment/web: spec.selector.matchExpressions[0]: selector does not match the template "
        "labels: app notin (web) is not true of spec.template.metadata.labels {'app': 'web', 'tier': 'front'}",
    ]
    assert problems({"d.yaml": _selector_deployment("{}")}) == [
        "d.yaml:5: Deployment/web: spec.selector: must select at least one label (matchLabels or matchExpressions)"]
    found = problems({"d.yaml": _selector_deployment(
        "{matchLabels: {app: web}}", anti="{matchExpressions: [{key: tier, operator: Gt, values: ['1']}]}")})
    assert len(found) == 1 and found[0].endswith(
        "labelSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, not 'Gt'")


def test_every_unsupported_field_says_what_to_do() -> None:
    """Each field the schemas list as unsupported gets one wording with an action: its own hint in the schema, or
    the table's (`WHAT_TO_DO`); each starts with what to do (remove it, use, set ... instead)."""
    from gitops_agent.manifests.schema import WHAT_TO_DO, not_supported

    root = Path(__file__).resolve().parent.parent / "schemas"
    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, hint in {**value.get("x-unsupported", {}), **value.get("x-unsupported-patterns", {})}.items():
                found[key] = hint or WHAT_TO_DO.get(key, "")
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in root.glob("*.json"):
        walk(json.loads(path.read_text()))
    assert len(found) > 100
    verbs = ("remove it", "use ", "set ", "mount ", "put ", "make ", "copy ")
    assert [key for key, todo in found.items() if not todo.startswith(verbs)] == []
    assert not_supported("stdinOnce", True, "") == (
        "field 'stdinOnce' is not supported by gitops-agent (found true): remove it: gitops-agent runs containers "
        "detached, with nothing attached to their standard input to close it")
    assert not_supported("cephfs", {"monitors": ["m"], "user": "u", "secretFile": "/s"}, "") == (
        "field 'cephfs' is not supported by gitops-agent (found {monitors, user, secretFile}): mount the storage on "
        "the node and use a hostPath volume of it (allowed by policy.allowedHostPaths): gitops-agent drives no "
        "network or cloud volume plugin")
    assert not_supported("x", "a" * 80, "use y").startswith(f"field 'x' is not supported by gitops-agent "
                                                             f"(found \"{'a' * 56}...): use y")


def test_an_unsupported_field_of_a_secret_does_not_show_its_value() -> None:
    """The value found is shown for every kind but a Secret, whose fields may hold what it protects."""
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, finalizers: [CANARY-VALUE]}\nstringData: {k: v}\n"
    assert problems({"s.yaml": secret}) == [
        "s.yaml:3: Secret/s: metadata.finalizers: field 'finalizers' is not supported by gitops-agent: remove it: "
        "gitops-agent owns what it creates by its labels, with no API server to collect or finalize it"]


def _node_port_services(*names: str, explicit: dict[str, int] | None = None) -> dict[str, str]:
    docs = []
    for name in names:
        node_port = f", nodePort: {explicit[name]}" if explicit and name in explicit else ""
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n"
                    f"  selector: {{app: {name}}}\n  ports: [{{port: 80{node_port}}}]\n")
    return {"s.yaml": "---\n".join(docs)}


def _node_ports(files: dict[str, str], recorded: dict[str, int] | None = None) -> dict[str, int]:
    rev = parse([SourceFile(path, text.encode()) for path, text in files.items()], node_ports=recorded)
    return {o.ref.name: o.ports[0].node_port or 0 for o in rev.objects if isinstance(o, model.Service)}


def test_a_recorded_node_port_stays_when_a_later_service_hashes_to_it() -> None:
    """The node port of a NodePort Service without nodePort is recorded (`Revision.node_ports`); passed back, it
    is kept even when a Service added later picks the same port by its hash and would sort first: the newcomer
    takes the next free port. Without the table the old Service would move (the reason for the table)."""
    import hashlib

    def pick(name: str) -> int:
        return 30000 + int(hashlib.sha256(f"default/{name}/80/TCP".encode()).hexdigest(), 16) % 2768

    first = parse([SourceFile("s.yaml", _node_port_services("web")["s.yaml"].encode())])
    assert first.node_ports == (("default/web/80/TCP", pick("web")),)
    rival = next(f"a{i}" for i in range(100_000) if pick(f"a{i}") == pick("web"))  # sorts before "web"
    both = _node_port_services("web", rival)
    assert _node_ports(both) == {rival: pick("web"), "web": pick("web") + 1}  # no table: web moves
    assert _node_ports(both, dict(first.node_ports)) == {"web": pick("web"), rival: pick("web") + 1}


def test_recorded_node_ports_yield_to_explicit_ones_and_drop_out_when_gone() -> None:
    """An explicit nodePort wins over a recorded allocation (which gets a new port); a recorded port out of
    30000-32767 or of a Service that is gone is not used and not recorded again."""
    recorded = {"default/web/80/TCP": 31000, "default/gone/80/TCP": 31001, "default/api/80/TCP": 29999}
    ports = _node_ports(_node_port_services("web", "db", explicit={"db": 31000}), recorded)
    assert ports["db"] == 31000 and ports["web"] != 31000
    rev = parse([SourceFile("s.yaml", _node_port_services("web", "api")["s.yaml"].encode())], node_ports=recorded)
    table = dict(rev.node_ports)
    assert table["default/web/80/TCP"] == 31000
    assert set(table) == {"default/web/80/TCP", "default/api/80/TCP"} and table["default/api/80/TCP"] != 29999
