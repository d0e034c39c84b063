"""NetworkPolicy semantics, table-driven, plus property tests of the invariants."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import ManifestError
from probe.model import Namespace
from probe.pods import ContainerPort, PodInfo
from probe.policy import Endpoint, PolicyEngine, parse_policy


def pod(name: str, ns: str = "default", ip: str = "", ports: tuple[ContainerPort, ...] = (), **labels: str) -> PodInfo:
    return PodInfo(name=name, namespace=Namespace(ns), labels=labels, ip=ip, ports=ports)


API = pod("api", app="api", ip="10.0.0.2")
DB = pod("db", app="db", ip="10.0.0.3", ports=(ContainerPort(name="postgres", port=5432),))
FRONTEND = pod("frontend", app="frontend", ip="10.0.0.4")
OTHER = pod("other", ns="other", app="api", ip="10.0.1.5")
DNS = pod("coredns", ns="kube-system", ip="10.0.9.9", **{"k8s-app": "kube-dns"})
PODS = [API, DB, FRONTEND, OTHER, DNS]


def np(name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


DB_FROM_API = np("db-ingress", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                             "ports": [{"protocol": "TCP", "port": 5432}]}]})
DNS_RULE = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
API_EGRESS = np("api-egress", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                               "egress": [DNS_RULE, {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                                                     "ports": [{"protocol": "TCP", "port": 5432}]}]})
API_EGRESS_NO_RULES = np("api-egress", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"]})


def engine(*policies: dict[str, Any], pods: list[PodInfo] | None = None) -> PolicyEngine:
    return PolicyEngine(pods or PODS, {"other": {"team": "b"}}, [parse_policy(p) for p in policies])


def allowed(e: PolicyEngine, src: PodInfo, dst: PodInfo | str, port: int, proto: str = "TCP") -> bool:
    target = Endpoint(pod=dst) if isinstance(dst, PodInfo) else Endpoint(ip=dst)
    return e.decide(Endpoint(pod=src), target, port, proto).allowed


def test_no_policies_allow_everything():
    e = engine()
    assert all(allowed(e, a, b, 80) for a in PODS for b in PODS)


def test_quiz_1_egress_without_rules_blocks_db_even_though_db_ingress_allows_api():
    e = engine(DB_FROM_API, API_EGRESS_NO_RULES)
    d = e.decide(Endpoint(pod=API), Endpoint(pod=DB), 5432)
    assert not d.allowed and not d.egress.allowed and d.ingress.allowed
    assert "egress-isolated by default/api-egress" in d.reason
    assert d.ingress.allowed_by == "default/db-ingress ingress rule 0"


def test_quiz_2_forgetting_dns_breaks_name_lookups_but_not_the_port():
    without = np("api-egress", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                                            "ports": [{"port": 5432}]}]})
    e = engine(DB_FROM_API, without)
    assert allowed(e, API, DB, 5432)
    assert not e.dns_allowed(API, [DNS]).allowed
    assert engine(DB_FROM_API, API_EGRESS).dns_allowed(API, [DNS]).allowed


def test_quiz_3_except_removes_the_address():
    p = np("egress-cidr", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                           "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24",
                                                           "except": ["203.0.113.13/32"]}}]}]})
    e = engine(p)
    assert allowed(e, API, "203.0.113.10", 443)
    assert not allowed(e, API, "203.0.113.13", 443)
    assert not allowed(e, API, "198.51.100.1", 443)


@pytest.mark.parametrize("spec, src, dst, port, proto, expected", [
    # policyTypes default: Ingress only, even with no ingress rules (deny all ingress)
    ({"podSelector": {"matchLabels": {"app": "db"}}}, API, DB, 5432, "TCP", False),
    ({"podSelector": {"matchLabels": {"app": "db"}}}, DB, API, 80, "TCP", True),
    # egress rules present → Egress added to policyTypes by default
    ({"podSelector": {"matchLabels": {"app": "api"}}, "egress": [{"to": [{"podSelector": {}}]}]},
     API, OTHER, 80, "TCP", False),
    # empty from = every source; empty podSelector = every pod of the namespace
    ({"podSelector": {}, "ingress": [{}]}, OTHER, DB, 1, "TCP", True),
    ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, OTHER, DB, 1, "TCP", False),
    ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, API, DB, 1, "TCP", True),
    # namespaceSelector alone, and AND-ed with podSelector in one peer
    ({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]},
     OTHER, DB, 1, "TCP", True),
    ({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                                                "podSelector": {"matchLabels": {"app": "web"}}}]}]},
     OTHER, DB, 1, "TCP", False),
    # two peers = OR
    ({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}},
                                               {"podSelector": {"matchLabels": {"app": "web"}}}]}]},
     OTHER, DB, 1, "TCP", True),
    # matchExpressions
    ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["frontend", "api"]}]}}]}]}, FRONTEND, DB, 1, "TCP", True),
    ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["frontend"]}]}}]}]}, FRONTEND, DB, 1, "TCP", False),
    # ports: protocol defaults to TCP; UDP does not match a TCP rule; no port = all ports
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 5432}]}]}, API, DB, 5432, "UDP", False),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}, API, DB, 9999, "UDP", True),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 7}]}]}, API, DB, 7, "SCTP", True),
    # endPort ranges
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}, API, DB, 8080, "TCP", True),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}, API, DB, 8101, "TCP", False),
    # named ports resolve against the destination pod's container ports, for egress rules too
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "postgres"}]}]}, API, DB, 5432, "TCP", True),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "postgres"}]}]}, API, DB, 5433, "TCP", False),
    ({"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
      "egress": [{"ports": [{"port": "postgres"}]}]}, API, DB, 5432, "TCP", True),
    # ipBlock applies to pod IPs too (as Calico does)
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}]}, API, DB, 1, "TCP", True),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24",
                                                            "except": ["10.0.0.2/32"]}}]}]}, API, DB, 1, "TCP", False),
    # a policy only governs pods of its own namespace
    ({"podSelector": {}}, API, OTHER, 1, "TCP", True),
], ids=["default-ingress-type", "ingress-only-leaves-egress", "egress-type-from-rules", "empty-from",
        "empty-podselector-own-ns", "empty-podselector-same-ns", "namespace-selector", "ns-and-pod-selector-AND",
        "two-peers-OR", "expr-In", "expr-NotIn", "udp-vs-tcp", "all-udp-ports", "sctp", "endport-in",
        "endport-out", "named-port", "named-port-other-number", "named-port-egress", "ipblock-pod-ip",
        "ipblock-except-pod-ip", "other-namespace-unaffected"])
def test_rules(spec, src, dst, port, proto, expected):
    assert allowed(engine(np("p", spec)), src, dst, port, proto) is expected


@pytest.mark.parametrize("spec, types", [
    ({"podSelector": {}}, {"Ingress"}),
    ({"podSelector": {}, "egress": []}, {"Ingress"}),
    ({"podSelector": {}, "egress": None}, {"Ingress"}),
    ({"podSelector": {}, "egress": [{}]}, {"Ingress", "Egress"}),
    ({"podSelector": {}, "policyTypes": [], "ingress": []}, {"Ingress"}),
    ({"podSelector": {}, "policyTypes": [], "egress": [{}]}, {"Ingress", "Egress"}),
    ({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}, {"Egress"}),
], ids=["nothing", "empty-egress-list", "null-egress", "egress-rule", "empty-types-empty-ingress",
        "empty-types-egress-rule", "explicit-types-win"])
def test_policy_types_default_as_the_api_server_does(spec, types):
    # SetDefaults_NetworkPolicy: len(policyTypes) == 0 → [Ingress] + [Egress if len(spec.egress) != 0]
    assert parse_policy(np("p", spec)).types == frozenset(types)


def test_empty_egress_list_without_policy_types_does_not_isolate_egress():
    e = engine(np("p", {"podSelector": {"matchLabels": {"app": "api"}}, "egress": []}))
    assert allowed(e, API, DB, 5432) and allowed(e, API, "203.0.113.1", 443)
    assert e.dns_allowed(API, [DNS]).allowed
    assert not allowed(e, FRONTEND, API, 80)  # ingress is isolated, with no rule


def test_empty_policy_types_with_empty_ingress_isolates_ingress():
    e = engine(np("p", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": [], "ingress": []}))
    d = e.decide(Endpoint(pod=API), Endpoint(pod=DB), 5432)
    assert not d.allowed and "default/db is ingress-isolated by default/p" in d.reason
    assert allowed(e, DB, API, 80)  # egress stays open
    assert not e.matrix(5432)[PODS.index(API)] >> PODS.index(DB) & 1


def test_both_directions_must_allow():
    api_only_dns = np("a", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                            "egress": [DNS_RULE]})
    e = engine(DB_FROM_API, api_only_dns)
    d = e.decide(Endpoint(pod=API), Endpoint(pod=DB), 5432)
    assert d.ingress.allowed and not d.egress.allowed


def test_external_unknown_address_needs_an_unrestricted_rule():
    e = engine(np("p", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}]}))
    assert e.decide(Endpoint(pod=API), Endpoint(ip=""), 443).allowed
    assert not e.decide(Endpoint(pod=API), Endpoint(ip=""), 80).allowed


@pytest.mark.parametrize("spec, message", [
    ({"podSelector": {}, "policyTypes": ["Sideways"]}, "policyTypes must list Ingress and/or Egress"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "banana"}}]}]}, "expected a CIDR"),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "expected TCP, UDP or SCTP"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "endPort"),
    ({"podSelector": "app=db"}, "expected a label selector"),
], ids=["bad-type", "bad-cidr", "bad-protocol", "bad-endport", "bad-selector"])
def test_malformed_policy_is_a_manifest_error(spec, message):
    with pytest.raises(ManifestError, match=message):
        parse_policy(np("broken", spec))


# ------------------------------------------------------------------- properties

labels_st = st.fixed_dictionaries({"app": st.sampled_from(["a", "b", "c"])})
pods_st = st.lists(st.tuples(st.sampled_from(["n1", "n2"]), labels_st), min_size=2, max_size=6).map(
    lambda items: [PodInfo(name=f"p{i}", namespace=Namespace(ns), labels=lab, ip=f"10.1.0.{i + 1}")
                   for i, (ns, lab) in enumerate(items)])
selector_st = st.one_of(st.just({}), labels_st.map(lambda d: {"matchLabels": d}))
peer_st = st.one_of(
    selector_st.map(lambda s: {"podSelector": s}),
    selector_st.map(lambda s: {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "n2"}},
                               "podSelector": s}),
    st.sampled_from(["10.1.0.0/29", "10.1.0.4/30"]).map(lambda c: {"ipBlock": {"cidr": c}}))
rule_st = st.fixed_dictionaries({}, optional={"peers": st.lists(peer_st, max_size=2),
                                              "ports": st.sampled_from([[{"port": 80}], [{"port": 81}], []])})
policy_st = st.tuples(st.sampled_from(["n1", "n2"]), selector_st, st.sampled_from([["Ingress"], ["Egress"],
                                                                                    ["Ingress", "Egress"]]),
                      st.lists(rule_st, max_size=2), st.lists(rule_st, max_size=2))


def build(i: int, item: Any) -> dict[str, Any]:
    ns, sel, types, ingress, egress = item

    def conv(key: str, r: dict[str, Any]) -> dict[str, Any]:
        return {**({key: r["peers"]} if "peers" in r else {}), "ports": r.get("ports", [])}

    return np(f"p{i}", {"podSelector": sel, "policyTypes": types,
                        "ingress": [conv("from", r) for r in ingress], "egress": [conv("to", r) for r in egress]}, ns)


def full(e: PolicyEngine, pods: list[PodInfo], port: int = 80) -> set[tuple[int, int]]:
    return {(i, j) for i, a in enumerate(pods) for j, b in enumerate(pods)
            if e.decide(Endpoint(pod=a), Endpoint(pod=b), port).allowed}


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(pods_st)
def test_property_no_policies_all_allowed(pods):
    e = PolicyEngine(pods, {}, [])
    assert full(e, pods) == {(i, j) for i in range(len(pods)) for j in range(len(pods))}


@SETTINGS
@given(pods_st, st.lists(policy_st, max_size=3), rule_st, st.sampled_from(["ingress", "egress"]))
def test_property_adding_an_allow_rule_never_removes_a_connection(pods, policies, extra, direction):
    base = [build(i, p) for i, p in enumerate(policies)]
    before = full(PolicyEngine(pods, {}, [parse_policy(p) for p in base]), pods)
    if not base:
        return
    grown = [dict(p) for p in base]
    key = "from" if direction == "ingress" else "to"
    rule = {**({key: extra["peers"]} if "peers" in extra else {}), "ports": extra.get("ports", [])}
    grown[0] = {**grown[0], "spec": {**grown[0]["spec"],
                                     direction: [*grown[0]["spec"].get(direction, []), rule]}}
    after = full(PolicyEngine(pods, {}, [parse_policy(p) for p in grown]), pods)
    assert before <= after


@SETTINGS
@given(pods_st, st.lists(policy_st, max_size=3))
def test_property_deny_all_leaves_only_what_other_policies_allow(pods, policies):
    others = [parse_policy(build(i, p)) for i, p in enumerate(policies)]
    deny_all = parse_policy(np("deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}, "n1"))
    e_with = PolicyEngine(pods, {}, [*others, deny_all])
    for a in pods:
        for b in pods:
            if b.namespace != "n1":
                continue
            d = e_with.decide(Endpoint(pod=a), Endpoint(pod=b), 80)
            if d.allowed:  # only a rule of another policy can have allowed it
                assert d.ingress.allowed_by and not d.ingress.allowed_by.startswith("n1/deny-all")


@SETTINGS
@given(pods_st, st.lists(policy_st, max_size=3), st.sampled_from([80, 81]))
def test_property_bulk_matrix_agrees_with_decide(pods, policies, port):
    e = PolicyEngine(pods, {}, [parse_policy(build(i, p)) for i, p in enumerate(policies)])
    rows = e.matrix(port)
    bulk = {(i, j) for i in range(len(pods)) for j in range(len(pods)) if rows[i] >> j & 1}
    assert bulk == full(e, pods, port)
