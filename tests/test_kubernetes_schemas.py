"""Our manifests stay valid Kubernetes (issue 14, "Kubernetes, when a site needs it"): the same repository must work
with Flux or Argo CD on a k3s cluster, so every manifest we ship or commit in tests passes the upstream Kubernetes
JSON schemas in strict mode (unknown fields rejected), as `kubernetes-validate` ships them (offline: the schemas are
in the wheel). Checked against the oldest and the newest Kubernetes version the package ships.

What is validated: every document of sample-repo/; the manifests the e2e user story commits (tests/test_e2e.py's
constants and its Deployment at both images) and the module-level manifest constants of the other e2e modules; the
benchmark harness's `validate` set; and every document of the real-manifest corpus that `manifests.parse` accepts
(tests/corpus/real/VERDICTS: `accepted` or `alone`), which is the claim that gitops-agent accepts a strict subset
of Kubernetes. Pure: no Podman, no network.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from gitops_agent import sops
from corpus_verdicts import ROOT as CORPUS, corpus
from podman_env import WEB1, WEB2

REPO = Path(__file__).resolve().parent.parent
#: e2e modules whose module-level string constants hold manifests they commit to the test repository
E2E_MODULES = ("test_e2e", "test_ownership_e2e", "test_daemon", "test_mappings", "test_policy", "test_pod_volumes",
               "test_cronjob_e2e", "test_hpa_e2e")
VERSIONS = (kv_utils.all_versions()[0], kubernetes_validate.latest_version())

Document = tuple[str, dict[str, Any]]  # (where it comes from, the object)


def documents(label: str, text: str) -> Iterator[Document]:
    """Each mapping document of a YAML text, labelled `label:LINE` with the document's first line."""
    nodes = yaml.compose_all(text, Loader=yaml.SafeLoader)
    for node, doc in zip(nodes, yaml.safe_load_all(text)):
        if isinstance(doc, dict):
            yield f"{label}:{node.start_mark.line + 1}", doc


def problems(docs: Iterable[Document], version: str) -> list[str]:
    """One line per document the upstream schema of `version` rejects in strict mode: where, object, field, why."""
    found = []
    for where, doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            field = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            found.append(f"{where}: {name}: {field}: {e.message}")
        except kv_utils.SchemaNotFoundError as e:
            found.append(f"{where}: {name}: {e.message}")
    return found


def sample_repo() -> list[Document]:
    """Every document of sample-repo/; a SOPS-encrypted one as the agent sees it, decrypted with the demo key."""
    files = sorted(p for p in (REPO / "sample-repo").rglob("*") if p.suffix in (".yaml", ".yml"))
    demo_key = REPO / "sample-repo" / ".sops-demo" / "DEMO-ONLY-age-key.txt"

    def text(p: Path) -> str:
        data = p.read_bytes()
        return (sops.decrypt(p.name, data, [demo_key]) if sops.is_encrypted(data) else data).decode()

    return [d for p in files for d in documents(str(p.relative_to(REPO)), text(p))]


def e2e_manifests() -> list[Document]:
    found: list[Document] = []
    for module_name in E2E_MODULES:
        module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if isinstance(value, str) and "apiVersion:" in value and "kind:" in value:
                found += documents(f"tests/{module_name}.py:{name}", value)
    e2e = importlib.import_module("test_e2e")
    for image in (WEB1, WEB2):
        found += documents(f"tests/test_e2e.py:deployment({image})", e2e.deployment(image))
    return found


def benchmark_manifests(tmp: Path) -> list[Document]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.workloads import write_manifests

    write_manifests(tmp, 8)  # two groups: ConfigMap, Secret, Deployment, Service
    return [d for p in sorted(tmp.rglob("*.yaml")) for d in documents(f"benchmarks:{p.name}", p.read_text())]


@cache
def _corpus_documents(file: str) -> dict[str, dict[str, Any]]:
    return dict(documents(file, (CORPUS / file).read_text()))


def accepted_corpus() -> list[Document]:
    """The corpus documents `manifests.parse` accepts (alone, or but for a reference to another file)."""
    keep = [v for v in corpus() if v.verdict in ("accepted", "alone")]
    return [(f"tests/corpus/real/{v.file}:{v.line}", _corpus_documents(v.file)[f"{v.file}:{v.line}"]) for v in keep]


@pytest.mark.parametrize("version", VERSIONS)
def test_sample_repo_is_valid_kubernetes_in_strict_mode(version: str) -> None:
    """Every document of sample-repo/ passes the upstream schemas, strict."""
    docs = sample_repo()
    assert {d["kind"] for _, d in docs} >= {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim",
                                             "Deployment", "Service"}
    assert problems(docs, version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_the_manifests_the_e2e_tests_commit_are_valid_kubernetes(version: str, tmp_path: Path) -> None:
    """The e2e tests' manifest constants and the benchmark harness's manifests pass the upstream schemas, strict."""
    docs = e2e_manifests() + benchmark_manifests(tmp_path)
    assert len(docs) >= 20, [w for w, _ in docs]
    assert problems(docs, version) == []


def test_every_corpus_document_gitops_agent_accepts_is_valid_kubernetes() -> None:
    """What manifests.parse accepts is a subset of Kubernetes: no accepted document fails upstream strict mode."""
    docs = accepted_corpus()
    assert len(docs) >= 150
    assert problems(docs, kubernetes_validate.latest_version()) == []


def test_strict_mode_rejects_a_misspelled_field_that_loose_mode_lets_through() -> None:
    """The check has teeth: `replica:` (for `replicas:`) fails strict validation, names the field, and passes loose."""
    text = (REPO / "sample-repo" / "web" / "deployment.yaml").read_text().replace("  replicas:", "  replica:", 1)
    [(where, doc)] = list(documents("deployment.yaml", text))
    assert "replica" in doc["spec"] and "replicas" not in doc["spec"]
    [problem] = problems([(where, doc)], kubernetes_validate.latest_version())
    assert problem.startswith("deployment.yaml:") and "Deployment/web: spec: " in problem and "'replica'" in problem
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=False)  # loose: no error
