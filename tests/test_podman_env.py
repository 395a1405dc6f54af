"""Sanity checks of the test harness itself: private Podman service, images, fleet, Git remote."""

from __future__ import annotations

from gitrepo import GitRemote, git
import os
import time

from podman_env import NETAVARK_RUN_DIR, WEB1, WEB2, PodmanService, http_get, make_image, ping


def test_service_answers_and_is_private(podman_service):
    assert podman_service.url.startswith("unix:///tmp/")
    assert ping(podman_service.sock)
    info = podman_service.podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    assert info == str(podman_service.root)
    with podman_service.client() as client:
        assert client.ping()
        tags = {t for img in client.images.list() for t in img.tags}
    assert {WEB1, WEB2} <= tags


def test_images_run_and_differ(clean_podman):
    out1 = clean_podman.podman("run", "--rm", WEB1, "cat", "/www/index.html").stdout
    out2 = clean_podman.podman("run", "--rm", WEB2, "cat", "/www/index.html").stdout
    assert (out1, out2) == ("1\n", "2\n")
    assert clean_podman.images[WEB1] != clean_podman.images[WEB2]
    # PATH=/bin is in the image config (kube play relies on it).
    env = clean_podman.podman("image", "inspect", "--format", "{{.Config.Env}}", WEB1).stdout
    assert "PATH=/bin" in env


def test_stop_start_keeps_containers(clean_podman):
    clean_podman.podman("run", "-d", "--name", "keeper", WEB1, "sleep", "300")
    clean_podman.stop()
    assert not clean_podman.running
    assert not ping(clean_podman.sock)
    clean_podman.start()
    with clean_podman.client() as client:
        c = client.containers.get("keeper")
        assert c.status == "running"


def test_clean_podman_starts_empty(clean_podman):
    svc = clean_podman
    assert svc.podman("ps", "-aq").stdout.strip() == ""
    assert svc.podman("pod", "ps", "-q").stdout.strip() == ""
    assert svc.podman("network", "ls", "--format", "{{.Name}}").stdout.split() == ["podman"]
    # leave some litter for the next test's clean_podman to remove
    svc.podman("network", "create", "litter")
    svc.podman("volume", "create", "litter")
    svc.podman("pod", "create", "--name", "litter")


def test_reset_removes_every_kind_and_keeps_the_images(clean_podman):
    """reset lists through the API and runs the CLI only for what is there: each kind still goes."""
    svc = clean_podman
    svc.podman("pod", "create", "--name", "gone-pod")
    svc.podman("create", "--pod", "gone-pod", "--name", "gone-in-pod", WEB1, "sleep", "300")
    svc.podman("run", "-d", "--name", "gone-alone", WEB1, "sleep", "300")
    svc.podman("volume", "create", "gone-vol")
    svc.podman("network", "create", "gone-net")
    svc.podman("secret", "create", "gone-secret", "-", input="x")
    svc.reset()
    assert svc.podman("ps", "-aq").stdout.split() == [] and svc.podman("pod", "ps", "-q").stdout.split() == []
    assert svc.podman("volume", "ls", "-q").stdout.split() == []
    assert svc.podman("network", "ls", "--format", "{{.Name}}").stdout.split() == ["podman"]
    assert svc.podman("secret", "ls", "--format", "{{.Name}}").stdout.split() == []
    images = svc.podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert {WEB1, WEB2} <= set(images)
    svc.reset()  # nothing left: no CLI call, nothing fails


def test_separate_services_do_not_share(tmp_path):
    with PodmanService() as other:
        make_image(other, "localhost/gitops-test/other:1", variant="other")
        out = other.podman("run", "--rm", "localhost/gitops-test/other:1", "cat", "/www/index.html").stdout
        assert out == "other\n"
        names = other.podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert WEB1 not in names
        base = other.base_dir
    assert not base.exists()


def test_git_remote_commit_push_revert(git_remote: GitRemote, tmp_path):
    git_remote.write("apps/web.yaml", "a: 1\n")
    first = git_remote.commit_and_push("add web")
    assert git_remote.head() == first
    git_remote.write("apps/web.yaml", "a: 2\n")
    second = git_remote.commit_and_push("change web")
    assert git_remote.head() == second != first
    third = git_remote.revert(second)
    assert git_remote.head() == third
    git_remote.remove("apps")
    fourth = git_remote.commit_and_push("remove apps")
    # A fresh clone of the remote sees exactly what was pushed.
    clone = tmp_path / "clone"
    git("clone", "-q", git_remote.url, str(clone))
    assert git("rev-parse", "HEAD", cwd=clone) == fourth
    assert git("branch", "--show-current", cwd=clone) == "main"
    git("checkout", "-q", third, cwd=clone)
    assert (clone / "apps/web.yaml").read_text() == "a: 1\n"


# -- multi-node fleet -------------------------------------------------------------


def _poll(fn, timeout: float = 30.0, interval: float = 0.1):
    """fn() until it returns something truthy (returned) or timeout (last value returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_fleet_nodes_run_in_their_own_namespaces(fleet):
    assert [svc.name for svc in fleet] == ["node1", "node2", "node3"]
    own_net, own_mnt = _ns_inode("/proc/self/ns/net"), _ns_inode("/proc/self/ns/mnt")
    nets, mnts = set(), set()
    for svc in fleet:
        assert svc.running and ping(svc.sock) and svc.url == f"unix://{svc.sock}"
        # nsenter exec()s podman: the service process itself is in the node's namespaces.
        cmdline = open(f"/proc/{svc.pid}/cmdline", "rb").read().split(b"\0")
        assert os.path.basename(cmdline[0]) == b"podman" and b"service" in cmdline
        net = _ns_inode(f"/proc/{svc.pid}/ns/net")
        assert net == _ns_inode(f"/run/netns/{svc.netns}") != own_net
        mnt = _ns_inode(f"/proc/{svc.pid}/ns/mnt")
        assert mnt != own_mnt
        nets.add(net)
        mnts.add(mnt)
        # netavark's run dir is a private tmpfs inside the node (Podman 4.3 quirk).
        mountinfo = open(f"/proc/{svc.pid}/mountinfo").read()
        assert f" {NETAVARK_RUN_DIR} " in mountinfo
    assert len(nets) == len(mnts) == 3


def test_fleet_nodes_are_separate(clean_fleet):
    node1, node2, node3 = clean_fleet
    node1.podman("create", "--name", "only-on-1", WEB1, "sleep", "300")
    assert node1.podman("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["only-on-1"]
    for other in (node2, node3):
        assert other.podman("ps", "-aq").stdout.strip() == ""
        with other.client() as client:
            assert client.containers.list(all=True) == []
    roots = [svc.podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip() for svc in clean_fleet]
    assert roots == [str(svc.root) for svc in clean_fleet]
    assert len(set(roots)) == 3
    for svc in clean_fleet:
        with svc.client() as client:
            tags = {t for img in client.images.list() for t in img.tags}
        assert {WEB1, WEB2} <= tags


def _serve_on_8080(svc: PodmanService, marker: str) -> None:
    """Pod "web" publishing host port 8080, serving WEB1's page plus a marker line."""
    svc.podman("pod", "create", "--name", "web", "-p", "8080:8080")
    script = f"mkdir /tmp/www && cat /www/index.html > /tmp/www/index.html && echo {marker} >> /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
    svc.podman("run", "-d", "--pod", "web", "--name", "web-httpd", WEB1, "sh", "-c", script)


def test_fleet_nodes_publish_the_same_port(clean_fleet):
    node1, node2, node3 = clean_fleet
    marker1, marker2 = f"node1-{os.getpid()}", f"node2-{os.getpid()}"
    _serve_on_8080(node1, marker1)
    _serve_on_8080(node2, marker2)  # the same host port, on another node: no conflict
    page1 = _poll(lambda: http_get(8080, netns=node1.netns))
    page2 = _poll(lambda: http_get(8080, netns=node2.netns))
    assert page1 == f"1\n{marker1}\n"
    assert page2 == f"1\n{marker2}\n"
    # Node 3 publishes nothing; the root namespace does not see the nodes' ports
    # (something else of the host's may listen on 8080, but never with our page).
    assert http_get(8080, netns=node3.netns, timeout=2) is None
    root = http_get(8080, timeout=2)
    assert root is None or marker1 not in root


def test_fleet_container_dns_on_every_node(clean_fleet):
    """Each node has its own aardvark-dns (private netavark run dir): names resolve on all."""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web 8080"
    for i, svc in enumerate(clean_fleet, 1):
        svc.podman("network", "create", "appnet")
        svc.podman("run", "-d", "--name", "web", "--network", "appnet", WEB2 if i == 2 else WEB1,
                   "httpd", "-f", "-p", "8080", "-h", "/www")
    for i, svc in enumerate(clean_fleet, 1):
        out = _poll(lambda: svc.podman("run", "--rm", "--network", "appnet", WEB1, "sh", "-c", request,
                                       check=False, timeout=60).stdout, timeout=60, interval=0.5)
        assert out.endswith("\n\n2\n" if i == 2 else "\n\n1\n"), (svc.name, out)


def test_fleet_node_outage_and_return(clean_fleet):
    node1, node2, node3 = clean_fleet
    for svc in clean_fleet:
        svc.podman("run", "-d", "--name", f"keeper-{svc.name}", WEB1, "sleep", "300")
    node2.stop()
    try:
        assert not node2.running and not ping(node2.sock)
        for svc in (node1, node3):
            assert ping(svc.sock)
            with svc.client() as client:
                assert [c.name for c in client.containers.list()] == [f"keeper-{svc.name}"]
    finally:
        node2.start()
    assert ping(node2.sock)
    with node2.client() as client:
        c = client.containers.get("keeper-node2")
        assert c.status == "running"
