"""Drift is everything the agent set, decided from literals (no Podman): a live pod that matches its spec in every
property plans nothing; each property changed alone plans one action whose reason names it (never a value)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pytest

from gitops_agent.desired import L_REVISION, MANAGED, NodeDesired, PodSpec, compile_node
from gitops_agent.informer import Known, classify, props_changed
from gitops_agent.model import Probe
from gitops_agent.live import ContainerProps, LiveContainer, LivePod, LiveState, env_digest
from gitops_agent.plan import (ReconnectPod, RecreateSecret, ReplacePod, UnpausePod, VolumeLost, expected_aliases,
                               plan)
from gitops_agent.podman import container_props, unix_time
from test_plan import NODE, base

POD_MADE = 1000.0  # unix seconds the pod's containers were made; its secrets and volumes were made before


def _desired() -> NodeDesired:
    """One pod of test_plan's web Deployment, its container with a command, an entrypoint, a plain env
    variable and a user set (what the agent then compares)."""
    desired = compile_node(base(replicas=1), NODE, (NODE,))
    (w,) = desired.workloads
    set_ = {"command": ("httpd", "-f"), "entrypoint": ("/bin/sh",), "env": {"GREETING": "hello"}, "user": "1000"}
    pods = tuple(p.map_containers(lambda c: replace(c, **set_)) for p in w.pods)  # type: ignore[arg-type]
    return replace(desired, workloads=(replace(w, pods=pods),))


def _props(spec: PodSpec, name: str) -> ContainerProps:
    """What Podman shows for a container the agent made from `spec` (its container `name`)."""
    c = next(x for x in spec.containers if x.name == name)
    return ContainerProps(
        created=POD_MADE, image_id="f" * 64, image_name=c.image, entrypoint=" ".join(c.entrypoint),
        command=c.command, env={**{k: env_digest(v) for k, v in c.env.items()},
                                **{k: env_digest("(secret)") for k in c.secret_env}, "PATH": env_digest("/bin")},
        labels={**c.labels, "io.buildah.version": "1.28"}, restart_policy=spec.restart_policy, user=c.user or "",
        memory=c.memory_bytes or 0, memory_reservation=c.memory_reservation or 0,
        cpu_quota=(c.cpu_millis or 0) * 100, cpu_shares=c.cpu_shares or 0,
        caps=frozenset({"CAP_CHOWN", "CAP_NET_RAW"}), volumes={b.target: b.volume for b in c.volumes},
        secrets={m.secret: "id-" + m.secret for m in c.secret_mounts})


def _live(desired: NodeDesired, change: Callable[[LivePod], LivePod] = lambda p: p,
          **state: object) -> LiveState:
    """The node as the agent left it after applying `desired`, with `change` applied to each pod."""
    pods = {}
    for w in desired.workloads:
        for spec in w.pods:
            infra = LiveContainer("abc-infra", "i" * 64, "pause", "running", "", props=ContainerProps(
                created=POD_MADE - 1, networks={spec.network: expected_aliases(spec, LivePod(spec.name, "", "", {}))}))
            ctrs = tuple(LiveContainer(c.name, f"id-{c.name}", c.image, "running", "", dict(c.labels),
                                       props=_props(spec, c.name)) for c in spec.containers)
            ports = frozenset((p.host_port, p.container_port, p.protocol) for p in spec.ports)
            pods[spec.name] = change(LivePod(spec.name, "p1", "Running", dict(spec.labels), ctrs, infra, ports))
    secrets = frozenset(s.name for s in desired.secrets)
    fields: dict[str, object] = dict(
        node="local", pods=pods, networks={n.name: dict(n.labels) for n in desired.networks},
        volumes={v.name: dict(v.labels) for v in desired.volumes}, secrets=secrets, marked_secrets=secrets,
        volume_created={v.name: POD_MADE - 5 for v in desired.volumes},
        secret_created={s: POD_MADE - 5 for s in secrets}, secret_ids={s: "id-" + s for s in secrets})
    fields.update(state)
    return LiveState(**fields)  # type: ignore[arg-type]


def _app(pod: LivePod, **props: object) -> LivePod:
    """`pod` with its app container's properties changed."""
    (c,) = pod.containers
    assert c.props is not None
    return replace(pod, containers=(replace(c, props=replace(c.props, **props)),))


def _only(desired: NodeDesired, live: LiveState) -> object:
    (action,) = plan(desired, live).actions
    return action


def test_a_pod_that_matches_its_spec_in_every_property_is_in_sync() -> None:
    """Everything the agent set reads back equal (extra image env and labels, the runtime's capabilities)."""
    desired = _desired()
    assert plan(desired, _live(desired)).in_sync


@pytest.mark.parametrize(("props", "named"), [
    ({"command": ("sh", "-c", "by hand")}, "command"),
    ({"entrypoint": "/bin/other"}, "entrypoint"),
    ({"env": {}}, "env TOKEN"),
    ({"image_name": "localhost/web:2"}, "image"),
    ({"labels": {}}, "label io.gitops-agent.managed"),
    ({"restart_policy": "no"}, "restart policy"),
    ({"memory": 32 * 1024 * 1024}, "memory limit"),
    ({"cpu_quota": 10_000}, "cpu limit"),
    ({"privileged": True}, "privileged"),
    ({"read_only_root_fs": True}, "readOnlyRootFilesystem"),
    ({"user": "0"}, "user"),
    ({"no_new_privileges": True}, "allowPrivilegeEscalation"),
    ({"seccomp": "unconfined"}, "seccompProfile"),
    ({"volumes": {"/data": "other"}}, "mount /data"),
])
def test_each_container_property_changed_alone_replaces_the_pod_naming_it(props: dict[str, object],
                                                                         named: str) -> None:
    """A container made again by hand with one other setting: the pod is replaced, the reason names the
    property (never the value)."""
    desired = _desired()
    action = _only(desired, _live(desired, lambda p: _app(p, **props)))
    assert isinstance(action, ReplacePod)
    assert named in action.reason and "changed by hand" in action.reason
    assert "by hand" not in action.reason.replace("changed by hand", "")  # the value is not shown


def test_the_revision_label_is_not_drift() -> None:
    """A new commit that leaves the template alone keeps its pods: the commit they were made at is history."""
    desired = _desired()

    def older(p: LivePod) -> LivePod:
        (c,) = p.containers
        assert c.props is not None
        return _app(p, labels={**c.props.labels, L_REVISION: "b" * 40})

    assert plan(desired, _live(desired, older)).in_sync


def test_an_env_value_is_compared_by_digest_and_never_shown() -> None:
    """A plain env variable with another value is named; the value (kept as a digest only) is not shown."""
    desired = _desired()
    (c,) = desired.workloads[0].pods[0].containers
    env = dict(_props(desired.workloads[0].pods[0], c.name).env)
    env["GREETING"] = env_digest("a-value-never-shown")
    action = _only(desired, _live(desired, lambda p: _app(p, env=env)))
    assert isinstance(action, ReplacePod) and "env GREETING" in action.reason
    live = _live(desired, lambda p: _app(p, env=env))
    assert "a-value-never-shown" not in repr(live)


def test_a_pod_off_its_network_or_with_other_aliases_is_reconnected_in_place() -> None:
    """Disconnected, other aliases, or on another network too: one ReconnectPod to `expected_aliases`."""
    desired = _desired()
    spec = desired.workloads[0].pods[0]

    def nets(networks: dict[str, frozenset[str]]) -> Callable[[LivePod], LivePod]:
        def change(p: LivePod) -> LivePod:
            assert p.infra is not None and p.infra.props is not None
            return replace(p, infra=replace(p.infra, props=replace(p.infra.props, networks=networks)))
        return change

    gone = _only(desired, _live(desired, nets({})))
    assert isinstance(gone, ReconnectPod) and f"network {spec.network} disconnected" in gone.reason
    assert gone.disconnect == () and gone.aliases == frozenset({"web"})
    other = _only(desired, _live(desired, nets({spec.network: frozenset({"other"})})))
    assert isinstance(other, ReconnectPod) and "aliases other instead of web" in other.reason
    assert other.disconnect == (spec.network,)
    extra = _only(desired, _live(desired, nets({spec.network: frozenset({"web"}), "podman": frozenset()})))
    assert isinstance(extra, ReconnectPod) and extra.disconnect == ("podman",)
    assert "network podman connected by hand" in extra.reason


def test_a_pod_whose_env_holds_its_address_is_in_sync_and_made_again_off_its_network() -> None:
    """env status.podIP: any address in the live variable is in sync (a pod made again has another); taken off
    its network, the pod is made again rather than connected again, which would give it another address."""
    desired = _desired()
    (w,) = desired.workloads
    pods = tuple(p.map_containers(lambda c: replace(c, pod_ip_env=("POD_IP",))) for p in w.pods)
    desired = replace(desired, workloads=(replace(w, pods=pods),))

    def with_ip(p: LivePod) -> LivePod:
        ctrs = tuple(replace(c, props=replace(c.props, env={**c.props.env, "POD_IP": env_digest("10.89.0.9")}))
                     for c in p.containers if c.props is not None)
        return replace(p, containers=ctrs)

    assert plan(desired, _live(desired, with_ip)).actions == ()

    def off(p: LivePod) -> LivePod:
        assert p.infra is not None and p.infra.props is not None
        return with_ip(replace(p, infra=replace(p.infra, props=replace(p.infra.props, networks={}))))

    made = _only(desired, _live(desired, off))
    assert isinstance(made, ReplacePod) and f"network {pods[0].network} disconnected" in made.reason
    assert "its address is in its env" in made.reason
    missing = _only(desired, _live(desired))
    assert isinstance(missing, ReplacePod) and "env POD_IP" in missing.reason


def test_drift_repair_keeps_an_unready_pod_out_of_its_services_dns() -> None:
    """A pod with a readinessProbe behind a Service is in its Service's DNS only once judged ready (endpoints.py):
    drift repair never puts an unready one back, takes a ready one's missing name as drift, and leaves the Service
    names of a pod with no verdict yet (new, or made before the monitor) to the gate and the monitor."""
    plain = _desired()
    (w,) = plain.workloads
    probe = Probe(action="httpGet", port=8080, period_seconds=2, success_threshold=1, failure_threshold=3)
    desired = replace(plain, workloads=(replace(w, pods=tuple(
        p.map_containers(lambda c: replace(c, readiness=probe)) for p in w.pods)),))
    spec = desired.workloads[0].pods[0]

    def without_service(p: LivePod) -> LivePod:
        assert p.infra is not None and p.infra.props is not None
        return replace(p, infra=replace(p.infra, props=replace(p.infra.props, networks={spec.network: frozenset()})))

    served = {spec.network: frozenset({"web"})}

    def serving(p: LivePod) -> LivePod:
        assert p.infra is not None and p.infra.props is not None
        return replace(p, infra=replace(p.infra, props=replace(p.infra.props, networks=served)))

    assert plan(desired, _live(desired, without_service), readiness={spec.name: False}).in_sync
    back = plan(desired, _live(desired, without_service), readiness={spec.name: True}).actions
    assert [type(a) for a in back] == [ReconnectPod] and back[0].aliases == frozenset({"web"})  # type: ignore[attr-defined]
    out = plan(desired, _live(desired, serving), readiness={spec.name: False}).actions
    assert [type(a) for a in out] == [ReconnectPod] and out[0].aliases == frozenset()  # type: ignore[attr-defined]
    assert plan(desired, _live(desired, without_service)).in_sync  # no verdict yet: either way
    assert plan(desired, _live(desired, serving)).in_sync
    again = _only(plain, _live(plain, without_service))  # no readinessProbe: always in its Service's DNS
    assert isinstance(again, ReconnectPod) and again.aliases == frozenset({"web"})


def test_published_ports_changed_by_hand_replace_the_pod() -> None:
    desired = _desired()
    action = _only(desired, _live(desired, lambda p: replace(p, ports=frozenset({(9999, 80, "tcp")}))))
    assert isinstance(action, ReplacePod) and "published ports" in action.reason


def test_a_paused_container_is_unpaused() -> None:
    desired = _desired()
    action = _only(desired, _live(desired, lambda p: replace(p, containers=tuple(
        replace(c, state="paused") for c in p.containers))))
    assert isinstance(action, UnpausePod) and "paused" in action.reason


def test_a_secret_made_again_by_hand_is_made_again_from_git_and_its_consumers_replaced() -> None:
    """Another ID than its consumer was made with, or younger than the consumer: re-created, and the pod replaced."""
    desired = _desired()
    live = _live(desired)
    mounted = next(s.name for s in desired.secrets if s.key == "index.html")  # a file: its consumer shows its ID
    env_only = next(s.name for s in desired.secrets if s.key == "token")  # an env variable: no ID shown
    for name, state in ((mounted, {"secret_ids": {**live.secret_ids, mounted: "other-id"}}),
                        (env_only, {"secret_created": {**live.secret_created, env_only: POD_MADE + 60}})):
        p = plan(desired, _live(desired, **state))  # type: ignore[arg-type]
        assert [type(a) for a in p.actions] == [RecreateSecret, ReplacePod], state
        assert p.actions[0].target == name and "re-created by hand" in p.actions[0].reason
        assert f"secret {name} re-created by hand" in p.actions[1].reason
    # removed by hand: made again from Git, and its consumers with it, in the same pass
    gone = plan(desired, _live(desired, secrets=live.secrets - {mounted}))
    assert [a.op for a in gone.actions] == ["create-secret", "replace-pod"]
    assert f"secret {mounted} removed by hand" in gone.actions[1].reason


def test_a_volume_removed_or_made_again_under_its_pod_is_data_loss_and_nothing_is_repaired() -> None:
    """Missing under its pod, or younger than it: one VolumeLost naming the pod; no volume made, no pod touched."""
    desired = _desired()
    (vol,) = desired.volumes
    pod = desired.workloads[0].pods[0].name
    younger = _live(desired, volume_created={vol.name: POD_MADE + 60})
    missing = _live(desired, volumes={}, volume_created={})
    for live in (younger, missing):
        (action,) = plan(desired, live).actions
        assert isinstance(action, VolumeLost) and action.pods == (pod,) and "its data is gone" in action.reason
    # once a person removed the pod, the claim starts again empty
    fresh = plan(desired, replace(missing, pods={})).actions
    assert [a.op for a in fresh] == ["create-volume", "create-pod"]


def test_uninspected_containers_are_not_compared() -> None:
    """A read without properties (a rollout's poll) says nothing about them: no repair from missing data."""
    desired = _desired()
    bare = _live(desired, lambda p: replace(p, infra=None, ports=None, containers=tuple(
        replace(c, props=None) for c in p.containers)))
    assert plan(desired, bare).in_sync


def test_network_membership_events_of_an_infra_container_are_drift_and_drop_its_props() -> None:
    """connect/disconnect of a managed pod's infra container: drift (unless the agent just wrote that network),
    and the container's inspect is read again; of any other container: ignored."""
    known = Known(infra=frozenset({"i1"}))
    event = {"Type": "network", "Action": "disconnect", "Actor": {"ID": "i1", "Attributes": {"name": "x-infra",
                                                                                         "network": "gitops-n"}}}
    assert classify(event, known, lambda n: False) == "drift"
    assert classify(event, known, lambda n: n == "gitops-n") == "changed"
    assert props_changed(event) == "i1"
    other = {**event, "Actor": {"ID": "zz", "Attributes": {"name": "bystander"}}}
    assert classify(other, known, lambda n: False) == "ignore"


def test_container_props_keep_what_plan_compares_and_no_env_value() -> None:
    """An inspect (Podman 4.3's shape) → properties: the infra container's own short id is not an alias, env
    values are digests."""
    info = {"Id": "e39ad594fa44" + "0" * 52, "Created": "2026-12-02T04:02:21.248772949Z", "Image": "sha",
            "ImageName": "localhost/web:1",
            "Config": {"Cmd": ["sleep", "1"], "Entrypoint": "", "Env": ["TOK=s3cret-value", "A=b=c"],
                       "Labels": {"a": "b"}, "Secrets": [{"Name": "gitops-s", "ID": "89c7"}], "User": ""},
            "HostConfig": {"RestartPolicy": {"Name": "always"}, "Memory": 67108864, "CpuQuota": 50000,
                           "SecurityOpt": ["no-new-privileges", "seccomp=/var/lib/kubelet/seccomp/a.json",
                                           "apparmor=k8s-deny-write"]},
            "EffectiveCaps": ["CAP_CHOWN"], "Mounts": [{"Type": "volume", "Name": "v1", "Destination": "/data"}],
            "NetworkSettings": {"Networks": {"n1": {"Aliases": ["svc1", "e39ad594fa44"]}}}}
    props = container_props(info)
    assert props.networks == {"n1": frozenset({"svc1"})}
    assert props.env == {"TOK": env_digest("s3cret-value"), "A": env_digest("b=c")}
    assert "s3cret-value" not in repr(props)
    assert (props.memory, props.cpu_quota, props.restart_policy, props.no_new_privileges) == (
        67108864, 50000, "always", True)
    assert props.volumes == {"/data": "v1"} and props.secrets == {"gitops-s": "89c7"}
    assert (props.seccomp, props.apparmor) == ("/var/lib/kubelet/seccomp/a.json", "k8s-deny-write")
    assert props.created == pytest.approx(unix_time("2026-12-02T04:02:21Z") + 0.248772949)
    assert unix_time("") == 0.0 and MANAGED
