"""The agent config file is checked against the JSON schema shipped in the package
(gitops_agent/data/config.schema.json): every problem at once, at FILE:LINE, exit code 2, never a
traceback; the `limits:` section."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from gitops_agent import config as config_mod
from gitops_agent.cli import main
from gitops_agent.errors import ConfigError
from gitops_agent.model import NodeLimits


def load_error(tmp_path: Path, data: bytes, name: str = "agent.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError) as error:
        config_mod.load(str(path))
    return str(error.value)


def test_the_schema_ships_inside_the_package() -> None:
    """A wheel install finds the schema with importlib.resources, as the loader does."""
    assert (files("gitops_agent") / "data" / "config.schema.json").is_file()
    assert config_mod.schema()["title"] == "gitops-agent configuration"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"source: {url: /r}\nnodes: 5\n", "agent.yaml:2: nodes: must be a list or null, not an integer"),
        (b"source: {url: /r}\nstateDir: [a]\n", "agent.yaml:2: stateDir: must be a string, not a list"),
        (b"source: {url: /r}\n# caf\xe9\n", "agent.yaml:2: file is not UTF-8 text"),
        (b"source: {url: /r}\nnodes: [\n",
         "agent.yaml:3: invalid YAML: did not find expected node content"),
        (b"source: {url: /r}\n---\nsource: {url: /s}\n", "agent.yaml:3: a second YAML document; the file holds one"),
        (b"source: !!python/object/apply:os.system [true]\n",
         "agent.yaml:1: source: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not supported"),
        (b"- source\n", "agent.yaml:1: a document must be a mapping, not a list"),
        (b"nodes: []\n", "agent.yaml:1: missing required field 'source' (source.url: the Git repository to follow)"),
        (b"source: {url: /r, interval: soon}\n",
         "agent.yaml:1: source.interval: must be a duration (examples: 30s, 5m, 1h)"),
        (b"source: {url: /r}\nlimits: {maxPodsPerNode: 0}\n",
         "agent.yaml:2: limits.maxPodsPerNode: must be at least 1"),
    ],
)
def test_config_file_errors_name_the_file_and_line(tmp_path: Path, text: bytes, message: str) -> None:
    assert load_error(tmp_path, text) == f"{tmp_path / 'agent.yaml'}{message.removeprefix('agent.yaml')}"


def test_every_problem_of_the_config_is_reported_at_once(tmp_path: Path) -> None:
    """Seven problems in one file: seven lines, in file order, each with its line."""
    text = (b"source: {url: /r, branch: ''}\nstateDir: [a]\nprune: {enabled: yes please}\n"
            b"limits: {maxPods: 3}\nnodes:\n  - {name: a, url: 'http://x'}\n  - labels: {x: [1]}\n")
    assert load_error(tmp_path, text).splitlines() == [
        f"{tmp_path / 'agent.yaml'}:{line}: {problem}" for line, problem in [
            (1, "source.branch: must not be empty"),
            (2, "stateDir: must be a string, not a list"),
            (3, "prune.enabled: must be a boolean, not a string"),
            (4, "limits.maxPods: unknown field 'maxPods' (did you mean 'maxPodsPerNode'?)"),
            (6, "nodes[0].url: must start with unix://, tcp://, ssh:// or http+unix://"),
            (7, "nodes[1]: missing required field 'name'"),
            (7, "nodes[1].labels.x: must be a string or an integer or a number or a boolean, not a list"),
        ]
    ]


def test_an_unusual_config_path_is_quoted(tmp_path: Path) -> None:
    """A config file name with a newline prints on one line, quoted as Git quotes it."""
    message = load_error(tmp_path, b"source: {url: /r}\nnodes: 5\n", name="a\nb.yaml")
    assert message == f'"{tmp_path}/a\\nb.yaml":2: nodes: must be a list or null, not an integer'


def test_cli_exits_2_with_the_problems_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "agent.yaml").write_bytes(b"source: {url: /r}\nnodes: 5\nstateDir: [a]\n")
    for command in (["status"], ["sync"], ["validate", str(tmp_path)]):
        assert main([*command, "--config", str(tmp_path / "agent.yaml")]) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"gitops-agent: config: {tmp_path / 'agent.yaml'}:2: nodes: must be a list or "
                                    "null, not an integer", f"{tmp_path / 'agent.yaml'}:3: stateDir: must be a "
                                    "string, not a list"], command
    assert not (Path.cwd() / "['a']").exists()


def test_limits_section(tmp_path: Path) -> None:
    """`limits:` sets the per-node limits; anything absent keeps its default (110 pods per node, like the kubelet)."""
    (tmp_path / "agent.yaml").write_text(
        "source: {url: /r}\nlimits: {maxPodsPerNode: 20, maxReplicasPerRevision: 50}\n")
    cfg = config_mod.load(str(tmp_path / "agent.yaml"))
    assert cfg.limits == NodeLimits(max_pods_per_node=20, max_containers_per_pod=20, max_replicas_per_revision=50)
    assert config_mod.from_mapping({"source": {"url": "/r"}}).limits == NodeLimits(110, 20, 10_000)


def test_validate_applies_the_configs_limits_and_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate --config` counts pods per node over the config's nodes, with its limits."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 12\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: web, image: localhost/x:1}]}\n")
    (tmp_path / "agent.yaml").write_text(
        "source: {url: /r}\nnodes: [{name: a}, {name: b}]\nlimits: {maxPodsPerNode: 5}\n")
    assert main(["validate", str(manifests), "--config", str(tmp_path / "agent.yaml")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "web.yaml:5: Deployment/web: spec.replicas: 2 node(s) would run more than limits.maxPodsPerNode (5) pods: "
        "b 6, a 6",
        "1 problem(s); nothing would be applied",
    ]
    assert main(["validate", str(manifests)]) == 0


def test_validate_prints_every_no_op_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifests = tmp_path / "repo"
    manifests.mkdir()
    (manifests / "sa.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n")
    assert main(["validate", str(manifests)]) == 0
    warning, valid = capsys.readouterr().out.splitlines()
    assert warning == "warning: sa.yaml:2: ServiceAccount/web: kind: a ServiceAccount has no effect on a node (it" \
        " grants access to the Kubernetes API, which gitops-agent does not have): ignored"
    assert valid.startswith("valid: no objects (sha256:")


def test_storage_classes_are_read_with_their_driver_and_options(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("source: {url: /r}\nstorageClasses:\n"
                    "  scratch: {options: {type: tmpfs, device: tmpfs, o: size=8m}}\n"
                    "  plain: {driver: local}\n")
    cfg = config_mod.load(str(path))
    assert cfg.storage_classes == {
        "scratch": config_mod.StorageClass("local", {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}),
        "plain": config_mod.StorageClass("local", {}),
    }
    path.write_text("source: {url: /r}\nstorageClasses: {Bad_Name: {}}\n")
    with pytest.raises(ConfigError, match="storageClasses"):
        config_mod.load(str(path))
