"""Hostile and odd input, the pure parts (issue 15): no message quotes a Secret's value, `validate` knows
what the node refuses (Podman's limits, the config's `limits:`), and paths print the way Git prints them.
The end-to-end side (real Git, real Podman, state store and CLI output) is tests/test_bad_input.py."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bad_corpus import CANARY_B64, GOOD_DEPLOY, NODE_LIMITS, SECRET_CANARY, SECRET_LEAKS
from gitops_agent import desired, model
from gitops_agent.config import NodeConfig
from gitops_agent.errors import Problem, RevisionRejected, quote_path
from gitops_agent.manifests import PODMAN_NAME_LIMITS, SourceFile, parse

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def rejected(named: dict[str, bytes | tuple[str, str]], **kwargs: Any) -> list[str]:
    with pytest.raises(RevisionRejected) as error:
        parse([SourceFile(path, data) for path, data in named.items() if isinstance(data, bytes)], **kwargs)
    return [str(problem) for problem in error.value.problems]


@pytest.mark.parametrize("name", list(SECRET_LEAKS))
def test_no_message_quotes_a_secret_value(name: str) -> None:
    """Every path that builds a message from a Secret's value rejects the file and names the key, never the value."""
    messages = rejected({"s.yaml": SECRET_LEAKS[name]})
    assert messages and all(message.startswith("s.yaml:") for message in messages), messages
    text = "\n".join(messages)
    assert SECRET_CANARY not in text and CANARY_B64 not in text and SECRET_CANARY[:11] not in text, text


def test_a_secret_value_that_shows_up_in_another_message_is_redacted() -> None:
    """The net under the rule: a message that would contain a Secret's value (here a name it is reused as)
    gets `<redacted>` instead, whether the value was written as text or as base64."""
    secret = b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {A: web-config-x}\n" \
             b"data: {B: " + base64.b64encode(b"other-config") + b"}\n"
    pod = GOOD_DEPLOY.replace("image: localhost/gitops-test/web:1}",
                              "image: localhost/gitops-test/web:1, envFrom: [{configMapRef: {name: web-config-x}},"
                              " {configMapRef: {name: other-config}}]}")
    messages = rejected({"s.yaml": secret, "web.yaml": pod.encode()})
    assert messages == [
        "web.yaml:10: Deployment/web: spec.template.spec.containers[0].envFrom[0].configMapRef.name: "
        "ConfigMap '<redacted>' does not exist in namespace 'default'",
        "web.yaml:10: Deployment/web: spec.template.spec.containers[0].envFrom[1].configMapRef.name: "
        "ConfigMap '<redacted>' does not exist in namespace 'default'",
    ]


@pytest.mark.parametrize("name", list(NODE_LIMITS))
def test_validate_rejects_what_the_node_refuses(name: str) -> None:
    """Each input the node would refuse (measured on Podman 4.3) is rejected by validate, at its file and line."""
    files, fragment = NODE_LIMITS[name]
    messages = rejected(files)
    assert any(fragment in message for message in messages), messages
    assert all(message.startswith(quote_path(next(iter(files))) + ":") for message in messages), messages


def test_values_of_511999_bytes_and_one_byte_are_accepted() -> None:
    """The edges of Podman's secret size, 1 and 511999 bytes, are valid when mounted as files."""
    files, _ = NODE_LIMITS["value of exactly 512000 bytes"]
    text = files["web.yaml"].decode().replace("x" * 512_000, "x" * 511_999)  # type: ignore[union-attr]
    parse([SourceFile("web.yaml", text.encode())])
    parse([SourceFile("web.yaml", text.replace("x" * 511_999, "x").encode())])


def test_name_limits_are_checked_on_the_names_desired_gives() -> None:
    """The longest PVC name whose volume name fits is accepted, one more character is not; the limit follows
    `desired.volume_name`, so a change of naming scheme moves it."""
    fits = PODMAN_NAME_LIMITS["volume"] - len(desired.volume_name("default", ""))
    claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {}}}\n" \
            "spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"
    parse([SourceFile("c.yaml", claim.format("c" * min(fits, 253)).encode())])
    if fits < 253:
        messages = rejected({"c.yaml": claim.format("c" * (fits + 1)).encode()})
        assert messages == [f"c.yaml:3: PersistentVolumeClaim/{'c' * (fits + 1)}: metadata.name: its Podman volume "
                            f"would be named {repr(desired.volume_name('default', 'c' * (fits + 1)))[:57]}... "
                            f"({PODMAN_NAME_LIMITS['volume'] + 1} characters), longer than Podman's limit of 255: "
                            "use a shorter name"]


def _integer_schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            found.append((path, node))
        for key, value in node.items():
            found += _integer_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _integer_schemas(value, f"{path}/{index}")
    return found


def test_every_integer_field_has_the_range_the_node_accepts() -> None:
    """Every integer in the manifest schemas is bounded both ways (directly or through a $ref to one that is),
    so no value beyond what Podman and the kernel take passes validate."""
    integers = [(f"{schema.name}{path}", node) for schema in sorted(SCHEMAS.glob("*.json"))
                for path, node in _integer_schemas(json.loads(schema.read_text()))]
    assert len(integers) >= 8
    unbounded = [where for where, node in integers if "maximum" not in node or "minimum" not in node]
    assert unbounded == []
    refs = [ref for schema in SCHEMAS.glob("*.json") for ref in _refs(json.loads(schema.read_text()))]
    assert "terminationGracePeriodSeconds" in {name for name, _ in refs}


def _refs(node: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        own = [(key, node["$ref"])] if "$ref" in node else []
        return own + [ref for k, v in node.items() for ref in _refs(v, k)]
    if isinstance(node, list):
        return [ref for v in node for ref in _refs(v, key)]
    return []


def test_replicas_100000_are_refused_from_placement_alone() -> None:
    """replicas: 100000 is refused in well under a second with one problem per limit, no pod spec built."""
    files, _ = NODE_LIMITS["replicas: 100000"]
    started = time.monotonic()
    messages = rejected(files)
    assert time.monotonic() - started < 1.0
    assert messages == [
        "web.yaml:5: Deployment/web: spec.replicas: the revision would run 100000 pods over all nodes; "
        "limits.maxReplicasPerRevision is 10000",
        "web.yaml:5: Deployment/web: spec.replicas: 1 node(s) would run more than limits.maxPodsPerNode (110) pods: "
        "local 100000",
    ]


def test_pods_per_node_follow_placement_over_the_nodes() -> None:
    """330 replicas over 3 matching nodes are 110 each (the limit); 331 put 111 on the first; a DaemonSet
    counts one pod on every matching node (all four here); a custom limit applies."""
    nodes = tuple(NodeConfig(f"n{i}", labels={"zone": "a"}) for i in range(3)) + (NodeConfig("other"),)
    deploy = GOOD_DEPLOY.replace("    spec:\n", "    spec:\n      nodeSelector: {zone: a}\n")
    parse([SourceFile("web.yaml", deploy.replace("replicas: 1", "replicas: 330").encode())], nodes=nodes)
    messages = rejected({"web.yaml": deploy.replace("replicas: 1", "replicas: 331").encode()}, nodes=nodes)
    assert messages == ["web.yaml:5: Deployment/web: spec.replicas: 1 node(s) would run more than "
                        "limits.maxPodsPerNode (110) pods: n0 111"]
    daemon = GOOD_DEPLOY.replace("kind: Deployment", "kind: DaemonSet").replace("  replicas: 1\n", "") \
        .replace("metadata: {name: web}", "metadata: {name: agent}")
    small = model.NodeLimits(max_pods_per_node=3, max_replicas_per_revision=7)
    messages = rejected({"d.yaml": daemon.encode(), "web.yaml": deploy.replace("replicas: 1", "replicas: 6").encode()},
                        nodes=nodes, node_limits=small)
    assert messages == [
        "web.yaml:5: Deployment/web: spec.replicas: the revision would run 10 pods over all nodes; "
        "limits.maxReplicasPerRevision is 7",
    ]
    messages = rejected({"d.yaml": daemon.encode(), "web.yaml": deploy.replace("replicas: 1", "replicas: 7").encode()},
                        nodes=nodes, node_limits=model.NodeLimits(max_pods_per_node=3))
    assert messages == ["web.yaml:5: Deployment/web: spec.replicas: 1 node(s) would run more than "
                        "limits.maxPodsPerNode (3) pods: n0 4"]


@pytest.mark.parametrize("name", ["plain/path.yaml", "a\nb.yaml", "tab\there.yaml", 'q"uote.yaml', "back\\slash.yaml",
                                  "caf\u00e9.yaml", "del\x7f.yaml", "bell\a.yaml", "sp ace.yaml"])
def test_paths_are_quoted_as_git_quotes_them(name: str, tmp_path: Path) -> None:
    """`quote_path` prints a path exactly as `git ls-files` does with core.quotePath (real Git)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("x")
    listed = subprocess.run(["git", "-C", str(tmp_path), "ls-files", "--others"], capture_output=True, check=True)
    assert quote_path(name) == listed.stdout.decode().removesuffix("\n")
    assert "\n" not in str(Problem(name, 3, "Pod/p", "spec", "bad"))


EMPTY_SECRET_ENV = b"""\
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {TOKEN: t0ken, EMPTY: ''}
---
""" + GOOD_DEPLOY.replace(
    "image: localhost/gitops-test/web:1}",
    'image: localhost/gitops-test/web:1, command: [httpd, "-f", "-p", "8080", "-h", /www], '
    "envFrom: [{secretRef: {name: creds}}], env: [{name: ONE, valueFrom: {secretKeyRef: {name: creds, key: EMPTY}}}]}",
).encode()


def test_an_empty_secret_value_in_the_environment_is_plain_env() -> None:
    """Podman cannot store a 0-byte secret, so an empty Secret value in the environment is passed as plain env
    (it reveals nothing); the other keys stay Podman secrets."""
    revision = parse([SourceFile("web.yaml", EMPTY_SECRET_ENV)])
    node = desired.compile_node(revision, NodeConfig("local"), (NodeConfig("local"),))
    (container,) = node.workloads[0].pods[0].containers
    assert dict(container.env) == {"EMPTY": "", "ONE": ""}
    assert list(container.secret_env) == ["TOKEN"]
    assert [secret.key for secret in node.secrets] == ["TOKEN"]
