"""Part of step 4 of `manifests.parse` (`convert`): a pod's dnsPolicy and dnsConfig.

`dns_settings` gives `model.PodTemplate`'s `dns_policy` and `dns_config` with Kubernetes' validation of them
(dnsPolicy None needs a nameserver; search list length) and what gitops-agent cannot do (dnsConfig with
dnsPolicy Default, DNS settings of a hostNetwork pod). How they become the pod's /etc/resolv.conf is `desired`'s.
Pure: it must not read files or the agent config.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model import DNSConfig
from .document import Document, JsonPath

# Kubernetes' limits (k8s.io/kubernetes/pkg/apis/core/validation): 3 nameservers (the schema), 32 search domains
# (the schema) of 2048 characters in all.
MAX_SEARCH_CHARS = 2048
# With ClusterFirst the pod network's DNS server (aardvark-dns) is the first of the resolver's 3 nameservers.
MAX_CLUSTER_FIRST_NAMESERVERS = 2


def dns_settings(doc: Document, prefix: JsonPath, spec: dict[str, Any]) -> dict[str, Any]:
    """`dns_policy` and `dns_config` of the (schema-checked) pod spec at `prefix`."""
    policy: str = spec.get("dnsPolicy", "ClusterFirst")
    raw = spec.get("dnsConfig")
    config = _dns_config(doc, prefix + ("dnsConfig",), raw or {})
    if policy == "None" and not config.nameservers:
        doc.report(prefix + (("dnsConfig",) if raw is not None else ("dnsPolicy",)),
                   "dnsPolicy None needs dnsConfig.nameservers (at least one): the pod's resolver has only the "
                   "dnsConfig's settings")
    if raw is not None and spec.get("hostNetwork", False):
        doc.report(prefix + ("dnsConfig",), "is not supported by gitops-agent with hostNetwork: true (the pod uses "
                                            "the node's /etc/resolv.conf); remove it")
    elif raw is not None and policy == "Default":
        doc.report(prefix + ("dnsConfig",), "is not supported by gitops-agent with dnsPolicy Default (the pod "
                                            "mounts the node's /etc/resolv.conf as it is): use dnsPolicy None and "
                                            "write the node's nameservers, searches and options in dnsConfig")
    elif policy == "None" and spec.get("hostNetwork", False):
        doc.report(prefix + ("dnsPolicy",), "dnsPolicy None is not supported by gitops-agent with hostNetwork: true "
                                            "(the pod uses the node's /etc/resolv.conf)")
    elif policy == "ClusterFirst" and len(config.nameservers) > MAX_CLUSTER_FIRST_NAMESERVERS:
        doc.report(prefix + ("dnsConfig", "nameservers"),
                   f"must not list more than {MAX_CLUSTER_FIRST_NAMESERVERS} nameservers with dnsPolicy ClusterFirst "
                   "(the pod network's DNS server is the first of 3)")
    return {"dns_policy": policy, "dns_config": config}


def _dns_config(doc: Document, path: JsonPath, raw: dict[str, Any]) -> DNSConfig:
    """The schema-checked dnsConfig, duplicates dropped as the kubelet drops them; invalid addresses reported."""
    for i, server in enumerate(raw.get("nameservers", ())):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            doc.report(path + ("nameservers", i), f"must be an IP address, not {server!r}")
    searches = tuple(dict.fromkeys(raw.get("searches", ())))
    if len(" ".join(searches)) > MAX_SEARCH_CHARS:
        doc.report(path + ("searches",), f"must not be longer than {MAX_SEARCH_CHARS} characters in all")
    options: dict[str, str | None] = {}
    for option in raw.get("options", ()):
        options[option["name"]] = option.get("value")  # a later option of the same name wins, as in the kubelet
    return DNSConfig(tuple(dict.fromkeys(raw.get("nameservers", ()))), searches, tuple(options.items()))
