"""Command line: parses arguments, runs one command, formats its result.

The top of the pipeline, and the only place that prints results or picks exit
codes. Every AgentError becomes a one-line (or one-block) message on stderr,
never a traceback.

Exit codes: validate 0 valid / 1 invalid; diff 0 in sync / 1 differences /
2 error (as `kubectl diff`, `flux diff`); sync 0 when every node runs the
newest valid revision, 1 otherwise; any command 2 on a usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import config as config_mod
from .errors import AgentError, ConfigError, RevisionRejected, quote_path
from .log import EventLog, discard

_SIGN = {
    "create-network": "+", "create-volume": "+", "create-secret": "+", "create-pod": "+",
    "replace-pod": "~", "start-pod": "~", "rollout": "~",
    "remove-pod": "-", "remove-secret": "-", "remove-volume": "-", "remove-network": "-",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gitops-agent", description="GitOps reconciliation agent for Podman.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="agent config YAML (default: $GITOPS_AGENT_CONFIG)")
        sp.add_argument("--source", help="Git URL or local path to follow, instead of (or overriding) source.url")
        sp.add_argument("--state-dir", help="where history, cache and the Git mirror live (overrides stateDir)")

    v = sub.add_parser("validate", help="check manifests in a directory; no Podman")
    v.add_argument("path", nargs="?", default=".", help="directory of manifests (default: .)")
    v.add_argument("--config", "-c", help="check against this agent config's policy (default: the default policy, "
                   "which denies privileged containers, host namespaces, added capabilities and hostPath)")
    for name, text in (("diff", "show what a sync would change; exit 0 in sync, 1 differences, 2 error"),
                       ("sync", "one full reconcile pass, then exit"),
                       ("run", "the daemon: poll, watch, reconcile")):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--log-format", choices=("text", "json"), default="text")
    rb = sub.add_parser("rollback", help="break-glass: roll every node back to an earlier stable revision without Git, and suspend syncing")
    with_config(rb)
    rb.add_argument("--to", metavar="REVISION", help="revision id or commit (prefix) from `history`; default: the one before the current")
    rb.add_argument("--log-format", choices=("text", "json"), default="text")
    sub.add_parser("unit", help="print the systemd unit shipped with the package "
                   "(gitops-agent unit > /etc/systemd/system/gitops-agent.service)")
    rs = sub.add_parser("resume", help="follow Git again after `rollback` or a failed rollback")
    with_config(rs)
    for name, text in (("status", "applied vs attempted revision and each object's state"),
                       ("history", "past sync attempts and workload revisions")):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--output", "-o", choices=("table", "json"), default="table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "unit":
            return _unit()
        if args.command == "validate":
            return _validate(Path(args.path), config_mod.load(args.config) if args.config else None)
        cfg = config_mod.load(args.config, args.source)
        if args.state_dir:
            from dataclasses import replace

            cfg = replace(cfg, state_dir=Path(args.state_dir).resolve())
        return _COMMANDS[args.command](cfg, args)
    except ConfigError as e:
        print(f"gitops-agent: config: {e}", file=sys.stderr)
        return 2
    except AgentError as e:
        print(f"gitops-agent: {e}", file=sys.stderr)
        return 2 if args.command == "diff" else 1
    except KeyboardInterrupt:
        return 130


def _unit() -> int:
    """The shipped unit, its ExecStart pointed at this installation (a venv, /usr/local, ...)."""
    import os
    from importlib.resources import files

    text = (files("gitops_agent") / "data" / "gitops-agent.service").read_text()
    exe = os.path.abspath(sys.argv[0]) if os.path.basename(sys.argv[0]) == "gitops-agent" else f"{sys.executable} -m gitops_agent"
    sys.stdout.write(text.replace("ExecStart=/usr/local/bin/gitops-agent ", f"ExecStart={exe} "))
    return 0


def _validate(path: Path, cfg: config_mod.AgentConfig | None = None) -> int:
    """Without a config: the default policy and limits, every workload on one node."""
    from .manifests import load_directory, parse

    if not path.is_dir():
        print(f"gitops-agent: {quote_path(str(path))} is not a directory", file=sys.stderr)
        return 1
    try:
        if cfg is None:
            rev = parse(load_directory(path), str(path))
        else:
            rev = parse(load_directory(path), str(path), policy=cfg.policy, nodes=cfg.nodes, node_limits=cfg.limits,
                        storage_classes=cfg.storage_classes)
    except RevisionRejected as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s); nothing would be applied", file=sys.stderr)
        return 1
    for warning in rev.warnings:
        print(f"warning: {warning}")
    kinds: dict[str, int] = {}
    for o in rev.objects:
        kinds[o.ref.kind] = kinds.get(o.ref.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "no objects"
    print(f"valid: {summary} ({rev.digest[:19]})")
    return 0


def _agent(cfg: config_mod.AgentConfig, args: argparse.Namespace, quiet: bool = False) -> Any:
    from .agent import Agent

    log = discard if quiet else EventLog(getattr(args, "log_format", "text"))
    return Agent(cfg, log)


def _print_plans(out: Any) -> int:
    changes = 0
    for node, p in out.plans.items():
        if p.in_sync:
            print(f"node {node}: in sync")
        else:
            print(f"node {node}: {len(p.actions)} change(s)")
            width = max(len(a.target) for a in p.actions)
            for a in p.actions:
                print(f"  {_SIGN[a.op]} {a.op:<14} {a.target:<{width}}  {a.reason}")
        for v in p.orphaned_volumes:
            print(f"  ! volume {v} is orphaned (claim removed from Git; data kept)")
        for name in p.unknown_secrets:
            print(f"  ! secret {name} was not made by this agent: left alone")
        changes += len(p.actions)
    return changes


def _problems(out: Any) -> None:
    if out.problems:
        print(f"revision {out.head} rejected ({len(out.problems)} problem(s)); nodes keep {out.target or 'their current state'}:", file=sys.stderr)
        for problem in out.problems:
            print(f"  {problem}", file=sys.stderr)
    elif out.error:
        print(f"gitops-agent: {out.error}", file=sys.stderr)


def _diff(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    agent = _agent(cfg, args, quiet=True)
    try:
        out = agent.sync(dry_run=True)
    finally:
        agent.close()
    if out.result in ("rejected", "source-error") or out.node_errors:
        _problems(out)
        for node, err in out.node_errors.items():
            print(f"node {node}: {err}", file=sys.stderr)
        return 2
    print(f"revision {out.target}")
    for warning in out.warnings:
        print(f"warning: {warning}")
    return 1 if _print_plans(out) else 0


def _sync(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    agent = _agent(cfg, args)
    try:
        out = agent.sync()
    finally:
        agent.close()
    if out.ok:
        verb = f"applied ({out.actions} action(s))" if out.result == "applied" else "in sync"
        print(f"{out.target}: {verb}")
        return 0
    _problems(out)
    return 1


def _rollback(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    agent = _agent(cfg, args)
    try:
        out = agent.rollback(args.to)
    finally:
        agent.close()
    if out.ok:
        print(f"{out.target}: rolled back ({out.actions} action(s)); syncing suspended until `gitops-agent resume`")
        return 0
    _problems(out)
    print("syncing suspended until `gitops-agent resume`", file=sys.stderr)
    return 1


def _resume(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .history import History

    h = History(cfg.state_dir)
    try:
        lifted = h.get("suspended")
        h.delete("suspended")
    finally:
        h.close()
    print(f"resumed: following Git again (was suspended: {lifted['reason']})" if lifted else "not suspended: already following Git")
    return 0


def _run(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .agent import Daemon

    agent = _agent(cfg, args)
    return Daemon(agent, agent.log).run()


def _status(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .status import status

    agent = _agent(cfg, args, quiet=True)
    try:
        st = status(agent)
    finally:
        agent.close()
    if args.output == "json":
        print(json.dumps(st, indent=2, sort_keys=False))
        return 0
    source = st["source"]
    where = quote_path(source["branch"] + (f"/{source['path']}" if source["path"] else ""))
    print(f"Source:    {quote_path(source['url'])} ({where})")
    print(f"Applied:   {st['appliedRevision'] or '-'}")
    print(f"Attempted: {st['attemptedRevision'] or '-'}")
    print(f"Condition: {st['condition']}: {st['message']}")
    for pr in st["problems"]:
        print(f"  {pr}")
    for w in st["warnings"]:
        print(f"Warning:   {w}")
    ro = st["rollout"]
    if ro:
        print(f"Rollout:   {ro['target']} ({ro['cause']}) from {ro['previous'] or '-'}: {ro['phase']}, {ro['progress']}"
              + (", fast-tracked" if ro["fast"] else f", {ro['batch']} node(s) at a time"))
        for n in ro["nodes"]:
            print(f"  {n['name']:<12} {n['status']:<18} {n['error'].splitlines()[0][:100] if n['error'] else ''}".rstrip())
        if ro["failure"]:
            f = ro["failure"]
            print(f"  failure: node {f.get('node')} pod {f.get('pod') or '-'} probe {f.get('probe') or '-'}: {f.get('output') or f.get('error')}")
    for n in st["nodes"]:
        print(f"Node {n['name']}: " + (f"reachable, {n['pods']} managed pod(s)" if n["reachable"] else f"UNREACHABLE: {n['error']}"))
    rows = [("NODE", "KIND", "NAMESPACE", "NAME", "STATE", "DETAIL")]
    for o in st["objects"]:
        detail = ""
        if "desired" in o:
            detail = f"{o['ready']}/{o['desired']} ready, template {o['templateHash']}" + (f", revision {o['revision']}" if o.get("revision") else "")
            detail += "".join(f", old template {t['templateHash']}" for t in o["otherTemplates"])
        elif "endpoints" in o:
            detail = f"{o['endpoints']} endpoint(s)"
        elif "keys" in o:
            detail = f"{o['keys']} key(s)"
        rows.append((o["node"], o["kind"], o["namespace"], o["name"], o["state"], detail))
    _table(rows)
    for v in st["orphanedVolumes"]:
        print(f"Orphaned volume (data kept): {v}")
    for name in st["unknownSecrets"]:
        print(f"Unknown secret (not made by this agent, left alone): {name}")
    return 0


def _history(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .history import History

    h = History(cfg.state_dir)
    try:
        syncs = h.syncs()
        revs = h.workload_revisions()
        rollouts = h.rollouts()
    finally:
        h.close()
    if args.output == "json":
        print(json.dumps({"syncs": [s.__dict__ for s in syncs], "workloadRevisions": [r.__dict__ for r in revs],
                          "rollouts": rollouts}, indent=2))
        return 0
    rows: list[tuple[str, ...]]
    if rollouts:
        rows = [("ROLLOUT", "STARTED", "REVISION", "FROM", "CAUSE", "RESULT", "SECONDS", "DETAIL")]
        for r in rollouts:
            f = r.get("failure") or {}
            detail = f"node {f['node']}: {''.join((f.get('error') or '').splitlines()[:1])[:80]}" if f.get("node") else ""
            rows.append((str(r["id"]), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])), _short(r["target"]),
                         _short(r["previous"]) or "-", r["cause"], r["phase"], f"{r['finished'] - r['started']:.2f}", detail))
        _table(rows)
        print()
    rows = [("#", "STARTED", "REVISION", "RESULT", "ACTIONS", "SECONDS", "ERROR")]
    for s in syncs:
        rows.append((str(s.id), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)), _short(s.revision), s.result,
                     str(s.actions), f"{s.duration:.2f}", s.error.splitlines()[0][:80] if s.error else ""))
    _table(rows)
    if revs:
        print()
        rows = [("WORKLOAD", "REVISION", "TEMPLATE", "COMMIT")]
        for wr in revs:
            rows.append((f"{wr.kind}/{wr.namespace}/{wr.name}", str(wr.number), wr.template_hash, _short(wr.revision)))
        _table(rows)
    return 0


def _short(revision: str) -> str:
    branch, _, sha = revision.partition("@sha1:")
    return f"{branch}@{sha[:12]}" if sha else revision


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


_COMMANDS = {"diff": _diff, "sync": _sync, "run": _run, "status": _status, "history": _history,
             "rollback": _rollback, "resume": _resume}


if __name__ == "__main__":
    sys.exit(main())
