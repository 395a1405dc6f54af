"""PURE: `immutable: true` ConfigMaps and Secrets across revisions, as the Kubernetes API server checks an update.

A new revision from Git is checked against each revision its nodes run (the applied one, and the target of an
unfinished rollout) by `agent.Agent`, before any node is touched: an object that is immutable there keeps its
data (ConfigMap data and binaryData, Secret data and stringData, compared decoded) and stays immutable, else the
revision is rejected. Within one revision there is nothing to check (`convert` reads the field). It must not
quote a value: a Secret's never appears in a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .. import model
from ..errors import Problem

_WHAT_TO_DO = ("as in Kubernetes: give the new data a ConfigMap or Secret of a new name (and point the pods at it), "
               "or delete this one in a commit of its own first")


def check_immutable(running: Iterable[model.Revision], new: model.Revision) -> list[Problem]:
    """Every object of `new` (and of each of its per-node variants) that is immutable in a revision of `running`
    (the same node's variant) and has other data there, or is no longer immutable; one problem per object."""
    found: dict[tuple[str, str], Problem] = {}
    for before in running:
        for old, now in _pairs(before, new):
            for problem in _changed(old, now, before.id):
                found.setdefault((problem.object, problem.path), problem)
    return sorted(found.values(), key=lambda p: (p.file, p.line, p.object))


def _pairs(before: model.Revision, new: model.Revision) -> Iterator[tuple[model.Revision, model.Revision]]:
    """(the running revision, the new one) as a node sees them: the shared objects, then each node's variant."""
    yield before, new
    for node in sorted(set(before.variants) | set(new.variants)):
        yield before.variants.get(node, before), new.variants.get(node, new)


def _changed(old: model.Revision, new: model.Revision, running: str) -> Iterator[Problem]:
    frozen = {o.ref: o for o in old.objects if isinstance(o, model.ConfigData) and o.immutable}
    for obj in new.objects:
        was = frozen.get(obj.ref) if isinstance(obj, model.ConfigData) else None
        if was is None or not isinstance(obj, model.ConfigData):
            continue
        label = f"{obj.ref.kind}/{obj.ref.name}"
        where = f"{obj.ref.kind} {obj.ref.name!r} is immutable in revision {running}, which the nodes run"
        if not obj.immutable:
            yield Problem(obj.origin.file, obj.origin.line, label, "immutable",
                          f"{where}: it cannot be made mutable again, {_WHAT_TO_DO}")
        elif dict(obj.data) != dict(was.data):
            keys = sorted(set(obj.data) ^ set(was.data) | {k for k in obj.data if was.data.get(k) != obj.data[k]})
            yield Problem(obj.origin.file, obj.origin.line, label, "data",
                          f"{where}: its data cannot change (key(s) {', '.join(map(repr, keys))}), {_WHAT_TO_DO}")
