"""Image volumes (`volumes[].image`, issue 18): the files of an image mounted read-only, as Podman 4.3's
image_volumes (`podman run --mount type=image,...`).

Pure tests from literals (manifest -> model -> libpod spec, the pull list, the template hash, drift and the
errors), then one end to end test on real Git and real Podman: a file of the image is read at the mount path and a
write there fails.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import ImageMount, compile_node, template_hash
from gitops_agent.errors import RevisionRejected
from gitops_agent.live import ContainerProps
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.plan import container_drift
from gitops_agent.podman import _container_body
from podman_env import WEB1, WEB2

NODE = NodeConfig("n1")
COMMIT = "main@sha1:" + "a" * 40


def pod(volume: str, mount: str = "{name: data, mountPath: /data}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: p}}
        spec:
          containers:
            - name: main
              image: app:1
              volumeMounts: [{mount}]
          volumes: [{{name: data, image: {volume}}}]
        """)


def parsed(text: str) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], COMMIT)


def problems(text: str) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parsed(text)
    return [str(p) for p in rejected.value.problems]


def workload(text: str) -> model.Workload:
    (w,) = [o for o in parsed(text).objects if isinstance(o, model.Workload)]
    return w


@pytest.mark.parametrize(("volume", "policy"), [
    ("{reference: 'quay.io/crio/artifact:v2', pullPolicy: IfNotPresent}", "IfNotPresent"),
    ("{reference: 'quay.io/crio/artifact:v2'}", "IfNotPresent"),
    ("{reference: 'quay.io/crio/artifact'}", "Always"),
    ("{reference: 'quay.io/crio/artifact:latest'}", "Always"),
    ("{reference: 'quay.io/crio/artifact:latest', pullPolicy: Never}", "Never"),
])
def test_image_volume_is_read_only_with_kubernetes_pull_policy(volume: str, policy: str) -> None:
    (v,) = workload(pod(volume)).template.volumes
    assert (v.kind, v.read_only, v.pull_policy) == ("image", True, policy)
    assert v.source.startswith("quay.io/crio/artifact")


def test_image_volume_becomes_a_read_only_podman_image_volume_pulled_with_the_pod() -> None:
    (w,) = compile_node(parsed(pod("{reference: 'reg.example/data:3', pullPolicy: Always}")), NODE, (NODE,)).workloads
    (spec,) = w.pods
    (c,) = spec.containers
    assert c.image_mounts == (ImageMount("reg.example/data:3", "/data", "Always"),)
    body = _container_body(spec, c)
    assert body["image_volumes"] == [{"source": "reg.example/data:3", "destination": "/data", "rw": False}]
    assert "mounts" not in body and "volumes" not in body and "secrets" not in body
    assert w.images == (("app:1", "IfNotPresent"), ("reg.example/data:3", "Always"))


def test_a_new_reference_is_a_new_template() -> None:
    def thash(text: str) -> str:
        return template_hash(workload(text), {}, [])

    one, two = thash(pod("{reference: 'reg.example/data:3'}")), thash(pod("{reference: 'reg.example/data:4'}"))
    assert one != two
    assert thash(pod("{reference: 'reg.example/data:3', pullPolicy: IfNotPresent}")) == one  # the same default


def test_image_volume_errors_say_what_to_do() -> None:
    (sub,) = problems(pod("{reference: 'quay.io/crio/artifact:v2'}",
                          "{name: data, mountPath: /volume, subPath: dir}"))
    assert "subPath" in sub and "image volume" in sub and "Podman 4.3 mounts only whole" in sub
    assert "mount the whole image volume and use the directory under it" in sub
    (missing,) = problems(pod("{pullPolicy: Always}"))
    assert "reference" in missing
    (bad,) = problems(pod("{reference: 'a b'}"))
    assert "must be a non-empty image reference without whitespace" in bad
    (policy,) = problems(pod("{reference: x, pullPolicy: Sometimes}"))
    assert "pullPolicy" in policy


def test_drift_compares_the_image_mounts_inspect_shows() -> None:
    (w,) = compile_node(parsed(pod("{reference: 'reg.example/data:3'}")), NODE, (NODE,)).workloads
    (spec,) = w.pods
    (c,) = spec.containers
    base = ContainerProps(image_name="app:1", labels=dict(c.labels))

    def drift(mounts: dict[str, str]) -> list[str]:
        return [d for d in container_drift(spec, c, replace(base, image_mounts=mounts)) if d.startswith("mount")]

    assert drift({"/data": "reg.example/data:3"}) == []
    assert drift({"/data": "reg.example/data@sha256:" + "b" * 64}) == []  # pinned by digest
    assert drift({"/data": "c" * 64}) == []  # pinned by image ID
    assert drift({"/data": "reg.example/other:3"}) == ["mount /data"]
    assert drift({}) == ["mount /data"]
    assert drift({"/data": "reg.example/data:3", "/more": "x:1"}) == ["mount /more"]


BASE, NS = "apps", "imgvol"


def test_image_volume_files_are_read_only_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WEB1 runs with WEB2 mounted at /data: WEB2's /www/index.html ("2") is read there, a write fails, and the
    next diff finds the pod in sync (its image mount compared)."""
    svc, repo = clean_podman, git_remote
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url}], "stateDir": str(tmp_path / "state"), "readyTimeout": "30s"}))
    repo.write(f"{BASE}/pod.yaml", textwrap.dedent(f"""\
        apiVersion: v1
        kind: Namespace
        metadata: {{name: {NS}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: reader, namespace: {NS}}}
        spec:
          containers:
            - name: main
              image: {WEB1}
              command: [sleep, "100000"]
              volumeMounts: [{{name: data, mountPath: /data}}]
          volumes: [{{name: data, image: {{reference: "{WEB2}", pullPolicy: IfNotPresent}}}}]
        """))
    repo.commit_and_push("image volume")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    ctr = f"reader_{NS}_main"
    (info,) = json.loads(svc.podman("inspect", ctr).stdout)
    (mount,) = [m for m in info["Mounts"] if m["Type"] == "image"]
    assert (mount["Destination"], mount["RW"]) == ("/data", False)
    out = svc.podman("exec", ctr, "sh", "-c", "cat /data/www/index.html; touch /data/www/x; echo rc=$?",
                     check=False)
    assert out.stdout.splitlines() == ["2", "rc=1"]
    assert "Read-only file system" in out.stderr
    assert main(["diff", "--config", str(cfg)]) == 0, capsys.readouterr().out
