"""`run`: the daemon around `Agent.sync`: a scheduler (APScheduler) with jitter and capped backoff, a
watcher on a local repository (watchdog), and systemd's notify protocol (READY, STATUS, WATCHDOG).

Decisions are not made here: a pass is `Agent.sync` (whose choices are in decide.py); the daemon only
decides *when* the next pass runs, from the pass's outcome (`ok`, `waiting`, `superseded`).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import clock, informer, systemd
from .errors import AgentError
from .log import Log

if TYPE_CHECKING:
    from .agent import Agent


class Daemon:
    """`run`: poll at `interval` with jitter, sync soon after a local repository changes,
    back off after failures, stop cleanly on SIGTERM/SIGINT (the current step finishes)."""

    JITTER = 0.1  # ±10% of the interval, so a fleet does not poll in lockstep
    BACKOFF_START = 2.0
    BACKOFF_CAP = 300.0
    DEBOUNCE = 1.0
    DRIFT_DEBOUNCE = 0.05  # a managed container stopped by hand: a pass this soon after the event (`informer`)
    # systemd (Type=notify): READY=1 once the first pass has finished (the node is reconciled,
    # or the reason it is not is in STATUS=), but no later than this after start, so a long
    # first rollout stays inside the unit's TimeoutStartSec (300 s in the shipped unit).
    READY_DEADLINE = 240.0

    def __init__(self, agent: Agent, log: Log) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.agent = agent
        self.log = log
        self.stop = threading.Event()
        self.failures = 0
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._observer: Any = None
        self._ready = False
        self._in_pass = False
        self._drift_lock = threading.Lock()
        self._work_lock = threading.Lock()  # held by each pass and by each eviction round: never both at once
        self._drift_pending = False  # drift seen during a pass: another pass right after it
        self._wake_pending = False  # `reconcile` asked during a pass: another pass right after it
        self._drift_due = 0.0  # monotonic time by which the scheduled drift pass starts
        self.informers: dict[str, informer.Informer] = {}  # each node's event-driven copy, from the first pass on
        self._watchdog = systemd.watchdog_interval()  # None unless the unit has WatchdogSec=
        self.ticked = time.monotonic()  # the main loop's last tick (/healthz)
        self.services: Any = None  # alerts, metrics, listener, control socket (services.py), started by run()
        self.scaler: Any = None  # the HorizontalPodAutoscalers' job (autoscaler.py), started by run()

    def _next_delay(self, ok: bool) -> float:
        interval = float(self.agent.cfg.source.interval)
        if ok:
            self.failures = 0
            return interval * (1 + random.uniform(-self.JITTER, self.JITTER))
        self.failures += 1
        backoff: float = self.BACKOFF_START * 2 ** (self.failures - 1)
        return min(backoff, max(self.BACKOFF_CAP, interval))

    def _pass(self, poll: bool = True) -> None:
        """One pass; `poll=False` (started by drift): Git is asked only if its last poll is older than the
        interval (`Agent.sync`)."""
        if self.stop.is_set():
            return
        with self._drift_lock:
            self._in_pass, self._drift_pending = True, False
        try:
            with self._work_lock:
                self._pass_once(poll)
        finally:
            with self._drift_lock:
                woken, self._wake_pending = self._wake_pending, False
                self._in_pass, again = False, self._drift_pending and not self.stop.is_set() and not self.failures
            if not self.informers and not self.stop.is_set():  # after the first pass: it is not slowed by their lists
                self.informers = informer.watch(self.agent.nodes, self.agent.cfg.resync_interval, self.on_drift,
                                                self.log)
            self._wake_for_batch()
            if woken and not self.stop.is_set():
                self.schedule(0)
            elif again:
                self.schedule(self.DRIFT_DEBOUNCE, poll=False)

    def wake(self) -> None:
        """`gitops-agent reconcile`: a pass now, or right after the running one (a job scheduled during a pass
        would be skipped by the scheduler as a second instance, or replaced by the pass's next-interval job)."""
        with self._drift_lock:
            if self._in_pass:
                self._wake_pending = True
                return
        self.schedule(0)

    def _wake_for_batch(self) -> None:
        """A pass when a Job or CronJob next needs one (a schedule's next time, a deadline, an expiry:
        `batchstore.next_wake`), not only at the poll interval: one scheduler job for the earliest over the nodes."""
        try:
            delay = self.agent.batch_due()
        except AgentError as e:  # a node that cannot be read now: the poll interval still comes
            self.log("batch.wake.unknown", level="warning", error=str(e))
            return
        if delay is not None and not self.stop.is_set():
            self.scheduler.add_job(self.wake, "date", run_date=datetime.now() + timedelta(seconds=delay + 0.5),
                                   id="batch", replace_existing=True)

    def on_drift(self, node: str) -> None:
        """`informer`: a managed object on `node` changed by someone else; a pass now (debounced), or right
        after the running one. A failing agent keeps its backoff."""
        with self._drift_lock:
            if self._in_pass:
                self._drift_pending = True
                return
            now = time.monotonic()
            if now < self._drift_due or self.failures or self.stop.is_set():
                return  # a drift pass is already on its way (the events of one hand change come in a burst)
            self._drift_due = now + self.DRIFT_DEBOUNCE + 1.0
        self.schedule(self.DRIFT_DEBOUNCE, poll=False)

    def _pass_once(self, poll: bool = True) -> None:
        ok = False
        polled_before = self.agent.polled_at()
        try:
            out = self.agent.sync(poll=poll)
            ok = out.ok or out.waiting  # a bad commit is not retried faster: it waits for Git to move
            self._notify_result(f"{out.result} {out.target or out.head or '-'}"
                                + (f": {out.error.splitlines()[0]}" if out.error else ""))
            if out.result == "superseded":  # rollover: take the newer commit now
                self.schedule(0)
                return
        except AgentError as e:
            self.log("sync.crashed", level="error", error=str(e))
            self._notify_result(f"sync crashed: {e}")
        except Exception as e:  # a bug must not stop an unattended agent: log it, back off, go on
            self.log("sync.crashed", level="error", error=f"{type(e).__name__}: {e}", bug="yes")
            self._notify_result(f"sync crashed: {type(e).__name__}: {e}")
        finally:
            if self.services is not None:
                self.services.after_pass(self.agent)
            if self.scaler is not None:
                self._scaler_use()
        delay = self._next_delay(ok)
        polled = self.agent.polled_at()
        if ok and polled is not None and polled == polled_before:  # a drift pass that did not poll: the next poll
            # stays due an interval after the last one
            delay = max(0.0, min(delay, polled + float(self.agent.cfg.source.interval) - clock.now()))
        if not self.stop.is_set():
            self.schedule(delay)
            if not ok:
                self.log("backoff", seconds=round(delay, 1), failures=self.failures)

    def _scaler_use(self) -> None:
        """The autoscalers work from the revision the nodes run now (cached by the pass: no Git call)."""
        try:
            self.scaler.use(self.agent.applied())
        except AgentError as e:  # the store cannot be read: the pass reports it; the autoscalers keep the last one
            self.log("autoscaler.unavailable", level="warning", error=str(e))

    def _notify_result(self, line: str) -> None:
        """STATUS= after every pass (shown by `systemctl status`); READY=1 after the first."""
        fields = [f"STATUS={line.splitlines()[0][:200] if line else '-'}"]
        if not self._ready:
            self._ready = True
            fields.insert(0, "READY=1")
        systemd.notify(*fields)

    def _alive(self) -> bool:
        """What WATCHDOG=1 vouches for: the scheduler thread runs and a pass is either running
        or scheduled (a lost schedule would leave the node unreconciled forever)."""
        thread = getattr(self.scheduler, "_thread", None)
        return (self.scheduler.running and (thread is None or thread.is_alive())
                and (self._in_pass or self.scheduler.get_job("sync") is not None))

    def _endpoints(self) -> Any:
        """Readiness probes that move pods in and out of their Services' DNS (endpoints.py), for the pods of each
        node's last steps; their verdicts go in the state store (`endpoints`), read by `status` and the pass."""
        from . import endpoints

        history, fleet = self.agent.history, self.agent.fleet
        return endpoints.Monitor(self.agent.nodes, lambda n: endpoints.specs_of(fleet.stepped.get(n, ())), self.log,
                                 record=lambda v: history.put(endpoints.STORE_KEY, v),
                                 known=history.get(endpoints.STORE_KEY) or {},
                                 reload=lambda: history.get(endpoints.STORE_KEY))

    def _eviction(self) -> Any:
        """emptyDir sizeLimit on the node's disk (eviction.py): a pod over it is evicted between passes, recorded in
        the state store (`status` shows it), and a pass then makes it again. A failing agent keeps its backoff."""
        from . import eviction

        history = self.agent.history

        def record(done: list[eviction.Eviction]) -> None:
            history.put(eviction.STORE_KEY, eviction.recorded(history.get(eviction.STORE_KEY), done, clock.wall()))

        return eviction.Monitor(self.agent.nodes, self.log, record, lambda: None if self.failures else self.wake(),
                                lock=self._work_lock, closed=lambda: self.agent.fleet.closed().repair)

    def schedule(self, delay: float, poll: bool = True) -> None:
        when = datetime.now() + timedelta(seconds=delay)
        self.scheduler.add_job(self._pass, "date", run_date=when, id="sync", replace_existing=True,
                               kwargs={"poll": poll})

    def _watch(self) -> None:
        """A local source is watched: a commit there triggers a sync within DEBOUNCE seconds."""
        url = self.agent.location.url
        if not url.startswith("file://"):
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        daemon = self

        class Changed(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                path = str(getattr(event, "dest_path", "") or event.src_path)
                if "/refs/" in path or path.endswith(("HEAD", "packed-refs")):
                    daemon.schedule(daemon.DEBOUNCE)

        root = url[len("file://"):]
        gitdir = os.path.join(root, ".git") if os.path.isdir(os.path.join(root, ".git")) else root
        observer = Observer()
        try:
            observer.schedule(Changed(), gitdir, recursive=True)
            observer.start()
        except OSError as e:  # e.g. the repository is gone after a reboot: polling still finds it again
            self.log("watch.unavailable", level="warning", path=gitdir, error=e.strerror or str(e))
            return
        self._observer = observer
        self.log("watch", path=gitdir)

    def run(self) -> int:
        def on_signal(signum: int, _frame: Any) -> None:
            self.log("signal", signal=signal.Signals(signum).name)
            systemd.notify("STOPPING=1", "STATUS=stopping: the current step finishes first")
            self.stop.set()
            self.agent.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.log("start", source=self.agent.location.url, branch=self.agent.location.branch,
                 interval=self.agent.cfg.source.interval, nodes=",".join(self.agent.nodes))
        self.scheduler.start()
        from .liveness import Monitor  # gRPC liveness probes, run by the agent while it runs (README)

        self.scheduler.add_job(Monitor(self.agent.nodes, self.log).tick, "interval", seconds=1, id="liveness")
        self.scheduler.add_job(self._endpoints().tick, "interval", seconds=1, id="endpoints")
        from .autoscaler import Scaler  # HorizontalPodAutoscalers: measured here, scaled by the pass (README)

        self.scaler = Scaler(self.agent.nodes, self.agent.history, self.log,
                             lambda: None if self.failures else self.wake())  # a failing agent keeps its backoff
        self.scheduler.add_job(self.scaler.tick, "interval", seconds=self.agent.cfg.autoscaler_period, id="autoscaler")
        self.scheduler.add_job(self._eviction().tick, "interval", seconds=self.agent.cfg.eviction_period,
                               id="eviction")
        self._watch()
        from .services import Services

        self.services = Services(self.agent.cfg, self.log, self.wake, self._alive, lambda: self.ticked,
                                 history=self.agent.history)
        self.schedule(0)
        started = next_ping = time.monotonic()
        try:
            # the main loop is the watchdog's heartbeat: a wedged main thread or a dead
            # scheduler stops the pings, and systemd restarts the agent after WatchdogSec
            while not self.stop.wait(0.5):
                now = self.ticked = time.monotonic()
                if self._watchdog is not None and now >= next_ping and self._alive():
                    systemd.notify("WATCHDOG=1")
                    next_ping = now + self._watchdog
                if not self._ready and now - started > self.READY_DEADLINE:
                    self._ready = True
                    systemd.notify("READY=1", "STATUS=first pass still running")
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
            self.scheduler.shutdown(wait=True)  # lets a running pass finish its current step
            informer.unwatch(self.agent.nodes, self.informers)
            if self.services is not None:
                self.services.close()
            self.agent.close()
            self.log("stopped")
        return 0
