"""`immutable: true` ConfigMaps and Secrets from literals: read by the manifests, and a later revision that changes
one's data (or makes it mutable) rejected as the Kubernetes API server refuses the update
(`manifests.check_immutable`; the agent applies it to each new head: tests/test_e2e.py's user story)."""

from __future__ import annotations

from dataclasses import replace

from gitops_agent import model
from gitops_agent.manifests import check_immutable
from test_manifests import ok, problems, y

REV1 = "main@sha1:" + "1" * 40
REV2 = "main@sha1:" + "2" * 40
# the Kubernetes documentation's configmap/immutable-configmap.yaml, as it is
EXAMPLE = y("""
    apiVersion: v1
    data:
      company_name: "ACME, Inc." # existing fictional company name
    kind: ConfigMap
    immutable: true
    metadata:
      name: company-name-20150801
""")
SECRET = y("""
    apiVersion: v1
    kind: Secret
    metadata: {name: token}
    immutable: true
    stringData: {token: s3cr3t-value-1}
""")
TO_DO = ("as in Kubernetes: give the new data a ConfigMap or Secret of a new name (and point the pods at it), or "
         "delete this one in a commit of its own first")


def configs(revision: model.Revision) -> dict[str, model.ConfigData]:
    return {o.ref.name: o for o in revision.objects if isinstance(o, model.ConfigData)}


def test_immutable_is_read_on_configmaps_and_secrets_and_must_be_a_boolean() -> None:
    """The documentation's example is accepted and immutable; a Secret too; without the field, or false, an object
    is mutable; a value that is not a boolean is an error."""
    found = configs(ok({"c.yaml": EXAMPLE, "s.yaml": SECRET, "m.yaml": EXAMPLE.replace("immutable: true", "")
                       .replace("20150801", "mutable"), "f.yaml": EXAMPLE.replace("true", "false")
                       .replace("20150801", "false")}))
    assert {name: c.immutable for name, c in found.items()} == {
        "company-name-20150801": True, "token": True, "company-name-mutable": False, "company-name-false": False}
    assert found["company-name-20150801"].data == {"company_name": b"ACME, Inc."}
    assert problems({"c.yaml": EXAMPLE.replace("immutable: true", "immutable: 'yes'")}) == [
        "c.yaml:5: ConfigMap/company-name-20150801: immutable: must be a boolean, not a string"]


def test_a_revision_that_changes_an_immutable_objects_data_is_rejected_with_what_to_do() -> None:
    """Other data, or the field removed, in a revision after the one the nodes run: one problem each, at the new
    revision's document, naming the keys (never a value); the same data, other metadata, or an object that was
    mutable are accepted."""
    running = ok({"c.yaml": EXAMPLE, "s.yaml": SECRET}, REV1)
    changed = ok({"c.yaml": EXAMPLE.replace("ACME, Inc.", "Fiktivesunternehmen GmbH"),
                  "s.yaml": SECRET.replace("immutable: true\n", "")}, REV2)
    found = [str(p) for p in check_immutable([running], changed)]
    assert found == [
        f"c.yaml:1: ConfigMap/company-name-20150801: data: ConfigMap 'company-name-20150801' is immutable in "
        f"revision {REV1}, which the nodes run: its data cannot change (key(s) 'company_name'), {TO_DO}",
        f"s.yaml:1: Secret/token: immutable: Secret 'token' is immutable in revision {REV1}, which the nodes run: "
        f"it cannot be made mutable again, {TO_DO}",
    ]
    secret_changed = ok({"s.yaml": SECRET.replace("s3cr3t-value-1", "s3cr3t-value-2")}, REV2)
    (problem,) = check_immutable([running], secret_changed)
    assert "key(s) 'token'" in problem.message and "s3cr3t" not in str(problem)
    relabelled = ok({"c.yaml": EXAMPLE.replace("metadata:", "metadata:\n  labels: {team: a}"), "s.yaml": SECRET},
                    REV2)
    assert check_immutable([running], relabelled) == []
    mutable = ok({"c.yaml": EXAMPLE.replace("immutable: true", "")}, REV1)
    assert check_immutable([mutable], changed) == []  # becoming immutable with new data is an ordinary update
    assert check_immutable([], changed) == []  # no revision on the nodes yet


def test_deleting_an_immutable_object_then_creating_it_again_is_accepted() -> None:
    """As in Kubernetes (delete and create): a revision without the object, then one with new data under the same
    name; a new name is accepted at once."""
    running = ok({"c.yaml": EXAMPLE}, REV1)
    without = ok({"other.yaml": EXAMPLE.replace("20150801", "20240312")}, REV2)
    assert check_immutable([running], without) == []
    again = ok({"c.yaml": EXAMPLE.replace("ACME, Inc.", "Fiktivesunternehmen GmbH")}, REV1)
    assert check_immutable([without], again) == []


def test_every_running_revision_and_each_nodes_variant_is_checked() -> None:
    """An unfinished rollout's target counts as much as the applied revision; a node's variant (per-node
    variables) is compared with the same node's variant; one problem per object however many find it."""
    applied = ok({"c.yaml": EXAMPLE}, REV1)
    new = ok({"c.yaml": EXAMPLE.replace("ACME, Inc.", "Other")}, REV2)
    rolling = ok({"c.yaml": EXAMPLE.replace("ACME, Inc.", "Rolling")}, REV2)
    assert len(check_immutable([applied, rolling], new)) == 1
    assert "revision " + REV1 in check_immutable([applied, rolling], new)[0].message
    (obj,) = applied.objects
    assert isinstance(obj, model.ConfigData)
    on_b = replace(applied, objects=(replace(obj, data={"company_name": b"B's own"}),))
    with_variant = replace(applied, variants={"b": on_b})
    same_on_b = replace(applied, variants={"b": on_b})
    assert check_immutable([with_variant], same_on_b) == []
    (problem,) = check_immutable([with_variant], applied)  # node b would get a's data
    assert problem.path == "data"
