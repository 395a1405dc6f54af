"""StatefulSet from literals: the manifest, its pods and volumes on a node (desired), the plan, and its moves
(rolling.next_move): ordered creation, reverse-ordered in-place updates with a partition, scale-down keeping
the volumes. The real-Podman scenario is in tests/test_e2e.py (test_a_statefulset_...)."""

from __future__ import annotations

import textwrap
from dataclasses import replace

from gitops_agent.config import NodeConfig, PruneConfig
from gitops_agent.desired import L_TEMPLATE_HASH, WorkloadSpec, compile_node, volume_name
from gitops_agent.errors import RevisionRejected
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import Revision, StorageClass, Workload
from gitops_agent.plan import plan
from gitops_agent.probes import PodVerdict
from gitops_agent.rolling import Done, Remove, Replace, Surge, next_move

A, B = NodeConfig("a"), NodeConfig("b")
OK = PodVerdict(True)

STS = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: db}
    spec:
      serviceName: db
      replicas: 3
      selector: {matchLabels: {app: db}}
      template:
        metadata: {labels: {app: db}}
        spec:
          containers:
            - name: db
              image: localhost/db:1
              volumeMounts: [{name: data, mountPath: /data}]
      volumeClaimTemplates:
        - metadata: {name: data}
          spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
""")


def revision(text: str = STS) -> Revision:
    return parse([SourceFile("db.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(A, B))


def spec(text: str = STS) -> WorkloadSpec:
    (w,) = compile_node(revision(text), A, (A, B)).workloads
    return w


def live(w: WorkloadSpec, names: list[str] | None = None, thash: str = "", ready: bool = True) -> list[LivePod]:
    """Live pods of `w` (all, or `names`) of template `thash` (default: w's own)."""
    out = []
    for p in w.pods if names is None else [p for p in w.pods if p.name in names]:
        labels = {**p.labels, L_TEMPLATE_HASH: thash or w.template_hash}
        out.append(LivePod(p.name, "id-" + p.name, "Running", labels,
                           tuple(LiveContainer(c.name, "c", c.image, "running" if ready else "exited", "")
                                 for c in p.containers)))
    return out


def test_a_statefulset_has_ordinal_pods_each_with_its_own_volume_and_dns_name_all_on_one_node() -> None:
    rev = revision()
    (w,) = rev.objects
    assert isinstance(w, Workload) and (w.service_name, w.pod_management, w.partition) == ("db", "OrderedReady", 0)
    d = compile_node(rev, A, (A, B))
    (ws,) = d.workloads
    assert [p.name for p in ws.pods] == ["db-0", "db-1", "db-2"] and ws.ordered
    assert [p.aliases for p in ws.pods] == [("db-0.db",), ("db-1.db",), ("db-2.db",)]
    assert [c.volumes[0].volume for p in ws.pods for c in p.containers] == \
        ["gitops-default_data-db-0", "gitops-default_data-db-1", "gitops-default_data-db-2"]
    assert [v.name for v in d.volumes] == ["gitops-default_data-db-0", "gitops-default_data-db-1",
                                           "gitops-default_data-db-2"]
    assert {v.labels["io.gitops-agent.kind"] for v in d.volumes} == {"StatefulSet"}
    # the other node runs none of it: the ordinals stay where their data is
    assert compile_node(rev, B, (A, B)).workloads[0].pods == ()
    # a new image keeps the names
    assert [p.name for p in spec(STS.replace("db:1", "db:2")).pods] == ["db-0", "db-1", "db-2"]


def test_statefulset_mistakes_are_errors_with_their_line() -> None:
    def problems(text: str) -> list[str]:
        try:
            revision(text)
        except RevisionRejected as e:
            return [str(p) for p in e.problems]
        return []

    assert problems(STS.replace("    - metadata: {name: data}", "    - metadata: {name: logs}")) == [
        "db.yaml:14: StatefulSet/db: spec.template.spec.containers[0].volumeMounts[0].name: "
        "volume 'data' is not declared in the pod's volumes"]
    assert problems(STS.replace("ReadWriteOnce], ", "ReadWriteOnce], storageClassName: fast, ")) == [
        "db.yaml:17: StatefulSet/db: spec.volumeClaimTemplates[0].spec.storageClassName: storage class 'fast' is "
        "not in the agent config's storageClasses (known: none); define it there, or remove the field for the "
        "default volume"]
    assert problems(STS.replace("replicas: 3", "replicas: 3\n  podManagementPolicy: Random")) == [
        "db.yaml:7: StatefulSet/db: spec.podManagementPolicy: must be one of OrderedReady, Parallel, not 'Random'"]


def test_ordered_ready_makes_one_ordinal_at_a_time_each_once_the_lower_ones_are_available() -> None:
    w = spec()
    (roll,) = plan(compile_node(revision(), A, (A, B)), LiveState("a")).actions[-1:]
    assert roll.op == "rollout"
    assert next_move(w, [], {}) == Surge((w.pods[0],))
    zero = live(w, ["db-0"])
    assert next_move(w, zero, {}).__class__.__name__ == "Wait"  # db-0 not judged available yet
    assert next_move(w, zero, {"db-0": OK}) == Surge((w.pods[1],))
    assert next_move(w, live(w), {"db-0": OK, "db-1": OK, "db-2": OK}) == Done()
    parallel = spec(STS.replace("replicas: 3", "replicas: 3\n  podManagementPolicy: Parallel"))
    assert not parallel.ordered and next_move(parallel, [], {}) == Surge(parallel.pods)


def test_a_template_change_replaces_in_place_from_the_highest_ordinal_down_above_the_partition() -> None:
    w = spec(STS.replace("db:1", "db:2"))
    running = live(w, thash="old")
    assert next_move(w, running, {}) == Replace(("db-2",), (w.pods[2],))
    two_new = running[:2] + live(w, ["db-2"])
    assert next_move(w, two_new, {}).__class__.__name__ == "Wait"  # db-2 is not available yet
    assert next_move(w, two_new, {"db-2": OK}) == Replace(("db-1",), (w.pods[1],))
    parted = replace(w, partition=2)
    assert next_move(parted, running, {}) == Replace(("db-2",), (w.pods[2],))
    assert next_move(parted, running[:2] + live(w, ["db-2"]), {"db-2": OK}) == Done()  # 0 and 1 are held
    assert next_move(replace(w, strategy="OnDelete"), running, {}) == Done()


def test_scale_down_removes_the_highest_ordinal_first_and_keeps_every_volume() -> None:
    three = compile_node(revision(), A, (A, B))
    one = compile_node(revision(STS.replace("replicas: 3", "replicas: 1")), A, (A, B))
    (w1,) = one.workloads
    pods = live(three.workloads[0])
    assert next_move(w1, pods, {"db-0": OK}) == Remove(("db-2",))
    node = LiveState("a", pods={p.name: p for p in pods}, volumes={v.name: dict(v.labels) for v in three.volumes})
    p = plan(one, node, PruneConfig(enabled=True, delete_volumes=True))
    assert not [a for a in p.actions if a.op == "remove-volume"] and p.orphaned_volumes == ()
    # the StatefulSet gone from Git: its volumes are orphaned (kept), deleted only with prune.deleteVolumes
    gone = compile_node(Revision("main@sha1:" + "b" * 40, "sha256:y", ()), A, (A, B))
    assert plan(gone, node, PruneConfig(enabled=True, allow_empty=True)).orphaned_volumes == \
        tuple(sorted(node.volumes))


def test_a_pod_volume_named_like_a_claim_template_is_replaced_by_it_with_a_warning() -> None:
    """As Kubernetes' StatefulSet controller does (cockroachdb's example declares both): the claim template wins,
    and `validate` says so; two claim templates of one name stay an error."""
    both = STS.replace("      containers:\n", "      volumes: [{name: data, emptyDir: {}}]\n      containers:\n")
    rev = revision(both)
    assert [c.volumes[0].volume for p in spec(both).pods for c in p.containers][:1] == ["gitops-default_data-db-0"]
    assert any("replaced by the volumeClaimTemplate of the same name" in w for w in rev.warnings), rev.warnings
    twice = STS + "    - metadata: {name: data}\n      spec: {accessModes: [ReadWriteOnce], " \
                  "resources: {requests: {storage: 1Gi}}}\n"
    try:
        revision(twice)
        raise AssertionError("two claim templates named data were accepted")
    except RevisionRejected as e:
        assert [str(p) for p in e.problems] == [
            "db.yaml:18: StatefulSet/db: spec.volumeClaimTemplates[1].metadata.name: "
            "volume name 'data' is used by two volumeClaimTemplates"]


def test_a_claim_templates_storage_class_makes_each_ordinals_volume_with_its_driver_and_options() -> None:
    """As for a PersistentVolumeClaim: the class of the agent config's storageClasses gives every ordinal's
    volume its driver and options; the pod template, hence its hash, does not change with the class."""
    fast = StorageClass("local", {"type": "tmpfs", "device": "tmpfs"})
    text = STS.replace("ReadWriteOnce], ", "ReadWriteOnce], storageClassName: fast, ")
    classed = parse([SourceFile("db.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(A, B),
                    storage_classes={"fast": fast})
    desired = compile_node(classed, A, (A, B))
    assert [(v.name, v.storage_class) for v in desired.volumes] == [
        (volume_name("default", f"data-db-{i}"), fast) for i in range(3)]
    assert [p.name for p in desired.workloads[0].pods] == [p.name for p in spec().pods]  # same template hash
