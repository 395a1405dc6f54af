"""Writable cgroups (issue 18, the Kubernetes documentation's pods/security/security-context-7.yaml): a container's
`securityContext.cgroupOptions.mountMode: ReadWrite` mounts its own cgroups read-write at /sys/fs/cgroup, behind
`policy.allowWritableCgroups`.

Pure tests from literals (manifest -> model -> Podman's create body), then one sync on a private Podman that reads
the container's mounts and makes a child cgroup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import from_mapping
from gitops_agent.podman import _container_body
from podman_env import WEB1, one_node_config
from test_secprof import pod, problems, spec_of

WRITABLE = model.Policy(allow_writable_cgroups=True)
CGROUP_MOUNT = {"destination": "/sys/fs/cgroup", "source": "cgroup", "type": "cgroup",
                "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "rw"]}


def test_read_write_is_podmans_cgroup_mount_read_write_and_read_only_is_the_default() -> None:
    """ReadWrite replaces Podman's read-only cgroup mount by a read-write one in that container only; ReadOnly, or
    no cgroupOptions, leaves Podman's."""
    spec = spec_of(pod(container="securityContext: {cgroupOptions: {mountMode: ReadWrite}}\n"), WRITABLE)
    main, side = (_container_body(spec, c) for c in spec.containers)
    assert main["mounts"] == [CGROUP_MOUNT]
    assert "mounts" not in side
    read_only = spec_of(pod(container="securityContext: {cgroupOptions: {mountMode: ReadOnly}}\n"), WRITABLE)
    assert not any(c.cgroup_writable for c in read_only.containers)
    assert "mounts" not in _container_body(read_only, read_only.containers[0])


def test_writable_cgroups_need_the_policy_switch_and_a_known_mode() -> None:
    """The default policy refuses ReadWrite at its field, saying why and what to do; an unknown mode is a schema
    error listing both."""
    (refused,) = problems(pod(container="securityContext: {cgroupOptions: {mountMode: ReadWrite}}\n"))
    assert refused == (
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.cgroupOptions.mountMode: writable cgroups (mountMode "
        "ReadWrite) are not allowed by the agent policy (policy.allowWritableCgroups: on a cgroup v1 node a root "
        "process in the container could change its own limits); remove cgroupOptions for the default ReadOnly")
    (unknown,) = problems(pod(container="securityContext: {cgroupOptions: {mountMode: Writable}}\n"), WRITABLE)
    assert "cgroupOptions.mountMode: must be one of ReadOnly, ReadWrite, not 'Writable'" in unknown, unknown


def test_the_policy_key() -> None:
    """policy.allowWritableCgroups, off by default."""
    assert from_mapping({"source": {"url": "/r"}, "policy": {"allowWritableCgroups": True}}).policy \
        .allow_writable_cgroups
    assert not from_mapping({"source": {"url": "/r"}}).policy.allow_writable_cgroups


# --- on real Podman ---------------------------------------------------------------------------

NS = f"cg{os.getpid()}"
BASE = "clusters/edge"


def _manifest() -> str:
    """The docs' security-context-7 container (writable cgroups) beside one with the default."""
    sleep = '[sh, -c, "exec sleep 100000"]'
    return (f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\napiVersion: v1\nkind: Pod\n"
            f"metadata: {{name: security-context-demo-7, namespace: {NS}}}\n"
            "spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
            f"    - name: sec-ctx-7\n      image: {WEB1}\n      command: {sleep}\n"
            "      securityContext: {allowPrivilegeEscalation: false, cgroupOptions: {mountMode: ReadWrite}}\n"
            f"    - {{name: plain, image: {WEB1}, command: {sleep}}}\n")


def test_writable_cgroups_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the ReadWrite container every cgroup mount under /sys/fs/cgroup is rw (cgroup2 on a v2 node, each v1
    controller here) and a child cgroup can be made; in its neighbour they are ro and mkdir fails. The pod is then in
    sync (the mount is no drift)."""
    svc, repo = clean_podman, git_remote
    cfg = one_node_config(tmp_path, repo.url, svc.url, BASE, policy={"allowWritableCgroups": True})
    repo.write(f"{BASE}/pod.yaml", _manifest())
    repo.commit_and_push("writable cgroups")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout)
    names = {c["Names"][0].rsplit("_", 1)[-1]: c["Names"][0] for c in listed if not c.get("IsInfra")}

    def cgroup_mounts(name: str) -> dict[str, list[str]]:
        """Mount point -> options of the cgroup filesystems under /sys/fs/cgroup in container `name`."""
        lines = svc.podman("exec", name, "cat", "/proc/mounts").stdout.splitlines()
        return {f[1]: f[3].split(",") for f in map(str.split, lines)
                if f[2] in ("cgroup", "cgroup2") and f[1].startswith("/sys/fs/cgroup")}

    def make_child(name: str, under: str) -> str:
        script = f"mkdir {under}/ga-child 2>&1 && rmdir {under}/ga-child && echo made"
        out: str = svc.podman("exec", name, "sh", "-c", script, check=False).stdout
        return out.strip()

    writable, plain = cgroup_mounts(names["sec-ctx-7"]), cgroup_mounts(names["plain"])
    assert writable and set(writable) == set(plain), (writable, plain)
    assert all("rw" in options for options in writable.values()), writable
    assert all("ro" in options for options in plain.values()), plain
    under = min(writable)  # /sys/fs/cgroup on cgroup v2; the first v1 controller here
    assert make_child(names["sec-ctx-7"], under) == "made"
    assert "Read-only file system" in make_child(names["plain"], under)
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0, capsys.readouterr().out  # in sync: no drift from the mount
