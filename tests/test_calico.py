"""Calico (projectcalico.org/v3) and network-policy-api policies in the tier model, table-driven.

Each evaluation rule cites the documentation sentence it implements:
  [tier]  Calico reference, Tier: "How policy is evaluated" (docs.tigera.io/calico/latest/reference/resources/tier)
  [np]    Calico reference, NetworkPolicy / GlobalNetworkPolicy (…/reference/resources/networkpolicy)
  [labels] Calico "automatic labels" (…/network-policy/get-started/calico-policy/calico-labels)
  [cnp]   network-policy-api, apis/v1alpha2/clusternetworkpolicy_types.go (Tier, Action docs)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from probe.analysis import expect_document, lint, world_from_cluster, world_from_manifests
from probe.errors import ManifestError
from probe.manifests import load_manifests
from probe.model import Namespace
from probe.pods import ContainerPort, PodInfo
from probe.policy import Endpoint, PolicyEngine, parse_policy
from probe.policy.adminpolicy import parse_admin_policy
from probe.policy.calico import parse_calico_policy, parse_tier
from probe.policy.rules import Tier

ROOT = Path(__file__).resolve().parent.parent


def pod(name: str, ns: str = "shop", ip: str = "", sa: str = "", ports: tuple[ContainerPort, ...] = (),
        **labels: str) -> PodInfo:
    return PodInfo(name=name, namespace=Namespace(ns), labels=labels, ip=ip, service_account=sa, ports=ports)


API = pod("api", app="api", ip="10.0.0.2", sa="api-sa")
DB = pod("db", app="db", ip="10.0.0.3", ports=(ContainerPort(name="postgres", port=5432),))
WEB = pod("web", app="web", ip="10.0.0.4")
OTHER = pod("other", ns="other", app="api", ip="10.0.1.5")
DNS = pod("coredns", ns="kube-system", ip="10.0.9.9", **{"k8s-app": "kube-dns"})
PODS = [API, DB, WEB, OTHER, DNS]
NAMESPACES = {"shop": {"env": "prod"}, "other": {"env": "dev"}, "kube-system": {}}


def calico(kind: str, name: str, spec: dict[str, Any], ns: str | None = "shop") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "NetworkPolicy":
        meta["namespace"] = ns
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def gnp(name: str, **spec: Any) -> dict[str, Any]:
    return calico("GlobalNetworkPolicy", name, spec)


def cnp(name: str, **spec: Any) -> dict[str, Any]:
    return calico("NetworkPolicy", name, spec)


def k8s_np(name: str, spec: dict[str, Any], ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def admin(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    version = "v1alpha2" if kind == "ClusterNetworkPolicy" else "v1alpha1"
    return {"apiVersion": f"policy.networking.k8s.io/{version}", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def tier(name: str, order: float | None, default_action: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {} if order is None else {"order": order}
    if default_action:
        spec["defaultAction"] = default_action
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name}, "spec": spec}


def build(*objs: dict[str, Any], pods: list[PodInfo] | None = None) -> PolicyEngine:
    policies: list[Any] = []
    tiers = []
    for o in objs:
        if o["kind"] == "Tier":
            tiers.append(parse_tier(o))
        elif o["apiVersion"].startswith("projectcalico.org"):
            policies.append(parse_calico_policy(o)[0])
        elif o["apiVersion"].startswith("policy.networking"):
            policies.append(parse_admin_policy(o)[0])
        else:
            policies.append(parse_policy(o))
    return PolicyEngine(pods or PODS, NAMESPACES, policies, tiers=tiers)


def decide(e: PolicyEngine, src: PodInfo, dst: PodInfo | str, port: int, proto: str = "TCP") -> Any:
    target = Endpoint(pod=dst) if isinstance(dst, PodInfo) else Endpoint(ip=dst)
    return e.decide(Endpoint(pod=src), target, port, proto)


def allowed(e: PolicyEngine, src: PodInfo, dst: PodInfo | str, port: int, proto: str = "TCP") -> bool:
    return bool(decide(e, src, dst, port, proto).allowed)


def allow(**kw: Any) -> dict[str, Any]:
    return {"action": "Allow", **kw}


def deny(**kw: Any) -> dict[str, Any]:
    return {"action": "Deny", **kw}


def pass_(**kw: Any) -> dict[str, Any]:
    return {"action": "Pass", **kw}


DENY_ALL_INGRESS_TO_DB = gnp("deny-db", selector="app == 'db'", types=["Ingress"], ingress=[deny()])

# (id, doc sentence, objects, src, dst, port, protocol, expected)
EVALUATION = [
    ("no-policy-profile-allows",
     "[tier] (profiles allow when no tier applies: Calico's namespace profiles allow all)",
     [], API, DB, 5432, "TCP", True),
    ("first-allow-wins",
     "[tier] If a NetworkPolicy or GlobalNetworkPolicy in the Tier Allows or Denys the packet, then "
     "evaluation is done",
     [gnp("a", order=10, selector="app == 'db'", types=["Ingress"], ingress=[allow(), deny()])],
     API, DB, 5432, "TCP", True),
    ("first-deny-wins",
     "[tier] ... Allows or Denys the packet, then evaluation is done",
     [gnp("a", order=10, selector="app == 'db'", types=["Ingress"], ingress=[deny(), allow()])],
     API, DB, 5432, "TCP", False),
    ("lower-order-policy-first",
     "[np] order: Controls the order of precedence. Calico applies the policy with the lowest value first.",
     [gnp("late", order=200, selector="app == 'db'", types=["Ingress"], ingress=[allow()]),
      gnp("early", order=100, selector="app == 'db'", types=["Ingress"], ingress=[deny()])],
     API, DB, 5432, "TCP", False),
    ("no-order-sorts-last",
     "[np] order ... (a policy without an order is applied after every ordered one)",
     [gnp("unordered", selector="app == 'db'", types=["Ingress"], ingress=[deny()]),
      gnp("ordered", order=5000, selector="app == 'db'", types=["Ingress"], ingress=[allow()])],
     API, DB, 5432, "TCP", True),
    ("same-order-by-name",
     "[np] (equal orders: by name, as Calico sorts them)",
     [gnp("b-allow", order=1, selector="app == 'db'", types=["Ingress"], ingress=[allow()]),
      gnp("a-deny", order=1, selector="app == 'db'", types=["Ingress"], ingress=[deny()])],
     API, DB, 5432, "TCP", False),
    ("tier-default-action-deny",
     "[tier] If the Tier applies to the endpoint, but takes no action on the packet the packet is dropped.",
     [gnp("only-web", order=1, selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"selector": "app == 'web'"})])],
     API, DB, 5432, "TCP", False),
    ("tier-default-action-pass",
     "[tier] This behaviour can be changed by setting the defaultAction of a tier to Pass",
     [tier("platform", 100, "Pass"),
      gnp("platform.only-web", tier="platform", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"selector": "app == 'web'"})])],
     API, DB, 5432, "TCP", True),
    ("pass-jumps-to-next-tier",
     "[tier] If a NetworkPolicy or GlobalNetworkPolicy in the Tier Passes the packet, the next Tier "
     "containing a Policy that applies to the endpoint processes the packet.",
     [tier("security", 10), gnp("security.pass", tier="security", selector="all()", types=["Ingress"],
                                ingress=[pass_(), allow()]),
      DENY_ALL_INGRESS_TO_DB],
     API, DB, 5432, "TCP", False),
    ("pass-with-no-later-tier-reaches-profile",
     "[tier] Pass ... (no later tier applies: the profile allows)",
     [tier("security", 10), gnp("security.pass", tier="security", selector="all()", types=["Ingress"],
                                ingress=[pass_(), deny()])],
     API, DB, 5432, "TCP", True),
    ("lower-order-tier-first",
     "[tier] Tiers are sorted by their order - smallest number first.",
     [tier("late", 500), tier("early", 50),
      gnp("late.allow", tier="late", selector="all()", types=["Ingress"], ingress=[allow()]),
      gnp("early.deny", tier="early", selector="app == 'db'", types=["Ingress"], ingress=[deny()])],
     API, DB, 5432, "TCP", False),
    ("tier-not-applying-is-skipped",
     "[tier] each tier that contains a policy that applies to the endpoint processes the packet",
     [tier("early", 50), gnp("early.web-only", tier="early", selector="app == 'web'", types=["Ingress"],
                             ingress=[deny()])],
     API, DB, 5432, "TCP", True),
    ("log-takes-no-decision",
     "[np] action Log: (logs the packet and continues with the next rule)",
     [gnp("a", order=1, selector="app == 'db'", types=["Ingress"], ingress=[{"action": "Log"}, deny()])],
     API, DB, 5432, "TCP", False),
    ("types-direction-only",
     "[np] types: Applies the policy based on the direction of the traffic",
     [gnp("a", order=1, selector="app == 'api'", types=["Ingress"], ingress=[deny()])],
     API, DB, 5432, "TCP", True),
    ("types-default-egress-only",
     "[np] If types has no value, Calico defaults as follows: ... egress rules only → Egress",
     [gnp("a", order=1, selector="app == 'api'", egress=[deny()])],
     API, DB, 5432, "TCP", False),
    ("namespaced-selector-is-own-namespace",
     "[labels] In a network policy, namespaceSelector: <empty> selector: foo == \"bar\" means resources in "
     "the same namespace as the network policy",
     [cnp("db", selector="app == 'db'", types=["Ingress"], ingress=[allow(source={"selector": "app == 'api'"})])],
     OTHER, DB, 5432, "TCP", False),
    ("global-selector-is-any-namespace",
     "[labels] In a global network policy, namespaceSelector: <empty> ... means resources in any namespace",
     [gnp("db", selector="app == 'db'", types=["Ingress"], ingress=[allow(source={"selector": "app == 'api'"})])],
     OTHER, DB, 5432, "TCP", True),
    ("namespace-selector-projectcalico-name",
     "[labels] The label projectcalico.org/name is set to the name of the namespace.",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"namespaceSelector": "projectcalico.org/name == 'other'"})])],
     OTHER, DB, 5432, "TCP", True),
    ("gnp-namespace-selector-scopes-the-policy",
     "[np] namespaceSelector (GlobalNetworkPolicy): selects the namespaces the policy applies to",
     [gnp("deny-dev", selector="all()", namespaceSelector="env == 'dev'", types=["Egress"], egress=[deny()])],
     API, DB, 5432, "TCP", True),
    ("endpoint-namespace-label",
     "[labels] projectcalico.org/namespace (on every endpoint: its namespace)",
     [gnp("db", selector="projectcalico.org/namespace == 'shop' && app == 'db'", types=["Ingress"],
          ingress=[deny()])],
     API, DB, 5432, "TCP", False),
    ("protocol-must-match",
     "[np] protocol: Positive protocol match.",
     [gnp("db", selector="app == 'db'", types=["Ingress"], ingress=[deny(protocol="UDP"), allow()])],
     API, DB, 5432, "TCP", True),
    ("not-protocol",
     "[np] notProtocol: Negative protocol match.",
     [gnp("db", selector="app == 'db'", types=["Ingress"], ingress=[deny(notProtocol="UDP")])],
     API, DB, 5432, "TCP", False),
    ("port-range",
     "[np] ports: ... a range of ports, e.g. \"8000:8080\"",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(protocol="TCP", destination={"ports": ["5000:6000"]}), deny()])],
     API, DB, 5432, "TCP", True),
    ("named-port",
     "[np] ports: ... a named port (resolved on the destination endpoint)",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(protocol="TCP", destination={"ports": ["postgres"]}), deny()])],
     API, DB, 5432, "TCP", True),
    ("not-ports",
     "[np] notPorts: Negative match on ports",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(protocol="TCP", destination={"notPorts": [5432]}), deny()])],
     API, DB, 5432, "TCP", False),
    ("nets-match-pod-ips",
     "[np] nets: Match packets with IP in any of the listed CIDRs.",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"nets": ["10.0.0.0/30"]}), deny()])],
     API, DB, 5432, "TCP", True),
    ("not-nets",
     "[np] notNets: Negative match on CIDRs.",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"notNets": ["10.0.0.0/30"]}), deny()])],
     API, DB, 5432, "TCP", False),
    ("egress-to-external-net",
     "[np] nets (destination) match addresses outside the cluster",
     [gnp("api", selector="app == 'api'", types=["Egress"],
          egress=[allow(destination={"nets": ["203.0.113.0/24"]}), deny()])],
     API, "203.0.113.7", 443, "TCP", True),
    ("service-account-names",
     "[np] serviceAccounts.names: Match service accounts by name",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"serviceAccounts": {"names": ["api-sa"]}}), deny()])],
     API, DB, 5432, "TCP", True),
    ("not-selector",
     "[np] notSelector: Negative match on selected endpoints",
     [gnp("db", selector="app == 'db'", types=["Ingress"],
          ingress=[allow(source={"notSelector": "app == 'api'"}), deny()])],
     API, DB, 5432, "TCP", False),
    ("destination-selector-on-ingress-restricts-local",
     "[np] destination (ingress rule): the local endpoint must match it",
     [gnp("all", selector="all()", types=["Ingress"],
          ingress=[deny(destination={"selector": "app == 'web'"}), allow()])],
     API, DB, 5432, "TCP", True),
    ("k8s-np-in-default-tier-after-lower-order",
     "[tier] (Kubernetes NetworkPolicies live in the default tier with order 1000)",
     [gnp("early-deny", order=999, selector="app == 'db'", types=["Ingress"], ingress=[deny()]),
      k8s_np("allow-db", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})],
     API, DB, 5432, "TCP", False),
    ("k8s-np-before-higher-order",
     "[tier] (Kubernetes NetworkPolicies live in the default tier with order 1000)",
     [gnp("late-deny", order=1001, selector="app == 'db'", types=["Ingress"], ingress=[deny()]),
      k8s_np("allow-db", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})],
     API, DB, 5432, "TCP", True),
    ("anp-allow-overrides-np",
     "[cnp] If Admin tier has made a final decision (Accept or Deny) on a connection, then no further "
     "evaluation is done.",
     [admin("AdminNetworkPolicy", "allow", priority=10, subject={"namespaces": {}},
            ingress=[{"action": "Allow", "from": [{"namespaces": {}}]}]),
      k8s_np("deny-db", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]})],
     API, DB, 5432, "TCP", True),
    ("anp-pass-to-np",
     "[cnp] Pass: ... passes evaluation to the next tier (NetworkPolicy evaluation will happen next)",
     [admin("AdminNetworkPolicy", "pass", priority=10, subject={"namespaces": {}},
            ingress=[{"action": "Pass", "from": [{"namespaces": {}}]},
                     {"action": "Allow", "from": [{"namespaces": {}}]}]),
      k8s_np("deny-db", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]})],
     API, DB, 5432, "TCP", False),
    ("anp-priority",
     "[cnp] Policies with lower priority values have higher precedence",
     [admin("AdminNetworkPolicy", "b", priority=20, subject={"namespaces": {}},
            ingress=[{"action": "Allow", "from": [{"namespaces": {}}]}]),
      admin("AdminNetworkPolicy", "a", priority=30, subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])],
     API, DB, 5432, "TCP", True),
    ("np-overrides-baseline",
     "[cnp] v1.NetworkPolicy always makes a final decision for selected pods. Further evaluation only "
     "happens for Pods not selected by a v1.NetworkPolicy.",
     [admin("BaselineAdminNetworkPolicy", "default", subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]),
      k8s_np("allow-db", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})],
     API, DB, 5432, "TCP", True),
    ("baseline-decides-unselected-pods",
     "[cnp] Baseline tier is a cluster-wide policy that can be overridden by the v1.NetworkPolicy.",
     [admin("BaselineAdminNetworkPolicy", "default", subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])],
     API, DB, 5432, "TCP", False),
    ("banp-has-order-1000-in-its-tier",
     "The BaselineAdminNetworkPolicy is treated as if it had an order of 1,000, allowing Calico "
     "NetworkPolicy/GlobalNetworkPolicy resources to be inserted with higher/lower precedence than the "
     "BaselineAdminNetworkPolicy.",
     [admin("BaselineAdminNetworkPolicy", "default", subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]),
      gnp("before-banp", tier="kube-baseline", order=999, selector="app == 'db'", types=["Ingress"],
          ingress=[allow()]),
      gnp("after-banp", tier="kube-baseline", order=1001, selector="app == 'web'", types=["Ingress"],
          ingress=[allow()])],
     API, DB, 5432, "TCP", True),
    ("banp-before-a-later-calico-policy-in-its-tier",
     "The BaselineAdminNetworkPolicy is treated as if it had an order of 1,000",
     [admin("BaselineAdminNetworkPolicy", "default", subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]),
      gnp("after-banp", tier="kube-baseline", order=1001, selector="app == 'db'", types=["Ingress"],
          ingress=[allow()])],
     API, DB, 5432, "TCP", False),
    ("legacy-admin-tier-name",
     "The Tier with name adminnetworkpolicy is where all Kubernetes admin network policies reside "
     "(Calico before ClusterNetworkPolicy; now kube-admin, order 1,000, defaultAction Pass)",
     [admin("AdminNetworkPolicy", "a", priority=10, subject={"namespaces": {}},
            ingress=[{"action": "Allow", "from": [{"namespaces": {}}]}]),
      gnp("deny-first", tier="adminnetworkpolicy", order=5, selector="app == 'db'", types=["Ingress"],
          ingress=[{"action": "Deny"}])],
     API, DB, 5432, "TCP", False),
    ("cnp-admin-accept",
     "[cnp] Accept: Accepts the selected traffic ... No further ClusterNetworkPolicy or NetworkPolicy "
     "rules will be processed.",
     [admin("ClusterNetworkPolicy", "x", tier="Admin", priority=1, subject={"namespaces": {}},
            ingress=[{"action": "Accept", "from": [{"namespaces": {}}],
                      "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]}]),
      k8s_np("deny-db", {"podSelector": {}, "policyTypes": ["Ingress"]})],
     API, DB, 5432, "TCP", True),
    ("cnp-baseline-after-np",
     "[cnp] Policy tiers are evaluated in the following order: Admin tier, NetworkPolicy tier, Baseline tier",
     [admin("ClusterNetworkPolicy", "floor", tier="Baseline", priority=1, subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])],
     API, DB, 5432, "TCP", False),
    ("anp-networks-peer",
     "[cnp] Networks defines a way to select peers via CIDR blocks ... cluster-internal traffic will be "
     "checked against the rule as well",
     [admin("AdminNetworkPolicy", "x", priority=1, subject={"pods": {"namespaceSelector": {},
                                                               "podSelector": {"matchLabels": {"app": "api"}}}},
            egress=[{"action": "Deny", "to": [{"networks": ["10.0.0.0/24"]}]}])],
     API, DB, 5432, "TCP", False),
    ("anp-named-port",
     "[cnp] NamedPort selects a destination port on a pod based on the ContainerPort name",
     [admin("AdminNetworkPolicy", "x", priority=1, subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}], "ports": [{"namedPort": "postgres"}]}])],
     API, DB, 5432, "TCP", False),
    ("anp-port-range",
     "[cnp] portRange: a contiguous range of ports",
     [admin("AdminNetworkPolicy", "x", priority=1, subject={"namespaces": {}},
            ingress=[{"action": "Deny", "from": [{"namespaces": {}}],
                      "ports": [{"portRange": {"protocol": "TCP", "start": 6000, "end": 7000}}]}])],
     API, DB, 5432, "TCP", True),
    ("anp-domain-names-fail-closed",
     "[cnp] For \"Accept\" rules, \"fail closed\" means: \"treat the rule as matching no traffic\"",
     [admin("ClusterNetworkPolicy", "x", tier="Admin", priority=1,
            subject={"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "api"}}}},
            egress=[{"action": "Accept", "to": [{"domainNames": ["example.com"]}]},
                    {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}])],
     API, "203.0.113.7", 443, "TCP", False),
]


@pytest.mark.parametrize("doc, objs, src, dst, port, proto, expected",
                         [case[1:] for case in EVALUATION], ids=[case[0] for case in EVALUATION])
def test_evaluation_rule(doc, objs, src, dst, port, proto, expected):
    e = build(*objs)
    assert allowed(e, src, dst, port, proto) is expected, decide(e, src, dst, port, proto).reason
    if isinstance(dst, PodInfo):  # the bulk matrix agrees with the per-cell answer
        rows = e.matrix(port, proto)
        assert bool(rows[PODS.index(src)] >> PODS.index(dst) & 1) is expected


def test_explain_names_kind_tier_order_rule_and_action():
    e = build(gnp("default-deny", order=2000, selector="all()", types=["Ingress", "Egress"],
                  egress=[allow(protocol="UDP", destination={"ports": [53]}), deny()]))
    d = decide(e, API, DB, 5432)
    assert d.egress.reason == ("denied by GlobalNetworkPolicy default-deny (tier default, order 2000), "
                               "egress rule 1 Deny")
    d = decide(e, API, DNS, 53, "UDP")
    assert d.egress.reason.startswith("allowed by GlobalNetworkPolicy default-deny (tier default, order 2000), "
                                      "egress rule 0 Allow")


def test_explain_of_a_pass_names_the_passing_rule():
    e = build(tier("security", 10), gnp("pass", tier="security", selector="all()", types=["Ingress"],
                                        ingress=[pass_()]), DENY_ALL_INGRESS_TO_DB)
    reason = decide(e, API, DB, 5432).ingress.reason
    assert reason.startswith("denied by GlobalNetworkPolicy deny-db (tier default), ingress rule 0 Deny")
    assert "(after: passed by GlobalNetworkPolicy pass (tier security), ingress rule 0 Pass)" in reason


def test_explain_of_the_tier_default_action():
    e = build(cnp("db", selector="app == 'db'", types=["Ingress"]))
    reason = decide(e, API, DB, 5432).ingress.reason
    assert reason.startswith("denied by tier default's defaultAction Deny: shop/db is ingress-isolated by "
                             "Calico NetworkPolicy shop/db (tier default)")


def test_a_calico_networkpolicy_is_not_read_as_a_kubernetes_one(tmp_path: Path):
    # The report: Deny was read as an allow-all Kubernetes rule ("allowed by demo/deny-to-b").
    (tmp_path / "p.yaml").write_text("""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-to-b, namespace: demo}
spec:
  selector: app == 'b'
  types: [Ingress]
  ingress: [{action: Deny}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-to-b, namespace: demo}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: demo, labels: {app: a}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: demo, labels: {app: b}}
spec: {containers: [{name: c, image: x}]}
""")
    world = world_from_manifests([str(tmp_path)])
    assert len(world.policies) == 2  # same name, different apiVersion: two objects
    d = world.engine().decide(Endpoint(pod=world.pod("demo/a")), Endpoint(pod=world.pod("demo/b")), 80)
    # Calico's order-less policy sorts after the Kubernetes one (order 1000), whose allow-all wins.
    assert d.allowed and d.ingress.reason.startswith("allowed by NetworkPolicy demo/deny-to-b (tier default, "
                                                     "order 1000), ingress rule 0 Allow")
    (tmp_path / "order.yaml").write_text("""
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: guard}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: guard.deny-b}
spec: {tier: guard, selector: app == 'b', types: [Ingress], ingress: [{action: Deny}]}
""")
    world = world_from_manifests([str(tmp_path)])
    d = world.engine().decide(Endpoint(pod=world.pod("demo/a")), Endpoint(pod=world.pod("demo/b")), 80)
    assert not d.allowed and d.ingress.reason == ("denied by GlobalNetworkPolicy guard.deny-b (tier guard), "
                                                  "ingress rule 0 Deny")


def test_the_same_calico_object_twice_differently_is_an_error(tmp_path: Path):
    doc = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {order: %d}\n"
    (tmp_path / "a.yaml").write_text(doc % 1)
    (tmp_path / "b.yaml").write_text(doc % 2)
    with pytest.raises(ManifestError, match=r"projectcalico\.org/v3 GlobalNetworkPolicy x is defined twice"):
        load_manifests([tmp_path])


@pytest.mark.parametrize("obj, message", [
    (gnp("x", selector="app == "), "GlobalNetworkPolicy x: spec.selector: selector 'app == ': expected a quoted "
                                   "string at column 8"),
    (gnp("x", ingress=[{"action": "Drop"}]), "GlobalNetworkPolicy x: spec.ingress[0].action: expected Allow, Deny, "
                                             "Pass or Log"),
    (gnp("x", ingress=[allow(source={"selector": "a in {'x'"})]),
     "spec.ingress[0].source.selector: selector \"a in {'x'\": expected ',' or '}' at column 10"),
    (gnp("x", ingress=[allow(destination={"ports": [80]})]), "spec.ingress[0].destination.ports: ports need the "
                                                             "rule's protocol"),
    (gnp("x", ingress=[allow(protocol="TCP", destination={"ports": ["9:1"]})]), "expected a port range"),
    (gnp("x", ingress=[allow(source={"nets": ["10.0.0.0/33"]})]), "spec.ingress[0].source.nets[0]: expected a CIDR"),
    (gnp("x", types=["Sideways"]), "spec.types must list Ingress and/or Egress"),
    (cnp("x", order="first"), "Calico NetworkPolicy shop/x: spec.order: expected a number"),
    (tier("t", 1, "Allow"), "Tier t: spec.defaultAction: expected Deny or Pass"),
    (admin("AdminNetworkPolicy", "a", priority=2000, subject={"namespaces": {}}), "spec.priority: expected an "
                                                                                  "integer 0-1000"),
    (admin("AdminNetworkPolicy", "a", priority=1, subject={}), "spec.subject needs exactly one of"),
    (admin("ClusterNetworkPolicy", "a", tier="Top", priority=1, subject={"namespaces": {}}),
     "spec.tier: expected Admin or Baseline"),
    (admin("BaselineAdminNetworkPolicy", "default", subject={"namespaces": {}},
           ingress=[{"action": "Pass", "from": [{"namespaces": {}}]}]), "expected Allow, Deny"),
    (admin("AdminNetworkPolicy", "a", priority=1, subject={"namespaces": {"namespaceSelector": {}}}),
     "an older network-policy-api schema"),
    (k8s_np("x", {"podSelector": {"app": "db"}}), "expected matchLabels and/or matchExpressions, got app"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_malformed_objects_are_located_manifest_errors(tmp_path: Path, obj, message):
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(obj))
    with pytest.raises(ManifestError) as err:
        load_manifests([tmp_path / "p.yaml"])
    assert message in str(err.value) and str(tmp_path / "p.yaml") in str(err.value)


@pytest.mark.parametrize("spec, field", [
    ({"applyOnForward": True}, "spec.applyOnForward"),
    ({"preDNAT": True}, "spec.preDNAT"),
    ({"doNotTrack": True}, "spec.doNotTrack"),
    ({"ingress": [allow(source={"services": {"name": "x"}})]}, "spec.ingress[0].source.services"),
    ({"egress": [allow(destination={"services": {"name": "x"}})]}, "spec.egress[0].destination.services"),
    ({"ingress": [allow(protocol="ICMP", icmp={"type": 8})]}, "spec.ingress[0].icmp"),
    ({"ingress": [allow(notICMP={"type": 8})]}, "spec.ingress[0].notICMP"),
    ({"ingress": [allow(http={"methods": ["GET"]})]}, "spec.ingress[0].http"),
    ({"ingress": [allow(protocol="TCP", source={"ports": [1234]})]}, "spec.ingress[0].source.ports"),
])
def test_unmodelled_fields_warn_naming_policy_and_field(spec, field):
    _, warnings = parse_calico_policy(gnp("guard", selector="all()", **spec))
    assert len(warnings) == 1 and warnings[0].startswith(f"GlobalNetworkPolicy guard: {field}")
    assert "not modelled" in warnings[0]


def test_unmodelled_kinds_and_peers_warn(tmp_path: Path):
    import yaml

    objs = [{"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint", "metadata": {"name": "eth0"}, "spec": {}},
            {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": "ips"},
             "spec": {"nets": ["1.2.3.0/24"]}},
            admin("AdminNetworkPolicy", "nodes", priority=1, subject={"namespaces": {}},
                  egress=[{"action": "Allow", "to": [{"nodes": {}}]}])]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump_all(objs))
    warnings = load_manifests([tmp_path]).warnings
    assert any("HostEndpoint eth0: host endpoints are not modelled" in w for w in warnings)
    assert any("GlobalNetworkSet ips: network sets are not modelled" in w for w in warnings)
    assert any("AdminNetworkPolicy nodes: spec.egress[0].to[0].nodes: nodes peers are not modelled" in w
               for w in warnings)
    # ...and a rule whose only peer is unmodelled matches nothing (it is not "any peer")
    e = build(objs[2])
    assert allowed(e, API, DB, 5432)  # the kube-admin tier passes what it does not match


def test_undefined_tier_warns():
    e = build(gnp("x", tier="missing", selector="all()", ingress=[allow()]))
    assert e.warnings and "tier 'missing' is not defined" in e.warnings[0]


def test_calico_tutorial_gives_the_kubernetes_tutorials_matrix():
    from probe.spec import load_spec

    spec = load_spec(ROOT / "examples/tutorial/expect.yaml", "tutorial")
    ports = [(5432, "TCP"), (8080, "TCP"), (53, "UDP"), (443, "TCP")]
    workloads = str(ROOT / "examples/tutorial/workloads.yaml")
    kube = expect_document(world_from_manifests([str(ROOT / "examples/tutorial/policies.yaml"), workloads],
                                                "tutorial"), ports, spec)
    calico_world = world_from_manifests([str(ROOT / "examples/tutorial-calico"), workloads], "tutorial")
    assert any(p.kind == "GlobalNetworkPolicy" for p in calico_world.policies)
    cal = expect_document(calico_world, ports, spec)
    for key in ("pods", "pod_to_pod", "external", "dns", "expect"):
        assert cal[key] == kube[key], key
    assert cal["expect"] == {"api": {"dns": "allow", "db": "allow", "db-pods": "allow", "api": "deny",
                                     "internet": "deny"},
                             "frontend": {"dns": "allow", "db": "deny", "db-pods": "deny", "api": "allow",
                                          "internet": "allow"}}
    # and the spec's own expect section agrees with both
    assert {s: {t: str(v) for t, v in row.items()} for s, row in _spec_expect(spec).items()} == cal["expect"]


def _spec_expect(spec: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (s, t), v in spec.expect.items():
        out.setdefault(s, {})[t] = v
    return out


# ------------------------------------------------------------------------------- lint


def lint_codes(*objs: dict[str, Any]) -> list[tuple[str, str]]:
    e = build(*objs)
    return [(f.code, f.object) for f in lint(e, PODS) if f.code.startswith("NP1")]


def test_lint_default_deny_gnp_without_dns():
    codes = lint_codes(gnp("default-deny", order=2000, selector="projectcalico.org/namespace != 'kube-system'",
                           types=["Ingress", "Egress"]))
    assert ("NP101", "Pod shop/api") in codes and ("NP101", "Pod kube-system/coredns") not in codes
    fine = lint_codes(gnp("default-deny", order=2000, selector="projectcalico.org/namespace != 'kube-system'",
                          types=["Ingress", "Egress"],
                          egress=[allow(protocol="UDP", destination={"selector": "k8s-app == 'kube-dns'",
                                                                     "ports": [53]})]))
    assert not [c for c in fine if c[0] == "NP101"]


def test_lint_pass_with_no_later_tier():
    codes = lint_codes(tier("security", 10), gnp("pass", tier="security", selector="app == 'db'",
                                                 types=["Ingress"], ingress=[pass_()]))
    assert ("NP102", "GlobalNetworkPolicy pass ingress[0]") in codes
    ok = lint_codes(tier("security", 10), gnp("pass", tier="security", selector="app == 'db'",
                                              types=["Ingress"], ingress=[pass_()]), DENY_ALL_INGRESS_TO_DB)
    assert not [c for c in ok if c[0] == "NP102"]


def test_lint_shadowed_rules():
    codes = lint_codes(gnp("a", order=1, selector="app == 'db'", types=["Ingress"],
                           ingress=[deny(protocol="TCP"), allow(protocol="TCP", destination={"ports": [5432]})]))
    assert ("NP103", "GlobalNetworkPolicy a ingress[1]") in codes
    across = lint_codes(gnp("deny-all", order=1, selector="all()", types=["Ingress"], ingress=[deny()]),
                        cnp("db", order=100, selector="app == 'db'", types=["Ingress"], ingress=[allow()]))
    assert ("NP103", "Calico NetworkPolicy shop/db ingress[0]") in across
    narrower = lint_codes(gnp("a", order=1, selector="app == 'db'", types=["Ingress"],
                              ingress=[pass_(source={"nets": ["10.0.0.0/8"]}),
                                       deny(protocol="TCP", source={"nets": ["10.0.0.0/8"]},
                                            destination={"ports": [8080]})]))
    assert ("NP103", "GlobalNetworkPolicy a ingress[1]") in narrower
    unrelated = lint_codes(gnp("a", order=1, selector="app == 'db'", types=["Ingress"],
                               ingress=[deny(protocol="UDP"), allow(protocol="TCP")]))
    assert not [c for c in unrelated if c[0] == "NP103"]


def test_lint_equal_admin_priorities_with_overlapping_subjects():
    same = [admin("AdminNetworkPolicy", n, priority=10, subject={"namespaces": {}},
                  ingress=[{"action": a, "from": [{"namespaces": {}}]}]) for n, a in (("a", "Allow"), ("b", "Deny"))]
    assert ("NP104", "AdminNetworkPolicy b") in lint_codes(*same)
    distinct = [same[0], {**same[1], "spec": {**same[1]["spec"], "priority": 11}}]
    assert not [c for c in lint_codes(*distinct) if c[0] == "NP104"]


# ------------------------------------------------------------------- from a cluster


def test_cluster_prefers_calico_api_server_and_skips_absent_apis():
    from fakecluster import FakeCluster

    v3 = gnp("deny-db", selector="app == 'db'", types=["Ingress"], ingress=[deny()])
    crd = {**v3, "apiVersion": "crd.projectcalico.org/v1"}
    fake = FakeCluster(pods=PODS, custom_objects={
        ("projectcalico.org", "v3", "globalnetworkpolicies"): [v3],
        ("projectcalico.org", "v3", "networkpolicies"): [],
        ("projectcalico.org", "v3", "tiers"): [],
        ("crd.projectcalico.org", "v1", "globalnetworkpolicies"): [crd],  # the same objects, stored
        ("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies"): [
            admin("AdminNetworkPolicy", "a", priority=1, subject={"namespaces": {}},
                  ingress=[{"action": "Pass", "from": [{"namespaces": {}}]}])],
    })
    world = world_from_cluster(fake)
    assert sorted(p.key for p in world.policies) == ["AdminNetworkPolicy a", "GlobalNetworkPolicy deny-db"]
    assert not world.engine().decide(Endpoint(pod=API), Endpoint(pod=DB), 5432).allowed
    crd_only = FakeCluster(pods=PODS, custom_objects={("crd.projectcalico.org", "v1", "globalnetworkpolicies"): [crd]})
    assert [p.key for p in world_from_cluster(crd_only).policies] == ["GlobalNetworkPolicy deny-db"]
    assert world_from_cluster(FakeCluster(pods=PODS)).policies == ()
    with_sets = FakeCluster(pods=PODS, custom_objects={
        ("crd.projectcalico.org", "v1", "globalnetworkpolicies"): [crd],
        ("crd.projectcalico.org", "v1", "globalnetworksets"): [
            {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkSet", "metadata": {"name": "partners"},
             "spec": {"nets": ["198.51.100.0/24"]}}]})
    assert any("GlobalNetworkSet partners: network sets are not modelled" in w
               for w in world_from_cluster(with_sets).warnings)


# --------------------------------------------------------- property: matrix == decide


def _random_world(rng: random.Random) -> PolicyEngine:
    apps = ["a", "b", "c"]
    pods = [pod(f"p{i}", ns=rng.choice(["shop", "other"]), ip=f"10.0.{i // 8}.{i % 8 + 1}",
                ports=(ContainerPort(name="web", port=8080),) if rng.random() < 0.5 else (),
                app=rng.choice(apps)) for i in range(10)]

    def side() -> dict[str, Any]:
        return rng.choice([{}, {"selector": f"app == '{rng.choice(apps)}'"},
                           {"namespaceSelector": "projectcalico.org/name == 'other'"},
                           {"nets": ["10.0.0.0/29"]}, {"notSelector": f"app == '{rng.choice(apps)}'"}])

    def rule() -> dict[str, Any]:
        r: dict[str, Any] = {"action": rng.choice(["Allow", "Deny", "Pass", "Log"]), "source": side()}
        dst = side()
        if rng.random() < 0.5:
            r["protocol"] = "TCP"
            dst["ports"] = [rng.choice([8080, "web", "8000:8100", 22])]
        r["destination"] = dst
        return r

    objs: list[dict[str, Any]] = [tier("t1", 10, rng.choice(["Deny", "Pass"]))]
    for i in range(rng.randint(1, 5)):
        kind = rng.choice(["NetworkPolicy", "GlobalNetworkPolicy"])
        spec = {"order": rng.choice([None, 1, 50, 2000]), "selector": f"app == '{rng.choice(apps)}'",
                "tier": rng.choice(["default", "t1"]),
                "types": rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
                "ingress": [rule() for _ in range(rng.randint(0, 2))],
                "egress": [rule() for _ in range(rng.randint(0, 2))]}
        objs.append(calico(kind, f"p{i}", {k: v for k, v in spec.items() if v is not None}, ns="shop"))
    if rng.random() < 0.5:
        objs.append(k8s_np("k", {"podSelector": {"matchLabels": {"app": rng.choice(apps)}},
                                 "ingress": [{"from": [{"podSelector": {}}]}]}))
    return build(*objs, pods=pods)


@pytest.mark.parametrize("seed", range(60))
def test_property_tiered_matrix_equals_decide(seed):
    e = _random_world(random.Random(seed))
    for port in (8080, 22):
        rows = e.matrix(port)
        for i, a in enumerate(e.pods):
            for j, b in enumerate(e.pods):
                assert bool(rows[i] >> j & 1) == allowed(e, a, b, port), (seed, a.key, b.key, port)


def test_only_kubernetes_policies_keep_the_union_engine_and_its_wording():
    e = build(k8s_np("db", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]}))
    assert not e.tiered
    assert decide(e, API, DB, 5432).ingress.reason.startswith("shop/db is ingress-isolated by shop/db")


def test_a_tier_object_changes_nothing_without_tiered_policies():
    e = PolicyEngine(PODS, NAMESPACES, [], tiers=[Tier(name="x", order=1)])
    assert allowed(e, API, DB, 5432)


# --------------------------------------------- Kubernetes policies inside the default tier


def _random_kube_policies(rng: random.Random) -> list[dict[str, Any]]:
    apps = ["a", "b", "c"]

    def peer() -> dict[str, Any]:
        return rng.choice([{"podSelector": {"matchLabels": {"app": rng.choice(apps)}}},
                           {"namespaceSelector": {"matchLabels": {"env": "dev"}}},
                           {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": rng.choice(apps)}}},
                           {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}])

    out = []
    for i in range(rng.randint(1, 4)):
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": rng.choice(apps)}}, "policyTypes": types}
        for direction, key in (("ingress", "from"), ("egress", "to")):
            if direction.capitalize() in types:
                spec[direction] = [{key: [peer() for _ in range(rng.randint(1, 2))],
                                    "ports": rng.choice([[], [{"port": 8080}], [{"port": "web"}]])}
                                   for _ in range(rng.randint(0, 2))]
        out.append(k8s_np(f"k{i}", spec, ns=rng.choice(["shop", "other"])))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_property_kubernetes_policies_in_the_default_tier_keep_their_union_semantics(seed):
    """Calico runs a Kubernetes NetworkPolicy in the default tier, order 1000, every rule an Allow:
    with the tier model switched on (a tiered policy that applies to no pod), every answer is the
    union engine's."""
    rng = random.Random(seed)
    pods = [pod(f"p{i}", ns=rng.choice(["shop", "other"]), ip=f"10.0.{i % 3}.{i + 1}",
                ports=(ContainerPort(name="web", port=8080),) if i % 2 else (),
                app=rng.choice(["a", "b", "c"])) for i in range(8)]
    objs = _random_kube_policies(rng)
    union = build(*objs, pods=pods)
    tiered = build(*objs, gnp("inert", selector="has(nothing)", ingress=[deny()]), pods=pods)
    assert not union.tiered and tiered.tiered
    for port in (8080, 22):
        assert union.matrix(port) == tiered.matrix(port)
        for a in pods:
            for dst in [*pods, "10.0.5.5", "203.0.113.9"]:
                assert allowed(union, a, dst, port) == allowed(tiered, a, dst, port), (seed, a.key, dst)


def test_cli_explain_and_lint_on_the_calico_tutorial(tmp_path: Path):
    import subprocess
    import sys

    def netprobe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, cwd=ROOT)

    files = ["-f", "examples/tutorial-calico/", "-f", "examples/tutorial/workloads.yaml"]
    proc = netprobe("explain", "default/api", "default/frontend", "--port", "8080", *files)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "denied by tier default's defaultAction Deny: default/api is egress-isolated by Calico NetworkPolicy " \
           "default/api (tier default, order 100), GlobalNetworkPolicy default-deny (tier default, order 2000)" \
           in proc.stdout
    assert netprobe("lint", *files).returncode == 0  # the DNS allow is there
    (tmp_path / "fwd.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: host-guard}\n"
        "spec: {selector: all(), applyOnForward: true, types: [Egress]}\n")
    proc = netprobe("explain", "default/api", "default/db", "--port", "5432", *files, "-f", str(tmp_path))
    assert "warning: " in proc.stderr and "GlobalNetworkPolicy host-guard: spec.applyOnForward" in proc.stderr
    lint_out = netprobe("lint", *files, "-f", str(tmp_path), "-o", "json")
    codes = {f["code"] for f in __import__("json").loads(lint_out.stdout)}
    # a policy without rules matches nothing and the tier goes on to default-deny's DNS allow: NP100 only
    assert lint_out.returncode == 1 and codes == {"NP100"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n"
                   "spec: {selector: \"app == 'db' &&\"}\n")
    proc = netprobe("lint", "-f", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad} (document 1): GlobalNetworkPolicy x: spec.selector: selector \"app == 'db' &&\": expected a " \
           "label key, has(), all() or '(' at column 15, got the end" in proc.stderr


def test_address_ranges_reached_are_decided_through_the_tiers() -> None:
    """A range one policy opens but an earlier tier denies in part is listed without that part:
    "first Allow/Deny wins" holds for addresses as for pods (the connlist's ipBlock rows)."""
    from probe.policy.classes import class_connectivity

    engine = build(
        tier("security", 100),
        gnp("deny-half", tier="security", order=1, selector="app == 'api'", types=["Egress"],
            egress=[{"action": "Deny", "destination": {"nets": ["203.0.113.0/25"]}}, {"action": "Pass"}]),
        gnp("web-out", selector="app == 'api'", types=["Egress"],
            egress=[allow(protocol="TCP", destination={"nets": ["203.0.113.0/24"], "ports": [443]})]),
        k8s_np("db-out", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}))
    conn = class_connectivity(engine, ports=(("TCP", 443, 443), ("TCP", 5432, 5432)))
    by_pod = {rep.name: conn.ip_blocks[i] for i, rep in enumerate(conn.classes.representatives)}
    assert by_pod[API.name] == (("203.0.113.128/25", (("TCP", 443, 443),)),)
    # the Kubernetes ipBlock, cut at its except, as CIDRs
    db_ranges = dict(by_pod[DB.name])
    assert "10.0.0.0/8" not in " ".join(db_ranges)
    assert db_ranges["11.0.0.0/8, 12.0.0.0/6, 16.0.0.0/4, 32.0.0.0/3, 64.0.0.0/2, 128.0.0.0/1"] == \
        (("TCP", 443, 443), ("TCP", 5432, 5432))
    assert db_ranges["0.0.0.0/5, 8.0.0.0/7"] == (("TCP", 443, 443), ("TCP", 5432, 5432))
    assert by_pod[WEB.name] == ()  # not egress-isolated: reaches everything as "external"


def _ranges(engine: PolicyEngine, ports: Any = None) -> dict[str, dict[str, Any]]:
    from probe.policy.classes import class_connectivity

    conn = class_connectivity(engine, ports=ports)
    return {rep.key: dict(conn.ip_blocks[i]) for i, rep in enumerate(conn.classes.representatives)}


def test_address_ranges_on_every_port_are_decided_per_port_segment() -> None:
    """The default `expect` (every port): a range open on 443 only is listed, with 443."""
    engine = build(gnp("out-443", selector="app == 'api'", types=["Egress"], egress=[allow(
        protocol="TCP", destination={"nets": ["0.0.0.0/0"], "notNets": ["10.0.0.0/8"], "ports": [443]})]))
    api = _ranges(engine)[API.key]
    assert api["0.0.0.0/5, 8.0.0.0/7"] == (("TCP", 443, 443),)
    assert "10.0.0.0/8" not in " ".join(api)


def test_address_ranges_a_notnets_only_rule_opens_are_listed() -> None:
    """'notNets: Negative match on CIDRs': every address outside them matches, and is listed."""
    engine = build(gnp("not-internal", selector="app == 'api'", types=["Egress"], egress=[allow(
        protocol="TCP", destination={"notNets": ["10.0.0.0/8"], "ports": [443]})]))
    api = _ranges(engine, ports=(("TCP", 443, 443),))[API.key]
    assert api["0.0.0.0/5, 8.0.0.0/7"] == (("TCP", 443, 443),)
    assert api["::/0"] == (("TCP", 443, 443),)
    assert not any(k.startswith("10.") for k in api)


def test_address_ranges_of_pods_a_rule_source_side_tells_apart_are_their_own() -> None:
    """Two pods with the same labels and policies: an egress rule whose source side tests the namespace
    decides them differently, and each is listed as the engine decides it."""
    engine = build(gnp("prod-out", selector="app == 'api'", types=["Egress"], egress=[allow(
        protocol="TCP", source={"namespaceSelector": "env == 'prod'"},
        destination={"nets": ["203.0.113.0/24"], "ports": [443]})]))
    got = _ranges(engine, ports=(("TCP", 443, 443),))
    assert got[API.key] == {"203.0.113.0/24": (("TCP", 443, 443),)}
    assert got[OTHER.key] == {}
    for p, want in ((API, True), (OTHER, False)):
        assert allowed(engine, p, "203.0.113.7", 443) is want


def test_expect_diff_reads_the_ranges_the_tier_model_lists(tmp_path: Path) -> None:
    """`expect --diff` between two Calico versions: the listed ranges (CIDR lists) are compared, no traceback."""
    import yaml
    from typer.testing import CliRunner

    from probe.cli import app

    ns = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api", "namespace": "shop",
                                                            "labels": {"app": "api"}},
             "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.0.0.2"}}]
    for name, not_nets in (("before", ["10.0.0.0/8"]), ("after", ["10.0.0.0/8", "192.168.0.0/16"])):
        d = tmp_path / name
        d.mkdir()
        pol = gnp("out", selector="app == 'api'", types=["Egress"], egress=[allow(
            protocol="TCP", destination={"nets": ["0.0.0.0/0"], "notNets": not_nets, "ports": [443]})])
        (d / "all.yaml").write_text(yaml.safe_dump_all([*ns, *pods, pol]))
    res = CliRunner().invoke(app, ["expect", "-f", str(tmp_path / "after"), "--diff", str(tmp_path / "before"),
                                   "--port", "443"])
    assert isinstance(res.exception, SystemExit), res.output  # exit 1, never an uncaught error
    assert res.exit_code == 1, res.output
    # the range that lost 192.168.0.0/16 is the removed line; the narrower ranges after it are inside it
    assert "- shop/api[Pod] => 11.0.0.0/8, 12.0.0.0/6" in res.output and "0 connection(s) added, 1 removed" \
        in res.output, res.output
