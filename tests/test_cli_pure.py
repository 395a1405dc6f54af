"""Pure parts of the operator commands, from literals: what `logs`/`describe` accept,
`--since`, the completion scripts generated from the parser, doctor's verdict."""

from __future__ import annotations

import pytest

from gitops_agent.cli import _parser
from gitops_agent.completion import script
from gitops_agent.doctor import FAIL, PASS, SKIP, Result, as_json, ok
from gitops_agent.logs import BadSelector, Selector, parse_selector, parse_since
from gitops_agent.model import ObjectRef


def test_selectors_take_kind_namespace_name_short_kinds_or_a_pod_name() -> None:
    """Deployment/demo/web and deploy/demo/web name the same workload; one word is a pod's name."""
    web = ObjectRef("Deployment", "demo", "web")
    assert parse_selector("Deployment/demo/web") == parse_selector("deploy/demo/web") == Selector(ref=web)
    assert parse_selector("sts/db/pg").ref == ObjectRef("StatefulSet", "db", "pg")
    assert parse_selector("rs/default/frontend").ref == ObjectRef("ReplicaSet", "default", "frontend")
    assert parse_selector("job/default/migrate").ref == ObjectRef("Job", "default", "migrate")
    assert parse_selector("web-abc12-x0") == Selector(pod="web-abc12-x0")
    assert Selector(ref=web).matches("anything", web) and not Selector(pod="p").matches("q", None)


@pytest.mark.parametrize("text", ["", "demo/web", "Deployment//web", "Widget/demo/web", "a/b/c/d"])
def test_bad_selectors_are_clear_errors(text: str) -> None:
    """A selector that is not KIND/NAMESPACE/NAME or a pod name says what to give."""
    with pytest.raises(BadSelector):
        parse_selector(text)


def test_since_durations() -> None:
    """30s, 10m, 2h, 1d count back from now; anything else is a clear error."""
    assert parse_since("30s", 1000.0) == 970.0 and parse_since("10m", 1000.0) == 400.0
    assert parse_since("2h", 10_000.0) == 2800.0 and parse_since("1d", 100_000.0) == 13_600.0
    with pytest.raises(BadSelector, match="30s, 10m"):
        parse_since("yesterday", 0.0)


def test_completion_scripts_name_every_command_and_flag() -> None:
    """bash, zsh and fish scripts are generated from the parser: commands, flags, flag values, object names."""
    p = _parser()
    bash, zsh, fish = (script(s, p) for s in ("bash", "zsh", "fish"))
    for cmd in ("sync", "status", "describe", "logs", "doctor", "completion"):
        assert cmd in bash and f"-a {cmd} " in fish
    assert '"logs --tail")' not in bash and "--follow" in bash and '"status -o") COMPREPLY' in bash
    assert "complete -o default -F _gitops_agent gitops-agent" in bash and "gitops-agent completion --objects" in bash
    assert zsh.startswith("#compdef gitops-agent") and "bashcompinit" in zsh and "_gitops_agent()" in zsh
    assert "-l output -s o -xa 'table wide json yaml'" in fish and "(gitops-agent completion --objects" in fish


def test_doctor_passes_only_without_failures() -> None:
    """A skipped check does not fail doctor; one failure does; JSON carries each result."""
    good = [Result("git", PASS, "ok"), Result("container-start", SKIP, "no image", node="n1")]
    assert ok(good) and as_json(good)["ok"] is True
    bad = good + [Result("state-dir", FAIL, "read-only", "chmod")]
    assert not ok(bad) and as_json(bad)["checks"][2] == {"check": "state-dir", "status": "fail", "detail": "read-only",
                                                          "fix": "chmod", "node": ""}


def test_every_command_help_shows_an_example() -> None:
    """`--help` of each command ends with an example line."""
    p = _parser()
    sub = next(a for a in p._actions if a.dest == "command")
    for name, sp in sub.choices.items():  # type: ignore[attr-defined]
        assert "example:\n  gitops-agent " in sp.format_help(), name
