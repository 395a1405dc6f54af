"""HorizontalPodAutoscaler from literals: the manifest (schema, checks at FILE:LINE), Kubernetes' algorithm in
`hpa.decide` with an injected clock (tolerance, clamp, stabilisation windows, rate policies), the replicas the pass runs
(`hpa.scaled`) and the scaling a pass does that is not drift (`hpa.moves`). The real-Podman run is in
tests/test_hpa_e2e.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from gitops_agent import hpa
from gitops_agent.config import NodeConfig
from gitops_agent.desired import compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import (SCALE_DOWN_RATE, SCALE_UP_RATE, Autoscaler, Metric, NodeLimits, ObjectRef, Origin,
                                Revision, ScalingPolicy, ScalingRate, Workload)

A, B = NodeConfig("a"), NodeConfig("b")
WEB = ObjectRef("Deployment", "default", "web")
HPA_REF = ObjectRef("HorizontalPodAutoscaler", "default", "web")
REV = "main@sha1:" + "a" * 40

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
            - name: main
              image: localhost/web:1
              resources: {limits: {cpu: 200m, memory: 64Mi}}
""")
HPA = textwrap.dedent("""\
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    metadata: {name: web}
    spec:
      scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
      minReplicas: 1
      maxReplicas: 5
      metrics:
        - type: Resource
          resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
      behavior:
        scaleUp: {stabilizationWindowSeconds: 10}
        scaleDown: {stabilizationWindowSeconds: 60}
""")


def revision(*texts: str, nodes: tuple[NodeConfig, ...] = (A,)) -> Revision:
    return parse([SourceFile(f"f{i}.yaml", t.encode()) for i, t in enumerate(texts)], REV, nodes=nodes)


def rejected(*texts: str) -> list[str]:
    with pytest.raises(RevisionRejected) as e:
        revision(*texts)
    return [str(p) for p in e.value.problems]


def spec(low: int = 1, high: int = 5, up: int = 0, down: int = 300, target: int = 50,
         up_rate: ScalingRate = SCALE_UP_RATE, down_rate: ScalingRate = SCALE_DOWN_RATE) -> Autoscaler:
    return Autoscaler(HPA_REF, Origin("f.yaml", 1), WEB, low, high, (Metric("cpu", target),), up, down,
                      up_rate, down_rate)


def rate(select: str, *policies: tuple[str, int, int]) -> ScalingRate:
    return ScalingRate(select, tuple(ScalingPolicy(*p) for p in policies))


def usage(*millis: float, limit: int = 100) -> list[hpa.Usage]:
    return [hpa.Usage(f"web-{i}", m, 0, limit, 0) for i, m in enumerate(millis)]


# --- the manifest -------------------------------------------------------------------------------


def test_an_autoscaler_becomes_its_model_with_kubernetes_defaults() -> None:
    """The fields as written; no metrics is Kubernetes' 80 % CPU; no behavior is 0 s up and 300 s down, with
    Kubernetes' default rate policies (up 4 pods or 100 % per 15 s, down 100 % per 15 s)."""
    rev = revision(DEPLOYMENT, HPA)
    [a] = [o for o in rev.objects if isinstance(o, Autoscaler)]
    assert (a.target, a.min_replicas, a.max_replicas, a.metrics, a.scale_up_window, a.scale_down_window) == \
        (WEB, 1, 5, (Metric("cpu", 50),), 10, 60)
    bare = HPA.replace("  minReplicas: 1\n", "").split("  metrics:")[0]
    [b] = [o for o in revision(DEPLOYMENT, bare).objects if isinstance(o, Autoscaler)]
    assert (b.min_replicas, b.metrics, b.scale_up_window, b.scale_down_window) == (1, (Metric("cpu", 80),), 0, 300)
    assert (b.scale_up_rate, b.scale_down_rate) == (SCALE_UP_RATE, SCALE_DOWN_RATE)


def test_unsupported_autoscaler_fields_say_what_to_do_at_file_and_line() -> None:
    """Other metric types, target types and a tolerance of its own are refused at their line, with what to do."""
    text = HPA.replace("type: Resource", "type: Pods").replace("type: Utilization, averageUtilization: 50",
                                                               "type: AverageValue, averageValue: 100m")
    text = text.replace("scaleDown: {stabilizationWindowSeconds: 60}",
                        "scaleDown: {stabilizationWindowSeconds: 60, tolerance: 0.05}")
    found = rejected(DEPLOYMENT, text)
    assert any(p.startswith("f1.yaml:9: HorizontalPodAutoscaler/web: spec.metrics[0].type: must be Resource")
               for p in found), found
    assert any("f1.yaml:10:" in p and "target.averageValue: field 'averageValue' is not supported" in p and
               "use type Utilization" in p for p in found), found
    assert any("f1.yaml:13:" in p and "spec.behavior.scaleDown.tolerance: field 'tolerance' is not supported" in p
               for p in found), found


def test_rate_policies_become_the_model_with_kubernetes_defaults_for_what_is_left_out() -> None:
    """Each direction's selectPolicy and policies as written; either left out is Kubernetes' default
    (GenerateHPAScaleUpRules/GenerateHPAScaleDownRules), the other kept."""
    text = HPA.replace("scaleUp: {stabilizationWindowSeconds: 10}",
                       "scaleUp: {selectPolicy: Min, policies: [{type: Pods, value: 2, periodSeconds: 60}, "
                       "{type: Percent, value: 50, periodSeconds: 30}]}")
    text = text.replace("scaleDown: {stabilizationWindowSeconds: 60}", "scaleDown: {selectPolicy: Disabled}")
    [a] = [o for o in revision(DEPLOYMENT, text).objects if isinstance(o, Autoscaler)]
    assert a.scale_up_rate == rate("Min", ("Pods", 2, 60), ("Percent", 50, 30))
    assert a.scale_down_rate == ScalingRate("Disabled", SCALE_DOWN_RATE.policies)
    assert (a.scale_up_window, a.scale_down_window) == (0, 300)
    [b] = [o for o in revision(DEPLOYMENT, HPA).objects if isinstance(o, Autoscaler)]
    assert (b.scale_up_rate, b.scale_down_rate) == (rate("Max", ("Pods", 4, 15), ("Percent", 100, 15)),
                                                    rate("Max", ("Percent", 100, 15)))


def test_the_vllm_autoscalers_behavior_is_accepted_as_written() -> None:
    """The corpus' vLLM HPA (tests/corpus/real), its `Pods` metric (still an error) swapped for a cpu one: its
    scaleUp and scaleDown policies and selectPolicy are the model's."""
    real = Path(__file__).parent / "corpus/real/kubernetes-examples/AI/vllm-deployment/hpa"
    doc = yaml.safe_load((real / "gpu-horizontal-pod-autoscaler.yaml").read_text())
    doc["spec"]["metrics"] = [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    doc["spec"]["scaleTargetRef"]["name"] = "web"
    [a] = [o for o in revision(DEPLOYMENT, yaml.safe_dump(doc)).objects if isinstance(o, Autoscaler)]
    assert (a.scale_up_window, a.scale_up_rate) == (0, rate("Max", ("Pods", 4, 15), ("Percent", 100, 15)))
    assert (a.scale_down_window, a.scale_down_rate) == (30, rate("Max", ("Percent", 100, 15)))


def test_rate_policy_values_are_checked_as_kubernetes_does() -> None:
    """value > 0, periodSeconds 1..1800, type Pods or Percent, selectPolicy Max/Min/Disabled, at least one policy
    (an empty list is not Kubernetes' defaults): each at the line, with the value found or what to do."""
    bad = HPA.replace("scaleUp: {stabilizationWindowSeconds: 10}",
                      "scaleUp: {selectPolicy: Fastest, policies: [{type: Pod, value: 0, periodSeconds: 1801}, "
                      "{type: Pods, value: 1, periodSeconds: 0}]}")
    bad = bad.replace("scaleDown: {stabilizationWindowSeconds: 60}", "scaleDown: {policies: []}")
    where = "f1.yaml:12: HorizontalPodAutoscaler/web: spec.behavior.scaleUp."
    assert sorted(rejected(DEPLOYMENT, bad)) == [
        where + "policies[0].periodSeconds: must be at most 1800 (seconds: half an hour, as Kubernetes)",
        where + "policies[0].type: must be one of Pods, Percent, not 'Pod'",
        where + "policies[0].value: must be greater than zero (the pods or percent a period may add or remove; "
                "selectPolicy: Disabled stops scaling in this direction)",
        where + "policies[1].periodSeconds: must be greater than zero (seconds, at most 1800)",
        where + "selectPolicy: must be one of Max, Min, Disabled, not 'Fastest'",
        "f1.yaml:13: HorizontalPodAutoscaler/web: spec.behavior.scaleDown.policies: must specify at least one "
        "policy, as Kubernetes requires: remove policies for Kubernetes' default ones (and set selectPolicy: "
        "Disabled to stop scaling in this direction)"]


def test_a_missing_target_another_kind_and_min_over_max_are_errors() -> None:
    assert rejected(HPA) == ["f0.yaml:5: HorizontalPodAutoscaler/web: spec.scaleTargetRef.name: Deployment 'web' does "
                             "not exist in namespace 'default' (an autoscaler scales a workload of its own namespace)"]
    found = rejected(DEPLOYMENT, HPA.replace("kind: Deployment, name", "kind: DaemonSet, name"))
    assert found == ["f1.yaml:5: HorizontalPodAutoscaler/web: spec.scaleTargetRef.kind: must be Deployment or "
                     "StatefulSet: gitops-agent scales only these"]
    found = rejected(DEPLOYMENT, HPA.replace("minReplicas: 1", "minReplicas: 6"))
    assert found == ["f1.yaml:6: HorizontalPodAutoscaler/web: spec.minReplicas: must be at most maxReplicas (5)"]


def test_a_target_in_another_namespace_is_not_found() -> None:
    """scaleTargetRef names a workload of the autoscaler's own namespace."""
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n"
    found = rejected(ns, DEPLOYMENT, HPA.replace("metadata: {name: web}", "metadata: {name: web, namespace: other}"))
    assert found == ["f2.yaml:5: HorizontalPodAutoscaler/web: spec.scaleTargetRef.name: Deployment 'web' does not "
                     "exist in namespace 'other' (an autoscaler scales a workload of its own namespace)"]


def test_the_target_containers_need_a_limit_of_each_metrics_resource() -> None:
    """Utilisation is measured against the limits: a container without one is named."""
    no_cpu = DEPLOYMENT.replace("{limits: {cpu: 200m, memory: 64Mi}}", "{limits: {memory: 64Mi}}")
    assert rejected(no_cpu, HPA) == [
        "f1.yaml:10: HorizontalPodAutoscaler/web: spec.metrics[0].resource.name: the cpu utilisation is measured "
        "against the containers' limits, and container(s) main of Deployment/default/web have no "
        "resources.limits.cpu: set one"]


def test_the_revision_limits_count_an_autoscaled_workload_at_its_max() -> None:
    """limits: bound what the autoscaler may run (maxReplicas), not only Git's replicas."""
    with pytest.raises(RevisionRejected) as e:
        parse([SourceFile("f0.yaml", DEPLOYMENT.encode()), SourceFile("f1.yaml", HPA.encode())], REV, nodes=(A,),
              node_limits=NodeLimits(max_replicas_per_revision=4))
    assert [str(p) for p in e.value.problems] == [
        "f0.yaml:5: Deployment/web: spec.replicas: the revision would run 5 pods over all nodes; "
        "limits.maxReplicasPerRevision is 4"]
    within = parse([SourceFile("f0.yaml", DEPLOYMENT.encode()),
                    SourceFile("f1.yaml", HPA.replace("maxReplicas: 5", "maxReplicas: 4").encode())], REV,
                   nodes=(A,), node_limits=NodeLimits(max_replicas_per_revision=4))
    assert [o.ref.kind for o in within.objects] == ["Deployment", "HorizontalPodAutoscaler"]


def test_two_autoscalers_on_one_workload_are_an_error() -> None:
    second = HPA.replace("metadata: {name: web}", "metadata: {name: web2}")
    assert rejected(DEPLOYMENT, HPA, second) == [
        "f2.yaml:5: HorizontalPodAutoscaler/web2: spec.scaleTargetRef.name: Deployment/default/web is already "
        "scaled by HorizontalPodAutoscaler 'web': one autoscaler per workload"]


# --- the algorithm ------------------------------------------------------------------------------


def test_utilisation_is_the_pods_use_against_their_limits() -> None:
    assert hpa.utilization(usage(100, 50), "cpu") == (75, 2)
    assert hpa.utilization([], "cpu") is None
    assert hpa.utilization([hpa.Usage("p", 0, 48, 0, 64)], "memory") == (75, 1)


def test_desired_is_ceil_of_pods_times_ratio_outside_the_tolerance() -> None:
    """Kubernetes: within 10 % of the target nothing changes; else ceil(pods * utilisation / target)."""
    assert hpa.recommend(4, hpa.Reading("cpu", 54, 50, 4)) == 4  # ratio 1.08: within the tolerance
    assert hpa.recommend(4, hpa.Reading("cpu", 46, 50, 4)) == 4  # ratio 0.92
    assert hpa.recommend(4, hpa.Reading("cpu", 56, 50, 4)) == 5  # 4.48 -> 5
    assert hpa.recommend(4, hpa.Reading("cpu", 20, 50, 4)) == 2  # 1.6 -> 2
    assert hpa.recommend(3, hpa.Reading("cpu", 100, 50, 2)) == 4  # the pods measured, not the replicas wanted


def test_decide_scales_up_at_once_and_never_beyond_max() -> None:
    """Git's replicas is the starting point; scale up with a 0 s window at once, clamped to maxReplicas."""
    one = hpa.decide(spec(high=3), None, 1, usage(100), now=100.0)
    assert (one.desired, one.readings) == (2, (hpa.Reading("cpu", 100, 50, 1),))
    two = hpa.decide(spec(high=3), one, 1, usage(100, 100), now=115.0)
    assert two.desired == 3  # 4 wanted
    assert two.recommendations == ((100.0, 2), (115.0, 3))


def test_decide_scales_down_only_after_the_window_and_never_below_min() -> None:
    """The largest recommendation of the last scaleDown window holds; then the replicas drop, to minReplicas."""
    s = spec(low=2, down=60)
    record = hpa.Record(WEB, 5, ((0.0, 5),), (), 0.0)
    for now in (15.0, 30.0, 45.0):
        record = hpa.decide(s, record, 5, usage(0, 0, 0, 0, 0), now)
        assert record.desired == 5, now
    record = hpa.decide(s, record, 5, usage(0, 0, 0, 0, 0), now=61.0)  # the 5 of t=0 left the window
    assert record.desired == 2  # 0 wanted, min 2
    assert all(n == 2 for at, n in record.recommendations if at > 0)


def test_a_scale_up_window_takes_the_smallest_recent_recommendation() -> None:
    """With scaleUp.stabilizationWindowSeconds, a short spike does not add pods."""
    s = spec(up=30)
    record = hpa.decide(s, hpa.Record(WEB, 2, ((0.0, 2),)), 2, usage(100, 100), now=10.0)
    assert record.desired == 2  # 4 proposed, but 2 was recommended 10 s ago
    record = hpa.decide(s, record, 2, usage(100, 100), now=31.0)
    assert record.desired == 4


def test_a_pods_policy_adds_its_value_and_a_percent_one_its_share_rounded_as_kubernetes() -> None:
    """From the period's start: Pods +/- value; Percent up rounded up (it always moves), down truncated."""
    assert hpa.scale_up_limit(rate("Max", ("Pods", 4, 15)), 10, (), 0.0) == 14
    assert hpa.scale_up_limit(rate("Max", ("Percent", 100, 15)), 10, (), 0.0) == 20
    assert hpa.scale_up_limit(rate("Max", ("Percent", 10, 15)), 5, (), 0.0) == 6  # 5.5 rounded up
    assert hpa.scale_up_limit(rate("Max", ("Percent", 10, 15)), 1, (), 0.0) == 2  # 1.1 rounded up
    assert hpa.scale_down_limit(rate("Max", ("Pods", 3, 15)), 10, (), 0.0) == 7
    assert hpa.scale_down_limit(rate("Max", ("Percent", 15, 15)), 10, (), 0.0) == 8  # 8.5 truncated
    assert hpa.scale_down_limit(rate("Max", ("Percent", 10, 15)), 5, (), 0.0) == 4  # 4.5 truncated
    assert hpa.scale_down_limit(rate("Max", ("Percent", 10, 15)), 1, (), 0.0) == 0  # then minReplicas holds


def test_select_max_takes_the_policy_allowing_the_largest_change_and_min_the_smallest() -> None:
    """Kubernetes' default scale-up (4 pods or 100 %): 4 pods wins from 2 replicas, 100 % from 10."""
    both = (("Pods", 4, 15), ("Percent", 100, 15))
    assert [hpa.scale_up_limit(rate(s, *both), n, (), 0.0) for s in ("Max", "Min") for n in (2, 10)] == \
        [6, 20, 4, 14]
    down = (("Pods", 2, 60), ("Percent", 50, 60))
    assert [hpa.scale_down_limit(rate(s, *down), 10, (), 0.0) for s in ("Max", "Min")] == [5, 8]


def test_select_disabled_stops_scaling_in_its_direction_only() -> None:
    """scaleUp Disabled: high use adds no pod (status says what is held back); scaleDown still works."""
    s = spec(high=10, down=0, up_rate=rate("Disabled", ("Pods", 4, 15)))
    record = hpa.decide(s, hpa.Record(WEB, 2), 2, usage(100, 100), now=0.0)
    assert (record.desired, record.held, record.events) == (2, 4, ())
    assert hpa.shown(record, s, 2).endswith("; 4 wanted, held at 2 by the scaleUp rate policies")
    assert hpa.decide(s, hpa.Record(WEB, 4), 4, usage(0, 0, 0, 0), now=0.0).desired == 1
    no_down = spec(down=0, down_rate=rate("Disabled", ("Percent", 100, 15)))
    assert hpa.decide(no_down, hpa.Record(WEB, 4), 4, usage(0, 0, 0, 0), now=0.0).desired == 4


def test_the_scale_events_of_a_period_count_until_they_slide_out_of_it() -> None:
    """Kubernetes' defaults, a round every 5 s: 1 -> 20 takes three 15 s periods (1 -> 5 -> 10 -> 20); the 4 pods
    added at t=0 count until t=15. Scale-downs count too: the period's start is current - added + removed."""
    s, record, seen = spec(high=20, target=5), None, []
    for now in range(0, 35, 5):
        current = record.desired if record is not None else 1
        record = hpa.decide(s, record, 1, usage(*[100] * current), float(now))
        seen.append(record.desired)
    assert seen == [5, 5, 5, 10, 10, 10, 20]
    assert record is not None and record.events == ((30.0, 10),)  # only those of the longest period are kept
    assert hpa.period_start(3, ((100.0, 4), (105.0, -2)), 15, now=110.0) == 1  # 1 -> 5 -> 3
    assert hpa.scale_up_limit(SCALE_UP_RATE, 3, ((100.0, 4), (105.0, -2)), now=110.0) == 5
    assert hpa.scale_up_limit(SCALE_UP_RATE, 5, ((100.0, 4),), now=110.0) == 5  # no more this period
    assert hpa.scale_up_limit(SCALE_UP_RATE, 5, ((100.0, 4),), now=115.0) == 10  # the period has passed


def test_the_scale_down_window_holds_first_then_the_policy_paces_the_way_down() -> None:
    """scaleDown window 30 s and 2 pods per 20 s: 8 stays until the window has passed, then 2 pods a period."""
    s = spec(high=10, down=30, down_rate=rate("Max", ("Pods", 2, 20)))
    record, seen = hpa.Record(WEB, 8, ((0.0, 8),)), []
    for now in (10.0, 31.0, 41.0, 51.0, 71.0, 91.0):
        record = hpa.decide(s, record, 8, usage(*[0] * record.desired), now)
        seen.append((record.desired, record.held))
    assert seen == [(8, None), (6, 1), (6, 1), (4, 1), (2, 1), (1, None)]


def test_a_record_from_before_the_rate_policies_reads_with_no_events() -> None:
    """An agent restarted on a record written without `events` (an older version): the rates start afresh."""
    old = {"target": ["Deployment", "default", "web"], "desired": 5, "recommendations": [[0.0, 5]], "at": 0.0,
           "readings": [["cpu", 100, 5, 5]]}
    [record] = hpa.records({str(HPA_REF): old}).values()
    assert (record.desired, record.events, record.held) == (5, (), None)
    after = hpa.decide(spec(high=20, target=5), record, 1, usage(*[100] * 5), now=5.0)
    assert (after.desired, after.events, after.held) == (10, ((5.0, 5),), 20)
    assert hpa.records({str(HPA_REF): after.to_json()}) == {str(HPA_REF): after}


def test_no_measured_pod_keeps_the_replicas_clamped() -> None:
    """Without metrics (pods just started, a node down) nothing moves, except into [min, max]."""
    assert hpa.decide(spec(low=3), None, 1, [], now=0.0).desired == 3
    assert hpa.decide(spec(), hpa.Record(WEB, 4), 1, [], now=0.0).desired == 4
    assert hpa.decide(spec(low=3), hpa.Record(WEB, 2), 2, [], now=7.0).events == ((7.0, 1),)  # a scale event


def test_a_record_survives_its_json() -> None:
    """What the state store keeps (a restart keeps the replicas and the window's recommendations)."""
    record = hpa.decide(spec(), None, 1, usage(100), now=5.0)
    assert hpa.records({str(HPA_REF): record.to_json(), "bad": {"x": 1}}) == {str(HPA_REF): record}


# --- the pass -----------------------------------------------------------------------------------


def test_the_pass_runs_the_recorded_replicas_with_the_same_templates() -> None:
    """Git's replicas (2) is replaced by the record's (4), clamped to the bounds; template hashes do not change."""
    rev = revision(DEPLOYMENT, HPA)
    record = hpa.Record(WEB, 4)
    scaled = hpa.scaled(rev, {str(HPA_REF): record.to_json()})
    [w] = [o for o in scaled.objects if isinstance(o, Workload)]
    assert (w.replicas, scaled.id, scaled.digest) == (4, rev.id, rev.digest)
    [before] = compile_node(rev, A, (A,)).workloads
    [after] = compile_node(scaled, A, (A,)).workloads
    assert (before.replicas, after.replicas, after.template_hash) == (2, 4, before.template_hash)
    too_many = hpa.scaled(rev, {str(HPA_REF): hpa.Record(WEB, 9).to_json()})
    assert [o.replicas for o in too_many.objects if isinstance(o, Workload)] == [5]
    assert [o.replicas for o in hpa.scaled(rev, None).objects if isinstance(o, Workload)] == [2]


def test_a_scaled_statefulset_runs_its_ordinals_up_to_the_recorded_replicas() -> None:
    """A StatefulSet target: the recorded replicas are its ordinals, -0 .. -N-1."""
    sts = DEPLOYMENT.replace("kind: Deployment", "kind: StatefulSet").replace("replicas: 2", "replicas: 1")
    rev = revision(sts, HPA.replace("kind: Deployment, name", "kind: StatefulSet, name"))
    ref = ObjectRef("StatefulSet", "default", "web")
    [w] = compile_node(hpa.scaled(rev, {str(HPA_REF): hpa.Record(ref, 3).to_json()}), A, (A,)).workloads
    assert [p.name for p in w.pods] == ["web-0", "web-1", "web-2"]


def test_scaling_moves_are_not_counted_as_drift() -> None:
    """The pods a node gains or loses because the autoscaler moved since the last good pass."""
    rev = hpa.scaled(revision(DEPLOYMENT, HPA, nodes=(A, B)), {str(HPA_REF): hpa.Record(WEB, 5).to_json()})
    assert hpa.applied(rev) == {str(WEB): 5}
    assert hpa.moves(rev, {str(WEB): 2}, A, (A, B)) == 2  # 1 -> 3 on a
    assert hpa.moves(rev, {str(WEB): 2}, B, (A, B)) == 1  # 1 -> 2 on b
    assert hpa.moves(rev, {str(WEB): 5}, A, (A, B)) == 0
    assert hpa.moves(rev, None, A, (A, B)) == 0


def test_status_line_shows_current_desired_and_the_metric() -> None:
    record = hpa.decide(spec(high=3), None, 1, usage(100), now=1.0)
    assert hpa.shown(record, spec(high=3), 1) == \
        "web -> Deployment/web: 1/2 replicas (min 1, max 3); cpu 100%/50%"
    assert hpa.shown(None, spec(), 2) == "web -> Deployment/web: 2/2 replicas (min 1, max 5); cpu -/50%"
