"""Shared fixtures.

Podman (helpers in ``tests/podman_env.py``):

``podman_service`` (session)
    One private :class:`podman_env.PodmanService` for the whole session, own
    storage and socket under ``/tmp/gat-*``.  Use ``.url`` for the agent /
    podman-py (``unix:///tmp/gat-xxx/podman.sock``), ``.podman(*args)`` for the
    CLI on the same storage, ``.client()`` for a podman-py client.  Images
    ``localhost/gitops-test/web:1`` and ``localhost/gitops-test/web:2`` exist
    (``/www/index.html`` holds "1" / "2"; ``podman_service.images`` maps each
    ref to its image ID; the refs are ``podman_env.WEB1`` / ``WEB2``).  If Podman is missing or broken, the
    fixture FAILS (never skips): run ``bash .ci/setup``.

``clean_podman`` (function)
    The same session service, after removing every pod, container, volume,
    secret and network (except the default "podman"); restarted if a
    previous test stopped it.  Use this one in tests that create things.

``fleet`` (session)
    Three simulated nodes for multi-node tests: a list of three
    :class:`podman_env.PodmanService`, each with its own storage, socket and
    network-config dir, running in its OWN network namespace (``ip netns``
    named ``gatf<pid>-node<i>``, ``lo`` up; the service is wrapped in
    ``nsenter --net=/run/netns/...``) and its own mount namespace with a
    private netavark run dir (Podman 4.3 otherwise shares aardvark-dns and
    ipam state between all rootful services; see ``podman_env``).  Per node:
    ``.name`` ("node1".."node3", for the agent config), ``.url`` (unix socket
    URL for the agent / podman-py), ``.podman(*args)``, ``.client()``,
    ``.stop()`` / ``.start()`` (an unreachable node and its return:
    containers keep running meanwhile), ``.netns`` (namespace name: reach a
    node's published ports with ``podman_env.http_get(port, netns=svc.netns)``
    or ``nsenter --net=/run/netns/<svc.netns> ...``).  WEB1 and WEB2 are
    imported on every node (``.images``).  Nodes cannot reach each other or
    the root namespace (no veth links).  Teardown removes every node's
    containers and directory and deletes the namespaces, also after failures.
    Missing Podman/ip/nsenter/unshare: the fixture FAILS (never skips).

``clean_fleet`` (function)
    The same three nodes, each reset like ``clean_podman`` (stopped services
    started again; every pod, container, volume, secret and non-default
    network removed; images kept).  Use this one in tests that create things.

Git (helpers in ``tests/gitrepo.py``):

``git_remote`` (function)
    A :class:`gitrepo.GitRemote` in ``tmp_path``: bare repo (``.url``) plus a
    working tree; ``.write() / .remove() / .commit_and_push() / .revert() /
    .head()``.

Tests using ``podman_service``, ``clean_podman``, ``fleet`` or ``clean_fleet``
get the ``podman`` marker automatically (``pytest -m "not podman"`` runs the rest).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import podman_env
from gitrepo import GitRemote
from podman_env import (
    pid_alive,
    WEB1,
    WEB2,
    NodeNamespace,
    PodmanService,
    PodmanUnavailable,
    make_image,
    missing_tools,
    run_each,
    start_node,
    stop_node,
)

_PODMAN_FIXTURES = {"podman_service", "clean_podman", "fleet", "clean_fleet"}

# Podman services of the tests run their exec sessions' cleanup 5 s after the exec, not 300 s: removing a
# pod that ran probes then takes a fraction of a second instead of ~3.3 s (see podman_env.EXEC_EXIT_DELAY).
podman_env.EXEC_EXIT_DELAY = 5

#: Number of nodes in ``fleet``.
FLEET_SIZE = 3
#: ``ip netns`` names of fleet nodes: gatf<pid of the test session>-node<i>.
_FLEET_NS = re.compile(r"^gatf(\d+)-node\d+$")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _PODMAN_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.podman)


@pytest.fixture(scope="session")
def podman_service():
    """Session-wide private Podman service with WEB1 and WEB2 imported."""
    missing = missing_tools()
    if missing:
        pytest.fail(
            "Podman tests need: " + ", ".join(missing) + ". Run `bash .ci/setup` (as root) first.",
            pytrace=False,
        )
    try:
        service = PodmanService()
    except PodmanUnavailable as e:
        pytest.fail(f"cannot start a private Podman service: {e}", pytrace=False)
    try:
        make_image(service, WEB1, variant="1")
        make_image(service, WEB2, variant="2")
        yield service
    finally:
        service.cleanup()


@pytest.fixture
def clean_podman(podman_service):
    """The session service, emptied of pods/containers/volumes/networks/secrets."""
    podman_service.reset()
    return podman_service


@pytest.fixture
def git_remote(tmp_path):
    """A fresh GitRemote (bare repo + working tree) under tmp_path."""
    return GitRemote(tmp_path / "git")


# -- multi-node fleet -------------------------------------------------------------




def _remove_stale_fleet_namespaces() -> None:
    """``ip netns del`` fleet namespaces left by test sessions that died (SIGKILL)."""
    cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in cp.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _FLEET_NS.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _start_node(i: int) -> tuple[NodeNamespace, PodmanService]:
    """Namespaces + private service for node i, with WEB1 and WEB2 imported."""
    return start_node(f"gatf{os.getpid()}-node{i}", f"node{i}")


_stop_node = stop_node
_each = run_each


@pytest.fixture(scope="session")
def fleet():
    """Three private Podman services, each in its own network namespace, WEB1/WEB2 on each."""
    missing = missing_tools() + [t for t in ("ip", "nsenter", "unshare") if shutil.which(t) is None]
    if missing:
        pytest.fail(
            "Podman fleet tests need: " + ", ".join(missing) + ". Run `bash .ci/setup` (as root) first.",
            pytrace=False,
        )
    _remove_stale_fleet_namespaces()
    with ThreadPoolExecutor(max_workers=FLEET_SIZE) as pool:
        futures = [pool.submit(_start_node, i) for i in range(1, FLEET_SIZE + 1)]
    started = [f.result() for f in futures if f.exception() is None]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        try:
            _each(_stop_node, started)
        finally:
            e = errors[0]
            if isinstance(e, PodmanUnavailable):
                pytest.fail(f"cannot start the Podman fleet: {e}", pytrace=False)
            raise e
    try:
        yield [svc for _, svc in started]
    finally:
        _each(_stop_node, started)


@pytest.fixture
def clean_fleet(fleet):
    """The fleet's nodes, each emptied like ``clean_podman`` (and running again)."""
    _each(PodmanService.reset, fleet)
    return fleet
