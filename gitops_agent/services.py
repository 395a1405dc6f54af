"""The daemon's companions for unattended nodes: alerts (`notify`), metrics, the HTTP listener (`web`)
and the control socket (`control`). `agent.Daemon` starts them with `start` and calls `after_pass`
at the end of every pass; nothing else of the agent knows they exist.

Each part is optional and fails soft: a listener that cannot bind its port, or a sink that cannot be
reached, is logged and the agent reconciles on (an unattended node must not stop over its
dashboard). Must not change any state of a node or of the store but the outbox (whose new rows go
through the agent's History, `history`, in the transaction of the state change they report).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Callable

from .alerts import scrub, url_secrets
from .config import AgentConfig
from .log import EventLog, Log


class Services:
    def __init__(self, cfg: AgentConfig, log: Log, wake: Callable[[], None],
                 alive: Callable[[], bool], ticked: Callable[[], float], history: Any = None) -> None:
        self.cfg, self.log = cfg, log
        self.notifier: Any = None
        self.metrics: Any = None
        self.listener: Any = None
        self.control: Any = None
        self.snapshot: Any = None
        self._alive, self._ticked = alive, ticked
        self.hidden = url_secrets(cfg.source.url)  # a token in source.url is served nowhere
        subscribe = log.subscribe if isinstance(log, EventLog) else None
        if cfg.notify.sinks:
            from .notify import Notifier

            self.notifier = Notifier(cfg.notify, cfg.state_dir, log, hidden=self.hidden, history=history)
            if subscribe:
                subscribe(self.notifier)
            self.notifier.start()
        if cfg.metrics_listen:
            self._listen(subscribe)
        from .control import ControlSocket

        try:
            self.control = ControlSocket(cfg.state_dir, wake)
        except OSError as e:
            log("control.unavailable", level="warning", error=e.strerror or str(e),
                message="`gitops-agent reconcile` cannot reach this agent")

    def _listen(self, subscribe: Any) -> None:
        from .metrics import CONTENT_TYPE, Metrics
        from .web import Listener, Snapshot, is_loopback, parse_listen

        self.metrics = Metrics(self.notifier.outbox.pending if self.notifier else lambda: 0)
        if subscribe:
            subscribe(self.metrics)
        self.snapshot = Snapshot()
        host, _ = parse_listen(self.cfg.metrics_listen)
        if not is_loopback(host):
            self.log("listen.exposed", level="warning", listen=self.cfg.metrics_listen,
                     message="the status page, /status and /metrics are readable by anyone who can reach this address")
        try:
            self.listener = Listener(self.cfg.metrics_listen, self.snapshot, self.healthy,
                                     lambda: (self.metrics.render(), CONTENT_TYPE), self.pending)
        except OSError as e:
            self.log("listen.unavailable", level="warning", listen=self.cfg.metrics_listen, error=e.strerror or str(e))
            return
        self.log("listen", address=self.listener.address)

    def healthy(self) -> tuple[bool, str]:
        """`/healthz`: the watchdog's signal (scheduler alive, a pass running or scheduled) and a main loop tick
        within the last 5 s (it ticks every 0.5 s)."""
        since = time.monotonic() - self._ticked()
        if since > 5:
            return False, f"the main loop has not ticked for {since:.0f} s"
        if not self._alive():
            return False, "the scheduler is not running or no pass is scheduled"
        return True, "the main loop ticks and a pass is running or scheduled"

    def pending(self) -> list[dict[str, Any]]:
        return self.notifier.outbox.recent() if self.notifier else []

    def after_pass(self, agent: Any) -> None:
        """Take the snapshot the listener serves (what this pass left behind)."""
        if self.snapshot is None:
            return
        from .status import status

        try:
            st = status(agent)
            syncs = [asdict(s) for s in agent.history.syncs(10)]
            if self.hidden:
                st = json.loads(scrub(json.dumps(st, default=str), tuple(json.dumps(h)[1:-1] for h in self.hidden)))
                syncs = [{k: scrub(v, self.hidden) if isinstance(v, str) else v for k, v in s.items()} for s in syncs]
        except Exception as e:  # the page must never stop the agent
            self.log("status.snapshot.failed", level="warning", error=f"{type(e).__name__}: {e}")
            return
        self.snapshot.set(st, syncs)
        self.metrics.update(st)

    def close(self) -> None:
        for part in (self.control, self.listener, self.notifier):
            if part is not None:
                part.close()
