"""Sanity checks of the test harness itself: private Podman service, images, Git remote."""

from __future__ import annotations

from gitrepo import GitRemote, git
from podman_env import WEB1, WEB2, PodmanService, make_image, ping


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
