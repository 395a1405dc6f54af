"""Pure planning: desired.compile_node and plan.plan from literals, no Podman, no Git."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gitops_agent.config import NodeConfig, PruneConfig
from gitops_agent.desired import (
    L_KIND,
    L_NAME,
    L_NAMESPACE,
    L_TEMPLATE_HASH,
    MANAGED,
    compile_node,
    replicas_on,
    resolve_surge,
)
from gitops_agent.errors import PruneRefused
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.model import (
    Claim,
    ConfigData,
    Container,
    EnvVar,
    KeyRef,
    ObjectRef,
    Origin,
    PodTemplate,
    Revision,
    Service,
    ServicePort,
    Volume,
    VolumeMount,
    Workload,
)
from gitops_agent.plan import plan

O = Origin("x.yaml", 1)
NODE = NodeConfig("local")
SHA = "a" * 40


def web(image: str = "localhost/web:1", replicas: int = 2, cm: str = "web-config") -> Workload:
    return Workload(
        ref=ObjectRef("Deployment", "default", "web"),
        origin=O,
        replicas=replicas,
        selector={"app": "web"},
        template=PodTemplate(
            labels={"app": "web"},
            containers=(
                Container(
                    name="httpd",
                    image=image,
                    image_pull_policy="IfNotPresent",
                    env=(EnvVar("TOKEN", ref=KeyRef("Secret", "creds", "token")),),
                    volume_mounts=(VolumeMount("site", "/www"), VolumeMount("data", "/data")),
                ),
            ),
            volumes=(Volume("site", "configMap", cm), Volume("data", "persistentVolumeClaim", "data")),
        ),
    )


def revision(*objs: object, sha: str = SHA) -> Revision:
    return Revision(f"main@sha1:{sha}", "sha256:x", tuple(objs))  # type: ignore[arg-type]


def base(page: bytes = b"<h1>hi</h1>", **kw: object) -> Revision:
    return revision(
        ConfigData(ObjectRef("ConfigMap", "default", "web-config"), O, {"index.html": page}),
        ConfigData(ObjectRef("Secret", "default", "creds"), O, {"token": b"s3cret"}),
        Claim(ObjectRef("PersistentVolumeClaim", "default", "data"), O),
        web(**kw),  # type: ignore[arg-type]
        Service(ObjectRef("Service", "default", "web"), O, {"app": "web"}, (ServicePort(80, 80),)),
    )


def live_from(rev: Revision, ready: bool = True) -> LiveState:
    """A node on which `rev` was applied exactly."""
    d = compile_node(rev, NODE, (NODE,))
    pods = {
        p.name: LivePod(p.name, "id-" + p.name, "Running", dict(p.labels),
                        tuple(LiveContainer(c.name, "c-" + c.name, c.image, "running" if ready else "exited", "", {}) for c in p.containers))
        for w in d.workloads for p in w.pods
    }
    return LiveState(
        node="local",
        pods=pods,
        networks={n.name: dict(n.labels) for n in d.networks},
        volumes={v.name: dict(v.labels) for v in d.volumes},
        secrets=frozenset(s.name for s in d.secrets),
    )


def test_first_sync_creates_in_dependency_order() -> None:
    """An empty node gets network, volume, secrets, then pods: nothing before what it needs."""
    p = plan(compile_node(base(), NODE, (NODE,)), LiveState("local"))
    ops = [a.op for a in p.actions]
    assert ops == ["create-network", "create-volume", "create-secret", "create-secret", "create-pod", "create-pod"]


def test_applied_state_plans_nothing() -> None:
    """A node that already matches the revision needs no action (so no write call)."""
    rev = base()
    assert plan(compile_node(rev, NODE, (NODE,)), live_from(rev)).actions == ()


def test_new_commit_with_same_content_plans_nothing() -> None:
    """A commit that changes nothing in the templates does not touch running pods."""
    rev1, rev2 = base(), base()
    rev2 = revision(*rev2.objects, sha="b" * 40)
    assert plan(compile_node(rev2, NODE, (NODE,)), live_from(rev1)).in_sync


def test_image_change_is_a_rollout_with_a_new_template_hash() -> None:
    """Changing the image gives a new template hash and one rollout action replacing both old pods."""
    old, new = base(), base(image="localhost/web:2")
    d = compile_node(new, NODE, (NODE,))
    p = plan(d, live_from(old))
    (roll,) = [a for a in p.actions if a.op == "rollout"]
    assert roll.workload is not None and roll.workload.template_hash != compile_node(old, NODE, (NODE,)).workloads[0].template_hash
    assert len(roll.old_pods) == 2


def test_configmap_change_rolls_the_pods_that_use_it() -> None:
    """The template hash covers the content of the ConfigMaps a pod uses."""
    h1 = compile_node(base(page=b"one"), NODE, (NODE,)).workloads[0].template_hash
    h2 = compile_node(base(page=b"two"), NODE, (NODE,)).workloads[0].template_hash
    assert h1 != h2


def test_scaling_is_not_a_new_template() -> None:
    """replicas is not in the template hash: scaling creates or removes pods, no rollout."""
    d3 = compile_node(base(replicas=3), NODE, (NODE,))
    p = plan(d3, live_from(base(replicas=2)))
    assert [a.op for a in p.actions] == ["create-pod"]
    p = plan(compile_node(base(replicas=1), NODE, (NODE,)), live_from(base(replicas=2)))
    assert [a.op for a in p.actions] == ["remove-pod"]


def test_removed_container_and_stopped_pod_are_repaired() -> None:
    """Drift: a container removed by hand replaces its pod; a stopped one is started."""
    rev = base()
    live = live_from(rev)
    names = sorted(live.pods)
    pods = dict(live.pods)
    pods[names[0]] = LivePod(names[0], "x", "Degraded", pods[names[0]].labels, ())
    p0 = pods[names[1]]
    pods[names[1]] = LivePod(p0.name, p0.id, "Exited", p0.labels, tuple(LiveContainer(c.name, c.id, c.image, "exited", "", {}) for c in p0.containers))
    p = plan(compile_node(rev, NODE, (NODE,)), LiveState("local", pods, live.networks, live.volumes, live.secrets))
    assert sorted((a.op, a.target) for a in p.actions) == [("replace-pod", names[0]), ("start-pod", names[1])]


def test_prune_removes_pods_whose_workload_left_git_but_keeps_volume_data() -> None:
    """Deleting a Deployment and its claim removes the pods; the volume stays, reported orphaned."""
    rev = base()
    live = live_from(rev)
    smaller = revision(*[o for o in rev.objects if o.ref.kind not in ("Deployment", "PersistentVolumeClaim")],
                       Workload(ObjectRef("Pod", "default", "other"), O, PodTemplate({"a": "b"}, (Container("c", "img:1", "IfNotPresent"),))))
    p = plan(compile_node(smaller, NODE, (NODE,)), live)
    removed = [a.target for a in p.actions if a.op == "remove-pod"]
    assert sorted(removed) == sorted(live.pods)
    assert not [a for a in p.actions if a.op == "remove-volume"]
    assert p.orphaned_volumes == ("gitops-default_data",)


def test_prune_of_everything_needs_opt_in() -> None:
    """An empty revision (no objects at all) that would delete every managed pod is refused unless prune.allowEmpty."""
    live = live_from(base())
    empty = compile_node(revision(), NODE, (NODE,))
    with pytest.raises(PruneRefused, match="allowEmpty"):
        plan(empty, live)
    p = plan(empty, live, PruneConfig(allow_empty=True))
    assert len([a for a in p.actions if a.op == "remove-pod"]) == 2


def test_prune_leaves_pods_outside_the_inventory_alone() -> None:
    """With an inventory, a managed pod whose owner this agent never applied is not deleted."""
    stranger = LivePod("x", "1", "Running", {MANAGED: "true", L_KIND: "Deployment", L_NAMESPACE: "default", L_NAME: "x", L_TEMPLATE_HASH: "h"}, ())
    rev = base()
    live = live_from(rev)
    live = LiveState("local", {**live.pods, "x": stranger}, live.networks, live.volumes, live.secrets)
    p = plan(compile_node(rev, NODE, (NODE,)), live, inventory={o.ref for o in rev.objects})
    assert p.actions == () and p.untracked == ("x",)


def test_secret_value_never_in_plan_text() -> None:
    """Plan actions name secrets by their Podman name; the value appears in no action's text."""
    p = plan(compile_node(base(), NODE, (NODE,)), LiveState("local"))
    assert all("s3cret" not in str(a) and "s3cret" not in repr(a) for a in p.actions)


def test_pod_names_are_stable_and_carry_the_template_hash() -> None:
    """The same revision always yields the same pod names: <name>-<hash>-<suffix>."""
    a = compile_node(base(), NODE, (NODE,)).workloads[0]
    b = compile_node(base(), NODE, (NODE,)).workloads[0]
    assert [p.name for p in a.pods] == [p.name for p in b.pods]
    assert all(p.name.startswith(f"web-{a.template_hash}-") for p in a.pods)
    assert len({p.name for p in a.pods}) == 2


def test_replicas_spread_evenly_over_matching_nodes() -> None:
    """5 replicas over 3 nodes: 2, 2, 1, in node-name order; a non-matching node gets none."""
    nodes = tuple(NodeConfig(n, labels={"zone": "a"}) for n in ("n1", "n2", "n3")) + (NodeConfig("n4"),)
    w = web(replicas=5)
    w = Workload(w.ref, w.origin, PodTemplate(w.template.labels, w.template.containers, w.template.volumes, node_selector={"zone": "a"}), replicas=5)
    assert [replicas_on(w, n, nodes) for n in nodes] == [2, 2, 1, 0]


def test_percent_rounding_matches_kubernetes() -> None:
    """25% of 3: maxSurge rounds up to 1, maxUnavailable rounds down to 0."""
    assert resolve_surge("25%", 3, round_up=True) == 1
    assert resolve_surge("25%", 3, round_up=False) == 0
    assert resolve_surge(2, 3, round_up=True) == 2


def test_prune_leaves_networks_outside_the_inventory_alone() -> None:
    """A managed-labelled network whose namespace this agent never applied is not removed."""
    rev = base()
    live = live_from(rev)
    foreign = {MANAGED: "true", L_KIND: "Namespace", L_NAMESPACE: "other", L_NAME: "other"}
    live = LiveState("local", live.pods, {**live.networks, "gitops-other": foreign}, live.volumes, live.secrets)
    assert plan(compile_node(rev, NODE, (NODE,)), live, inventory={o.ref for o in rev.objects}).actions == ()
    p = plan(compile_node(rev, NODE, (NODE,)), live, inventory={o.ref for o in rev.objects} | {ObjectRef("Namespace", "other", "other")})
    assert [(a.op, a.target) for a in p.actions] == [("remove-network", "gitops-other")]


def test_prune_removes_only_the_secrets_the_agent_can_prove_it_made() -> None:
    """Podman 4.3 keeps no labels on secrets: the agent's inventory (recorded before each create)
    or its mark in the driver options proves a secret is the agent's; any other `gitops-*`
    secret (a hand-made `gitops-admin-key`, one made by an older agent) is left alone and listed."""
    import dataclasses

    from gitops_agent.plan import unknown_secrets

    rev = base()
    live = live_from(rev)
    extra = {"gitops-admin-key", "gitops-recorded-old", "gitops-marked-old"}
    live = dataclasses.replace(live, secrets=live.secrets | extra, marked_secrets=live.secrets | {"gitops-marked-old"})
    d = compile_node(rev, NODE, (NODE,))
    p = plan(d, live, secrets={"gitops-recorded-old", "gitops-gone-already"})
    assert [(a.op, a.target) for a in p.actions] == [("remove-secret", "gitops-marked-old"), ("remove-secret", "gitops-recorded-old")]
    assert p.unknown_secrets == ("gitops-admin-key",)
    assert unknown_secrets(d, live, ()) == {"gitops-admin-key", "gitops-recorded-old"}
    # a desired secret is never unknown, whoever made it
    assert not unknown_secrets(d, dataclasses.replace(live, marked_secrets=frozenset()), ()) & {s.name for s in d.secrets}


def rc(image: str = "localhost/web:1", replicas: int = 2, kind: str = "ReplicationController") -> Revision:
    """base() with its Deployment as a ReplicationController (or a ReplicaSet, which plan treats alike)."""
    objs = [replace(o, ref=replace(o.ref, kind=kind)) if isinstance(o, Workload) else o
            for o in base(image=image, replicas=replicas).objects]
    return revision(*objs)


@pytest.mark.parametrize("kind", ["ReplicationController", "ReplicaSet"])
def test_a_replication_controller_does_not_roll_on_a_template_change(kind: str) -> None:
    """As in Kubernetes: the running pods of the old template are kept (no rollout); the new template is used
    for the pods made from then on. A ReplicaSet (apps/v1) is handled alike; a Deployment rolls."""
    assert plan(compile_node(rc(image="localhost/web:2", kind=kind), NODE, (NODE,)), live_from(rc(kind=kind))).in_sync
    (roll,) = plan(compile_node(rc(image="localhost/web:2", kind="Deployment"), NODE, (NODE,)),
                   live_from(rc(kind="Deployment"))).actions
    assert roll.op == "rollout"


@pytest.mark.parametrize("kind", ["ReplicationController", "ReplicaSet"])
def test_a_replication_controller_scales_up_with_its_new_template_and_down_oldest_template_first(kind: str) -> None:
    old_live = live_from(rc(replicas=2, kind=kind))
    up = plan(compile_node(rc(image="localhost/web:2", replicas=3, kind=kind), NODE, (NODE,)), old_live)
    (create,) = [a for a in up.actions if a.op == "create-pod"]
    assert create.pod is not None and create.pod.containers[0].image == "localhost/web:2"
    assert not [a for a in up.actions if a.op in ("remove-pod", "rollout")]
    # one old pod and one new one running; scaled to 1: the old-template pod goes
    new_live = live_from(rc(image="localhost/web:2", replicas=1, kind=kind))
    mixed = replace(old_live, pods={**dict(list(old_live.pods.items())[:1]), **new_live.pods})
    down = plan(compile_node(rc(image="localhost/web:2", replicas=1, kind=kind), NODE, (NODE,)), mixed)
    assert [(a.op, a.target) for a in down.actions if a.op.endswith("-pod")] == \
        [("remove-pod", next(iter(old_live.pods)))]


def test_a_replication_controller_replaces_a_pod_removed_by_hand_from_its_current_template() -> None:
    old_live = live_from(rc(replicas=2))
    one_left = replace(old_live, pods=dict(list(old_live.pods.items())[:1]))
    p = plan(compile_node(rc(image="localhost/web:2", replicas=2), NODE, (NODE,)), one_left)
    (create,) = [a for a in p.actions if a.op.endswith("-pod")]
    assert create.op == "create-pod" and create.pod is not None
    assert create.pod.containers[0].image == "localhost/web:2"


def test_each_action_kind_is_its_own_class_with_exactly_its_payload() -> None:
    """An empty node: one class per kind, each carrying the object it makes and the reason shown by `diff`."""
    from gitops_agent.plan import CreateNetwork, CreatePod, CreateSecret, CreateVolume

    d = compile_node(base(), NODE, (NODE,))
    net, vol, sec1, sec2, pod1, pod2 = plan(d, LiveState("local")).actions
    assert isinstance(net, CreateNetwork) and net.network == d.networks[0] and net.target == d.networks[0].name
    assert str(net) == f"create-network {net.target}: network for namespace default"
    assert isinstance(vol, CreateVolume) and vol.volume == d.volumes[0]
    assert vol.reason == "storage for PersistentVolumeClaim/default/data"
    assert isinstance(sec1, CreateSecret) and isinstance(sec2, CreateSecret)
    assert sorted((sec1.target, sec2.target)) == sorted(s.name for s in d.secrets) and sec1.secret in d.secrets
    assert isinstance(pod1, CreatePod) and isinstance(pod2, CreatePod)
    assert (pod1.pod, pod2.pod) == d.workloads[0].pods and pod1.reason == "Deployment/default/web wants 2 replica(s) here"


def test_a_template_change_is_one_rolling_update_naming_the_old_pods() -> None:
    from gitops_agent.plan import RollingUpdate

    live = live_from(base())
    d = compile_node(base(image="localhost/web:2"), NODE, (NODE,))
    (roll,) = plan(d, live).actions
    assert isinstance(roll, RollingUpdate) and roll.workload == d.workloads[0] and roll.op == "rollout"
    assert roll.old_pods == tuple(sorted(live.pods)) and roll.target == "Deployment/default/web"
    assert roll.reason.endswith(": 2 new pod(s), 2 old pod(s) to replace (RollingUpdate)")


def test_drift_repairs_and_removals_are_their_own_classes() -> None:
    """replace-pod and start-pod carry the pod spec; every removal carries only the name (and a pod its owner)."""
    from gitops_agent.plan import RemoveNetwork, RemovePod, RemoveSecret, RemoveVolume, ReplacePod, StartPod

    rev = base()
    live = live_from(rev)
    names = sorted(live.pods)
    p0, p1 = live.pods[names[0]], live.pods[names[1]]
    stopped = LivePod(p1.name, p1.id, "Exited", p1.labels,
                      tuple(LiveContainer(c.name, c.id, c.image, "exited", "", {}) for c in p1.containers))
    drift = replace(live, pods={names[0]: replace(p0, containers=()), names[1]: stopped})
    d = compile_node(rev, NODE, (NODE,))
    replaced, started = plan(d, drift).actions
    assert isinstance(replaced, ReplacePod) and replaced.pod.name == names[0]
    assert isinstance(started, StartPod) and started.pod.name == names[1]
    empty = compile_node(revision(), NODE, (NODE,))
    other = {MANAGED: "true", L_KIND: "Namespace", L_NAMESPACE: "other", L_NAME: "other"}
    live = replace(live, networks={**live.networks, "gitops-other": other})
    gone = plan(empty, live, PruneConfig(allow_empty=True, delete_volumes=True), secrets=live.secrets).actions
    kinds = [type(a) for a in gone]
    assert kinds == [RemovePod, RemovePod, RemoveSecret, RemoveSecret, RemoveVolume, RemoveNetwork]
    pod = gone[0]
    assert isinstance(pod, RemovePod) and pod.name == names[0] and pod.owner == ObjectRef("Deployment", "default", "web")
    assert [a.target for a in gone[4:]] == ["gitops-default_data", "gitops-other"]
    assert gone[4].reason == "claim removed from Git and prune.deleteVolumes is on"
