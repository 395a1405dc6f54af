"""End to end on real Git and real Podman: the user story of the core pipeline.

Commits are pushed to a real bare repository; `gitops-agent` commands run
in-process against a private Podman service. Every assertion reads the real
state back from Podman.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent.agent import Agent
from gitops_agent.cli import main
from gitops_agent import config as config_mod
from podman_env import HTTPD, WEB1, WEB2

SECRET_VALUE = "pa55-w0rd-never-shown"
# Podman 4.3 keeps aardvark-dns state per network name machine-wide, across services:
# a namespace of its own keeps this test's Service name from meeting another Podman's.
NS = f"e2e{os.getpid()}"

NAMESPACE = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
"""
CONFIG = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: {NS}
data:
  GREETING: hello
  index.html: "<h1>from git</h1>"
"""
# the Kubernetes documentation's configmap/immutable-configmap.yaml, in the test's namespace
IMMUTABLE = f"""\
apiVersion: v1
data:
  company_name: "ACME, Inc." # existing fictional company name
kind: ConfigMap
immutable: true
metadata:
  name: company-name-20150801
  namespace: {NS}
"""
SECRET = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: {NS}
stringData:
  token: {SECRET_VALUE}
"""
PVC = f"""\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: {NS}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 10Mi}}}}
"""
SERVICE = f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector: {{app: web}}
  ports:
    - port: 8080
"""


def deployment(image: str, command: list[str] = HTTPD) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: {json.dumps(command)}
          env:
            - name: GREETING
              valueFrom: {{configMapKeyRef: {{name: web-config, key: GREETING}}}}
            - name: TOKEN
              valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}
          volumeMounts:
            - {{name: site, mountPath: /www}}
            - {{name: data, mountPath: /data}}
      volumes:
        - name: site
          configMap: {{name: web-config}}
        - name: data
          persistentVolumeClaim: {{claimName: data}}
"""


class Cli:
    """Runs `gitops-agent` in-process and keeps every byte it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str], config: Path) -> None:
        self.capsys = capsys
        self.config = config
        self.transcript: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main([args[0], "--config", str(self.config), *args[1:]])
        cap = self.capsys.readouterr()
        self.transcript += [cap.out, cap.err]
        return code, cap.out, cap.err


def app_containers(svc: Any) -> dict[str, dict[str, Any]]:
    """Managed app containers by name, read back from Podman."""
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c for c in json.loads(out or "[]") if not c.get("IsInfra")}


def pod_hashes(svc: Any) -> set[str]:
    return {c["Labels"]["io.gitops-agent.template-hash"] for c in app_containers(svc).values()}


@pytest.fixture
def setup(clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Any, Any, Cli, Path]:
    cfg = tmp_path / "agent.yaml"
    state = tmp_path / "state"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "branch": "main", "path": "clusters/edge", "interval": "5s"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(state),
        "readyTimeout": "30s",
    }))
    return clean_podman, git_remote, Cli(capsys, cfg), state


def test_gitops_user_story(setup: tuple[Any, Any, Cli, Path]) -> None:
    """push → pods; resync is a no-op; drift is repaired; bystanders are untouched; image change rolls;
    a bad commit changes nothing; revert restores the first template; prune keeps the volume; secrets stay hidden."""
    svc, repo, cli, state = setup
    base = "clusters/edge"
    # a container the agent does not own, with a label that looks almost like ours
    svc.podman("run", "-d", "--name", "bystander", "--label", "io.gitops-agent.managed=false", WEB1, "sleep", "1000")
    bystander_id = svc.podman("inspect", "--format", "{{.Id}}", "bystander").stdout.strip()

    for name, text in (("ns.yaml", NAMESPACE), ("web/config.yaml", CONFIG), ("web/secret.yaml", SECRET),
                       ("web/company.yaml", IMMUTABLE),
                       ("web/pvc.yaml", PVC), ("web/deploy.yaml", deployment(WEB1)), ("web/svc.yaml", SERVICE)):
        repo.write(f"{base}/{name}", text)
    c1 = repo.commit_and_push("web v1")

    # 1. first sync creates the labelled pods
    code, out, err = cli("sync")
    assert code == 0, err
    assert f"main@sha1:{c1}" in out
    first = app_containers(svc)
    assert len(first) == 2
    for c in first.values():
        labels = c["Labels"]
        assert labels["io.gitops-agent.managed"] == "true"
        assert (labels["io.gitops-agent.namespace"], labels["io.gitops-agent.kind"], labels["io.gitops-agent.name"]) == (NS, "Deployment", "web")
        assert labels["io.gitops-agent.revision"] == c1
        assert c["State"] == "running"
    hash1 = pod_hashes(svc)
    assert len(hash1) == 1
    one = next(iter(first))
    env = svc.podman("exec", one, "env").stdout
    assert "GREETING=hello" in env and f"TOKEN={SECRET_VALUE}" in env  # the secret reaches the container...
    assert svc.podman("exec", one, "cat", "/www/index.html").stdout == "<h1>from git</h1>"
    # Service: the name resolves on the namespace network
    svc.podman("exec", one, "sh", "-c", "echo 'GET /index.html HTTP/1.0\r\n\r\n' | nc web 8080 | grep -q 'from git'")
    # data written into the PVC
    svc.podman("exec", one, "sh", "-c", "echo precious > /data/keep.txt")

    # 2. a second sync changes nothing: same container IDs, no write call
    agent = Agent(config_mod.load(str(cli.config)))
    try:
        out2 = agent.sync()
        assert out2.result == "in-sync" and out2.actions == 0
        assert agent.nodes["local"].writes == 0
    finally:
        agent.close()
    assert {n: c["Id"] for n, c in app_containers(svc).items()} == {n: c["Id"] for n, c in first.items()}
    code, out, _ = cli("diff")
    assert code == 0 and "in sync" in out

    # 3. a container removed by hand comes back
    svc.podman("rm", "-f", one)
    code, out, _ = cli("diff")
    assert code == 1 and "replace-pod" in out
    code, _, err = cli("sync")
    assert code == 0, err
    after = app_containers(svc)
    assert set(after) == set(first) and all(c["State"] == "running" for c in after.values())

    # 4. image change: new template hash, pods replaced, data kept
    repo.write(f"{base}/web/deploy.yaml", deployment(WEB2))
    c2 = repo.commit_and_push("web v2")
    code, out, _ = cli("diff")
    assert code == 1 and "rollout" in out
    code, _, err = cli("sync")
    assert code == 0, err
    hash2 = pod_hashes(svc)
    assert len(hash2) == 1 and hash2 != hash1
    v2 = app_containers(svc)
    assert len(v2) == 2 and all(c["Image"].endswith("gitops-test/web:2") for c in v2.values())
    assert svc.podman("exec", next(iter(v2)), "cat", "/data/keep.txt").stdout.strip() == "precious"

    # 5. an invalid commit is rejected with FILE:LINE errors; running pods keep their IDs
    repo.write(f"{base}/web/deploy.yaml", deployment(WEB2).replace("replicas: 2", "replicas: two"))
    repo.write(f"{base}/web/extra.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: {NS}\nspec: {{}}\n")
    c3 = repo.commit_and_push("broken")
    code, _, err = cli("sync")
    assert code == 1
    assert f"{base}/web/deploy.yaml:7: Deployment/web: spec.replicas:" in err  # `replicas: two` is on line 7
    assert f"{base}/web/extra.yaml:6:" in err  # the unknown `spec` key
    assert {n: c["Id"] for n, c in app_containers(svc).items()} == {n: c["Id"] for n, c in v2.items()}
    code, out, _ = cli("status", "--output", "json")
    st = json.loads(out)
    assert st["condition"] == "Stalled"
    assert st["attemptedRevision"] == f"main@sha1:{c3}" and st["appliedRevision"] == f"main@sha1:{c2}"
    code, out, _ = cli("history")
    assert "rejected" in out

    # 6. git revert of the bad commit, then of the image change: the first template hash is back
    c4 = repo.revert(c3)
    code, _, err = cli("sync")
    assert code == 0, err
    assert {n: c["Id"] for n, c in app_containers(svc).items()} == {n: c["Id"] for n, c in v2.items()}
    # (an immutable ConfigMap's new data is rejected, as the API server refuses it; reverted with the next step's)
    repo.write(f"{base}/web/company.yaml", IMMUTABLE.replace("ACME, Inc.", "Fiktivesunternehmen GmbH"))
    c6 = repo.commit_and_push("new company name in the immutable ConfigMap")
    code, _, err = cli("sync")
    assert code == 1
    assert f"{base}/web/company.yaml:1: ConfigMap/company-name-20150801: data: ConfigMap 'company-name-20150801' " \
        f"is immutable in revision main@sha1:{c4}, which the nodes run: its data cannot change" in err
    assert {n: c["Id"] for n, c in app_containers(svc).items()} == {n: c["Id"] for n, c in v2.items()}
    repo.revert(c6)
    c5 = repo.revert(c2)
    code, _, err = cli("sync")
    assert code == 0, err
    assert pod_hashes(svc) == hash1
    assert set(app_containers(svc)) == set(first)  # same pod names: the template is recognised
    assert svc.podman("exec", next(iter(app_containers(svc))), "cat", "/data/keep.txt").stdout.strip() == "precious"
    code, out, _ = cli("status", "--output", "json")
    st = json.loads(out)
    assert st["condition"] == "Ready" and st["appliedRevision"] == f"main@sha1:{c5}"
    web = next(o for o in st["objects"] if o["kind"] == "Deployment")
    assert (web["ready"], web["desired"], web["templateHash"]) == (2, 2, next(iter(hash1)))
    assert web["revision"] == 3  # v1 → v2 → v1 again, numbered the Kubernetes way

    # 7. deleting the manifest prunes its pods but keeps the volume and its data
    repo.remove(f"{base}/web/deploy.yaml")
    repo.commit_and_push("retire web")
    code, _, err = cli("sync")
    assert code == 0, err
    assert app_containers(svc) == {}
    vols = svc.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"gitops-{NS}_data" in vols
    data = svc.podman("run", "--rm", "-v", f"gitops-{NS}_data:/data", WEB1, "cat", "/data/keep.txt").stdout
    assert data.strip() == "precious"

    # the unmanaged container was never touched
    assert svc.podman("inspect", "--format", "{{.Id}} {{.State.Status}}", "bystander").stdout.split() == [bystander_id, "running"]

    # the Secret's value appears in no output and nowhere in the agent's own state
    code, out, _ = cli("history", "--output", "json")
    cli("status")
    cli("diff")
    transcript = "".join(cli.transcript)
    assert SECRET_VALUE not in transcript
    assert SECRET_VALUE.encode() not in (state / "state.db").read_bytes()
    for f in state.glob("state.db*"):
        assert SECRET_VALUE.encode() not in f.read_bytes()


def test_unreachable_node_is_a_clear_error_and_nothing_is_recorded_as_applied(git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A node whose Podman socket does not answer: sync exits 1 with one clear line, status says UNREACHABLE."""
    git_remote.write("ns.yaml", NAMESPACE)
    git_remote.commit_and_push("ns")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": git_remote.url}, "nodes": [{"name": "edge1", "url": f"unix://{tmp_path}/none.sock"}],
                                   "stateDir": str(tmp_path / "state")}))
    cli = Cli(capsys, cfg)
    code, _, err = cli("sync")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("gitops-agent: revision main@sha1:") and "reached 0/1 node(s); deferred until reachable: " in last
    assert last.endswith(f"node edge1: cannot reach Podman at unix://{tmp_path}/none.sock (ping): is the Podman service running?")
    assert "Traceback" not in err
    code, out, _ = cli("status", "--output", "json")
    st = json.loads(out)
    assert st["appliedRevision"] == "" and st["condition"] == "Progressing" and "0/1 node(s)" in st["message"]
    assert st["rollout"]["nodes"][0]["status"] == "deferred"
    assert st["nodes"] == [{"name": "edge1", "reachable": False, "error": st["nodes"][0]["error"], "labels": {}}] and "cannot reach Podman" in st["nodes"][0]["error"]


def replication_controller(image: str, replicas: int, kind: str = "ReplicationController") -> str:
    """An RC, or the same as an apps/v1 ReplicaSet (its selector last, so that the lines stay the same)."""
    selector = "  selector: {matchLabels: {app: rc}}\n" if kind == "ReplicaSet" else ""
    return f"""\
apiVersion: {"apps/v1" if kind == "ReplicaSet" else "v1"}
kind: {kind}
metadata:
  name: rc
spec:
  replicas: {replicas}
  template:
    metadata:
      labels: {{app: rc}}
    spec:
      serviceAccountName: rc
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: ["sleep", "1000"]
""" + selector


@pytest.mark.parametrize("kind", ["ReplicationController", "ReplicaSet"])
def test_a_replication_controller_keeps_its_pods_on_a_template_change_and_scales_with_the_new_one(
    setup: tuple[Any, Any, Cli, Path], kind: str,
) -> None:
    """Real Podman: an RC's (or ReplicaSet's) image change replaces nothing; scaling up adds a pod of the new image;
    scaling down removes the old-image pods first. Its no-op field is a warning in `diff` and `status`."""
    svc, repo, cli, _ = setup
    base = "clusters/edge"
    repo.write(f"{base}/rc.yaml", replication_controller(WEB1, 2, kind))
    repo.commit_and_push("rc v1")
    code, _, err = cli("sync")
    assert code == 0, err
    first = {n: c["Id"] for n, c in app_containers(svc).items()}
    assert len(first) == 2

    repo.write(f"{base}/rc.yaml", replication_controller(WEB2, 2, kind))
    repo.commit_and_push("rc v2")
    code, out, _ = cli("diff")
    assert code == 0 and "in sync" in out
    assert f"warning: clusters/edge/rc.yaml:11: {kind}/rc: spec.template.spec.serviceAccountName: " \
           "serviceAccountName has no effect here" in out
    code, _, err = cli("sync")
    assert code == 0, err
    assert {n: c["Id"] for n, c in app_containers(svc).items()} == first  # nothing replaced

    repo.write(f"{base}/rc.yaml", replication_controller(WEB2, 3, kind))
    repo.commit_and_push("rc x3")
    code, _, err = cli("sync")
    assert code == 0, err
    images = {n: c["Image"] for n, c in app_containers(svc).items()}
    assert len(images) == 3 and set(first) <= set(images)
    assert [images[n] for n in set(images) - set(first)] == [WEB2]

    repo.write(f"{base}/rc.yaml", replication_controller(WEB2, 1, kind))
    repo.commit_and_push("rc x1")
    code, _, err = cli("sync")
    assert code == 0, err
    assert [c["Image"] for c in app_containers(svc).values()] == [WEB2]
    code, out, _ = cli("status")
    assert code == 0
    assert f"Warning:   clusters/edge/rc.yaml:11: {kind}/rc: " \
           "spec.template.spec.serviceAccountName:" in out


def test_a_storage_class_makes_the_claims_volume_with_its_driver_and_options(
    setup: tuple[Any, Any, Cli, Path],
) -> None:
    """Real Podman: a claim of a tmpfs-backed class of the agent config is a `local` volume with those options,
    mounted as a tmpfs with those mount options in the pod; so is a StatefulSet's volumeClaimTemplate of it. (Podman 4.3 refuses `o: size=...` here: it takes a
    size for a project quota, which this filesystem lacks; the error reaches the user as the node's.)"""
    svc, repo, cli, _ = setup
    raw = yaml.safe_load(cli.config.read_text())
    raw["storageClasses"] = {"scratch": {"driver": "local", "options": {"type": "tmpfs", "device": "tmpfs",
                                                                        "o": "mode=1770"}}}
    cli.config.write_text(yaml.safe_dump(raw))
    repo.write("clusters/edge/claim.yaml", f"""\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: scratch, namespace: {NS}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: scratch
  resources: {{requests: {{storage: 8Mi}}}}
""")
    repo.write("clusters/edge/ns.yaml", NAMESPACE)
    repo.write("clusters/edge/pod.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: worker, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {WEB1}
      command: ["sleep", "1000"]
      volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
    - name: scratch
      persistentVolumeClaim: {{claimName: scratch}}
""")
    repo.write("clusters/edge/sts.yaml", f"""\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: keep, namespace: {NS}}}
spec:
  serviceName: keep
  replicas: 1
  selector: {{matchLabels: {{app: keep}}}}
  template:
    metadata: {{labels: {{app: keep}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - {{name: main, image: {WEB1}, command: ["sleep", "1000"], volumeMounts: [{{name: data, mountPath: /data}}]}}
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], storageClassName: scratch, resources: {{requests: {{storage: 8Mi}}}}}}
""")
    repo.commit_and_push("scratch claim, and a claim template of the same class")
    code, _, err = cli("sync")
    assert code == 0, err
    volumes = json.loads(svc.podman("volume", "ls", "--format", "json").stdout)
    assert len(volumes) == 2  # the claim's and the StatefulSet's ordinal 0's
    for volume in volumes:
        inspected = json.loads(svc.podman("volume", "inspect", volume["Name"]).stdout)[0]
        assert (inspected["Driver"], inspected["Options"]) == ("local", {"type": "tmpfs", "device": "tmpfs",
                                                                         "o": "mode=1770"}), volume["Name"]
    for container, path in zip(sorted(app_containers(svc)), ("/data", "/scratch")):  # keep-0_main, worker_main
        mounts = svc.podman("exec", container, "cat", "/proc/mounts").stdout
        (line,) = [m for m in mounts.splitlines() if m.split()[1] == path]
        assert line.split()[2] == "tmpfs" and "mode=1770" in line.split()[3].split(","), (container, line)


def statefulset(image: str, replicas: int) -> str:
    """A StatefulSet whose pods each write an id into their own volume once, and serve it; ready 1 s after start."""
    script = ("trap 'exit 0' TERM; [ -f /data/id ] || echo \"$(cat /etc/hostname) $(date +%s)\" > /data/id; "
              "(sleep 1; touch /tmp/ready) & httpd -f -p 8080 -h /data & wait")
    return f"""\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {NS}}}
spec:
  serviceName: db
  replicas: {replicas}
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: ["sh", "-c", {json.dumps(script)}]
          readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
          volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 10Mi}}}}}}
"""


HEADLESS = f"""\
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{port: 8080}}]
"""


def test_a_statefulset_starts_in_order_keeps_each_ordinals_data_and_dns_name_across_a_rollout_and_scaling(
    setup: tuple[Any, Any, Cli, Path],
) -> None:
    """Real Podman: db-0, db-1, db-2 start one after the other, each once the one below is ready; each ordinal
    has its own volume, whose data survives an image rollout (highest ordinal replaced first) and 3 -> 1 -> 3;
    `db-2.db` resolves, from db-0, to db-2 itself."""
    svc, repo, cli, _ = setup
    base = "clusters/edge"

    def started(name: str) -> str:
        return svc.podman("inspect", "--format", "{{.State.StartedAt}}", f"{name}_{NS}_web").stdout.strip()

    def data_id(name: str) -> str:
        return svc.podman("exec", f"{name}_{NS}_web", "cat", "/data/id").stdout.strip()

    def statefulset_pods() -> list[str]:
        return sorted(c["Names"][0].split("_")[0] for c in app_containers(svc).values()
                      if c["Labels"].get("io.gitops-agent.kind") == "StatefulSet")

    for name, text in (("ns.yaml", NAMESPACE), ("db/svc.yaml", HEADLESS), ("db/sts.yaml", statefulset(WEB1, 3))):
        repo.write(f"{base}/{name}", text)
    repo.commit_and_push("db x3")
    code, _, err = cli("sync")
    assert code == 0, err
    assert statefulset_pods() == ["db-0", "db-1", "db-2"]
    times = [started(n) for n in ("db-0", "db-1", "db-2")]
    stamps = [svc.podman("exec", f"db-{i}_{NS}_web", "cat", "/data/id").stdout.split()[1] for i in range(3)]
    # OrderedReady: each pod started at least the 1 s its predecessor took to become ready after it (whole
    # seconds: a real gap of 1 s or more is a difference of at least 1)
    assert times == sorted(times) and all(int(stamps[i + 1]) - int(stamps[i]) >= 1 for i in range(2)), (times, stamps)
    ids = {n: data_id(n) for n in ("db-0", "db-1", "db-2")}
    assert len(set(ids.values())) == 3
    request = "printf 'GET /id HTTP/1.0\\r\\n\\r\\n' | nc -w 5 db-2.db 8080"
    answer = svc.podman("exec", f"db-0_{NS}_web", "sh", "-c", request).stdout
    assert ids["db-2"] in answer, answer

    repo.write(f"{base}/db/sts.yaml", statefulset(WEB2, 3))
    repo.commit_and_push("db v2")
    code, _, err = cli("sync")
    assert code == 0, err
    assert {c["Image"] for c in app_containers(svc).values()} == {WEB2}
    assert {n: data_id(n) for n in ids} == ids  # same names, same data
    rolled = [started(n) for n in ("db-2", "db-1", "db-0")]
    assert rolled == sorted(rolled), rolled  # highest ordinal replaced first

    for replicas in (1, 3):
        repo.write(f"{base}/db/sts.yaml", statefulset(WEB2, replicas))
        repo.commit_and_push(f"db x{replicas}")
        code, _, err = cli("sync")
        assert code == 0, err
        assert statefulset_pods() == ["db-0", "db-1", "db-2"][:replicas]
        volumes = svc.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert {f"gitops-{NS}_data-db-{i}" for i in range(3)} <= set(volumes)  # kept on scale-down
    assert {n: data_id(n) for n in ids} == ids  # db-1 and db-2 came back onto their own data


def job(name: str, script: str, backoff: int) -> str:
    return f"""\
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: {backoff}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: {WEB1}
          command: ["sh", "-c", {json.dumps(script)}]
"""


def test_a_job_runs_to_completion_once_and_a_failing_one_stops_at_its_backoff_limit(
    setup: tuple[Any, Any, Cli, Path],
) -> None:
    """Real Podman: a Job exiting 0 runs once and is not run again on later passes; a Job exiting 3 with
    backoffLimit 1 is tried twice (each a new pod), then left failed; a changed Job is a new run."""
    svc, repo, cli, _ = setup
    base = "clusters/edge"

    def runs(name: str) -> list[tuple[str, int]]:
        """(state, exit code) of each container of Job `name`, once none is running any more."""
        for _ in range(100):
            found = [c for c in app_containers(svc).values() if c["Labels"].get("io.gitops-agent.name") == name]
            if all(c["State"] == "exited" for c in found):
                return sorted((c["State"], c["ExitCode"]) for c in found)
            time.sleep(0.1)
        raise AssertionError(f"job {name} still running")

    repo.write(f"{base}/ok.yaml", job("ok", "echo done", 6))
    repo.write(f"{base}/bad.yaml", job("bad", "echo failing; exit 3", 1))
    repo.commit_and_push("jobs")
    for _ in range(3):
        code, _, err = cli("sync")
        assert code == 0, err
        runs("ok"), runs("bad")
    assert runs("ok") == [("exited", 0)]
    assert runs("bad") == [("exited", 3), ("exited", 3)]
    code, out, _ = cli("diff")
    assert code == 0 and "in sync" in out, out
    code, out, _ = cli("status", "--output", "json")
    jobs = {o["name"]: o for o in json.loads(out)["objects"] if o["kind"] == "Job"}
    assert (jobs["ok"]["state"], jobs["ok"]["job"]["succeeded"]) == ("Complete", 1)
    assert (jobs["bad"]["state"], jobs["bad"]["job"]["failed"], jobs["bad"]["job"]["exitCodes"]) == ("Failed", 2, [3, 3])

    repo.write(f"{base}/ok.yaml", job("ok", "echo done again", 6))
    repo.commit_and_push("ok changed")
    code, _, err = cli("sync")
    assert code == 0, err
    assert runs("ok") == [("exited", 0)]  # the new run's pod; the old run's pod was removed
    code, out, _ = cli("status")
    assert code == 0
