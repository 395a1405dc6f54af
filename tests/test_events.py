"""The event contract: stable names, a `reason` on every line, the README table in step with events.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gitops_agent import events
from gitops_agent.reasons import Reason

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_event_is_in_the_readme_table_with_its_fields() -> None:
    for cls in events.ALL:
        row = next((line for line in README.splitlines() if line.strip().startswith(f"| `{cls.NAME}` |")), "")
        assert row, cls.NAME
        for name in (f.name for f in dataclasses.fields(cls)):
            if name not in ("outcome", "code"):
                assert f"`{name}`" in row, (cls.NAME, name)
    assert len({cls.NAME for cls in events.ALL}) == len(events.ALL)


def test_emit_writes_the_name_the_fields_and_the_reason_last() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    events.emit(lambda event, **fields: seen.append((event, fields)),
                events.StepFailed("n1", "pod web-1 failed", Reason.IMAGE_UNAVAILABLE, pod="web-1"))
    assert seen == [("rollout.node.failed", {"level": "error", "node": "n1", "error": "pod web-1 failed",
                                             "pod": "web-1", "reason": "ImageUnavailable"})]
    assert list(seen[0][1])[-1] == "reason"
    seen.clear()
    events.emit(lambda event, **fields: seen.append((event, fields)), events.RolloutEnd("main@x", "rolled-back", "1/2"))
    assert seen[0][1]["reason"] == "RolledBack" and "deferred" not in seen[0][1]


def test_reason_values_are_unique_and_stable_strings() -> None:
    values = [r.value for r in Reason]
    assert len(values) == len(set(values))
    assert str(Reason.REVISION_REJECTED) == "RevisionRejected"
    assert Reason("ImagePullBackOff") is Reason.IMAGE_PULL_BACKOFF
