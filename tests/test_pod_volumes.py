"""emptyDir volumes and init containers: from manifests to Podman's create bodies (pure, from literals), then
one sync on a private Podman (shared and tmpfs emptyDirs, an init container feeding the app, a failing one)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import L_EMPTY_DIR_OF, L_INIT, PodSpec, compile_node, empty_dir_name, template_hash
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body, _empty_dir_body
from gitops_agent.subpaths import directories_tar
from podman_env import WEB1
from test_mappings import parsed, problems  # a revision of one file p.yaml, and its problems

NODE = NodeConfig("n1")


def pod(spec: str) -> str:
    """A Pod `p` with the pod-spec lines `spec` (its containers included)."""
    return ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: p}}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  "))


def pod_spec(text: str) -> PodSpec:
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return spec


SHARED = """\
volumes:
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
containers:
  - {name: a, image: "app:1", volumeMounts: [{name: scratch, mountPath: /s}, {name: mem, mountPath: /m}]}
  - {name: b, image: "app:1", volumeMounts: [{name: scratch, mountPath: /t, readOnly: true}]}
"""


def test_an_empty_dir_is_one_volume_of_the_pod_shared_by_its_containers() -> None:
    """Both containers bind the same per-pod volume; Memory is a tmpfs of sizeLimit (in 4 KiB pages), labelled
    with its pod so that it is removed with it and never taken for a claim's volume."""
    spec = pod_spec(pod(SHARED))
    scratch, mem = empty_dir_name("p", "scratch"), empty_dir_name("p", "mem")
    assert [(d.name, d.medium, d.size_limit) for d in spec.empty_dirs] == [(scratch, "", None),
                                                                           (mem, "Memory", 1 << 20)]
    a, b = (_container_body(spec, c)["volumes"] for c in spec.containers)
    assert a == [{"Name": scratch, "Dest": "/s", "Options": ["rw"]}, {"Name": mem, "Dest": "/m", "Options": ["rw"]}]
    assert b == [{"Name": scratch, "Dest": "/t", "Options": ["ro"]}]
    disk, memory = (_empty_dir_body(spec, d) for d in spec.empty_dirs)
    assert "Options" not in disk and disk["Label"][L_EMPTY_DIR_OF] == "p"
    assert memory["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "mode=1777,nr_blocks=256"}
    assert memory["Label"]["io.gitops-agent.managed"] == "true" and memory["Label"][L_EMPTY_DIR_OF] == "p"


def test_empty_dir_size_limits_of_zero_are_errors() -> None:
    """A sizeLimit of 0 is an error naming the field (a disk emptyDir's positive sizeLimit is accepted: the pod
    is evicted past it, tests/test_eviction.py)."""
    text = pod("""\
        volumes: [{name: s, emptyDir: {sizeLimit: 1Gi}}, {name: m, emptyDir: {medium: Memory, sizeLimit: 0}}]
        containers: [{name: a, image: "app:1"}]
        """)
    assert problems(text) == [
        "p.yaml:5: Pod/p: spec.volumes[1].emptyDir.sizeLimit: must be greater than zero (omit it for no limit)",
    ]
    assert "medium" in problems(pod("volumes: [{name: s, emptyDir: {medium: HugePages}}]\n"
                                    "containers: [{name: a, image: 'app:1'}]\n"))[0]


def test_an_empty_dirs_mode_is_its_top_directorys_mode_and_must_be_at_most_01777() -> None:
    """`emptyDir.mode` (Kubernetes' EmptyDirVolumeMode, the docs' emptydir-volume-mode.yaml) is set after the
    start (an archive of the directory alone, owner root); a tmpfs also gets it as its `mode=` option.
    Kubernetes allows 0 to 01777."""
    spec = pod_spec(pod("""\
        volumes:
          - {name: tmp, emptyDir: {mode: 01777}}
          - {name: mem, emptyDir: {medium: Memory, mode: 0750}}
          - {name: plain, emptyDir: {}}
        containers: [{name: a, image: "app:1", volumeMounts: [{name: tmp, mountPath: /tmp}, {name: mem, mountPath: /m}]}]
        """))
    assert [(d.medium, d.mode) for d in spec.empty_dirs] == [("", 0o1777), ("Memory", 0o750), ("", None)]
    disk, memory, plain = (_empty_dir_body(spec, d) for d in spec.empty_dirs)
    assert "Options" not in disk and "Options" not in plain
    assert memory["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "mode=750"}
    with tarfile.open(fileobj=io.BytesIO(directories_tar((".",), 0o1777))) as tar:
        (entry,) = tar.getmembers()
    assert (entry.name, entry.isdir(), entry.uid, entry.gid, oct(entry.mode)) == (".", True, 0, 0, "0o1777")
    found = problems(pod("""\
        volumes: [{name: a, emptyDir: {mode: 02777}}, {name: b, emptyDir: {mode: -1}}, {name: c, emptyDir: {mode: rw}}]
        containers: [{name: a, image: "app:1"}]
        """))
    assert found == [
        "p.yaml:5: Pod/p: spec.volumes[0].emptyDir.mode: must be a directory mode from 0 to 01777 (1023 in decimal) "
        "(found 1535)",
        "p.yaml:5: Pod/p: spec.volumes[1].emptyDir.mode: must be a directory mode from 0 to 01777 (1023 in decimal) "
        "(found -1)",
        "p.yaml:5: Pod/p: spec.volumes[2].emptyDir.mode: must be an integer, not a string",
    ], found


INIT = """\
volumes: [{name: www, emptyDir: {}}]
initContainers:
  - {name: fetch, image: "tool:1", command: [sh, -c, "echo hi > /www/index.html"],
     volumeMounts: [{name: www, mountPath: /www}]}
  - {name: check, image: "tool:2", command: ["true"]}
containers:
  - {name: web, image: "app:1", volumeMounts: [{name: www, mountPath: /www}]}
"""


def test_init_containers_are_created_first_in_order_as_podman_init_containers() -> None:
    """Init containers run before the app containers (Podman runs them in creation order), are pulled like any
    image, and carry the init label that keeps them out of the pod's app containers."""
    spec = pod_spec(pod(INIT))
    assert [c.labels["io.gitops-agent.container"] for c in spec.every_container()] == ["fetch", "check", "web"]
    fetch, check = (_container_body(spec, c) for c in spec.init_containers)
    assert fetch["init_container_type"] == check["init_container_type"] == "always"
    assert "restart_policy" not in fetch and fetch["labels"][L_INIT] == "true"
    assert fetch["volumes"] == [{"Name": empty_dir_name("p", "www"), "Dest": "/www", "Options": ["rw"]}]
    web = _container_body(spec, spec.containers[0])
    assert "init_container_type" not in web and L_INIT not in web["labels"]
    (workload,) = compile_node(parsed(pod(INIT)), NODE, (NODE,)).workloads
    assert workload.images == (("app:1", "IfNotPresent"), ("tool:1", "IfNotPresent"), ("tool:2", "IfNotPresent"))


def test_init_containers_count_in_the_template_hash_and_templates_without_them_keep_theirs() -> None:
    """Adding or changing an init container is a new template; a template without any hashes as before (its
    hash, pinned here, is the one agents before init containers gave it: no pod is replaced on upgrade)."""
    plain = pod("containers: [{name: web, image: 'app:1'}]\n")

    def thash(text: str) -> str:
        (workload,) = parsed(text).objects
        return template_hash(workload, {}, [])  # type: ignore[arg-type]

    assert thash(plain) == "j58tp7wsnd"
    mounted = pod("volumes: [{name: d, configMap: {name: c, optional: true}}]\n"
                  "containers: [{name: web, image: 'app:1', volumeMounts: [{name: d, mountPath: /d}]}]\n")
    assert thash(mounted) == "rz97jtfhxm"  # the volume fields added for emptyDir are left out at their defaults
    with_init = pod("initContainers: [{name: i, image: 'tool:1'}]\ncontainers: [{name: web, image: 'app:1'}]\n")
    changed = pod("initContainers: [{name: i, image: 'tool:2'}]\ncontainers: [{name: web, image: 'app:1'}]\n")
    assert len({thash(plain), thash(with_init), thash(changed)}) == 3


def test_item_and_empty_dir_modes_are_new_templates_and_templates_without_them_keep_theirs() -> None:
    """An item's `mode` and an emptyDir's `mode` count in the template hash; a template without them hashes as
    before they came (pinned: the hash agents before them gave it, so no pod is replaced on upgrade)."""
    def text(item_mode: str = "", dir_mode: str = "") -> str:
        return pod("volumes:\n"
                   f"  - {{name: d, configMap: {{name: c, optional: true, items: [{{key: k, path: p{item_mode}}}]}}}}\n"
                   f"  - {{name: e, emptyDir: {{{dir_mode}}}}}\n"
                   "  - name: b\n    projected:\n      sources:\n"
                   "        - secret: {name: s, optional: true, items: [{key: k, path: q}]}\n"
                   "containers: [{name: web, image: 'app:1', volumeMounts: [{name: d, mountPath: /d}, "
                   "{name: b, mountPath: /b}, {name: e, mountPath: /e}]}]\n")

    def thash(manifest: str) -> str:
        (workload,) = parsed(manifest).objects
        return template_hash(workload, {}, [])  # type: ignore[arg-type]

    assert thash(text()) == "hzf2ft2q7d"
    assert len({thash(text()), thash(text(item_mode=", mode: 0400")), thash(text(dir_mode="mode: 01777"))}) == 3


def test_init_container_fields_are_checked_like_the_app_containers() -> None:
    """Probes and hooks are refused (an init container runs to completion); names are unique across both lists;
    mounts name declared volumes; the agent policy applies to init containers too."""
    text = pod("""\
        initContainers:
          - {name: web, image: "tool:1", readinessProbe: {exec: {command: ["true"]}},
             volumeMounts: [{name: x, mountPath: /x}]}
          - {name: root, image: "tool:1", securityContext: {privileged: true}}
        containers: [{name: web, image: "app:1"}]
        """)
    assert problems(text) == [
        "p.yaml:6: Pod/p: spec.initContainers[0].readinessProbe: is not allowed in an init container (it runs to "
        "completion before the app containers start; with restartPolicy: Always it is a sidecar, which may have "
        "probes and hooks)",
        "p.yaml:7: Pod/p: spec.initContainers[0].volumeMounts[0].name: volume 'x' is not declared in the pod's "
        "volumes",
        "p.yaml:8: Pod/p: spec.initContainers[1].securityContext.privileged: privileged containers are not allowed "
        "by the agent policy (policy.allowPrivileged)",
        "p.yaml:9: Pod/p: spec.containers[0].name: duplicate container name 'web'",
    ]


# --- one sync on a private Podman ---------------------------------------------------------

NS = f"ed{os.getpid()}"
BASE = "clusters/edge"


def _deployment_head(name: str) -> str:
    """Namespace NS and the start of Deployment `name` of one replica, up to its pod spec's first field."""
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
"""


def _manifest(init_exit: int | None = None, note: str = "1") -> str:
    """Deployment `web` (an init container fills an emptyDir the httpd serves, a sidecar shares a disk and a
    Memory emptyDir with it); `init_exit`: a second init container that prints and exits with that code."""
    failing = ("" if init_exit is None else
               f'        - {{name: gate, image: {WEB1}, command: [sh, -c, "echo gate-output; exit {init_exit}"]}}\n')
    return _deployment_head("web") + f"""\
      volumes:
        - {{name: www, emptyDir: {{}}}}
        - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
      initContainers:
        - name: fetch
          image: {WEB1}
          command: [sh, -c, "echo from-init-{note} > /www/index.html"]
          volumeMounts: [{{name: www, mountPath: /www}}]
{failing}      containers:
        - name: web
          image: {WEB1}
          command: [httpd, -f, -p, "8080", -h, /www]
          volumeMounts: [{{name: www, mountPath: /www}}, {{name: mem, mountPath: /mem}}]
        - name: side
          image: {WEB1}
          command: [sh, -c, "echo side > /mem/note; echo side > /www/side.txt; exec sleep 100000"]
          volumeMounts: [{{name: www, mountPath: /www}}, {{name: mem, mountPath: /mem}}]
"""


def _config(tmp_path: Path, repo_url: str, node_url: str) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo_url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": node_url}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        "prune": {"enabled": True, "deleteVolumes": True},  # would remove the emptyDirs if taken for orphaned claims
    }))
    return cfg


def test_empty_dirs_and_init_containers_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The init container's file is served by the app; the two containers share the disk and the Memory emptyDir
    (a 1 MiB tmpfs); a new template's pod gets fresh emptyDirs and the old pod's go with it, never listed as
    claims; a failing init container fails the sync with its exit code and output, and the old pod keeps serving."""
    svc, repo = clean_podman, git_remote
    cfg = _config(tmp_path, repo.url, svc.url)

    def app(name: str) -> str:
        listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true",
                                       "--format", "json").stdout)
        (found,) = [c["Names"][0] for c in listed if c["Names"][0].endswith(f"_{name}")]
        return found

    def served(path: str) -> str:
        request = f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080"
        answer: str = svc.podman("exec", app("web"), "sh", "-c", request).stdout
        return answer.replace("\r\n", "\n").split("\n\n", 1)[-1]  # the body

    def empty_dirs() -> dict[str, str]:
        listed = json.loads(svc.podman("volume", "ls", "--format", "json").stdout)
        return {v["Name"]: (v.get("Labels") or {}).get(L_EMPTY_DIR_OF, "") for v in listed}

    repo.write(f"{BASE}/web.yaml", _manifest())
    repo.commit_and_push("web")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert served("/index.html") == "from-init-1\n"
    assert served("/side.txt") == "side\n"  # written by the sidecar into the shared disk emptyDir
    assert svc.podman("exec", app("web"), "cat", "/mem/note").stdout == "side\n"
    mounts = svc.podman("exec", app("side"), "cat", "/proc/mounts").stdout.splitlines()
    (mem,) = [line.split() for line in mounts if line.split()[1] == "/mem"]
    assert mem[2] == "tmpfs" and "size=1024k" in mem[3]
    fill = svc.podman("exec", app("side"), "sh", "-c", "cat /dev/zero > /mem/fill; echo $?; ls -l /mem/fill")
    assert fill.stdout.splitlines()[0] == "1" and "No space left on device" in fill.stderr
    assert int(fill.stdout.splitlines()[1].split()[4]) <= 1 << 20  # the sizeLimit holds
    svc.podman("exec", app("side"), "rm", "/mem/fill")
    first = empty_dirs()
    (pod,) = set(first.values())
    assert sorted(first) == [empty_dir_name(pod, "mem"), empty_dir_name(pod, "www")]
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0  # in sync: the emptyDirs are no orphaned claims to prune
    assert "volume" not in capsys.readouterr().out.lower()

    repo.write(f"{BASE}/web.yaml", _manifest(note="2"))
    repo.commit_and_push("a new template")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert served("/index.html") == "from-init-2\n"
    second = empty_dirs()
    assert len(second) == 2 and not set(second) & set(first)  # fresh, and the old pod's are gone with it

    repo.write(f"{BASE}/web.yaml", _manifest(init_exit=7, note="3"))
    repo.commit_and_push("a failing init container")
    capsys.readouterr()
    assert main(["sync", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert "init container gate exited with code 7: gate-output" in err, err
    assert served("/index.html") == "from-init-2\n"
    assert empty_dirs() == second  # the failed pod's emptyDirs went with it


def test_an_init_container_counts_in_the_pods_request_as_kubernetes_counts_it_and_publishes_no_port() -> None:
    """A pod requests the larger of its app containers' sum and its largest init container's request (they run
    one at a time, before the apps); a hostPort on an init container, which has exited by then, is an error."""
    small = NodeConfig("n1", cpu_millis=1000)

    def rejected(init_cpu: str) -> list[str]:
        text = pod(f"""\
            initContainers: [{{name: i, image: "tool:1", resources: {{requests: {{cpu: {init_cpu}}}}}}}]
            containers:
              - {{name: a, image: "app:1", resources: {{requests: {{cpu: 400m}}}}}}
              - {{name: b, image: "app:1", resources: {{requests: {{cpu: 400m}}}}}}
            """)
        try:
            parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(small,))
        except RevisionRejected as e:
            return [str(p) for p in e.problems]
        return []

    assert rejected("900m") == []  # 800m of apps, 900m of init: 900m fits 1000m
    assert rejected("1100m") == [
        "p.yaml:6: Pod/p: spec.containers: the pods placed on node n1 request 1100m of cpu in all, more than its "
        "capacity.cpu (1000m); Pod/p requests 1100m there",
    ]
    assert problems(pod("""\
        initContainers: [{name: i, image: "tool:1", ports: [{containerPort: 80, hostPort: 8080}]}]
        containers: [{name: a, image: "app:1"}]
        """)) == [
        "p.yaml:5: Pod/p: spec.initContainers[0].ports[0].hostPort: is not supported by gitops-agent in an init "
        "container (it exits before the app containers start: publish the port of an app container)",
    ]


def _modes_manifest() -> str:
    """Deployment `modes`: the docs' emptyDir `mode: 01777` at /tmp for a non-root user, a Memory emptyDir
    `mode: 0750` and a plain one."""
    return _deployment_head("modes") + f"""\
      volumes:
        - {{name: tmp, emptyDir: {{mode: 01777}}}}
        - {{name: mem, emptyDir: {{medium: Memory, mode: 0750}}}}
        - {{name: plain, emptyDir: {{}}}}
      containers:
        - name: app
          image: {WEB1}
          command: [sh, -c, "exec sleep 100000"]
          securityContext: {{runAsUser: 1000}}
          volumeMounts: [{{name: tmp, mountPath: /tmp}}, {{name: mem, mountPath: /mem}}, {{name: plain, mountPath: /p}}]
"""


def test_empty_dir_modes_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside the container the disk emptyDir's mount point has mode 1777 and the tmpfs's 750, both owned by root
    as in Kubernetes (user 1000 writes to /tmp through the mode, not to /mem); a second sync changes nothing (same
    container, same modes, diff in sync)."""
    svc, repo = clean_podman, git_remote
    cfg = _config(tmp_path, repo.url, svc.url)
    repo.write(f"{BASE}/modes.yaml", _modes_manifest())
    repo.commit_and_push("modes")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err

    def app() -> tuple[str, str]:
        listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true",
                                       "--format", "json").stdout)
        (found,) = [(c["Names"][0], c["Id"]) for c in listed if c["Names"][0].endswith("_app")]
        return found

    def modes() -> list[str]:
        out: str = svc.podman("exec", app()[0], "sh", "-c", "stat -c '%a %u' /tmp /mem").stdout
        return out.splitlines()

    assert modes() == ["1777 0", "750 0"]
    written = "touch /tmp/x && echo written; touch /mem/x 2>/dev/null || echo denied"
    assert svc.podman("exec", app()[0], "sh", "-c", written).stdout == "written\ndenied\n"
    first = app()
    capsys.readouterr()
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert app() == first and modes() == ["1777 0", "750 0"]
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0, capsys.readouterr().out
