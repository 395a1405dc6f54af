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
from .completion import SHELLS, script
from .log import EventLog, discard
from .reasons import Reason
from .substitute import ANNOTATION

_SIGN = {
    "create-network": "+", "create-volume": "+", "create-secret": "+", "create-pod": "+",
    "replace-pod": "~", "start-pod": "~", "rollout": "~", "run-pod": "+", "stop-sidecars": "~",
    "remove-pod": "-", "remove-secret": "-", "remove-volume": "-", "remove-network": "-",
    "reconnect-pod": "~", "unpause-pod": "~", "recreate-secret": "~", "volume-lost": "!",
}


_EXAMPLES = {
    "validate": "gitops-agent validate ./apps",
    "diff": "gitops-agent diff -c /etc/gitops-agent/agent.yaml",
    "sync": "gitops-agent sync -c /etc/gitops-agent/agent.yaml",
    "run": "gitops-agent run -c /etc/gitops-agent/agent.yaml --log-format json",
    "rollback": "gitops-agent rollback -c agent.yaml --to 3",
    "unit": "gitops-agent unit > /etc/systemd/system/gitops-agent.service",
    "resume": "gitops-agent resume -c agent.yaml",
    "reconcile": "gitops-agent reconcile -c agent.yaml",
    "status": "gitops-agent status -c agent.yaml -o wide     # or --watch: the rollout, live",
    "history": "gitops-agent history -c agent.yaml -o yaml",
    "describe": "gitops-agent describe Deployment/demo/web -c agent.yaml",
    "logs": "gitops-agent logs deploy/demo/web --tail 20 --follow -c agent.yaml",
    "doctor": "gitops-agent doctor -c agent.yaml -o json",
    "completion": "gitops-agent completion bash > /etc/bash_completion.d/gitops-agent",
}
OUTPUTS = ("table", "wide", "json", "yaml")


class _Sub:
    """add_parser with an example in each command's --help."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.sub.add_parser(
            name, epilog=f"example:\n  {_EXAMPLES[name]}", description=kw.get("help"),
            formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        return parser


def _with_config(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", "-c", help="agent config YAML (default: $GITOPS_AGENT_CONFIG)")
    sp.add_argument("--source", help="Git URL or local path to follow, instead of (or overriding) source.url")
    sp.add_argument("--state-dir", help="where history, cache and the Git mirror live (overrides stateDir)")


def _add_logs(sub: _Sub) -> None:
    lg = sub.add_parser("logs", help="containers' logs from every node the object runs on, "
                        "each line prefixed [node/pod/container]")
    _with_config(lg)
    lg.add_argument("object", metavar="KIND/NAMESPACE/NAME|POD",
                    help="e.g. Deployment/demo/web, Pod/demo/db, or a pod name")
    lg.add_argument("--container", metavar="NAME", default="", help="only this container of each pod")
    lg.add_argument("--tail", type=int, metavar="N", help="the last N lines of each container")
    lg.add_argument("--since", metavar="DURATION", help="only lines newer than this (30s, 10m, 2h, 1d)")
    lg.add_argument("--follow", "-f", action="store_true", help="stream new lines from every node until interrupted")
    lg.add_argument("--previous", "-p", action="store_true", help="the run before the container's last restart")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gitops-agent", description="GitOps reconciliation agent for Podman.")
    sub = _Sub(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    with_config = _with_config
    v = sub.add_parser("validate", help="check manifests in a directory; no Podman")
    v.add_argument("path", nargs="?", default=".", help="directory of manifests (default: .)")
    v.add_argument("--config", "-c", help="check against this agent config's policy (default: the default policy, "
                   "which denies privileged containers, host namespaces, added capabilities and hostPath)")
    v.add_argument("--node", metavar="NAME", help="with --config: validate the result of this node's variables only "
                   "(default: every node's), and show the values substituted on it")
    for name, text in (("diff", "show what a sync would change; exit 0 in sync, 1 differences, 2 error"),
                       ("sync", "one full reconcile pass, then exit"),
                       ("run", "the daemon: poll, watch, reconcile")):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--log-format", choices=("text", "json"), default="text")
        if name == "sync":
            sp.add_argument("--ignore-window", action="store_true",
                            help="break-glass: roll out now even where the maintenance window is closed "
                            "(recorded in history)")
        if name == "diff":
            sp.add_argument("--output", "-o", choices=OUTPUTS, default="table",
                            help="table (default), wide, json or yaml")
            sp.add_argument("--node", metavar="NAME", help="only this node's changes and substituted values")
    rb = sub.add_parser("rollback", help="break-glass: roll every node back to an earlier stable revision "
                        "without Git, and suspend syncing")
    with_config(rb)
    rb.add_argument("--to", metavar="REVISION",
                    help="revision id or commit (prefix) from `history`; default: the one before the current")
    rb.add_argument("--log-format", choices=("text", "json"), default="text")
    sub.add_parser("unit", help="print the systemd unit shipped with the package "
                   "(gitops-agent unit > /etc/systemd/system/gitops-agent.service)")
    rs = sub.add_parser("resume", help="follow Git again after `rollback` or a failed rollback")
    with_config(rs)
    with_config(sub.add_parser("reconcile", help="wake the running daemon (`run`) for an immediate pass"))
    for name, text in (("status", "applied vs attempted revision and each object's state"),
                       ("history", "past sync attempts and workload revisions"),
                       ("describe", "one object on each node, with its recent events"),
                       ("doctor", "check the host and every node; a fix for each failure; exit 0 only when all pass")):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        if name == "describe":
            sp.add_argument("object", metavar="KIND/NAMESPACE/NAME", help="e.g. Deployment/demo/web (deploy/demo/web)")
        if name == "status":
            sp.add_argument("--watch", "-w", action="store_true",
                            help="follow the newest rollout live until it ends (exit 0 complete, 1 otherwise)")
        sp.add_argument("--output", "-o", choices=OUTPUTS, default="table", help="table (default), wide, json or yaml")
    _add_logs(sub)
    cp = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)")
    cp.add_argument("shell", nargs="?", choices=SHELLS, help="the shell to complete for")
    cp.add_argument("--objects", action="store_true",
                    help="print the object names of the last applied revision (used by the scripts)")
    with_config(cp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "unit":
            return _unit()
        if args.command == "completion" and not args.objects:
            if not args.shell:
                raise ConfigError("completion: name a shell (bash, zsh or fish)")
            sys.stdout.write(script(args.shell, _parser()))
            return 0
        if args.command == "validate":
            return _validate(Path(args.path), config_mod.load(args.config) if args.config else None, args.node)
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
    installed = os.path.basename(sys.argv[0]) == "gitops-agent"
    exe = os.path.abspath(sys.argv[0]) if installed else f"{sys.executable} -m gitops_agent"
    sys.stdout.write(text.replace("ExecStart=/usr/local/bin/gitops-agent ", f"ExecStart={exe} "))
    return 0


def _validate(path: Path, cfg: config_mod.AgentConfig | None = None, node: str | None = None) -> int:
    """Without a config: the default policy and limits, every workload on one node. With one: its policy, and
    the per-node variables substituted for every node (or `node`)."""
    from .agent import parse_for_nodes
    from .manifests import load_directory, parse
    from .variables import shown

    if not path.is_dir():
        print(f"gitops-agent: {quote_path(str(path))} is not a directory", file=sys.stderr)
        return 1
    from .sops import decrypt_files

    try:
        keys = cfg.sops.age_key_files if cfg is not None and cfg.sops else ()
        files, encrypted = decrypt_files(load_directory(path), keys)  # in memory, with the config's keys
        if cfg is None:
            if node:
                raise ConfigError("validate --node needs --config FILE (the node's variables are in it)")
            rev = parse(files, str(path))
        else:
            only = _one_node(cfg, node, "validate")
            rev = parse_for_nodes(files, str(path), cfg, only)
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
    if cfg is not None and node:
        _print_substituted(shown(files, cfg.substitute_from, only, encrypted), "")
    return 0


def _print_substituted(changes: dict[str, list[Any]], indent: str) -> None:
    """Each node's substituted values (`variables.shown`), a Secret's as `(from Secret x)`, never itself."""
    for name, found in changes.items():
        if not found:
            print(f"{indent}node {name}: no value substituted (no object opts in with {ANNOTATION}: enabled)")
            continue
        print(f"{indent}node {name}: {len(found)} value(s) substituted:")
        for change in found:
            print(f"{indent}  = {change}")


def _agent(cfg: config_mod.AgentConfig, args: argparse.Namespace, quiet: bool = False) -> Any:
    from .agent import Agent

    from .journal import Journal

    log = discard if quiet else EventLog(getattr(args, "log_format", "text"))
    if isinstance(log, EventLog):
        log.subscribe(Journal(cfg.state_dir))  # for `status --watch` in another process
    return Agent(cfg, log)


def _print_plans(plans: dict[str, Any], values: dict[str, list[Any]]) -> int:
    changes = 0
    for node, p in plans.items():
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
        if values.get(node):
            _print_substituted({node: values[node]}, "  ")
        changes += len(p.actions)
    return changes


def _problems(out: Any) -> None:
    if out.problems:
        print(f"revision {out.head} rejected ({len(out.problems)} problem(s)); "
              f"nodes keep {out.target or 'their current state'}:", file=sys.stderr)
        for problem in out.problems:
            print(f"  {problem}", file=sys.stderr)
    elif out.error:
        print(f"gitops-agent: {out.error}", file=sys.stderr)


def _one_node(cfg: config_mod.AgentConfig, node: str | None, command: str) -> list[config_mod.NodeConfig]:
    """The config's nodes, or only `node` (`--node`); a ConfigError naming the nodes when it is not one."""
    only = [n for n in cfg.nodes if n.name == node] if node else list(cfg.nodes)
    if not only:
        raise ConfigError(f"{command} --node: no node {node!r} in the config (nodes: "
                          f"{', '.join(n.name for n in cfg.nodes)})")
    return only


def _diff(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .variables import shown

    nodes = _one_node(cfg, args.node, "diff")
    agent = _agent(cfg, args, quiet=True)
    try:
        out = agent.sync(dry_run=True)
        ok = out.result not in ("rejected", "source-error") and not out.node_errors and out.target
        # each node's substituted values, from the plaintext in memory (a Secret's shown as where it comes from)
        files, encrypted = agent.files(out.target.rsplit(":", 1)[-1]) if ok else ([], frozenset())
        values = shown(files, cfg.substitute_from, nodes, encrypted) if ok else {}
    finally:
        agent.close()
    if out.result in ("rejected", "source-error") or out.node_errors:
        _problems(out)
        for node, err in out.node_errors.items():  # a NodeError's text already starts with "node NAME: "
            print(err if err.startswith(f"node {node}: ") else f"node {node}: {err}", file=sys.stderr)
        return 2
    kept = {node: p for node, p in out.plans.items() if node in {n.name for n in nodes}}
    plans = {node: {"inSync": p.in_sync,
                    "actions": [{"op": a.op, "target": a.target, "reason": a.reason} for a in p.actions],
                    "orphanedVolumes": list(p.orphaned_volumes),
                    "substituted": [c.to_json() for c in values.get(node, [])]} for node, p in kept.items()}
    if _emit({"revision": out.target, "nodes": plans}, args.output):
        return 1 if any(p["actions"] for p in plans.values()) else 0
    print(f"revision {out.target}")
    for warning in out.warnings:
        print(f"warning: {warning}")
    return 1 if _print_plans(kept, values) else 0


def _sync(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    agent = _agent(cfg, args)
    try:
        out = agent.sync(ignore_window=args.ignore_window)
    finally:
        agent.close()
    if out.ok:
        verb = f"applied ({out.actions} action(s))" if out.result == "applied" else "in sync"
        print(f"{out.target}: {verb}")
        return 0
    _problems(out)
    if out.why == Reason.WAITING_FOR_WINDOW:  # held, not failed: `--ignore-window` is the break-glass
        print("run `gitops-agent sync --ignore-window` to roll out now", file=sys.stderr)
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
    if lifted:
        from . import events

        events.emit(EventLog(getattr(args, "log_format", "text")), events.Resumed(lifted["reason"]))
    print(f"resumed: following Git again (was suspended: {lifted['reason']})" if lifted
          else "not suspended: already following Git")
    return 0


def _run(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .daemon import Daemon

    agent = _agent(cfg, args)
    return Daemon(agent, agent.log).run()


def _watch(cfg: config_mod.AgentConfig) -> int:
    """`status --watch`: the live rollout view, fed from the event journal of the agent
    (`sync`, `run`, `rollback` in another process); plain lines when not on a terminal."""
    from .journal import follow
    from .log import live_wanted, text_line
    from .progress import RolloutView, print_plain

    view = RolloutView(sys.stdout)
    live = live_wanted("text", sys.stdout)
    phase = ""
    for r in follow(cfg.state_dir, stop=lambda: False):
        event, level, at = str(r.pop("event", "")), str(r.pop("level", "info")), float(r.pop("ts", 0) or 0)
        if live:
            view.feed(event, r, at)
        else:
            view.board.apply(event, r, at)
            print(text_line(at, level, event, r), flush=True)
        if event == "rollout.end":
            phase = str(r.get("phase", ""))
    if not view.board.rows:
        print(f"no rollout recorded yet (journal {cfg.state_dir / 'events.jsonl'})")
        return 0
    if not live:
        print_plain(view.board, sys.stdout, time.time())
    return 0 if phase == "complete" else 1


def _status(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .status import status

    if args.watch:
        return _watch(cfg)

    agent = _agent(cfg, args, quiet=True)
    try:
        st = status(agent)
    finally:
        agent.close()
    if _emit(st, args.output):
        return 0
    _print_status_head(st)
    if st["rollout"]:
        _print_rollout(st["rollout"])
    for n in st["nodes"]:
        if n["reachable"]:
            print(f"Node {n['name']}: reachable, {n['pods']} managed pod(s); "
                  f"httpGet/tcpSocket probes {n['httpTcpProbes']}")
        else:
            print(f"Node {n['name']}: UNREACHABLE: {n['error']}")
    wide = args.output == "wide"
    rows = [("NODE", "KIND", "NAMESPACE", "NAME", "STATE", "DETAIL") + (("PODS",) if wide else ())]
    for o in st["objects"]:
        pods = (",".join(p["name"] for p in o.get("pods", [])) or "-",) if wide else ()
        rows.append((o["node"], o["kind"], o["namespace"], o["name"], o["state"], _object_detail(o)) + pods)
    _table(rows)
    probes = [(o["node"], f"{o['kind']}/{o['name']}", p["container"], p["probe"], p["action"], p["runs"])
              for o in st["objects"] for p in o.get("probes", [])]
    if probes:
        _table([("NODE", "WORKLOAD", "CONTAINER", "PROBE", "ACTION", "RUNS"), *probes])
    for v in st["orphanedVolumes"]:
        print(f"Orphaned volume (data kept): {v}")
    for name in st["unknownSecrets"]:
        print(f"Unknown secret (not made by this agent, left alone): {name}")
    for e in st.get("evictions", ()):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(e.get("at", 0))))
        print(f"Evicted {when}Z: node {e.get('node')} pod {e.get('pod')} ({e.get('workload') or '-'}): "
              f"{e.get('message')}")
    return 0


def _print_status_head(st: dict[str, Any]) -> None:
    """`status`'s first lines: source, applied and attempted revision, condition, problems and warnings."""
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


def _print_rollout(ro: dict[str, Any]) -> None:
    """`status`'s lines for the fleet rollout: its phase, each node's state and the failure, if any."""
    print(f"Rollout:   {ro['target']} ({ro['cause']}) from {ro['previous'] or '-'}: {ro['phase']}, {ro['progress']}"
          + (", fast-tracked" if ro["fast"] else f", {ro['batch']} node(s) at a time"))
    for n in ro["nodes"]:
        detail = n.get("window") or (n["error"].splitlines()[0][:100] if n["error"] else "")
        print(f"  {n['name']:<12} {n['status']:<18} {detail}".rstrip())
    if ro["failure"]:
        f = ro["failure"]
        print(f"  failure: node {f.get('node')} pod {f.get('pod') or '-'} probe {f.get('probe') or '-'}: "
              f"{f.get('output') or f.get('error')}")


def _object_detail(o: dict[str, Any]) -> str:
    """The DETAIL column of one object in `status`'s table."""
    if "desired" in o:
        detail = f"{o['ready']}/{o['desired']} ready, template {o['templateHash']}"
        detail += f", revision {o['revision']}" if o.get("revision") else ""
        job = o.get("job") or {}  # an Indexed Job's indexes, as Kubernetes writes them
        detail += f", completed indexes {job['completedIndexes'] or '-'}" if "completedIndexes" in job else ""
        detail += f", failed indexes {job['failedIndexes']}" if job.get("failedIndexes") else ""
        return detail + "".join(f", old template {t['templateHash']}" for t in o["otherTemplates"])
    if "endpoints" in o:
        shown = f": {', '.join(o['readyEndpoints'])}" if o.get("readyEndpoints") else ""
        return f"{o['endpoints']} endpoint(s){shown}" + (
            f", not ready: {', '.join(o['notReadyEndpoints'])}" if o.get("notReadyEndpoints") else "")
    if "keys" in o:
        return f"{o['keys']} key(s)"
    return str(o.get("detail", ""))  # a HorizontalPodAutoscaler's (status._autoscalers)


def _history(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .history import History

    h = History(cfg.state_dir)
    try:
        syncs = h.syncs()
        revs = h.workload_revisions()
        rollouts = h.rollouts()
        runs = _job_runs(h)
    finally:
        h.close()
    if _emit({"syncs": [s.__dict__ for s in syncs], "workloadRevisions": [r.__dict__ for r in revs],
              "rollouts": rollouts, "jobRuns": runs}, args.output):
        return 0
    cut = 10_000 if args.output == "wide" else 80
    rows: list[tuple[str, ...]]
    if rollouts:
        rows = [("ROLLOUT", "STARTED", "REVISION", "FROM", "CAUSE", "RESULT", "SECONDS", "DETAIL")]
        for r in rollouts:
            f = r.get("failure") or {}
            first = "".join((f.get("error") or "").splitlines()[:1])[:cut]
            detail = f"node {f['node']}: {first}" if f.get("node") else ""
            rows.append((str(r["id"]), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])),
                         _short(r["target"]), _short(r["previous"]) or "-",
                         r["cause"] + (" --ignore-window" if r.get("ignored_window") else ""), r["phase"],
                         f"{r['finished'] - r['started']:.2f}", detail))
        _table(rows)
        print()
        rows = [("ROLLOUT", "NODE", "IMAGE", "RUNS")]  # what each node actually pulled, per rollout
        rows += [(str(r["id"]), node, image, runs) for r in rollouts for node, np in r["nodes"].items()
                 for image, runs in sorted((np.get("images") or {}).items())]
        if len(rows) > 1:
            _table(rows)
            print()
    rows = [("#", "STARTED", "REVISION", "RESULT", "ACTIONS", "SECONDS", "ERROR")]
    for s in syncs:
        rows.append((str(s.id), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)), _short(s.revision),
                     s.result, str(s.actions), f"{s.duration:.2f}", s.error.splitlines()[0][:cut] if s.error else ""))
    _table(rows)
    if runs:
        print()
        _table([("JOB", "NODE", "RUN", "STATE", "EXIT CODES", "OUTPUT")] + [
            (r["object"], r["node"], r["run"], r["phase"] + (f" ({r['reason']})" if r.get("reason") else ""),
             ",".join(map(str, r.get("exit_codes", []))) or "-",
             (r.get("output") or "").strip().splitlines()[-1][:cut] if r.get("output") else "") for r in runs])
    if revs:
        print()
        rows = [("WORKLOAD", "REVISION", "TEMPLATE", "COMMIT")]
        for wr in revs:
            rows.append((f"{wr.kind}/{wr.namespace}/{wr.name}", str(wr.number), wr.template_hash, _short(wr.revision)))
        _table(rows)
    return 0


def _job_runs(h: Any) -> list[dict[str, Any]]:
    """The Jobs' and CronJobs' run records kept in the store (gitops_agent/batchstore): failed output redacted."""
    from .batchstore import KEY

    every = sorted((h.get(KEY) or {}).items())
    return [{"object": key, "node": node, **run, "phase": run.get("phase") or "Active"}
            for node, books in every for key, book in sorted(books.items()) for run in book.get("runs", ())]


def _emit(data: Any, output: str) -> bool:
    """Print `data` as JSON or YAML when asked; False for the table formats (the caller prints)."""
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        from .manifests import dump_yaml

        print(dump_yaml(json.loads(json.dumps(data, default=str))), end="")
    else:
        return False
    return True


def _describe(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .describe import describe, parse_ref

    ref = parse_ref(args.object)
    agent = _agent(cfg, args, quiet=True)
    try:
        d = describe(agent, ref)
    finally:
        agent.close()
    if _emit(d, args.output):
        return 0
    print(f"Name:      {d['name']}\nNamespace: {d['namespace']}\nKind:      {d['kind']}\n"
          f"Revision:  {d['appliedRevision']}")
    for o in d["nodes"]:
        line = f"Node {o['node']}: {o['state']}"
        if "desired" in o:
            line += f", {o['ready']}/{o['desired']} ready, template {o['templateHash']}" + (
                f", revision {o['revision']}" if o.get("revision") else "")
            line += "".join(f", old template {t['templateHash']}" for t in o["otherTemplates"])
        elif "endpoints" in o:
            line += f", {o['endpoints']} endpoint(s)"
        print(line)
        for p in o.get("pods", []):
            ready = "ready" if p["ready"] else "not ready"
            print(f"  Pod {p['name']}: {p['status']}, {ready}, template {p['templateHash']}")
            for c in p["containers"]:
                started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["startedAt"])) if c["startedAt"] else "-"
                extra = f", exit code {c['exitCode']}" if c["state"] != "running" else ""
                print(f"    {c['name']}: {c['image']}, {c['state']}{', ' + c['health'] if c['health'] else ''}, "
                      f"started {started}{extra}")
    for n in d["unreachable"]:
        print(f"Node {n['name']}: UNREACHABLE: {n['error']}")
    print("Events:" if d["events"] else "Events:    <none>")
    if d["events"]:
        rows = [("  TIME", "TYPE", "REASON", "MESSAGE")]
        for e in d["events"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])) if e["time"] else "-"
            message = e["message"] if args.output == "wide" else e["message"][:160]
            rows.append((f"  {when}", e["type"], e["reason"], message))
        _table(rows)
    return 0


def _logs(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    import threading

    from . import logs
    from .podman import open_node

    sel = logs.parse_selector(args.object)
    since = logs.parse_since(args.since, time.time()) if args.since else None
    if args.previous and args.follow:
        raise logs.BadSelector("--previous and --follow do not go together: a previous run has ended")
    nodes = {n.name: open_node(cfg, n, timeout=30) for n in cfg.nodes}

    def out(line: str) -> None:
        print(line, flush=True)

    def err(line: str) -> None:
        print(f"gitops-agent: {line}", file=sys.stderr, flush=True)

    try:
        if args.follow:
            found = logs.follow(nodes, sel, out, err, threading.Event(), container=args.container, tail=args.tail,
                                since=since)
        else:
            found = logs.read(nodes, sel, out, err, container=args.container, tail=args.tail, since=since,
                              previous=args.previous)
    finally:
        for n in nodes.values():
            n.close()
    if not found:
        named = f" named {args.container}" if args.container else ""
        err(f"no container of {args.object}{named} on any reachable node")
        return 1
    return 0


def _doctor(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from . import doctor

    try:  # the last applied revision, for the registry check (none yet, or an unreadable state dir: skipped)
        agent = _agent(cfg, args, quiet=True)
        try:
            applied = agent.applied()
        finally:
            agent.close()
    except AgentError:
        applied = None
    results = doctor.run(cfg, revision=applied)
    if not _emit(doctor.as_json(results), args.output):
        for r in results:
            mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[r.status]
            print(f"{mark} {r.check:<16} {(r.node or 'host'):<10} {r.detail}")
            if r.fix:
                fix = r.fix.splitlines()
                print("\n".join([f"       fix: {fix[0]}", *(f"            {ln}" for ln in fix[1:])]))
        failed = sum(r.status == "fail" for r in results)
        print(f"{len(results) - failed}/{len(results)} check(s) passed" + (f", {failed} failed" if failed else ""))
    return 0 if doctor.ok(results) else 1


def _completion(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    """`completion --objects`: the names `describe` and `logs` take, from the last applied revision."""
    agent = _agent(cfg, args, quiet=True)
    try:
        rev = agent.applied()
    finally:
        agent.close()
    for o in rev.objects if rev else ():
        print(o.ref)
    return 0


def _short(revision: str) -> str:
    branch, _, sha = revision.partition("@sha1:")
    return f"{branch}@{sha[:12]}" if sha else revision


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _reconcile(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from .control import request

    print(request(cfg.state_dir))
    return 0


_COMMANDS = {"diff": _diff, "sync": _sync, "run": _run, "status": _status, "history": _history,
             "rollback": _rollback, "resume": _resume, "describe": _describe, "logs": _logs, "doctor": _doctor,
             "completion": _completion, "reconcile": _reconcile}


if __name__ == "__main__":
    sys.exit(main())
