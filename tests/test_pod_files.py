"""subPath mounts and projected volumes (issue 18): from manifests to Podman's create bodies (pure, from
literals), then one sync on a private Podman that reads the files inside the container."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import ContainerSpec, compile_node, go_quote, pod_uid
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body
from podman_env import WEB1

NODE = NodeConfig("n1")
HOST_DIR = "/srv/shared"
POLICY = model.Policy(allowed_host_paths=(model.HostPathRule(HOST_DIR),))

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {nginx.conf: "server {}\\n", other.txt: "other\\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: certs}
stringData: {tls.crt: CERT, tls.key: KEY}
"""


def pod(volumes: str, mounts: str) -> str:
    """ConfigMap `conf`, Secret `certs` and a Pod `p` with `volumes` and container `main`'s `mounts`."""
    return (CONFIG + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  volumes:\n"
            + textwrap.indent(textwrap.dedent(volumes), "    ")
            + "  containers:\n    - name: main\n      image: app:1\n      volumeMounts:\n"
            + textwrap.indent(textwrap.dedent(mounts), "        "))


def parsed(text: str) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40, policy=POLICY)


def problems(text: str) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parsed(text)
    return [str(p) for p in rejected.value.problems]


def container(text: str) -> ContainerSpec:
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return spec.containers[0]


PROJECTED = """\
- name: bundle
  projected:
    defaultMode: 0400
    sources:
      - configMap: {name: conf, items: [{key: nginx.conf, path: conf/nginx.conf}]}
      - secret: {name: certs}
"""


def test_a_projected_volume_merges_its_sources_into_one_directory_with_its_mode() -> None:
    """The configMap item and every key of the Secret are files of one directory, each with defaultMode."""
    c = container(pod(PROJECTED, "- {name: bundle, mountPath: /etc/b}\n"))
    assert sorted((m.target, m.mode) for m in c.secret_mounts) == [
        ("/etc/b/conf/nginx.conf", 0o400), ("/etc/b/tls.crt", 0o400), ("/etc/b/tls.key", 0o400)]
    assert len({m.secret for m in c.secret_mounts}) == 3


def test_an_items_mode_overrides_the_default_mode_of_its_one_file() -> None:
    """`items[].mode` of a projected secret or configMap source, and of a plain configMap or secret volume, is
    that file's mode; its siblings keep the defaultMode (Kubernetes' projected-secrets-nondefault-permission-mode
    example)."""
    volumes = """\
        - name: bundle
          projected:
            defaultMode: 0400
            sources:
              - configMap: {name: conf, items: [{key: nginx.conf, path: conf/nginx.conf, mode: 0600}]}
              - secret: {name: certs, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key, mode: 511}]}
        - {name: plain, secret: {secretName: certs, items: [{key: tls.key, path: k, mode: 0440}, {key: tls.crt, path: c}]}}
        - {name: cm, configMap: {name: conf, defaultMode: 0444, items: [{key: other.txt, path: o, mode: 0640}]}}
        """
    c = container(pod(volumes, "- {name: bundle, mountPath: /b}\n- {name: plain, mountPath: /p}\n"
                                "- {name: cm, mountPath: /c}\n"))
    assert sorted((m.target, oct(m.mode)) for m in c.secret_mounts) == [
        ("/b/conf/nginx.conf", "0o600"), ("/b/tls.crt", "0o400"), ("/b/tls.key", "0o777"),
        ("/c/o", "0o640"), ("/p/c", "0o644"), ("/p/k", "0o440")]


def test_an_items_mode_outside_0_to_0777_is_an_error() -> None:
    """A mode is a file's permission bits, 0..0777 (511), as Kubernetes validates it."""
    found = problems(pod("- {name: s, secret: {secretName: certs, items: [{key: tls.crt, path: c, mode: 512}]}}\n"
                         "- name: b\n  projected:\n    sources:\n"
                         "      - configMap: {name: conf, items: [{key: other.txt, path: o, mode: -1}]}\n",
                         "- {name: s, mountPath: /s}\n- {name: b, mountPath: /b}\n"))
    assert len(found) == 2, found
    assert any("secret.items[0].mode: must be a file mode from 0 to 0777 (511 in decimal) (found 512)" in p
               for p in found), found
    assert any("sources[0].configMap.items[0].mode: must be a file mode from 0 to 0777 (511 in decimal) (found -1)"
               in p for p in found), found


def test_a_sub_path_mounts_one_file_or_one_directory_of_the_volume_at_the_mount_path() -> None:
    """subPath of a configMap key is that file at mountPath itself (nginx's conf.d/default.conf pattern); of a
    projected directory, the files under it; of a hostPath, the subdirectory on the node."""
    volumes = PROJECTED + f"- {{name: conf, configMap: {{name: conf}}}}\n- {{name: h, hostPath: {{path: {HOST_DIR}}}}}\n"
    c = container(pod(volumes, """\
        - {name: conf, mountPath: /etc/nginx/conf.d/default.conf, subPath: nginx.conf}
        - {name: bundle, mountPath: /etc/nginx/sub, subPath: ./conf/}
        - {name: h, mountPath: /data, subPath: app/data, readOnly: true}
        """))
    assert sorted(m.target for m in c.secret_mounts) == ["/etc/nginx/conf.d/default.conf",
                                                          "/etc/nginx/sub/nginx.conf"]
    assert [(h.source, h.target, h.read_only) for h in c.host_mounts] == [(f"{HOST_DIR}/app/data", "/data", True)]
    (workload,) = compile_node(parsed(pod(volumes, "- {name: h, mountPath: /data, subPath: app}\n")), NODE,
                               (NODE,)).workloads
    body: dict[str, Any] = _container_body(workload.pods[0], workload.pods[0].containers[0])
    assert [(m["source"], m["destination"]) for m in body["mounts"]] == [(f"{HOST_DIR}/app", "/data")]


def test_sub_paths_podman_cannot_mount_and_missing_files_are_errors() -> None:
    """A tmpfs emptyDir is mounted whole by Podman 4.3 (its files are on the node only while mounted); a subPath
    naming no file of the volume is an error that lists its files; absolute and '..' paths are refused by the
    schema, as by Kubernetes."""
    volumes = PROJECTED + "- {name: scratch, emptyDir: {medium: Memory}}\n- {name: conf, configMap: {name: conf}}\n"
    found = problems(pod(volumes, """\
        - {name: scratch, mountPath: /s, subPath: cache}
        - {name: conf, mountPath: /c, subPath: missing.conf}
        """))
    assert any("volumeMounts[0].subPath: is not supported by gitops-agent on volume 'scratch' (found 'cache')"
               in p and "an emptyDir of medium Memory" in p for p in found), found
    assert any("volumeMounts[1].subPath: volume 'conf' has no file or directory 'missing.conf' (its files: "
               "'nginx.conf', 'other.txt')" in p for p in found), found
    assert len(found) == 2, found
    (dotdot,) = problems(pod(volumes, "- {name: bundle, mountPath: /b, subPath: ../up}\n"))
    assert "volumeMounts[0].subPath: must be a non-empty relative path without '..' components" in dotdot


def test_projected_sources_the_agent_cannot_fill_and_colliding_paths_are_errors() -> None:
    """A serviceAccountToken source needs an API server: an error saying so; two sources writing one path are
    an error, as in Kubernetes; a missing source object is reported like a configMap volume's."""
    token = """\
        - name: t
          projected:
            sources:
              - configMap: {name: conf, items: [{key: other.txt, path: a}]}
              - secret: {name: certs, items: [{key: tls.crt, path: a}]}
              - secret: {name: nope}
        """
    found = problems(pod(token, "- {name: t, mountPath: /t}\n"))
    assert len(found) == 2, found
    assert any("sources[1].secret.items[0].path: duplicate path 'a' in the projected volume" in p for p in found)
    assert any("sources[2].secret.name: Secret 'nope' does not exist in namespace 'default'" in p for p in found)
    (token_problem,) = problems(pod("- {name: t, projected: {sources: [{serviceAccountToken: {path: token}}]}}\n",
                                    "- {name: t, mountPath: /t}\n"))
    assert "sources[0].serviceAccountToken: field 'serviceAccountToken' is not supported by gitops-agent (found " \
           "{path}): remove it: a service-account token is issued by an API server" in token_problem, token_problem


# --- downwardAPI volumes and projections ---------------------------------------------------

DOWNWARD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata:
      labels: {zone: us-east, app: shop}
      annotations: {note: "say \\"hi\\"\\ttab", empty: ""}
    spec:
      volumes:
        - name: info
          downwardAPI:
            defaultMode: 0440
            items:
              - {path: labels, fieldRef: {fieldPath: metadata.labels}}
              - {path: meta/annotations, fieldRef: {fieldPath: metadata.annotations}, mode: 0400}
              - {path: zone, fieldRef: {fieldPath: "metadata.labels['zone']"}}
              - {path: name, fieldRef: {fieldPath: metadata.name}}
              - {path: ns, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}
              - {path: uid, fieldRef: {fieldPath: metadata.uid}}
              - {path: cpu_limit, resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}}
              - {path: mem_request_mi, resourceFieldRef: {containerName: main, resource: requests.memory, divisor: 1Mi}}
        - name: all
          projected:
            sources:
              - downwardAPI: {items: [{path: cpu, resourceFieldRef: {containerName: main, resource: limits.cpu}}]}
      containers:
        - name: main
          image: app:1
          resources: {limits: {cpu: 250m, memory: 64Mi}, requests: {memory: 10Mi}}
          volumeMounts: [{name: info, mountPath: /etc/podinfo}, {name: all, mountPath: /all}]
"""


def test_downward_api_files_hold_the_pods_fields_in_kubernetes_formats() -> None:
    """Each item is a file (a Podman secret of the workload) with the pod's field: all labels or annotations as
    sorted `key="value"` lines quoted as Go's %q, one label as is, the pod's name, namespace and uid, and a
    container's limit or request in divisor units, rounded up; its mode is the item's, else defaultMode."""
    compiled = compile_node(parsed(DOWNWARD), NODE, (NODE,))
    (workload,) = compiled.workloads
    (spec,) = workload.pods
    data = {s.name: s for s in compiled.secrets}
    files = {m.target: (data[m.secret].data.decode(), oct(m.mode)) for m in spec.containers[0].secret_mounts}
    uid = files.pop("/etc/podinfo/uid")
    assert files == {
        "/etc/podinfo/labels": ('app="shop"\nzone="us-east"', "0o440"),
        "/etc/podinfo/meta/annotations": ('empty=""\nnote="say \\"hi\\"\\ttab"', "0o400"),
        "/etc/podinfo/zone": ("us-east", "0o440"),
        "/etc/podinfo/name": (spec.name, "0o440"),
        "/etc/podinfo/ns": ("default", "0o440"),
        "/etc/podinfo/cpu_limit": ("250", "0o440"),
        "/etc/podinfo/mem_request_mi": ("10", "0o440"),
        "/all/cpu": ("1", "0o644"),
    }
    assert uid[0] == pod_uid("default", spec.name, workload.template_hash) and len(uid[0]) == 36
    assert {data[m.secret].source for m in spec.containers[0].secret_mounts} == {workload.ref}
    assert "/etc/podinfo/name" in {m.target for m in container(pod(
        "- {name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}\n",
        "- {name: info, mountPath: /etc/podinfo}\n")).secret_mounts}


def test_a_pods_uid_is_stable_for_its_template_and_new_with_a_new_one() -> None:
    assert pod_uid("ns", "web-0", "abc") == pod_uid("ns", "web-0", "abc")
    assert len({pod_uid("ns", "web-0", "abc"), pod_uid("ns", "web-0", "abd"), pod_uid("ns", "web-1", "abc"),
                pod_uid("other", "web-0", "abc")}) == 4


def test_go_quote_writes_values_as_kubernetes_label_files_have_them() -> None:
    assert go_quote('plain') == '"plain"'
    assert go_quote('a "b" \\ c\n\t') == '"a \\"b\\" \\\\ c\\n\\t"'
    assert go_quote("\x00\x7fé☃\u200b") == '"\\x00\\x7fé☃\\u200b"'


def test_downward_api_items_that_kubernetes_refuses_are_errors() -> None:
    """A file takes exactly one of fieldRef and resourceFieldRef; volumes have metadata fields only (env has the
    others); a resourceFieldRef names a container of the pod; paths do not collide."""
    volumes = """\
        - name: info
          downwardAPI:
            items:
              - {path: a}
              - path: b
                fieldRef: {fieldPath: spec.nodeName}
                resourceFieldRef: {containerName: main, resource: limits.cpu}
              - {path: c, fieldRef: {fieldPath: status.podIP}}
              - {path: d, resourceFieldRef: {containerName: nope, resource: limits.memory}}
              - {path: e, resourceFieldRef: {resource: limits.memory}}
        - name: both
          projected:
            sources:
              - downwardAPI: {items: [{path: x, fieldRef: {fieldPath: metadata.name}}]}
              - configMap: {name: conf, items: [{key: other.txt, path: x}]}
        """
    files = "metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, " \
            "metadata.labels['KEY'], metadata.annotations['KEY']"
    assert problems(pod(volumes, "- {name: info, mountPath: /i}\n- {name: both, mountPath: /b}\n")) == [
        "p.yaml:19: Pod/p: spec.volumes[0].downwardAPI.items[0]: needs exactly one of fieldRef or resourceFieldRef",
        "p.yaml:20: Pod/p: spec.volumes[0].downwardAPI.items[1]: needs exactly one of fieldRef or resourceFieldRef",
        "p.yaml:21: Pod/p: spec.volumes[0].downwardAPI.items[1].fieldRef.fieldPath: unknown fieldPath "
        f"'spec.nodeName' for a downwardAPI file (supported: {files}); use env with valueFrom.fieldRef for it",
        "p.yaml:23: Pod/p: spec.volumes[0].downwardAPI.items[2].fieldRef.fieldPath: unknown fieldPath "
        f"'status.podIP' for a downwardAPI file (supported: {files}); use env with valueFrom.fieldRef for it",
        "p.yaml:24: Pod/p: spec.volumes[0].downwardAPI.items[3].resourceFieldRef.containerName: 'nope' is not a "
        "container of this pod",
        "p.yaml:25: Pod/p: spec.volumes[0].downwardAPI.items[4].resourceFieldRef: missing required field "
        "'containerName'",
        "p.yaml:30: Pod/p: spec.volumes[1].projected.sources[1].configMap.items[0].path: duplicate path 'x' in the "
        "projected volume",
    ]


def test_a_cronjobs_pods_take_their_name_from_env_not_from_a_downward_api_file() -> None:
    """A CronJob's run names its pods when it starts, after its files were made: metadata.name and uid files are
    refused there (env has them), the other fields are files as usual."""
    cron = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          volumes:
            - name: info
              downwardAPI:
                items:
                  - {path: name, fieldRef: {fieldPath: metadata.name}}
                  - {path: ns, fieldRef: {fieldPath: metadata.namespace}}
          containers: [{name: main, image: "app:1", volumeMounts: [{name: info, mountPath: /i}]}]
"""
    assert problems(cron) == [
        # (a CronJob's template problems are shown at the path they have in its Job: batch._as_job)
        "p.yaml:15: CronJob/c: spec.template.spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: "
        "metadata.name is not supported by gitops-agent in a downwardAPI file of a CronJob's pods (each run names its "
        "pods when it starts); use env with valueFrom.fieldRef for it",
    ]


# --- one sync on a private Podman ---------------------------------------------------------

NS = f"pf{os.getpid()}"
BASE = "clusters/edge"


def _manifest(host_dir: Path) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-conf, namespace: {NS}}}
data: {{nginx.conf: "listen 8080\\n", other.txt: "other\\n"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-certs, namespace: {NS}}}
stringData: {{ca.crt: the-ca, tls.crt: the-cert}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      volumes:
        - {{name: conf, configMap: {{name: web-conf}}}}
        - name: certs
          projected:
            defaultMode: 0440
            sources:
              - secret: {{name: web-certs, items: [{{key: ca.crt, path: ca/ca.crt}},
                                                   {{key: tls.crt, path: client.crt, mode: 511}}]}}
              - configMap: {{name: web-conf, items: [{{key: other.txt, path: ca/note.txt, mode: 0400}}]}}
        - {{name: host, hostPath: {{path: {host_dir}, type: Directory}}}}
      containers:
        - name: web
          image: {WEB1}
          command: [sh, -c, "exec sleep 100000"]
          volumeMounts:
            - {{name: conf, mountPath: /etc/app/default.conf, subPath: nginx.conf}}
            - {{name: certs, mountPath: /certs}}
            - {{name: certs, mountPath: /only-ca, subPath: ca}}
            - {{name: host, mountPath: /data, subPath: app, readOnly: true}}
"""


def test_sub_paths_and_projected_volumes_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside the container: the ConfigMap key is the one file at the subPath mount (its directory holds nothing
    else), the projected volume holds the Secret's and the ConfigMap's files with defaultMode 0440 or an item's own
    mode, a subPath of
    it holds only its subdirectory, and the hostPath subdirectory is mounted read-only."""
    svc, repo = clean_podman, git_remote
    host_dir = tmp_path / "host"
    (host_dir / "app").mkdir(parents=True)
    (host_dir / "app" / "in-app.txt").write_text("in-app\n")
    (host_dir / "outside.txt").write_text("outside\n")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        "policy": {"allowedHostPaths": [{"pathPrefix": str(host_dir)}]},
    }))
    repo.write(f"{BASE}/web.yaml", _manifest(host_dir))
    repo.commit_and_push("web")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout)
    (name,) = [c["Names"][0] for c in listed if c["Names"][0].endswith("_web")]

    def sh(script: str) -> str:
        out: str = svc.podman("exec", name, "sh", "-c", script).stdout
        return out

    assert sh("cat /etc/app/default.conf") == "listen 8080\n"
    assert sh("ls -A /etc/app").split() == ["default.conf"]  # the one key, not the ConfigMap's other file
    assert sh("find /certs -type f | sort").split() == ["/certs/ca/ca.crt", "/certs/ca/note.txt", "/certs/client.crt"]
    assert sh("cat /certs/ca/ca.crt /certs/client.crt /certs/ca/note.txt") == "the-cathe-certother\n"
    # defaultMode 0440, but an item's own mode: 511 (0777) and 0400
    assert sh("stat -c %a /certs/ca/ca.crt /certs/ca/note.txt /certs/client.crt").split() == ["440", "400", "777"]
    assert sh("find /only-ca -type f | sort").split() == ["/only-ca/ca.crt", "/only-ca/note.txt"]
    assert sh("ls -A /data").split() == ["in-app.txt"]  # the subdirectory only
    assert sh("cat /data/in-app.txt; touch /data/x 2>/dev/null && echo writable || echo read-only") == \
        "in-app\nread-only\n"
