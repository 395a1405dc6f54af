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

Git (helpers in ``tests/gitrepo.py``):

``git_remote`` (function)
    A :class:`gitrepo.GitRemote` in ``tmp_path``: bare repo (``.url``) plus a
    working tree; ``.write() / .remove() / .commit_and_push() / .revert() /
    .head()``.

Tests using ``podman_service`` or ``clean_podman`` get the ``podman`` marker
automatically (``pytest -m "not podman"`` runs the rest).
"""

from __future__ import annotations

import pytest

from gitrepo import GitRemote
from podman_env import WEB1, WEB2, PodmanService, PodmanUnavailable, make_image, missing_tools

_PODMAN_FIXTURES = {"podman_service", "clean_podman"}


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
