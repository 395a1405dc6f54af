"""The real-manifest corpus (tests/corpus/real, origins in its README): each file validated alone, every document's
verdict and causes pinned in tests/corpus/real/VERDICTS, so that an acceptance or a rejection that changes shows.

After a deliberate change, re-pin with `PYTHONPATH=. .venv/bin/python tests/corpus_verdicts.py --pin` and update the
acceptance rate recorded in tests/corpus/real/README.md and README.md.
"""

from __future__ import annotations

from typing import Any

from corpus_verdicts import PINNED, ROOT, corpus, summary, verdicts_of
from podman_env import WEB1

from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import Workload


def test_every_verdict_is_the_pinned_one() -> None:
    verdicts = corpus()
    print(summary(verdicts))
    assert [v.row() for v in verdicts] == PINNED.read_text().splitlines()


def test_the_corpus_is_large_enough_and_its_readme_records_todays_rate() -> None:
    verdicts = corpus()
    supported = [v for v in verdicts if v.verdict != "kind"]
    assert len(supported) >= 200
    for readme in (ROOT / "README.md", ROOT.parents[2] / "README.md"):
        assert summary(verdicts) in readme.read_text().replace("\n", " "), readme


PVC = ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  storageClassName: fast\n"
       "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n")


def test_a_site_verdict_needs_the_document_accepted_once_the_config_defines_its_names() -> None:
    """`site`: the storage class the site's config would define is the only problem; any other problem (a volume
    that lives on one node cannot be ReadWriteMany, a claim bound to a PersistentVolume) keeps it rejected."""
    (site,) = verdicts_of("pvc.yaml", PVC.encode())
    assert (site.verdict, site.causes) == ("site", (
        "spec.storageClassName: storage class '…' is not in the agent config's storageClasses (known: none); "
        "define it there, or remove the field for the default volume",))
    (rejected,) = verdicts_of("pvc.yaml", PVC.replace("ReadWriteOnce", "ReadWriteMany").encode())
    assert rejected.verdict == "rejected"
    (other,) = verdicts_of("pvc.yaml", PVC.replace("fast", "'fast'\n  volumeName: pv1").encode())
    assert other.verdict == "rejected"


def test_podman_kube_generate_output_is_accepted_as_it_is(clean_podman: Any) -> None:
    """Real Podman: what `podman kube generate` writes for a pod (server-set fields, empty objects and all) is
    accepted without a change."""
    svc = clean_podman
    svc.podman("pod", "create", "--name", "gen")
    svc.podman("create", "--pod", "gen", "--name", "gen-main", "-e", "MODE=edge", WEB1, "sleep", "1000")
    text = svc.podman("kube", "generate", "gen").stdout
    revision = parse([SourceFile("gen.yaml", text.encode())])
    (pod,) = revision.objects
    assert isinstance(pod, Workload) and pod.ref.name == "gen"
    (container,) = pod.template.containers
    assert container.image == WEB1 and container.command == ("sleep", "1000")
    # what Podman 4.3 writes and means nothing on a node is warned about, not silently dropped
    assert [w.split(": ")[2] for w in revision.warnings] == ["spec.automountServiceAccountToken",
                                                             "spec.enableServiceLinks"]
