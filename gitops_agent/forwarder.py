"""PURE: the Service forwarder, which NodePort and LoadBalancer Services get one, and what it runs.

A NodePort or LoadBalancer Service whose port one pod can own (it selects one pod and that pod never rolls with a
surge) publishes the port on that pod: the direct path, no extra hop and no extra image. Any other such Service
(several pods, or a RollingUpdate with maxSurge, so that a new pod would start while the old one holds the port) is
served as k3s's ServiceLB serves it on a node without a cloud: on each node that runs its pods, one forwarder pod
`svclb-<service>` of the agent publishes the port(s) and forwards each to the Service's DNS name on the namespace
network (`socat`, one container per port). Services are DNS aliases of ready pods' addresses
(`gitops_agent/endpoints.py`), so the forwarder needs no endpoint list: socat resolves the name at each connection,
an unready pod is out of DNS and a replaced pod is reached.

Sits beside `desired` (which builds the forwarder's `WorkloadSpec` from these decisions) and `manifests.checks`
(which accepts such Services). Imports only the model; no I/O, no config: the image is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import Service, ServicePort, Workload

DEFAULT_IMAGE = "docker.io/alpine/socat:latest"  # the agent config's `serviceForwarder.image`
PREFIX = "svclb-"  # k3s's name for the same pods


def selects(service: Service, workload: Workload) -> bool:
    """The Service selects the workload's pods (same namespace, every selector label); an empty selector none."""
    labels = workload.template.labels
    return (service.ref.namespace == workload.ref.namespace and bool(service.selector)
            and all(labels.get(k) == v for k, v in service.selector.items()))


def surges(workload: Workload) -> bool:
    """A RollingUpdate with a maxSurge above 0: its new pod starts while the old one still runs."""
    return workload.strategy == "RollingUpdate" and int(str(workload.rolling_update.max_surge).rstrip("%")) != 0


def forwarded(service: Service, workloads: Iterable[Workload]) -> bool:
    """The Service publishes on the node and one pod cannot own its port(s): it selects more than one pod, or
    pods that roll with a surge. hostNetwork workloads are not counted (manifests rejects such a selection)."""
    if not service.published():
        return False
    pods = [w for w in workloads if selects(service, w) and w.replicas > 0 and not w.template.host_network]
    return sum(w.replicas for w in pods) > 1 or any(surges(w) for w in pods)


def pod_name(service: Service) -> str:
    """`svclb-<service>`, with `_<namespace>` outside `default` (Podman names are node-global)."""
    name = f"{PREFIX}{service.ref.name}"
    return name if service.ref.namespace == "default" else f"{name}_{service.ref.namespace}"


def container_suffix(host_port: int, protocol: str) -> str:
    """The name of the container forwarding one port: `tcp-8080`."""
    return f"{protocol.lower()}-{host_port}"


def socat_args(service: Service, host_port: int, port: ServicePort, target: int) -> tuple[str, ...]:
    """socat's two addresses: listen on the node port (fork: one child per connection, which resolves the name
    again), connect to the Service's DNS name at the port its pods serve (`target`, the resolved targetPort:
    the name is an alias of the pods' addresses, there is no virtual IP translating `port`)."""
    if port.protocol.upper() == "UDP":
        return (f"UDP-RECVFROM:{host_port},fork,reuseaddr", f"UDP-SENDTO:{service.ref.name}:{target}")
    return (f"TCP-LISTEN:{host_port},fork,reuseaddr", f"TCP:{service.ref.name}:{target}")
