"""Network policy semantics → expected connectivity, with the rule that decided each connection.

Pure: pods, namespaces and policies come in as values. One module per job:

    rules.py          the evaluator's vocabulary: Rule, Peer, PortRule, IPBlock, Endpoint, and
                      `PolicyRules`, the protocol every policy kind implements
    matching.py       shared matching: label selectors (parsed), peers, ports
    networkpolicy.py  the Kubernetes NetworkPolicy kind: parse + defaulting → Policy
    evaluate.py       isolation, allow per direction, rule attribution (PolicyEngine.decide)
    matrix.py         the bulk matrix: every source × destination on one port, as bitsets

The seam: a policy kind (NetworkPolicy today; Calico, AdminNetworkPolicy next) is parsed in its
own module into objects satisfying `rules.PolicyRules` — a namespace, the pods it selects, the
directions it isolates and, per direction, a tuple of `Rule`s. The evaluator and the matrix only
ever walk those rules, so a new kind adds a module, not a branch in the evaluator.
"""

from __future__ import annotations

from .evaluate import DNS_POD, Decision, Half, PolicyEngine
from .matching import NS_NAME_LABEL, peer_matches, port_matches, selector_from
from .networkpolicy import Policy, namespaces_from, parse_policy
from .rules import EGRESS, INGRESS, Endpoint, IPBlock, IPNet, Peer, PolicyRules, PortRule, Rule

__all__ = [
    "DNS_POD",
    "EGRESS",
    "INGRESS",
    "NS_NAME_LABEL",
    "Decision",
    "Endpoint",
    "Half",
    "IPBlock",
    "IPNet",
    "Peer",
    "Policy",
    "PolicyEngine",
    "PolicyRules",
    "PortRule",
    "Rule",
    "namespaces_from",
    "parse_policy",
    "peer_matches",
    "port_matches",
    "selector_from",
]
