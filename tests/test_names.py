"""Podman names are injective over the full identity, for every kind the agent names
(networks, volumes, secrets, pods, containers), and an upgrade from the old dash-joined
names keeps volumes (and their data) and running containers. Pure: from literals."""

from __future__ import annotations

import dataclasses
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_agent.desired import (
    L_KIND,
    L_NAME,
    L_NAMESPACE,
    MANAGED,
    claim_volume,
    compile_node,
    container_name,
    legacy_container_name,
    legacy_volume_name,
    network_name,
    pod_names,
    safe_encode,
    secret_name,
    volume_name,
)
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.model import ObjectRef, PodTemplate, Workload
from gitops_agent.plan import plan
from test_plan import NODE, O, base, live_from, revision

# DNS labels / subdomains with dashes and dots: the raw material of collisions
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
subdomain = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,8}[a-z0-9])?", fullmatch=True)
key = st.from_regex(r"[-._a-zA-Z0-9]{1,8}", fullmatch=True)


def pod(name: str, ns: str) -> Workload:
    return Workload(ObjectRef("Pod", ns, name), O, PodTemplate({}, ()))


def test_the_collisions_of_issue_15_are_gone() -> None:
    assert volume_name("shop-cat", "data") != volume_name("shop", "cat-data")
    assert pod_names(pod("twin", "a"), "h", 1) != pod_names(pod("twin", "b"), "h", 1)
    assert pod_names(pod("twin", "default"), "h", 1) != pod_names(pod("twin", "a"), "h", 1)
    assert container_name("web", "db-x") != container_name("web-db", "x")
    # the readable parts of these two were equal before, only an 8-character hash told them apart
    assert secret_name(ObjectRef("Secret", "a", "b-secret-n"), "k", b"v") != secret_name(ObjectRef("Secret", "a-secret-b", "n"), "k", b"v")
    # names past the 200-character readable part differ by the hash of the full identity
    long_a, long_b = "n" * 240 + "a", "n" * 240 + "b"
    assert secret_name(ObjectRef("Secret", "a", long_a), "k", b"v") != secret_name(ObjectRef("Secret", "a", long_b), "k", b"v")
    assert len(secret_name(ObjectRef("Secret", "a" * 63, long_a), "k" * 253, b"v")) == 64  # Podman's limit


def test_readable_names_and_what_stays_as_it_was() -> None:
    assert network_name("shop") == "gitops-shop"
    assert volume_name("shop", "data") == "gitops-shop_data"
    assert pod_names(pod("twin", "default"), "h", 1) == ["twin"]  # unchanged: no replacement on upgrade
    assert pod_names(pod("twin", "shop"), "h", 1) == ["twin_shop"]
    # a default Pod shaped like a Deployment's pod (name-<10>-<5>) cannot take a Deployment pod's name
    assert pod_names(pod("web-bcdfghjklm-bcdfg", "default"), "h", 1) == ["web-bcdfghjklm-bcdfg_default"]
    assert container_name("twin_shop", "app") == "twin_shop_app"
    assert secret_name(ObjectRef("ConfigMap", "shop", "cfg"), "index.html", b"x").startswith("gitops-shop_configmap_cfg_index.html-")


@settings(max_examples=200, deadline=None)
@given(st.tuples(label, subdomain, label, subdomain))
def test_volume_pod_and_network_names_are_injective(ids: tuple[str, str, str, str]) -> None:
    ns1, n1, ns2, n2 = ids
    if (ns1, n1) != (ns2, n2):
        assert volume_name(ns1, n1) != volume_name(ns2, n2)
        assert pod_names(pod(n1, ns1), "h", 1) != pod_names(pod(n2, ns2), "h", 1)
    if ns1 != ns2:
        assert network_name(ns1) != network_name(ns2)


@settings(max_examples=200, deadline=None)
@given(st.tuples(subdomain, label, subdomain, label), st.sampled_from(["default", "shop"]))
def test_container_names_are_injective(ids: tuple[str, str, str, str], ns: str) -> None:
    p1, c1, p2, c2 = ids
    pod1, pod2 = pod_names(pod(p1, ns), "h", 1)[0], pod_names(pod(p2, ns), "h", 1)[0]
    if (pod1, c1) != (pod2, c2):
        assert container_name(pod1, c1) != container_name(pod2, c2)


@settings(max_examples=200, deadline=None)
@given(st.tuples(label, st.sampled_from(["ConfigMap", "Secret"]), subdomain, key),
       st.tuples(label, st.sampled_from(["ConfigMap", "Secret"]), subdomain, key))
def test_secret_names_are_injective_over_the_identity(a: tuple[str, str, str, str], b: tuple[str, str, str, str]) -> None:
    if a != b:
        assert secret_name(ObjectRef(a[1], a[0], a[2]), a[3], b"same") != secret_name(ObjectRef(b[1], b[0], b[2]), b[3], b"same")
        # the readable part alone (no hash) already differs: the parts can be split again at "_"
        readable = [secret_name(ObjectRef(x[1], x[0], x[2]), x[3], b"same").rsplit("-", 1)[0] for x in (a, b)]
        assert readable[0] != readable[1]


def _claim_labels(ns: str, name: str) -> dict[str, str]:
    return {MANAGED: "true", L_KIND: "PersistentVolumeClaim", L_NAMESPACE: ns, L_NAME: name}


def test_an_old_named_volume_is_kept_for_its_own_claim_only() -> None:
    shop_cat = ObjectRef("PersistentVolumeClaim", "shop-cat", "data")
    shop = ObjectRef("PersistentVolumeClaim", "shop", "cat-data")
    assert legacy_volume_name("shop-cat", "data") == legacy_volume_name("shop", "cat-data") == "gitops-shop-cat-data"
    live = {"gitops-shop-cat-data": _claim_labels("shop-cat", "data")}  # made by an old agent for shop-cat/data
    assert claim_volume(shop_cat, live) == "gitops-shop-cat-data"  # its data carries over
    assert claim_volume(shop, live) == "gitops-shop_cat-data"  # the other namespace gets its own, never that one
    assert claim_volume(shop_cat, {}) == "gitops-shop-cat_data"
    both = {**live, "gitops-shop-cat_data": _claim_labels("shop-cat", "data")}
    assert claim_volume(shop_cat, both) == "gitops-shop-cat_data"


def test_upgrade_plan_keeps_the_old_volume_and_the_running_containers() -> None:
    """A node where an old agent applied `base()`: old volume name, old container names.
    The new agent plans nothing: no new volume, no replaced pod, nothing orphaned."""
    rev = base()
    live = live_from(rev)
    d = compile_node(rev, NODE, (NODE,))
    old_vol = legacy_volume_name("default", "data")
    old_pods = {
        name: dataclasses.replace(p, containers=tuple(
            dataclasses.replace(c, name=legacy_container_name(name, c.name[len(name) + 1:])) for c in p.containers))
        for name, p in live.pods.items()
    }
    assert all(c.name.endswith("-httpd") for p in old_pods.values() for c in p.containers)
    old = dataclasses.replace(live, pods=old_pods, volumes={old_vol: dict(d.volumes[0].labels)})
    p = plan(d, old)
    assert p.actions == () and p.orphaned_volumes == ()
    # a rollout's new pods bind the old volume
    changed = base(page=b"<h1>new</h1>")
    p = plan(compile_node(changed, NODE, (NODE,)), old)
    roll = [a for a in p.actions if a.op == "rollout"]
    assert roll and {b.volume for pod_ in roll[0].workload.pods for c in pod_.containers for b in c.volumes} == {old_vol}
    assert not [a for a in p.actions if a.op == "create-volume"]


def test_a_bare_pod_renamed_by_the_upgrade_is_removed_before_its_new_name_is_created() -> None:
    w = pod("twin", "shop")
    rev = revision(w)
    d = compile_node(rev, NODE, (NODE,))
    spec = d.workloads[0].pods[0]
    live = LiveState("local", pods={"twin": LivePod("twin", "id", "Running", dict(spec.labels), (
        LiveContainer("twin-c", "cid", "img", "running", "", {}),))})
    assert [(a.op, a.target) for a in plan(d, live).actions if a.op.endswith("-pod")] == [
        ("remove-pod", "twin"), ("create-pod", "twin_shop")]


def test_replica_names_stay_distinct_for_a_large_deployment() -> None:
    """5-character suffixes of 20,000 replicas meet (birthday bound): a later replica draws again;
    the names of the replicas before it do not change."""
    w = Workload(ObjectRef("Deployment", "default", "web"), O, PodTemplate({}, ()), replicas=20_000)
    names = pod_names(w, "bcdfghjklm", 20_000)
    assert len(set(names)) == 20_000
    naive = {safe_encode(hashlib.sha256(f"bcdfghjklm/{i}".encode()).hexdigest(), 5) for i in range(20_000)}
    assert len(naive) < 20_000  # the first draws did meet: the test exercises the second draw
    assert pod_names(w, "bcdfghjklm", 3) == names[:3]


def test_legacy_secret_names_are_what_older_agents_made() -> None:
    from gitops_agent.desired import legacy_secret_name, legacy_secret_names
    from gitops_agent.model import ConfigData

    # the literal is the name the agent at d9a9327 gave this key
    assert legacy_secret_name(ObjectRef("Secret", "shop", "creds"), "token", b"s3cret") == "gitops-shop-secret-creds-token-nwvpvhd9"
    rev = revision(ConfigData(ObjectRef("Secret", "shop", "creds"), O, {"token": b"s3cret", "b": b"x"}))
    assert "gitops-shop-secret-creds-token-nwvpvhd9" in legacy_secret_names(rev) and len(legacy_secret_names(rev)) == 2


def test_no_secret_is_removed_while_a_pod_made_by_an_older_agent_runs() -> None:
    """It may use any old-named secret, and Podman cannot start its container again without it."""
    rev = base()
    live = live_from(rev)
    d = compile_node(rev, NODE, (NODE,))
    old_secret = "gitops-default-secret-creds-token-abcdefgh"
    live = dataclasses.replace(live, secrets=live.secrets | {old_secret})
    assert [a.target for a in plan(d, live, secrets={old_secret}).actions] == [old_secret]  # every pod is new: removed
    first = next(iter(live.pods.values()))
    aged = dataclasses.replace(first, containers=tuple(
        dataclasses.replace(c, name=legacy_container_name(first.name, c.name[len(first.name) + 1:])) for c in first.containers))
    assert aged.from_older_agent and not first.from_older_agent
    upgrading = dataclasses.replace(live, pods={**live.pods, first.name: aged})
    p = plan(d, upgrading, secrets={old_secret})
    assert p.actions == () and p.unknown_secrets == ()  # kept, and known to be the agent's
