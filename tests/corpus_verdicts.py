"""The verdict of `manifests.parse` on every file of the real-manifest corpus (tests/corpus/real), each file alone.

Pure: file bytes in, one verdict per YAML document out. A document is `accepted`, `alone` (its only problems are
references to objects another file would declare: a ConfigMap, Secret or PVC, or the namespace), `site` (its only
problems are those and names the site's agent config defines, none when a file is validated alone: a storage class
of `storageClasses:`, a node label of `nodes[].labels` a topology spread is over), `rejected` (with
the causes, the problems' messages with quoted values cut out), or `kind` (a kind gitops-agent does not manage, not
counted in the acceptance rate). `python tests/corpus_verdicts.py` prints the rate; with `--pin` it rewrites
tests/corpus/real/VERDICTS, which tests/test_corpus.py compares with today's verdicts so that a change shows.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from gitops_agent.config import NodeConfig
from gitops_agent.errors import Problem, RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import StorageClass

ROOT = Path(__file__).resolve().parent / "corpus" / "real"
PINNED = ROOT / "VERDICTS"
SUPPORTED = {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Pod", "Deployment", "DaemonSet",
             "Service", "ReplicationController", "ReplicaSet", "StatefulSet", "Job", "CronJob",
             "HorizontalPodAutoscaler"}
_CROSS_FILE = re.compile(r"does not exist in namespace|is not declared in the repository")
# a name the site's agent config defines (Kubernetes: a StorageClass object, a Node's labels), none when validated alone
_SITE = re.compile(r"is not in the agent config's storageClasses \(known: none\)|"
                   r"^[^:]*topologyKey: no node of the agent config declares label")


@dataclass(frozen=True)
class Verdict:
    file: str
    line: int  # the document's first line
    kind: str
    verdict: str  # accepted, alone, site, rejected, kind
    causes: tuple[str, ...] = ()

    def row(self) -> str:
        return "\t".join([f"{self.file}:{self.line}", self.kind, self.verdict, "; ".join(self.causes)]).rstrip()


def cause(path: str, message: str) -> str:
    """A problem without its values: `spec.containers[].resources.requests: field ... not supported`."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    path = re.sub(r"\[\d+\]", "[]", path)
    return f"{path}: {message}" if path else message


def _documents(data: bytes) -> list[tuple[int, str]]:
    """(first line, kind) of each non-empty document; [] if the file is not YAML a stock loader reads."""
    try:
        nodes = list(yaml.compose_all(data.decode("utf-8"), Loader=yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError):
        return []
    found = []
    for node in nodes:
        if isinstance(node, yaml.MappingNode):
            kind = next((v.value for k, v in node.value if k.value == "kind" and isinstance(v, yaml.ScalarNode)), "")
            found.append((node.start_mark.line + 1, kind))
    return found


def _problems(path: str, data: bytes, site: bool = False) -> list[Problem]:
    """The problems of the file validated alone; with `site`, under an agent config that defines every storage
    class and node label the problems say no config defines (the names a site's config would give)."""
    try:
        parse([SourceFile(path, data)])
        return []
    except RevisionRejected as rejected:
        problems = list(rejected.problems)
    if not site:
        return problems
    classes = {m: StorageClass() for p in problems for m in re.findall(r"storage class '([^']*)' is not", p.message)}
    labels = {m: "a" for p in problems for m in re.findall(r"declares label '([^']*)'", p.message)}
    try:
        parse([SourceFile(path, data)], nodes=(NodeConfig("local", labels=labels),), storage_classes=classes)
        return []
    except RevisionRejected as rejected:
        return list(rejected.problems)


def _causes_by_document(starts: list[int], problems: Iterable[Problem]) -> dict[int, tuple[str, ...]]:
    mine: dict[int, set[str]] = {line: set() for line in starts}
    for problem in problems:
        owner = max((line for line in starts if line <= problem.line), default=starts[0])
        mine[owner].add(cause(problem.path, problem.message))
    return {line: tuple(sorted(causes)) for line, causes in mine.items()}


def verdicts_of(path: str, data: bytes) -> list[Verdict]:
    """The verdict of each document of one file, validated alone: `site` when its only problems are references
    and names the site's config defines, and with those names defined it has no other problem."""
    documents = _documents(data) or [(1, "")]
    starts = [line for line, _ in documents]
    mine = _causes_by_document(starts, _problems(path, data))
    under_site: dict[int, tuple[str, ...]] | None = None
    result = []
    for line, kind in documents:
        causes = mine[line]
        if kind not in SUPPORTED:
            verdict = "kind"
        elif not causes:
            verdict = "accepted"
        elif all(_CROSS_FILE.search(text) for text in causes):
            verdict = "alone"
        elif all(_CROSS_FILE.search(text) or _SITE.search(text) for text in causes):
            if under_site is None:
                under_site = _causes_by_document(starts, _problems(path, data, site=True))
            verdict = "site" if all(_CROSS_FILE.search(text) for text in under_site[line]) else "rejected"
        else:
            verdict = "rejected"
        result.append(Verdict(path, line, kind, verdict, causes))
    return result


@cache
def corpus() -> tuple[Verdict, ...]:
    """Every document's verdict, in file and line order (computed once per process)."""
    files = sorted(p for p in ROOT.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return tuple(v for p in files for v in verdicts_of(p.relative_to(ROOT).as_posix(), p.read_bytes()))


def summary(verdicts: Iterable[Verdict]) -> str:
    counts = Counter(v.verdict for v in verdicts)
    supported = counts["accepted"] + counts["alone"] + counts["site"] + counts["rejected"]
    rate = 100 * (counts["accepted"] + counts["alone"] + counts["site"]) / supported
    strict = 100 * (counts["accepted"] + counts["alone"]) / supported
    return (f"{supported} documents of supported kinds: {counts['accepted']} accepted, {counts['alone']} accepted "
            f"but for a reference to another file, {counts['site']} accepted but for a name the site's agent config "
            f"defines, {counts['rejected']} rejected: {rate:.1f} % accepted ({strict:.1f} % without the "
            f"{counts['site']}); {counts['kind']} documents of other kinds")


def main(argv: list[str]) -> None:
    verdicts = corpus()
    if "--pin" in argv:
        PINNED.write_text("".join(v.row() + "\n" for v in verdicts))
    if "--causes" in argv:
        causes = Counter(c for v in verdicts if v.verdict == "rejected" for c in v.causes)
        for text, count in causes.most_common():
            print(f"{count:4d}  {text}")
    print(summary(verdicts))


if __name__ == "__main__":
    main(sys.argv[1:])
