"""subPath mounts of named Podman volumes (claims, claim templates, emptyDirs on disk): bind mounts of their
directory under the volume's Mountpoint. Pure: the mapping, the validate errors, the directory checks, drift and
prune, from literals; then one real Podman: a claim mounted twice with two subPaths (as the docs' pv-duplicate.yaml),
a file written in one found under the volume through a whole read-only mount, kept across a rollout and a rollback,
and a re-sync that changes nothing."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig, PruneConfig
from gitops_agent.desired import PodSpec, VolumeBind, compile_node, empty_dir_name, ordinal_claim, volume_name
from gitops_agent.live import ContainerProps, LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.errors import RevisionRejected
from gitops_agent.plan import RemoveVolume, bound_volumes, container_drift, plan
from gitops_agent.podman import _container_body, container_props
from gitops_agent.subpaths import (BindSource, bind_source, components, directories_tar, entry_name, first_entry,
                                   refusal, volume_bind)
from podman_env import WEB1, one_node_config

NODE = NodeConfig("n1")
CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: site}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}%s}
"""


def deployment(mounts: str, extra: str = "", volumes: str = "- {name: site, persistentVolumeClaim: {claimName: site}}",
               name: str = "web") -> str:
    """Deployment `name` whose container `a` has volumeMounts `mounts` (flow YAML list items), then `extra`
    containers."""
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              volumes: [{volumes.removeprefix('- ')}]
              containers:
                - {{name: a, image: "app:1", volumeMounts: [{mounts}]}}
        """) + textwrap.indent(extra, " " * 8)


def revision(*docs: str, classes: dict[str, model.StorageClass] | None = None) -> model.Revision:
    files = [SourceFile(f"f{i}.yaml", doc.encode()) for i, doc in enumerate(docs)]
    return parse(files, storage_classes=classes)


def problems(*docs: str, classes: dict[str, model.StorageClass] | None = None) -> list[str]:
    with pytest.raises(RevisionRejected) as info:
        revision(*docs, classes=classes)
    return [str(p) for p in info.value.problems]


def only_pod(rev: model.Revision) -> PodSpec:
    (workload,) = compile_node(rev, NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return spec


TWICE = "{name: site, mountPath: /usr/share/nginx/html, subPath: html}, " \
        "{name: site, mountPath: /etc/nginx/nginx.conf, subPath: nginx.conf, readOnly: true}"


def test_a_claim_mounted_twice_with_two_sub_paths_is_two_bind_mounts_under_its_mountpoint() -> None:
    """As pv-duplicate.yaml: each subPath is a bind mount of <Mountpoint>/<subPath> (read-only if the mount is);
    the volume stays the claim's named volume, which no whole mount names."""
    spec = only_pod(revision(CLAIM % "", deployment(TWICE)))
    vol = volume_name("default", "site")
    (c,) = spec.containers
    assert c.volumes == (VolumeBind(vol, "/usr/share/nginx/html", False, "html"),
                         VolumeBind(vol, "/etc/nginx/nginx.conf", True, "nginx.conf"))
    mountpoint = f"/var/lib/containers/storage/volumes/{vol}/_data"
    sources = {(vol, sub): BindSource(bind_source(mountpoint, sub)) for sub in ("html", "nginx.conf")}
    body = _container_body(spec, c, "", sources)
    assert "volumes" not in body
    assert body["mounts"] == [
        {"destination": "/usr/share/nginx/html", "source": f"{mountpoint}/html", "type": "bind",
         "options": ["rbind", "rw"]},
        {"destination": "/etc/nginx/nginx.conf", "source": f"{mountpoint}/nginx.conf", "type": "bind",
         "options": ["rbind", "ro"]},
    ]


def test_claim_templates_and_disk_empty_dirs_take_sub_paths_too() -> None:
    """A StatefulSet's claim template (mysql-statefulset.yaml: subPath mysql) and an emptyDir on the node's disk:
    each ordinal's or pod's own volume, bound at its subPath; a whole mount beside it stays a named volume mount."""
    sts = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db}
        spec:
          serviceName: db
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec:
              volumes: [{name: tmp, emptyDir: {}}]
              containers:
                - name: a
                  image: "app:1"
                  volumeMounts: [{name: data, mountPath: /var/lib/mysql, subPath: mysql},
                                 {name: tmp, mountPath: /t, subPath: x/y}, {name: tmp, mountPath: /all, readOnly: true}]
          volumeClaimTemplates:
            - metadata: {name: data}
              spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
        """)
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: db}\n"
           "spec: {clusterIP: None, selector: {app: db}, ports: [{port: 3306}]}\n")
    spec = only_pod(revision(sts, svc))
    data = volume_name("default", ordinal_claim("db", "data", 0))
    tmp = empty_dir_name(spec.name, "tmp")
    assert spec.containers[0].volumes == (VolumeBind(data, "/var/lib/mysql", False, "mysql"),
                                          VolumeBind(tmp, "/t", False, "x/y"), VolumeBind(tmp, "/all", True))
    sources = {(data, "mysql"): BindSource("/v/d/_data/mysql"), (tmp, "x/y"): BindSource("/v/t/_data/x/y")}
    body = _container_body(spec, spec.containers[0], "", sources)
    assert body["volumes"] == [{"Name": tmp, "Dest": "/all", "Options": ["ro"]}]
    assert [(m["source"], m["destination"]) for m in body["mounts"]] == [("/v/d/_data/mysql", "/var/lib/mysql"),
                                                                          ("/v/t/_data/x/y", "/t")]


def test_sub_paths_podman_cannot_bind_safely_are_errors_that_say_what_to_do() -> None:
    """A claim of a storage class with another driver or options (its files are on the node only while mounted),
    a tmpfs emptyDir, an emptyDir of a pod with its own user namespace (the directory is the node root's), and a
    writable mount of the whole volume or of a directory above the subPath (a process there could swap the
    directory for a symbolic link the node would follow): errors at the subPath."""
    nfs = {"nfs": model.StorageClass("local", {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/x"}),
           "other": model.StorageClass("rexray")}
    found = problems(CLAIM % ", storageClassName: nfs", deployment("{name: site, mountPath: /d, subPath: html}"),
                     classes=nfs)
    assert found == ["f1.yaml:11: Deployment/web: spec.template.spec.containers[0].volumeMounts[0].subPath: is not "
                     "supported by gitops-agent on volume 'site' (found 'html'): its storage class has driver 'local' "
                     "and options device, o, type, so Podman has its files on the node only while a container mounts "
                     "it whole, and a subPath of a named volume is a bind mount of its directory on the node (Podman "
                     "4.3 has no subpath mount option); mount the whole volume, or use a class of the local driver "
                     "without options"]
    assert "driver 'rexray'" in problems(CLAIM % ", storageClassName: other",
                                         deployment("{name: site, mountPath: /d, subPath: a}"), classes=nfs)[0]
    memory = "{name: m, emptyDir: {medium: Memory}}"
    (tmpfs,) = problems(deployment("{name: m, mountPath: /m, subPath: a}", volumes=memory))
    assert "volumeMounts[0].subPath: is not supported by gitops-agent on volume 'm' (found 'a'): it is an emptyDir " \
           "of medium Memory" in tmpfs and "or use an emptyDir on the node's disk" in tmpfs
    own = deployment("{name: e, mountPath: /e, subPath: a}", volumes="{name: e, emptyDir: {}}").replace(
        "    spec:\n      volumes", "    spec:\n      hostUsers: false\n      volumes")
    (userns,) = problems(own)
    assert "volumeMounts[0].subPath: is not supported by gitops-agent on volume 'e' (found 'a') with hostUsers: " \
           "false: the agent makes the subPath's directory as the node's root" in userns
    (whole,) = problems(CLAIM % "", deployment("{name: site, mountPath: /d, subPath: html}, "
                                               "{name: site, mountPath: /all}"))
    assert whole == (
        "f1.yaml:11: Deployment/web: spec.template.spec.containers[0].volumeMounts[0].subPath: volume 'site' is also "
        "mounted writable whole by container 'a': a process there could replace directory 'html' with a symbolic "
        "link, which the node would follow out of the volume when it binds the subPath (Podman 4.3 mounts a subPath "
        "of a named volume as a bind mount of its directory); make that mount readOnly: true, or give it a subPath "
        "beside this one")
    other = deployment("{name: site, mountPath: /up, subPath: a}", name="other")
    (above,) = problems(CLAIM % "", deployment("{name: site, mountPath: /d, subPath: a/b}"), other)
    assert "volume 'site' is also mounted writable at subPath 'a' by container 'a' of Deployment/other" in above


def test_read_only_whole_mounts_and_sibling_sub_paths_beside_a_sub_path_are_fine() -> None:
    """Nothing beside the subPath can write its parent: accepted."""
    revision(CLAIM % "", deployment("{name: site, mountPath: /d, subPath: a/b}, {name: site, mountPath: /c, "
                                    "subPath: a/c}, {name: site, mountPath: /all, readOnly: true}"))


def test_a_missing_sub_path_is_made_as_directories_from_the_top_with_the_volumes_mode() -> None:
    """The tar the agent uploads into the volume: each missing directory, parents first, owner root, the mode
    of the volume's top directory (setgid kept), and nothing after the end of the archive."""
    assert components("a/b/c") == ("a", "a/b", "a/b/c") and components("./x/") == ("x",)
    with pytest.raises(ValueError):
        components("../up")
    assert bind_source("/var/lib/v/x/_data/", "a/./b") == "/var/lib/v/x/_data/a/b"
    with tarfile.open(fileobj=io.BytesIO(directories_tar(("a/b", "a/b/c"), 0o2775))) as tar:
        assert [(m.name, m.isdir(), oct(m.mode), m.uid, m.gid) for m in tar.getmembers()] == [
            ("a/b", True, "0o2775", 0, 0), ("a/b/c", True, "0o2775", 0, 0)]
    assert entry_name(first_entry(directories_tar(("a/b",), 0o755))) == "a/b"
    # one header per directory and the end marker, no padding to tarfile's 10 KiB record (Podman's copier stops
    # at the marker: padding still being sent failed 1 % of uploads with "broken pipe")
    data = directories_tar(("a/b", "a/b/c"), 0o2775)
    assert len(data) == 4 * tarfile.BLOCKSIZE and data[2 * tarfile.BLOCKSIZE:] == bytes(2 * tarfile.BLOCKSIZE)


def entry(name: str, kind: bytes = tarfile.DIRTYPE) -> tarfile.TarInfo:
    found = tarfile.TarInfo(name)
    found.type = kind
    return found


def test_a_symbolic_link_on_the_way_to_a_sub_path_is_refused() -> None:
    """Podman names an archive after what it resolved a path to: another name is a symbolic link; a file on the
    way is refused, a file at the subPath itself is bound as a file."""
    assert refusal(entry("b"), "a/b", last=True) == ""
    assert refusal(entry("b/"), "a/b", last=False) == ""
    assert refusal(entry("sub"), "a/b", last=True) == "it is a symbolic link (to 'sub')"
    assert refusal(entry(""), "b", last=False) == "it is a symbolic link (to 'the top of the volume')"
    assert refusal(entry("b", tarfile.REGTYPE), "a/b", last=True) == ""
    assert refusal(entry("b", tarfile.REGTYPE), "a/b", last=False) == "it is not a directory"
    assert refusal(entry("b", tarfile.FIFOTYPE), "b", last=True) == "it is neither a directory nor a file"


def props(binds: dict[str, tuple[str, str]], volumes: dict[str, str] | None = None) -> ContainerProps:
    return ContainerProps(sub_path_binds=binds, volumes=volumes or {})


def test_a_live_bind_under_the_volumes_mountpoint_compares_equal_to_the_desired_sub_path() -> None:
    """Inspect's bind mount (Source under <name>/_data) reads back as (volume, subPath): no drift when it is the
    one wanted; another subPath, another volume or a whole mount instead is drift of that mount."""
    inspect = {"Mounts": [
        {"Type": "bind", "Source": "/var/lib/containers/storage/volumes/gitops-v/_data/html", "Destination": "/h"},
        {"Type": "bind", "Source": "/srv/www", "Destination": "/host"},
        {"Type": "volume", "Name": "gitops-v", "Source": "/x/gitops-v/_data", "Destination": "/all"}]}
    found = container_props(inspect)
    assert found.sub_path_binds == {"/h": ("gitops-v", "html")} and found.volumes == {"/all": "gitops-v"}
    assert volume_bind("/srv/www") is None and volume_bind("/v/x/_data/a/b") == ("x", "a/b")
    spec = only_pod(revision(CLAIM % "", deployment("{name: site, mountPath: /h, subPath: html}")))
    (c,) = spec.containers
    vol = volume_name("default", "site")
    live = replace_props(c.labels, {"/h": (vol, "html")})
    assert container_drift(spec, c, live) == []
    assert container_drift(spec, c, replace_props(c.labels, {"/h": (vol, "other")})) == ["mount /h"]
    assert container_drift(spec, c, replace_props(c.labels, {}, {"/h": vol})) == ["mount /h"]


def replace_props(labels: Any, binds: dict[str, tuple[str, str]],
                  volumes: dict[str, str] | None = None) -> ContainerProps:
    """A live container as the agent made it (labels, restart policy), with these mounts."""
    return ContainerProps(labels=dict(labels), restart_policy="always", sub_path_binds=binds, volumes=volumes or {})


def test_a_volume_a_staying_container_binds_a_sub_path_of_is_never_pruned() -> None:
    """Podman removes a volume under a bind mount of its directory: prune keeps it (listed orphaned) while a
    live pod that stays binds it, and removes it once that pod goes in the same plan."""
    labels = {"io.gitops-agent.managed": "true", "io.gitops-agent.kind": "PersistentVolumeClaim",
              "io.gitops-agent.namespace": "default", "io.gitops-agent.name": "old"}
    c = LiveContainer("stray_a", "c1", WEB1, "running", "", props=props({"/d": ("gitops-old", "html")}))
    stray = LivePod("stray", "p1", "Running", {}, containers=(c,))
    live = LiveState("n1", pods={"stray": stray}, volumes={"gitops-old": labels})
    assert bound_volumes(live) == frozenset({"gitops-old"}) and bound_volumes(live, ["stray"]) == frozenset()
    desired = compile_node(revision(CLAIM % ""), NODE, (NODE,))
    kept = plan(desired, live, PruneConfig(enabled=True, delete_volumes=True), inventory=())
    assert not [a for a in kept.actions if isinstance(a, RemoveVolume)] and "gitops-old" in kept.orphaned_volumes
    gone = plan(desired, LiveState("n1", volumes={"gitops-old": labels}),
                PruneConfig(enabled=True, delete_volumes=True), inventory=())
    assert [a.name for a in gone.actions if isinstance(a, RemoveVolume)] == ["gitops-old"]


# --- on a real Podman ------------------------------------------------------------------------------------------

BASE = "clusters/edge"


def _agent_config(tmp_path: Path, repo: Any, svc: Any, prune: dict[str, bool] | None = None) -> Path:
    """The agent config of one local node `svc`, Git `repo` at BASE; `prune` its prune settings."""
    return one_node_config(tmp_path, repo.url, svc.url, BASE, **({"prune": prune} if prune else {}))


def _manifest(note: str) -> str:
    """Claim `site` and Deployment `web` of 2 pods (made at once, fsGroup 2000): container `a` mounts the claim
    twice, at subPaths html and conf/nested; container `b` mounts it whole, read-only. `note` is an env value (a
    new one: a rollout)."""
    return CLAIM % "" + f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {{fsGroup: 2000}}
      volumes: [{{name: site, persistentVolumeClaim: {{claimName: site}}}}]
      containers:
        - name: a
          image: {WEB1}
          command: [sleep, "100000"]
          env: [{{name: NOTE, value: "{note}"}}]
          volumeMounts: [{{name: site, mountPath: /html, subPath: html}},
                         {{name: site, mountPath: /conf, subPath: conf/nested}}]
        - name: b
          image: {WEB1}
          command: [sleep, "100000"]
          volumeMounts: [{{name: site, mountPath: /all, readOnly: true}}]
"""


def test_sub_paths_of_a_claim_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The subPath directories are made in the claim's volume (group fsGroup, setgid); a file written through one
    is in <volume>/html, seen through the whole read-only mount; a second sync changes nothing; the file survives a
    rollout and a rollback; no helper container is left; a subPath that is a symbolic link out of the volume is
    refused and the running pod is left alone."""
    svc, repo = clean_podman, git_remote
    cfg = _agent_config(tmp_path, repo, svc, {"enabled": True, "deleteVolumes": True})

    def app(name: str) -> str:
        listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true",
                                       "--format", "json").stdout)
        found = sorted(c["Names"][0] for c in listed if c["Names"][0].endswith(f"_{name}"))
        assert len(found) == 2, found
        return found[0]

    def sync() -> None:
        assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err

    def in_sync() -> None:
        capsys.readouterr()
        code = main(["diff", "--config", str(cfg)])
        assert code == 0, capsys.readouterr().out  # 0: nothing to change (no drift of the bind mounts)

    repo.write(f"{BASE}/web.yaml", _manifest("1"))
    repo.commit_and_push("web")
    sync()
    vol = volume_name("default", "site")
    mountpoint = Path(json.loads(svc.podman("volume", "inspect", vol).stdout)[0]["Mountpoint"])
    html = mountpoint / "html"
    assert html.is_dir() and (mountpoint / "conf" / "nested").is_dir()
    assert (html.stat().st_gid, oct(html.stat().st_mode & 0o7777)) == (2000, "0o2775")  # fsGroup, as the kubelet
    svc.podman("exec", app("a"), "sh", "-c", "echo kept > /html/index.html")
    assert (html / "index.html").read_text() == "kept\n"
    assert svc.podman("exec", app("b"), "cat", "/all/html/index.html").stdout == "kept\n"
    mounts = json.loads(svc.podman("inspect", app("a")).stdout)[0]["Mounts"]
    assert sorted((m["Type"], m["Source"], m["Destination"]) for m in mounts) == [
        ("bind", str(mountpoint / "conf/nested"), "/conf"), ("bind", str(html), "/html")]
    first = app("a")
    in_sync()
    sync()
    assert app("a") == first  # no drift: not made again
    assert svc.podman("ps", "-a", "--filter", "name=gitops-subpath", "--format", "{{.Names}}").stdout.strip() == ""

    repo.write(f"{BASE}/web.yaml", _manifest("2"))
    rollout = repo.commit_and_push("a new template")
    sync()
    assert app("a") != first
    assert svc.podman("exec", app("a"), "cat", "/html/index.html").stdout == "kept\n"
    repo.revert(rollout)
    sync()
    assert svc.podman("exec", app("a"), "cat", "/html/index.html").stdout == "kept\n"
    in_sync()

    running = app("a")
    (mountpoint / "out").symlink_to("../../../..")  # on the node: the top of Podman's storage, out of the volume
    repo.write(f"{BASE}/web.yaml", _manifest("3").replace("subPath: conf/nested", "subPath: out"))
    repo.commit_and_push("a subPath through a symbolic link")
    capsys.readouterr()
    assert main(["sync", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert "'out' (of subPath 'out') cannot be bound: it is a symbolic link (to 'the top of the volume')" in err, err
    assert app("a") == running


def _statefulset(note: str) -> str:
    """StatefulSet `db` of one ordinal, as mysql-statefulset.yaml mounts its claim template: subPath mysql, in an
    init container and the app container; `note` an env value (a new one: the pod replaced in place)."""
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec: {{clusterIP: None, selector: {{app: db}}, ports: [{{port: 3306}}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
        - name: init
          image: {WEB1}
          command: [sh, -c, "test -f /var/lib/mysql/ibdata || echo init-{note} > /var/lib/mysql/ibdata"]
          volumeMounts: [{{name: data, mountPath: /var/lib/mysql, subPath: mysql}}]
      containers:
        - name: mysql
          image: {WEB1}
          command: [sleep, "100000"]
          env: [{{name: NOTE, value: "{note}"}}]
          volumeMounts: [{{name: data, mountPath: /var/lib/mysql, subPath: mysql}}]
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
"""


def test_a_claim_templates_sub_path_on_real_podman_keeps_its_data_when_the_pod_is_replaced(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mysql-statefulset.yaml's mount: the ordinal's volume holds mysql/ibdata, written by the init container;
    the pod replaced in place (a new template) finds it, and a re-sync changes nothing."""
    svc, repo = clean_podman, git_remote
    cfg = _agent_config(tmp_path, repo, svc)
    repo.write(f"{BASE}/db.yaml", _statefulset("1"))
    repo.commit_and_push("db")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    vol = volume_name("default", ordinal_claim("db", "data", 0))
    mountpoint = Path(json.loads(svc.podman("volume", "inspect", vol).stdout)[0]["Mountpoint"])
    assert (mountpoint / "mysql" / "ibdata").read_text() == "init-1\n"
    repo.write(f"{BASE}/db.yaml", _statefulset("2"))
    repo.commit_and_push("a new template")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert svc.podman("exec", "db-0_mysql", "cat", "/var/lib/mysql/ibdata").stdout == "init-1\n"
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0, capsys.readouterr().out


def test_an_empty_dirs_sub_path_on_real_podman_is_made_with_its_mode_and_goes_with_the_pod(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An emptyDir on disk with `mode` 0750: its subPath directory is made with that mode; a file written through
    it is seen through the other container's whole read-only mount; the pod's removal takes the volume with it."""
    svc, repo = clean_podman, git_remote
    cfg = _agent_config(tmp_path, repo, svc, {"enabled": True, "allowEmpty": True})
    pod = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: scratch, emptyDir: {{mode: 0750}}}}]
  containers:
    - {{name: a, image: {WEB1}, command: [sh, -c, "echo hi > /x/f; exec sleep 100000"],
       volumeMounts: [{{name: scratch, mountPath: /x, subPath: cache/x}}]}}
    - {{name: b, image: {WEB1}, command: [sleep, "100000"],
       volumeMounts: [{{name: scratch, mountPath: /all, readOnly: true}}]}}
"""
    repo.write(f"{BASE}/p.yaml", pod)
    repo.commit_and_push("p")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    listed = svc.podman("exec", "p_b", "ls", "-ld", "/all/cache", "/all/cache/x").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["drwxr-x---", "drwxr-x---"], listed
    assert svc.podman("exec", "p_b", "cat", "/all/cache/x/f").stdout == "hi\n"
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0, capsys.readouterr().out
    repo.remove(f"{BASE}/p.yaml")
    repo.write(f"{BASE}/keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: b}\n")
    repo.commit_and_push("no pod")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert empty_dir_name("p", "scratch") not in svc.podman("volume", "ls", "--format", "{{.Name}}").stdout
