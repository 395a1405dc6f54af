"""Service endpoints follow readiness, on real Git and real Podman: a pod whose readiness probe starts failing
disappears from the Service's DNS answers (aardvark-dns, asked from a client container on the namespace network)
and comes back when it passes.

Also runnable as a script (`python tests/test_endpoints_e2e.py SERVER NAME`): one DNS query for NAME's A records,
printed as JSON; the test runs it inside the client container's network namespace (`nsenter --net`), so the
question reaches aardvark-dns from the client's own address, as the client's resolver would send it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
NS = f"ep{os.getpid()}"


def dns_a(server: str, name: str, timeout: float = 2.0) -> list[str]:
    """The A records `server` answers for `name` (one UDP question; empty for NXDOMAIN)."""
    qid = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question, (server, 53))
        data = s.recv(4096)
    answers, i, out = struct.unpack(">H", data[6:8])[0], 12 + len(question), []
    for _ in range(answers):
        if data[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while data[i]:
                i += data[i] + 1
            i += 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(data[i:i + 4]))
        i += length
    return sorted(out)


if __name__ == "__main__":
    print(json.dumps(dns_a(sys.argv[1], sys.argv[2])))
    sys.exit(0)

import pytest  # noqa: E402 - the script above needs none of the test's imports
import yaml  # noqa: E402

from gitops_agent.agent import Agent  # noqa: E402
from gitops_agent.daemon import Daemon  # noqa: E402
from gitops_agent.desired import network_name  # noqa: E402
from gitops_agent.endpoints import STORE_KEY  # noqa: E402
from gitops_agent.status import status  # noqa: E402
from podman_env import HTTPD, WEB1  # noqa: E402

MANIFESTS = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {WEB1}
          command: {json.dumps(HTTPD)}
          readinessProbe:
            httpGet: {{path: /index.html, port: 8080}}
            initialDelaySeconds: 4
            periodSeconds: 1
            failureThreshold: 2
"""


def _until(seen: Any, tick: Any, timeout: float = 15.0) -> float:
    """Tick the monitor (as the daemon does, about once a second; here every 0.2 s) until `seen()`; the seconds."""
    t0 = time.monotonic()
    while not seen():
        assert time.monotonic() - t0 < timeout, "timed out"
        tick()
        time.sleep(0.2)
    return time.monotonic() - t0


def test_a_pod_whose_readiness_fails_leaves_the_service_dns_and_comes_back(
    clean_fleet: Any, git_remote: Any, tmp_path: Path,
) -> None:
    """Two replicas behind Service `web`, created by a one-shot `sync` whose gate waits for their readiness probe:
    until it passes, `web` resolves to neither (their own names do); once it passes the gate puts them in `web`.
    Then one's readiness probe starts failing -> the client's DNS answer for `web` no longer has its address (its own
    pod name still resolves), `status` lists it as not ready, an event says so and a pass does not put it back; the
    probe passes again -> `web` answers with it again, on the same address."""
    svc = clean_fleet[0]  # a node in network and mount namespaces of its own: its own aardvark-dns and subnets
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "branch": "main", "path": "edge", "interval": "5s"},
        "nodes": [{"name": svc.name, "url": svc.url}], "stateDir": str(tmp_path / "state"), "readyTimeout": "30s"}))
    git_remote.write("edge/all.yaml", MANIFESTS)
    git_remote.commit_and_push("web x2 behind a Service, with a readiness probe")
    from gitops_agent import config as config_mod

    events: list[tuple[str, dict[str, Any]]] = []
    agent = Agent(config_mod.load(cfg), log=lambda event, **fields: events.append((event, fields)))
    synced: list[Any] = []
    sync = threading.Thread(target=lambda: synced.append(agent.sync()))
    sync.start()
    try:
        net = network_name(NS)
        _created(svc, lambda: svc.podman("network", "exists", net, check=False).returncode == 0)
        svc.podman("run", "-d", "--network", net, "--name", "client", WEB1, "sleep", "300")
        bridge = json.loads(svc.podman("network", "inspect", net).stdout)[0]["network_interface"]
        # netavark 1.4 leaves the bridge's MAC to the kernel (the lowest of its ports'): a move that removes the port
        # whose MAC it was changes the gateway's MAC under the client's ARP entry, and the client reaches no DNS
        # until that entry expires (README, "Service endpoints follow readiness"); pinned here as the README says
        subprocess.run(["nsenter", f"--net=/run/netns/{svc.netns}", "ip", "link", "set", bridge, "address",
                        "02:00:00:00:00:01"], check=True, timeout=10)
        pid = svc.podman("inspect", "--format", "{{.State.Pid}}", "client").stdout.strip()
        gateway = json.loads(svc.podman("network", "inspect", net).stdout)[0]["subnets"][0]["gateway"]
        pods = _created(svc, lambda: _web_pods(svc) if len(_web_pods(svc)) == 2 else [])

        def resolve(name: str) -> list[str]:
            """What the client's resolver asks first (its resolv.conf: `search dns.podman`, ndots 1); asked again
            after a timeout, as a resolver does (aardvark-dns reloads its records on each network change)."""
            asked, errors = f"{name}.dns.podman", []
            for _ in range(5):
                cp = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, str(SCRIPT), gateway,
                                     asked], capture_output=True, text=True, timeout=10)
                if cp.returncode == 0:
                    return list(json.loads(cp.stdout))
                errors.append(cp.stderr.strip().splitlines()[-1])
            raise AssertionError(f"no DNS answer for {asked}: {errors}")

        ips = {p: json.loads(svc.podman("pod", "inspect", p).stdout) for p in pods}
        infra = {p: ips[p]["InfraContainerID"] for p in pods}
        addr = {p: svc.podman("inspect", "--format", "{{(index .NetworkSettings.Networks \"" + net
                              + "\").IPAddress}}", infra[p]).stdout.strip() for p in pods}
        # the gate waits out initialDelaySeconds before it probes: until then `web` resolves to neither
        assert resolve("web") == [] and [resolve(p) for p in pods] == [[addr[p]] for p in pods]  # own names do
        assert synced == [] and agent.history.get(STORE_KEY) is None  # still waiting: nothing served, none recorded
        sync.join(timeout=30)
        assert synced and synced[0].ok
        assert resolve("web") == sorted(addr.values())  # the gate put them in on their first pass
        assert sorted(agent.history.get(STORE_KEY)[svc.name]) == pods  # recorded ready, as the monitor reads it
        monitor = Daemon(agent, agent.log)._endpoints()  # as the daemon's `endpoints` job makes it
        sick, well = pods
        gate_saw = agent.history.get(STORE_KEY)[svc.name]
        _until(lambda: all(agent.history.get(STORE_KEY)[svc.name][p]["since"] != gate_saw[p]["since"] for p in pods),
               monitor.tick)  # first verdicts: both ready, nothing moved
        assert monitor.moves == 0 and resolve("web") == sorted(addr.values())

        svc.podman("exec", f"{sick}_web", "rm", "/www/index.html")  # its probe now gets 404
        out_after = _until(lambda: resolve("web") == [addr[well]], monitor.tick)
        assert resolve(sick) == [addr[sick]]  # its own name stays
        removed = [f for e, f in events if e == "endpoint.not-ready"]
        assert [(f["pod"], f["services"], f["reason"]) for f in removed] == [(sick, "web", "EndpointNotReady")]
        assert "readiness probe failed 2 time(s) in a row" in removed[0]["error"]
        service = next(o for o in status(agent)["objects"] if o["kind"] == "Service")
        assert (service["readyEndpoints"], service["notReadyEndpoints"]) == ([well], [sick])
        assert agent.sync().ok and resolve("web") == [addr[well]]  # a pass leaves it out

        svc.podman("exec", f"{sick}_web", "sh", "-c", "echo 1 > /www/index.html")
        back_after = _until(lambda: resolve("web") == sorted(addr.values()), monitor.tick)
        ready = [f["pod"] for e, f in events if e == "endpoint.ready"]
        assert sorted(ready[:2]) == pods and ready[2:] == [sick]  # the gate's, then its return (monitor: no news)
        assert svc.podman("inspect", "--format", "{{(index .NetworkSettings.Networks \"" + net + "\").IPAddress}}",
                          infra[sick]).stdout.strip() == addr[sick]
        service = next(o for o in status(agent)["objects"] if o["kind"] == "Service")
        assert (service["readyEndpoints"], service["notReadyEndpoints"]) == (pods, [])
        assert monitor.moves == 2
        print(f"readiness: out of DNS {out_after:.1f} s after the probe began failing (period 1 s x threshold 2), "
              f"back {back_after:.1f} s after it passed")
    finally:
        sync.join(timeout=60)
        agent.close()


def _created(svc: Any, seen: Any, timeout: float = 30.0) -> Any:
    """Poll `seen()` (what the sync under way has created so far) until it is truthy; returns it."""
    t0 = time.monotonic()
    while not (found := seen()):
        assert time.monotonic() - t0 < timeout, "not created in time"
        time.sleep(0.1)
    return found


def _web_pods(svc: Any) -> list[str]:
    """The pods whose `web` container runs."""
    names = svc.podman("ps", "--format", "{{.Names}}").stdout.split()
    return sorted(n[:-len("_web")] for n in names if n.endswith("_web"))
