"""emptyDir sizeLimit on the node's disk (gitops_agent/eviction.py): the pure decision from literals, the monitor
with a node double, the volume's labels, validation. The real thing: tests/test_eviction_e2e.py."""

from __future__ import annotations

import threading
from dataclasses import replace

from typing import Any

from gitops_agent import alerts, events
from gitops_agent.desired import EmptyDirSpec, L_EMPTY_DIR_OF, L_SIZE_LIMIT, L_VOLUME, empty_dir_name
from gitops_agent.eviction import Eviction, Monitor, Usage, decide, recorded
from gitops_agent.podman import _empty_dir_body
from gitops_agent.reasons import Reason

from test_pod_volumes import pod, pod_spec, problems

MIB = 1 << 20


def test_a_pod_is_evicted_only_when_a_volume_holds_more_than_its_limit() -> None:
    """Strictly more than the limit, as the kubelet compares: at the limit is not over it; one eviction per pod
    (its first volume over, by name), in node and pod order."""
    usages = [
        Usage("n2", "web-1", "cache", 2 * MIB + 1, MIB, "Deployment/default/web"),
        Usage("n1", "db-0", "scratch", MIB, MIB),  # exactly at its limit
        Usage("n1", "api-1", "tmp", 3 * MIB, MIB), Usage("n1", "api-1", "b", 5 * MIB, MIB),
        Usage("n1", "idle-1", "x", 0, MIB),
    ]
    assert decide(usages) == [Eviction("n1", "api-1", "b", 5 * MIB, MIB),
                              Eviction("n2", "web-1", "cache", 2 * MIB + 1, MIB, "Deployment/default/web")]
    assert decide([]) == [] and decide([Usage("n1", "p", "v", 10, 0), Usage("n1", "", "v", 10, 1)]) == []


def test_the_message_says_the_volume_its_bytes_and_its_limit() -> None:
    assert Eviction("n1", "p", "scratch", 2097153, 1048576).message == \
        'Evicted: emptyDir volume "scratch" uses 2097153 bytes, over its sizeLimit 1048576'


def test_the_record_keeps_the_last_evictions_newest_last() -> None:
    """`status` shows the store's record: each eviction with its message and time, at most `keep` of them; an
    unreadable record is started again."""
    done = [Eviction("n1", f"p{i}", "v", 2, 1) for i in range(3)]
    first = recorded(None, done[:2], 10.0, keep=2)
    assert [e["pod"] for e in first] == ["p0", "p1"] and first[0]["message"].startswith("Evicted: ")
    assert [(e["pod"], e["at"]) for e in recorded(first, done[2:], 11.0, keep=2)] == [("p1", 10.0), ("p2", 11.0)]
    assert recorded("garbage", (), 0.0) == [] and recorded([1, {"pod": "a"}], (), 0.0) == [{"pod": "a"}]


class FakeNode:
    def __init__(self, name: str, usages: list[Usage], fail: str = "", remove_fails: bool = False) -> None:
        self.name, self.usages, self.fail, self.remove_fails = name, usages, fail, remove_fails
        self.removed: list[tuple[str, int | None]] = []

    def empty_dir_usage(self) -> list[Usage]:
        if self.fail:
            raise RuntimeError(self.fail)
        return self.usages

    def remove_pod(self, name: str, stop_timeout: int | None = None) -> None:
        if self.remove_fails:
            raise RuntimeError("409 pod is busy")
        self.removed.append((name, stop_timeout))


def test_the_monitor_removes_the_pods_over_their_limits_with_their_own_grace_and_says_so() -> None:
    """Through the normal stop path (stop_timeout None: each container's own grace period, preStop hooks); an
    event per pod, one record and one pass asked for; a node down is logged once and the others still measured;
    a failed removal is an error line (tried again at the next period), no event."""
    logged: list[tuple[str, dict[str, Any]]] = []
    n1 = FakeNode("n1", [Usage("n1", "web-1", "cache", 3 * MIB, MIB, "Deployment/default/web"),
                         Usage("n1", "calm-1", "cache", 10, MIB)])
    n2 = FakeNode("n2", [], fail="connection refused")
    n3 = FakeNode("n3", [Usage("n3", "x-1", "v", 2, 1)], remove_fails=True)
    records: list[list[Eviction]] = []
    passes: list[int] = []
    lock, closed = threading.Lock(), [frozenset({"n1", "n2", "n3"})]
    monitor = Monitor({"n1": n1, "n2": n2, "n3": n3}, lambda e, **f: logged.append((e, f)), records.append,
                      lambda: passes.append(1), lock=lock, closed=lambda: closed[0])
    with lock:  # a pass runs: nothing measured
        monitor.tick()
    assert (n1.removed, logged) == ([], [])
    monitor.tick()  # every node's window keeps drift repair off: nothing measured either
    assert (n1.removed, logged) == ([], [])
    closed[0] = frozenset()
    monitor.tick()
    monitor.tick()
    assert n1.removed == [("web-1", None), ("web-1", None)] and n3.removed == []
    assert [e for e, _ in logged].count("eviction.unavailable") == 1
    assert [e for e, _ in logged].count("eviction.failed") == 2
    [(name, fields), *_] = [(e, f) for e, f in logged if e == "pod.evicted"]
    assert fields == {"level": "warning", "node": "n1", "pod": "web-1", "workload": "Deployment/default/web",
                      "volume": "cache", "used": 3 * MIB, "limit": MIB, "reason": "Evicted",
                      "error": f'Evicted: emptyDir volume "cache" uses {3 * MIB} bytes, over its sizeLimit {MIB}'}
    assert [[e.pod for e in r] for r in records] == [["web-1"], ["web-1"]] and passes == [1, 1]
    assert monitor.evictions == 2


def test_an_eviction_is_a_typed_event_and_a_warning_alert() -> None:
    event = events.PodEvicted("n1", "web-1", "Deployment/default/web", "cache", 3, 1,
                              'Evicted: emptyDir volume "cache" uses 3 bytes, over its sizeLimit 1')
    assert events.PodEvicted in events.ALL and event.reason is Reason.EVICTED and event.LEVEL == "warning"
    [alert] = alerts.Watch(600, 600).feed("pod.evicted", {**event.fields(), "reason": "Evicted"}, 5.0)
    assert (alert.kind, alert.severity, alert.reason, alert.node) == ("pod.evicted", "warning", "Evicted", "n1")
    assert alert.message == ('node n1: pod web-1 (Deployment/default/web) Evicted: emptyDir volume "cache" uses 3 '
                             "bytes, over its sizeLimit 1; the next pass makes it again")
    assert alert.details["pod"] == "web-1" and "Evicted: emptyDir" in alert.details["error"]


def test_a_disk_empty_dir_with_a_size_limit_is_labelled_with_its_limit_and_name() -> None:
    """What the monitor reads back: the limit in bytes and the volume's name in the pod spec; a tmpfs (its limit
    is the kernel's) and a disk emptyDir without a limit carry neither."""
    spec = pod_spec(pod("""\
        volumes: [{name: s, emptyDir: {sizeLimit: 1Mi}}, {name: m, emptyDir: {medium: Memory, sizeLimit: 1Mi}},
                  {name: f, emptyDir: {}}]
        containers: [{name: a, image: "app:1", volumeMounts: [{name: s, mountPath: /s}, {name: m, mountPath: /m},
                                                                {name: f, mountPath: /f}]}]
        """))
    disk, memory, free = (_empty_dir_body(spec, d) for d in spec.empty_dirs)
    assert disk["Name"] == empty_dir_name("p", "s") and "Options" not in disk
    assert (disk["Label"][L_SIZE_LIMIT], disk["Label"][L_VOLUME], disk["Label"][L_EMPTY_DIR_OF]) == ("1048576", "s",
                                                                                                      "p")
    assert L_SIZE_LIMIT not in memory["Label"] and L_SIZE_LIMIT not in free["Label"]
    assert L_VOLUME not in _empty_dir_body(spec, EmptyDirSpec("p_emptydir_z", "", None))["Label"]
    # a template label of the agent's own names never marks a volume for eviction
    forged = replace(spec, labels={**spec.labels, L_SIZE_LIMIT: "1", L_VOLUME: "m"})
    assert L_SIZE_LIMIT not in _empty_dir_body(forged, spec.empty_dirs[1])["Label"]
    assert _empty_dir_body(forged, spec.empty_dirs[0])["Label"][L_SIZE_LIMIT] == "1048576"


def test_a_disk_empty_dir_size_limit_is_accepted_and_its_value_still_checked() -> None:
    ok = pod("""\
        volumes: [{name: s, emptyDir: {sizeLimit: 500Mi}}]
        containers: [{name: a, image: "app:1", volumeMounts: [{name: s, mountPath: /s}]}]
        """)
    assert [d.size_limit for d in pod_spec(ok).empty_dirs] == [500 * MIB]  # no error: `parsed` raises on one
    zero = pod("volumes: [{name: s, emptyDir: {sizeLimit: 0}}]\ncontainers: [{name: a, image: 'app:1'}]\n")
    assert problems(zero) == ["p.yaml:5: Pod/p: spec.volumes[0].emptyDir.sizeLimit: must be greater than zero "
                              "(omit it for no limit)"]
    assert "sizeLimit" in " ".join(problems(pod("volumes: [{name: s, emptyDir: {sizeLimit: lots}}]\n"
                                                "containers: [{name: a, image: 'app:1'}]\n")))


def test_the_pass_that_makes_an_evicted_pod_again_raises_no_drift_alert() -> None:
    """The re-creation is logged as a drift repair, but it undoes nothing made outside Git: `pod.evicted` already
    alerted; a repair that also undid a hand change alerts for that change alone."""
    watch = alerts.Watch(600, 600)
    evicted = {"node": "n1", "pod": "web-1", "workload": "Deployment/default/web", "error": "Evicted: ...",
               "reason": "Evicted"}
    assert [a.kind for a in watch.feed("pod.evicted", evicted, 1.0)] == ["pod.evicted"]
    repair = [("node.apply", {"node": "n1", "revision": "r1", "actions": 1}),
              ("action", {"node": "n1", "op": "create-pod", "target": "web-1", "reason": "wants 1 replica(s)"}),
              ("drift.repaired", {"node": "n1", "revision": "r1", "actions": 1, "reason": "DriftRepaired"})]
    assert [a for e, f in repair for a in watch.feed(e, f, 2.0)] == []
    watch.feed("pod.evicted", evicted, 3.0)
    both = [*repair[:2], ("action", {"node": "n1", "op": "start-pod", "target": "db-0", "reason": "stopped"}),
            ("drift.repaired", {"node": "n1", "revision": "r1", "actions": 2, "reason": "DriftRepaired"})]
    [alert] = [a for e, f in both for a in watch.feed(e, f, 4.0)]
    assert alert.kind == "drift.repaired" and alert.details["actions"] == "1", alert
    assert alert.details["changes"] == "start-pod db-0 (stopped)"


def test_a_node_measures_only_the_agents_labelled_volumes_in_use_with_one_list_and_one_df() -> None:
    """Three calls whatever the number of volumes; a volume not marked managed, one no container uses (its pod is
    gone), one of a pod that has finished (only its infra container runs: the kubelet evicts no finished pod, such as a
    completed Job's)
    and one with an unreadable limit are left out; no volume with a limit: no pod list and no `system df`."""
    from gitops_agent.podman import Node

    def labels(pod: str, limit: str = "1048576", managed: str = "true") -> dict[str, str]:
        return {"io.gitops-agent.managed": managed, L_EMPTY_DIR_OF: pod, L_SIZE_LIMIT: limit, L_VOLUME: "scratch",
                "io.gitops-agent.kind": "Deployment", "io.gitops-agent.namespace": "default",
                "io.gitops-agent.name": "web"}

    listed = [{"Name": "web-1_emptydir_scratch", "Labels": labels("web-1")},
              {"Name": "gone-1_emptydir_scratch", "Labels": labels("gone-1")},
              {"Name": "odd-1_emptydir_scratch", "Labels": labels("odd-1", limit="lots")},
              {"Name": "theirs", "Labels": labels("x-1", managed="")},
              {"Name": "done-1_emptydir_scratch", "Labels": labels("done-1")}]
    pods = [{"Name": n, "Status": "Running", "InfraId": "i", "Containers": [{"Id": "i", "Status": "running"},
                                                                           {"Id": "a", "Status": "running"}]}
            for n in ("web-1", "gone-1", "odd-1", "x-1")] + [  # done-1: only its infra container still runs
        {"Name": "done-1", "Status": "Degraded", "InfraId": "i", "Containers": [{"Id": "i", "Status": "running"},
                                                                               {"Id": "a", "Status": "exited"}]}]
    df = {"Volumes": [{"VolumeName": "web-1_emptydir_scratch", "Links": 1, "Size": 2097153},
                      {"VolumeName": "gone-1_emptydir_scratch", "Links": 0, "Size": 9},
                      {"VolumeName": "odd-1_emptydir_scratch", "Links": 1, "Size": 9},
                      {"VolumeName": "theirs", "Links": 1, "Size": 1 << 30},
                      {"VolumeName": "done-1_emptydir_scratch", "Links": 1, "Size": 1 << 30}]}
    calls: list[tuple[str, Any]] = []

    def call(method: str, path: str, what: str, **kw: Any) -> Any:
        calls.append((path, kw.get("params")))
        return listed if path == "/volumes/json" else pods if path == "/pods/json" else df

    node = Node.__new__(Node)
    node.name, node._call = "n1", call  # type: ignore[method-assign]
    assert node.empty_dir_usage() == [Usage("n1", "web-1", "scratch", 2097153, MIB, "Deployment/default/web")]
    assert [p for p, _ in calls] == ["/volumes/json", "/pods/json", "/system/df"]
    assert calls[0][1] == {"filters": '{"label": ["io.gitops-agent.size-limit"]}'}
    calls.clear()
    listed[:] = []
    assert node.empty_dir_usage() == [] and [p for p, _ in calls] == ["/volumes/json"]
