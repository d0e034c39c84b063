"""Equivalence classes: computing per class and expanding is exactly the pod matrix."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from probe.model import Namespace
from probe.pods import ContainerPort, PodInfo
from probe.policy import Endpoint, PolicyEngine, parse_policy
from probe.policy.classes import class_connectivity, equivalence_classes
from probe.policy.portset import ALL_PORTS, describe, merge, segments, subtract

NAMESPACES = ["n1", "n2", "n3"]
# few namespaces and label values, so that pods often share a class and differ only in what
# some policy reads (an IP inside an ipBlock, a named port, a label a selector tests)
pod_st = st.tuples(
    st.sampled_from(NAMESPACES[:2]),
    st.fixed_dictionaries({"app": st.sampled_from(["a", "b"])},
                          optional={"tier": st.sampled_from(["web", "db"]),
                                    "pod-template-hash": st.sampled_from(["h1", "h2"])}),
    st.sampled_from(["", "10.1.0.1", "10.1.0.5", "192.168.3.3", "fd00::5"]),
    st.sampled_from([(), (("http", 80),), (("http", 81),), (("http", 80), ("metrics", 9090))]),
)
pods_st = st.lists(pod_st, min_size=1, max_size=9).map(lambda items: [
    PodInfo(name=f"p{i}", namespace=Namespace(ns), labels=labels, ip=ip,
            ports=tuple(ContainerPort(name=n, port=p) for n, p in ports))
    for i, (ns, labels, ip, ports) in enumerate(items)])
selector_st = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"app": st.sampled_from(["a", "b", "c"])}).map(lambda d: {"matchLabels": d}),
    st.sampled_from([{"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                     {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                     {"matchLabels": {"pod-template-hash": "h1"}}]))
peer_st = st.one_of(
    selector_st.map(lambda s: {"podSelector": s}),
    selector_st.map(lambda s: {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": s}),
    st.just({"namespaceSelector": {}}),
    st.sampled_from([{"cidr": "10.1.0.0/24"}, {"cidr": "10.0.0.0/8", "except": ["10.1.0.4/30"]},
                     {"cidr": "0.0.0.0/0"}, {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}, {"cidr": "fd00::/8"}])
    .map(lambda b: {"ipBlock": b}))
ports_st = st.sampled_from([[], [{"port": 80}], [{"port": "http"}], [{"port": 80, "endPort": 90}],
                            [{"protocol": "UDP", "port": 53}, {"port": 53}], [{"port": "metrics"}, {"port": 81}],
                            [{"protocol": "UDP"}]])
rule_st = st.fixed_dictionaries({"ports": ports_st}, optional={"peers": st.lists(peer_st, min_size=1, max_size=2)})
policy_st = st.tuples(st.sampled_from(NAMESPACES[:2]), selector_st,
                      st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
                      st.lists(rule_st, max_size=2), st.lists(rule_st, max_size=2))


def build(i: int, item: Any) -> dict[str, Any]:
    ns, sel, types, ingress, egress = item

    def conv(key: str, r: dict[str, Any]) -> dict[str, Any]:
        return {**({key: r["peers"]} if "peers" in r else {}), "ports": r["ports"]}

    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"p{i}", "namespace": ns},
            "spec": {"podSelector": sel, "policyTypes": types, "ingress": [conv("from", r) for r in ingress],
                     "egress": [conv("to", r) for r in egress]}}


def contains(ports: tuple[tuple[str, int, int], ...], protocol: str, port: int) -> bool:
    return any(p == protocol and lo <= port <= hi for p, lo, hi in ports)


PROBE_PORTS = [("TCP", 1), ("TCP", 53), ("TCP", 80), ("TCP", 81), ("TCP", 85), ("TCP", 90), ("TCP", 91),
               ("TCP", 9090), ("TCP", 65535), ("UDP", 53), ("UDP", 80), ("SCTP", 80)]


TWINS_BUT_FOR_THE_IP = [PodInfo(name="a", namespace=Namespace("n1"), labels={"app": "a"}, ip="10.1.0.1"),
                        PodInfo(name="b", namespace=Namespace("n1"), labels={"app": "a"}, ip="192.168.3.3")]
FROM_A_CIDR = ("n1", {}, ["Ingress"], [{"ports": [], "peers": [{"ipBlock": {"cidr": "10.1.0.0/24"}}]}], [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods_st, st.lists(policy_st, max_size=4), st.booleans())
@example(TWINS_BUT_FOR_THE_IP, [FROM_A_CIDR], True)
def test_property_equivalence_classes_equal_the_pod_matrix(pods, policies, ipblock_pods):
    engine = PolicyEngine(pods, {"n2": {"team": "x"}}, [parse_policy(build(i, p)) for i, p in enumerate(policies)],
                          ipblock_matches_pods=ipblock_pods)
    conn = class_connectivity(engine)  # every port, one evaluation per segment
    assert conn.space == ALL_PORTS
    of = conn.classes.class_of
    for proto, port in PROBE_PORTS:
        rows = engine.matrix(port, proto)  # the pod matrix, computed per pod
        for i, a in enumerate(pods):
            external = engine.decide(Endpoint(pod=a), Endpoint(ip=""), port, proto).allowed
            assert contains(conn.external[of[i]], proto, port) is external
            for j, b in enumerate(pods):
                by_pod = bool(rows[i] >> j & 1)
                assert by_pod is engine.decide(Endpoint(pod=a), Endpoint(pod=b), port, proto).allowed
                assert contains(conn.pairs.get((of[i], of[j]), ()), proto, port) is by_pod, (a, b, proto, port)
    for i, a in enumerate(pods):
        assert contains(conn.dns[of[i]], "UDP", 53) is engine.dns_allowed(a).allowed
        assert contains(conn.dns[of[i]], "TCP", 53) is engine.dns_allowed(a, (), "TCP").allowed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods_st, st.lists(policy_st, max_size=4))
def test_property_requested_ports_only_equal_the_pod_matrix(pods, policies):
    engine = PolicyEngine(pods, {}, [parse_policy(build(i, p)) for i, p in enumerate(policies)])
    asked = (("TCP", 80, 80), ("TCP", 81, 81), ("UDP", 53, 53))
    conn = class_connectivity(engine, asked)
    of = conn.classes.class_of
    for proto, port, _ in asked:
        rows = engine.matrix(port, proto)
        for i in range(len(pods)):
            for j in range(len(pods)):
                assert contains(conn.pairs.get((of[i], of[j]), ()), proto, port) is bool(rows[i] >> j & 1)
    assert all(subtract(ports, merge(asked)) == () for ports in conn.pairs.values())


def test_replicas_collapse_to_one_class_but_a_differently_labelled_replica_does_not():
    pods = [PodInfo(name=f"web-{i}", namespace=Namespace("shop"),
                    labels={"app": "web", "pod-template-hash": f"h{i}"}, ip=f"10.0.0.{i + 1}") for i in range(5)]
    canary = PodInfo(name="web-canary", namespace=Namespace("shop"), labels={"app": "web", "track": "canary"})
    policy = parse_policy({"metadata": {"name": "stable-only", "namespace": "shop"},
                           "spec": {"podSelector": {"matchExpressions": [{"key": "track", "operator": "DoesNotExist"}]},
                                    "policyTypes": ["Ingress"]}})
    classes = equivalence_classes(PolicyEngine([*pods, canary], {}, [policy]))
    assert classes.members == ((0, 1, 2, 3, 4), (5,))


def test_port_segments_cut_where_rules_start_and_end():
    policy = parse_policy({"metadata": {"name": "p"}, "spec": {"podSelector": {}, "ingress": [
        {"ports": [{"port": 5432}, {"port": 8000, "endPort": 8100}, {"port": "http"},
                   {"protocol": "UDP", "port": 53}]}]}})
    web = PodInfo(name="w", namespace=Namespace("default"), ports=(ContainerPort(name="http", port=8080),))
    tcp = [(lo, hi) for p, lo, hi in segments([policy], [web]) if p == "TCP"]
    assert tcp == [(1, 5431), (5432, 5432), (5433, 7999), (8000, 8079), (8080, 8080), (8081, 8100),
                   (8101, 65535)]
    assert [(lo, hi) for p, lo, hi in segments([policy], [web]) if p == "UDP"] == [(1, 52), (53, 53), (54, 65535)]


def test_port_sets_describe_merge_and_subtract():
    assert describe(ALL_PORTS) == "All Connections"
    assert describe(merge([("UDP", 53, 53), ("TCP", 8001, 8100), ("TCP", 5432, 5432), ("TCP", 8000, 8000)])) \
        == "TCP 5432,8000-8100;UDP 53"
    assert subtract(ALL_PORTS, (("TCP", 1, 65535), ("UDP", 1, 52))) == (("UDP", 53, 65535), ("SCTP", 1, 65535))
    assert describe(subtract((("TCP", 1, 100),), (("TCP", 10, 20),))) == "TCP 1-9,21-100"


def test_classes_equal_the_pod_matrix_on_the_benchmark_cluster():
    # the realistic generator of bench/policy_bench.py: replicas, default deny, DNS, app-to-app paths,
    # namespace selectors, named ports, port ranges, ipBlock egress
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from policy_bench import generate

    from probe.analysis import world_from_manifests

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), pods=300, namespaces=12, workloads=15, policies=90)
        world = world_from_manifests([tmp])
    engine = world.engine()
    conn = class_connectivity(engine)
    of = conn.classes.class_of
    assert len(conn.classes.representatives) < len(engine.pods) / 10  # replicas collapse
    for proto, port in [("TCP", 8080), ("TCP", 8000), ("TCP", 8050), ("TCP", 5432), ("TCP", 9090), ("UDP", 53),
                        ("TCP", 443), ("TCP", 22)]:
        rows = engine.matrix(port, proto)
        expanded = [sum(1 << j for j in range(len(of)) if contains(conn.pairs.get((of[i], of[j]), ()), proto, port))
                    for i in range(len(of))]
        assert expanded == rows, (proto, port)
