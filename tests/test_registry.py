"""Images from a real registry: pull secrets, pull failures by consequence.

A real `docker-registry` (TLS with a CA made for the run, htpasswd auth) serves
the fleet's three real Podman nodes through per-node relays (`registry.py`);
every node trusts the CA through its own mount namespace only. Test images are
pushed with `podman push`. The agent is driven from a real Git remote.

Every test runs in CI (the registry SIGKILLed mid-pull and a pull slower than the
step deadline included: about 30 s together).
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gitops_agent import apply as apply_mod
from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.cli import main
from podman_env import WEB1, WEB2, make_image, run_each
from registry import PASSWORD, USER, Registry, Relay, push as push_image, trust
from test_fleet import NAMES, NS, Events, app_containers, ids, namespace, status_of, sync, workload

WRONG = f"wrong-password-{os.getpid()}"
class Registries:
    """An authenticated and an anonymous registry, reachable and trusted from every fleet node."""

    def __init__(self, fleet: list[Any]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gat-reg-"))
        self.auth = Registry(self.dir / "auth")
        self.anon = Registry(self.dir / "anon", auth=False)
        self.relays: list[Relay] = []
        for reg in (self.auth, self.anon):
            for svc in fleet:
                self.relays.append(Relay(svc.netns, reg.port))
                trust(svc, reg)
        self.anon_relays = self.relays[len(fleet):]  # node i reaches the anonymous registry through [i]
        # the images every test uses, pushed once (from node1, through its relay)
        self.private1 = self.auth.ref("team/web", "1")
        self.private2 = self.auth.ref("team/web", "2")
        self.public1 = self.anon.ref("pub/web", "1")
        self.public2 = self.anon.ref("pub/web", "2")
        for image, reg, dest in ((WEB1, self.auth, "team/web:1"), (WEB2, self.auth, "team/web:2"),
                                 (WEB1, self.anon, "pub/web:1"), (WEB2, self.anon, "pub/web:2")):
            push_image(fleet[0], image, reg, dest)

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        self.auth.stop()
        self.anon.stop()


@pytest.fixture(scope="module")
def registries(fleet: list[Any]) -> Iterator[Registries]:
    regs = Registries(fleet)
    try:
        yield regs
    finally:
        regs.close()


def forget_registry_images(fleet: list[Any], regs: Registries) -> None:
    """Untag what earlier tests pulled, so every pull here really goes to the registry. The nodes' image
    names come from their API; the CLI runs only for a name a node has, on the three nodes at once."""
    refs = {regs.private1, regs.private2, regs.public1, regs.public2}

    def forget(svc: Any) -> None:
        names = {name for image in svc.api("/libpod/images/json") or () for name in image.get("Names") or ()}
        for ref in sorted(refs & names):
            svc.podman("untag", ref, ref)
        assert not refs & {name for image in svc.api("/libpod/images/json") or () for name in image.get("Names") or ()}

    run_each(forget, fleet)


@pytest.fixture
def env(clean_fleet: list[Any], registries: Registries, git_remote: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], Registries, Any, Path]:
    monkeypatch.setattr(apply_mod, "PULL_RETRY", (0.3,))  # the backoff, shortened for the test
    for r in registries.relays:
        r.accept()
        r.rate = None
    registries.auth.start()
    registries.anon.start()
    forget_registry_images(clean_fleet, registries)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "path": "apps"},
        "nodes": [{"name": n, "url": svc.url} for n, svc in zip(NAMES, clean_fleet)],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }))
    return clean_fleet, registries, git_remote, cfg


def pull_secret(name: str, host: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}})
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": config}}


def deployment(image: str, secret: str | None = None, parallel: bool = False, probe: bool = True) -> dict[str, Any]:
    """The web Deployment, one pod per node; `parallel`: all nodes at once; without `probe` no
    readiness probe (Podman 4.3 removes a container that ran probe execs slowly)."""
    doc = workload("web", image, annotations={"rollout.gitops-agent.io/max-parallel-nodes": "3"} if parallel else None)
    if not probe:
        del doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    if secret:
        doc["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": secret}]
    return doc


def one_node(cfg: Path, **extra: Any) -> dict[str, Any]:
    """Rewrite the agent config for the first node only (plus `extra` top-level keys); returns it."""
    raw = yaml.safe_load(cfg.read_text())
    raw["nodes"] = raw["nodes"][:1]
    raw.update(extra)
    cfg.write_text(yaml.safe_dump(raw))
    return raw


def single(image: str) -> dict[str, Any]:
    """One replica, no probe: the quickest rollout on one node."""
    doc = deployment(image, probe=False)
    doc["spec"]["replicas"] = 1
    return doc


def commit(repo: Any, message: str, *docs: dict[str, Any]) -> str:
    repo.write("apps/all.yaml", yaml.safe_dump_all([namespace(), *docs], sort_keys=False))
    return repo.commit_and_push(message)


def repo_of(image: str) -> str:
    """`host:port/team/web:1` or `host:port/team/web@sha256:...` → `host:port/team/web`."""
    return re.split(r"@|:(?=[^/]*$)", image)[0]


def runs(svc: Any) -> set[tuple[str, str]]:
    """(repository, image ID) of every app container: the agent creates them by digest."""
    return {(repo_of(c["Image"]), c["ImageID"]) for c in app_containers(svc).values()}


def files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_private_image_pulls_with_its_secret_and_a_refused_one_names_registry_and_secret(env: Any) -> None:
    """imagePullSecrets reach Podman's pull; refused credentials fail the canary before anything
    stops, naming the registry and the Secret; a node's authFile serves pods without a Secret;
    no credential shows anywhere (outputs, events, status, state directory)."""
    fleet, regs, repo, cfg = env
    ev = Events()
    commit(repo, "v1", pull_secret("regcred", regs.auth.host, PASSWORD), deployment(regs.private1, "regcred", parallel=True, probe=False))
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    assert [runs(svc) for svc in fleet] == [{(repo_of(regs.private1), fleet[0].images[WEB1])}] * 3
    pulls = [f for _, f in ev.of("image.pull")]
    assert sorted(p["node"] for p in pulls) == list(NAMES)
    assert {p["credentials"] for p in pulls} == {f"Secret {NS}/regcred"}
    before = [ids(svc) for svc in fleet]

    commit(repo, "v2: wrong password", pull_secret("regcred", regs.auth.host, WRONG), deployment(regs.private2, "regcred", probe=False))
    out = sync(cfg, ev)
    assert out.result == "failed"
    assert f"registry {regs.auth.host} refused the credentials of Secret {NS}/regcred" in out.error, out.error
    assert "on node n1" in out.error
    assert [ids(svc) for svc in fleet] == before  # nothing stopped on n1, n2 and n3 never reached
    st = status_of(cfg)
    assert st["condition"] == "Stalled" and f"Secret {NS}/regcred" in st["message"]

    commit(repo, "v3: no secret at all", deployment(regs.private2, probe=False))
    out = sync(cfg, ev)
    assert out.result == "failed" and f"registry {regs.auth.host} refused an anonymous pull" in out.error, out.error
    assert [ids(svc) for svc in fleet] == before

    # the node's authFile (Podman's auth.json) serves a pod that names no Secret for the registry
    auth = cfg.parent / "auth.json"
    auth.write_text(json.dumps({"auths": {regs.auth.host: {"username": USER, "password": PASSWORD}}}))
    raw = yaml.safe_load(cfg.read_text())
    for node in raw["nodes"]:
        node["authFile"] = str(auth)
    cfg.write_text(yaml.safe_dump(raw))
    v4 = deployment(regs.private2, parallel=True, probe=False)
    v4["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "4"}]
    commit(repo, "v4: no secret, the node's authFile", v4)
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    assert [runs(svc) for svc in fleet] == [{(repo_of(regs.private2), fleet[0].images[WEB2])}] * 3
    assert {f["credentials"] for _, f in ev.of("image.pull")[-3:]} == {f"auth file {auth}"}

    shown = json.dumps([out.error, repr(out), st, status_of(cfg), [(e, f) for _, e, f in ev]], default=str)
    for secret in (PASSWORD, WRONG, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in shown
        assert files_holding(cfg.parent / "state", secret) == []


def test_registry_down_is_transient_and_a_missing_tag_fails_the_canary(env: Any) -> None:
    """Unreachable registry: nothing stopped, node Waiting (ImagePullBackOff), revision not failed,
    done once it is back. A missing tag: the canary fails with the registry's reason, others untouched."""
    fleet, regs, repo, cfg = env
    commit(repo, "v1", deployment(regs.public1, parallel=True, probe=False))
    assert sync(cfg).result == "applied"
    before = [ids(svc) for svc in fleet]

    regs.anon.stop()
    c2 = commit(repo, "v2", deployment(regs.public2, parallel=True, probe=False))
    ev = Events()
    out = sync(cfg, ev)
    assert out.result == "progressing", out.error
    assert "ImagePullBackOff" in out.error and f"registry {regs.anon.host} not available" in out.error
    assert len(ev.of("image.pull.retry")) == 3  # retried with backoff within each node's step
    assert [ids(svc) for svc in fleet] == before
    agent = Agent(config_mod.load(str(cfg)))
    try:
        assert (agent.history.get("failed") or {}).get("sha") != c2  # not marked failed
        rollout = agent.history.get("rollout")
        assert rollout["phase"] == "progressing"
        assert [rollout["nodes"][n]["status"] for n in NAMES] == ["waiting"] * 3
    finally:
        agent.close()
    st = status_of(cfg)
    assert st["condition"] == "Progressing" and [n["rollout"] for n in st["nodes"]] == ["waiting"] * 3
    assert all(n["error"].startswith("ImagePullBackOff: ") for n in st["rollout"]["nodes"])

    regs.anon.start()
    out = sync(cfg)
    assert out.result == "applied", out.error
    assert [runs(svc) for svc in fleet] == [{(repo_of(regs.public2), fleet[0].images[WEB2])}] * 3
    before = [ids(svc) for svc in fleet]

    missing = regs.anon.ref("pub/web", "nope")
    commit(repo, "v3: a tag that does not exist, one node at a time", deployment(missing, probe=False))
    out = sync(cfg)
    assert out.result == "failed" and "on node n1" in out.error
    assert "manifest unknown" in out.error and regs.anon.host in out.error, out.error
    assert [ids(svc) for svc in fleet] == before


def image_ids(svc: Any) -> set[str]:
    return {c["ImageID"] for c in app_containers(svc).values()}


def remove_pods(svc: Any) -> None:
    svc.podman("pod", "rm", "-f", "-t", "0", "-a")


def test_a_moved_tag_never_reaches_a_repair_or_a_revert_but_a_new_rollout_with_always_does(
        env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The image each node pulled for a template is recorded and reused by drift repair and by a
    `git revert`, though the registry moved the tag; a new template with Always re-resolves it;
    an image named by digest runs as written."""
    fleet, regs, repo, cfg = env
    tag = f"moving{os.getpid()}"
    moving = regs.anon.ref("pub/web", tag)
    digest1 = push_image(fleet[0], WEB1, regs.anon, f"pub/web:{tag}")
    one, two = fleet[0].images[WEB1], fleet[0].images[WEB2]
    commit(repo, "v1", deployment(moving, parallel=True, probe=False))
    assert sync(cfg).result == "applied"
    assert [image_ids(svc) for svc in fleet] == [{one}] * 3
    st = status_of(cfg)
    pinned = f"{regs.anon.host}/pub/web@{digest1}"
    assert [n["images"] for n in st["nodes"]] == [{moving: pinned}] * 3
    assert [{c["Image"] for c in app_containers(svc).values()} for svc in fleet] == [{pinned}] * 3  # podman ps
    assert main(["history", "--config", str(cfg)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert sorted(r[1] for r in rows if r[2:] == [moving, pinned]) == list(NAMES)  # per node, in `history`

    push_image(fleet[0], WEB2, regs.anon, f"pub/web:{tag}")  # the registry moves the tag
    remove_pods(fleet[1])
    remove_pods(fleet[2])
    fleet[2].podman("untag", moving, moving)  # even with the tag gone from the node
    out = sync(cfg)
    assert out.result == "applied" and out.actions, out.error
    assert [image_ids(svc) for svc in fleet] == [{one}] * 3

    always = deployment(moving, parallel=True, probe=False)
    container = always["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="Always", env=[{"name": "V", "value": "2"}])
    c2 = commit(repo, "v2: Always, a new template", always)
    assert sync(cfg).result == "applied"
    assert [image_ids(svc) for svc in fleet] == [{two}] * 3

    push_image(fleet[0], WEB1, regs.anon, f"pub/web:{tag}")  # moved back: a repair keeps v2's image
    remove_pods(fleet[0])
    assert sync(cfg).result == "applied"
    assert image_ids(fleet[0]) == {two}

    push_image(fleet[0], WEB2, regs.anon, f"pub/web:{tag}")
    repo.revert(c2)  # back to v1's template: the fast path runs v1's recorded image, not the tag's
    ev = Events()
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    assert out.rollout is not None and out.rollout.fast
    assert [image_ids(svc) for svc in fleet] == [{one}] * 3
    assert not ev.of("image.pull")  # every node still had it

    commit(repo, "v4: by digest", deployment(f"{regs.anon.host}/pub/web@{digest1}", parallel=True, probe=False))
    assert sync(cfg).result == "applied"
    assert [image_ids(svc) for svc in fleet] == [{one}] * 3


def test_prefetch_pulls_on_every_node_before_the_canary_starts(env: Any) -> None:
    """Over a throttled link, every node has the new image before the canary step starts (the
    relays' byte counts do not move once it has), and no node step pulls anything."""
    fleet, regs, repo, cfg = env
    variant = f"prefetch{os.getpid()}"
    local = f"localhost/gitops-test/{variant}:1"
    make_image(fleet[0], local, variant=variant)  # a layer no node has
    push_image(fleet[0], local, regs.anon, f"pub/{variant}:1")
    fleet[0].podman("rmi", "-f", local)  # node1 must download it as well
    for relay in regs.anon_relays:
        relay.rate = 300_000  # bytes/s per node: a slow edge link
    at_start = [r.bytes for r in regs.anon_relays]
    seen: dict[str, Any] = {}

    class AtCanary(Events):
        def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
            if event == "rollout.node" and fields["node"] == "n1":
                seen["bytes"] = [r.bytes for r in regs.anon_relays]
            super().__call__(event, level, **fields)

    ev = AtCanary()
    commit(repo, "v1", deployment(regs.anon.ref(f"pub/{variant}", "1")))
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    canary = ev.of("rollout.node")[0][0]
    prefetched = ev.of("prefetch.done")
    assert sorted(f["node"] for _, f in prefetched) == list(NAMES)
    assert all(t <= canary for t, _ in prefetched)
    assert all(t <= canary for t, _ in ev.of("image.pull"))  # no pull inside a node step
    assert len(ev.of("image.pull")) == 3
    moved = [b - a for a, b in zip(at_start, seen["bytes"])]
    assert all(m > 500_000 for m in moved), moved  # the image came over each node's slow link ...
    assert [r.bytes for r in regs.anon_relays] == seen["bytes"]  # ... all of it before the canary began
    assert max(f["seconds"] for _, f in prefetched) >= 1.5  # the throttle did bite


def test_image_gc_after_five_revisions_keeps_exactly_what_the_rule_says(env: Any) -> None:
    """With images.keepRevisions 2, after five revisions the node keeps the images of the current
    revision and the two stable ones before it; of the older ones it removes those it pulled,
    except one an unmanaged container uses; preloaded images stay."""
    fleet, regs, repo, cfg = env
    node = fleet[0]
    one_node(cfg, images={"keepRevisions": 2})
    refs, ids_of = [], []
    for i in range(1, 6):
        local = f"localhost/gitops-test/gc{os.getpid()}:{i}"
        ids_of.append(make_image(node, local, variant=f"gc{os.getpid()}-{i}"))
        push_image(node, local, regs.anon, f"pub/gc{os.getpid()}:{i}")
        node.podman("rmi", "-f", local)  # so the agent pulls it
        refs.append(regs.anon.ref(f"pub/gc{os.getpid()}", str(i)))

    def local_ids() -> set[str]:
        return set(node.podman("images", "-q", "--no-trunc").stdout.replace("sha256:", "").split())

    ev = Events()
    for i, ref in enumerate(refs, 1):
        commit(repo, f"v{i}", single(ref))
        assert sync(cfg, ev).result == "applied"

        if i == 1:  # someone else's container, made from the agent's image
            node.podman("create", "--name", f"unmanaged-{os.getpid()}", ref, "true")
    have = local_ids()
    assert {ids_of[0], ids_of[2], ids_of[3], ids_of[4]} <= have  # v1 (unmanaged user), v3-v5 (rule)
    assert ids_of[1] not in have  # v2: pulled by the agent, out of the window, unused
    assert {node.images[WEB1], node.images[WEB2]} <= have  # preloaded: never removed
    assert [f["image"] for _, f in ev.of("images.removed")] == [ids_of[1][:12]]
    st = status_of(cfg)
    sizes = json.loads(node.podman("images", "--format", "json").stdout)
    by_id = {i["Id"]: int(i["Size"]) for i in sizes}  # the CLI lists an image once per name
    assert st["nodes"][0]["imageBytes"] == sum(by_id.values()) > 0


def test_registry_killed_mid_pull_leaves_no_half_image_and_the_pull_completes_later(env: Any) -> None:
    """SIGKILL of the registry while a layer is on its way: the node has no trace of the image,
    its running pod is untouched, the node waits; once the registry is back the rollout completes."""
    fleet, regs, repo, cfg = env
    node = fleet[0]
    one_node(cfg)
    commit(repo, "v1", single(regs.public1))
    assert sync(cfg).result == "applied"
    before = ids(node)
    variant = f"killed{os.getpid()}"
    local = f"localhost/gitops-test/{variant}:1"
    make_image(node, local, variant=variant)
    push_image(node, local, regs.anon, f"pub/{variant}:1")
    node.podman("rmi", "-f", local)
    new = regs.anon.ref(f"pub/{variant}", "1")
    relay = regs.anon_relays[0]
    relay.rate = 200_000
    start = relay.bytes

    def kill_when_half_way() -> None:
        deadline = time.time() + 60
        while relay.bytes - start < 300_000 and time.time() < deadline:
            time.sleep(0.02)
        regs.anon.kill()
        # what the dead registry had already written sits in loopback's socket buffers, which a
        # real link would not have delivered: drop the connections in flight, as the crash would
        relay.refuse()
        relay.accept()

    killer = threading.Thread(target=kill_when_half_way)
    killer.start()
    commit(repo, "v2", single(new))
    out = sync(cfg)
    killer.join()

    assert relay.bytes - start >= 300_000  # it was killed mid-transfer, not before
    assert out.result == "progressing" and "ImagePullBackOff" in out.error, out.error
    assert node.podman("image", "exists", new, check=False).returncode == 1
    assert ids(node) == before

    relay.rate = None
    regs.anon.start()
    out = sync(cfg)
    assert out.result == "applied", out.error
    assert {repo for repo, _ in runs(node)} == {repo_of(new)}
    pod = next(iter(app_containers(node)))
    assert node.podman("exec", pod, "cat", "/www/index.html").stdout.strip() == variant


def registry_size(regs: Registries, repo_name: str, tag: str) -> int:
    """Config + layer bytes of a manifest, read from the registry itself (trusting its CA)."""
    ctx = ssl.create_default_context(cafile=str(regs.anon.ca))
    req = urllib.request.Request(f"https://{regs.anon.host}/v2/{repo_name}/manifests/{tag}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        manifest = json.load(resp)
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


def test_a_pull_that_would_not_fit_the_image_store_is_refused_before_it_starts(env: Any) -> None:
    """The node's free space is checked against the size the registry reports, keeping
    images.minFree free: too little is a clear error naming the sizes, and nothing changes."""
    fleet, regs, repo, cfg = env
    node = fleet[0]
    store = json.loads(node.podman("info", "--format", "json").stdout)["store"]
    free = int(store["graphRootAllocated"]) - int(store["graphRootUsed"])
    raw = one_node(cfg, images={"minFree": free - 200 * 2**20})  # room for a few MiB: the test image fits
    commit(repo, "v1", single(regs.public1))
    assert sync(cfg).result == "applied"
    before = ids(node)

    raw["images"] = {"minFree": free + 2**30}  # no room at all
    cfg.write_text(yaml.safe_dump(raw))
    commit(repo, "v2", single(regs.public2))
    out = sync(cfg)
    assert out.result == "failed", out.error
    size = apply_mod._size(registry_size(regs, "pub/web", "2"))
    assert f"pull {regs.public2}: not enough space in the node's image store: the registry reports {size}" in out.error
    assert node.podman("image", "exists", regs.public2, check=False).returncode == 1
    assert ids(node) == before


def test_preloaded_images_need_no_registry_and_are_never_collected(env: Any) -> None:
    """The air-gapped path: `Never` runs a preloaded image and refuses a missing one without a pull;
    a preloaded image with a registry name and IfNotPresent is not pulled (the registry has no
    such repository) and garbage collection leaves it, even with keepRevisions 0."""
    fleet, regs, repo, cfg = env
    node = fleet[0]
    one_node(cfg, images={"keepRevisions": 0})
    preloaded = regs.anon.ref(f"pre/loaded{os.getpid()}", "1")
    node.podman("tag", WEB1, preloaded)
    never = single(WEB1)
    never["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    ev = Events()
    commit(repo, "v1: Never, preloaded", never)
    assert sync(cfg, ev).result == "applied"
    before = ids(node)
    absent = single("localhost/gitops-test/absent:1")
    absent["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    commit(repo, "v2: Never, not there", absent)
    out = sync(cfg, ev)
    assert out.result == "failed"
    assert "image localhost/gitops-test/absent:1 is not on the node and imagePullPolicy is Never" in out.error
    assert ids(node) == before
    commit(repo, "v3: preloaded under a registry name", single(preloaded))
    assert sync(cfg, ev).result == "applied"
    assert runs(node) == {(repo_of(preloaded), node.images[WEB1])}
    commit(repo, "v4", single(WEB2))
    assert sync(cfg, ev).result == "applied"
    assert not ev.of("image.pull")  # nothing was ever pulled
    assert node.podman("image", "exists", preloaded, check=False).returncode == 0  # not collected
    assert not ev.of("images.removed")


def test_a_pull_slower_than_the_step_deadline_is_absorbed_by_the_prefetch(env: Any) -> None:
    """A pull that takes longer than a node step may (readyTimeout) completes in the prefetch,
    which is not bounded by the step's deadline; the step then pulls nothing and succeeds."""
    fleet, regs, repo, cfg = env
    node = fleet[0]
    one_node(cfg, readyTimeout="4s")
    commit(repo, "v1", single(regs.public1))
    assert sync(cfg).result == "applied"
    variant = f"slow{os.getpid()}"
    local = f"localhost/gitops-test/{variant}:1"
    make_image(node, local, variant=variant)
    push_image(node, local, regs.anon, f"pub/{variant}:1")
    node.podman("rmi", "-f", local)
    new = regs.anon.ref(f"pub/{variant}", "1")
    regs.anon_relays[0].rate = 100_000  # ~10 s for the layer: longer than the 4 s a step may take
    commit(repo, "v2", single(new))
    ev = Events()
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    (prefetched,) = [f for _, f in ev.of("prefetch.done")]
    assert prefetched["seconds"] > 4
    canary = ev.of("rollout.node")[0][0]
    assert all(t <= canary for t, _ in ev.of("image.pull"))
    assert {repo for repo, _ in runs(node)} == {repo_of(new)}


def test_doctor_checks_each_nodes_registry_with_the_credential_the_agent_would_send(
        env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor` asks each node's Podman for the manifest of every registry image the applied revision pulls
    there: it passes while the registry answers (here it asks for credentials, which only a pull sends), and
    names the registry with a fix once it does not answer; the pull secret is in no line it prints."""
    fleet, regs, repo, cfg = env
    one_node(cfg)
    doc = single(regs.private1)
    doc["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    commit(repo, "v1", pull_secret("regcred", regs.auth.host, PASSWORD), doc)
    assert sync(cfg).result == "applied"

    def registry_checks() -> list[dict[str, Any]]:
        capsys.readouterr()
        main(["doctor", "-c", str(cfg), "-o", "json"])
        out = capsys.readouterr().out
        assert PASSWORD not in out and base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in out
        return [c for c in json.loads(out)["checks"] if c["check"] == "registries"]

    (ok,) = registry_checks()
    assert ok["status"] == "pass" and ok["node"] == "n1", ok
    assert ok["detail"] == f"{regs.auth.host} answers for {regs.private1} (it asks for credentials: the pull sends them)"
    regs.auth.stop()
    (down,) = registry_checks()
    assert down["status"] == "fail" and down["detail"].startswith(f"{regs.auth.host} ({regs.private1}): "), down
    assert f"check that the node reaches {regs.auth.host}" in down["fix"]
