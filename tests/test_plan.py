"""Identities, plans and the probe-pod manifest (DESIGN: "The probe pod contract")."""

from __future__ import annotations

import binascii
import hashlib
import json
import textwrap
import zlib
from typing import Any

import pytest

from probe.agent_protocol import plan_document
from probe.model import Expectation, Namespace, Selector, Source, Target, TargetKind, Verdict
from probe.observe import observe
from probe.plan import GATE_CANDIDATES, TargetPods, make_plans
from probe.pods import Identity, PodInfo, identity_labels, sample_pods
from probe.probepod import (
    AGENT_ANNOTATION,
    PodSettings,
    agent_bootstrap,
    agent_program,
    ephemeral_container,
    minified,
    probe_job,
)
from probe.services import Backend

NS = Namespace("shop")


def pod(name, labels, ip="10.0.0.1", sa="default", node="n1"):
    return PodInfo(name=name, namespace=NS, labels=labels, ip=ip, service_account=sa, node=node)


API = Source(name="api", namespace=NS, selector=Selector.from_labels({"app": "api"}))
DB = Target(name="db", kind=TargetKind.TCP, host="db", port=5432)
DBPODS = Target(name="db-pods", kind=TargetKind.PODS, namespace=NS,
                selector=Selector.from_labels({"app": "db"}), port=5432)


def test_controller_stamped_labels_are_not_part_of_the_identity():
    labels = {"app": "api", "pod-template-hash": "abc", "controller-revision-hash": "1",
              "statefulset.kubernetes.io/pod-name": "api-0", "job-name": "j", "controller-uid": "u",
              "batch.kubernetes.io/job-name": "j", "netprobe.io/run": "old"}
    assert identity_labels(labels) == {"app": "api"}


def test_replicas_share_one_probe_pod_and_per_pod_splits_them():
    pods = [pod(f"api-{i}", {"app": "api", "pod-template-hash": f"h{i % 2}"}, ip=f"10.0.0.{i}")
            for i in range(1, 11)]
    plans = make_plans([API], {"api": pods}, [DB], {}, timeout=1.0)
    assert len(plans) == 1 and plans[0].sources == ("api",)
    assert len(make_plans([API], {"api": pods}, [DB], {}, timeout=1.0, per_pod=True)) == 10


def test_different_service_accounts_are_different_identities():
    pods = [pod("a", {"app": "api"}, sa="one"), pod("b", {"app": "api"}, sa="two")]
    assert len(make_plans([API], {"api": pods}, [DB], {}, timeout=1.0)) == 2


def test_pod_selector_target_becomes_one_check_per_pod_and_one_column():
    dbs = (pod("db-0", {"app": "db"}, ip="10.0.1.1"), pod("db-1", {"app": "db"}, ip="10.0.1.2"))
    plans = make_plans([API], {"api": [pod("a", {"app": "api"})]}, [DBPODS],
                       {"db-pods": TargetPods(target="db-pods", pods=dbs, total=2)}, timeout=1.0)
    checks = plan_document(plans[0])["checks"]
    assert [(c["host"], c["port"]) for c in checks] == [("10.0.1.1", 5432), ("10.0.1.2", 5432)]
    results = {"t0p0": {"id": "t0p0", "verdict": "allowed", "detail": "ok"},
               "t0p1": {"id": "t0p1", "verdict": "blocked", "detail": "no answer"}}
    obs = observe(plans[0], results)["db-pods"]
    assert obs.verdict is Verdict.PARTIAL  # one pod answered, one did not: neither allow nor deny
    assert [(s.pod, s.ip, s.verdict) for s in obs.subresults] == [
        ("shop/db-0", "10.0.1.1", Verdict.ALLOWED), ("shop/db-1", "10.0.1.2", Verdict.BLOCKED)]
    assert {s.identity for s in obs.subresults} == {"shop/app=api"}


def test_sampling_spreads_over_nodes_and_is_deterministic():
    pods = [pod(f"p{i}", {"app": "db"}, node=f"n{i % 3}") for i in range(30)]
    picked = sample_pods(pods, 3, seed="x")
    assert {p.node for p in picked} == {"n0", "n1", "n2"}
    assert picked == sample_pods(pods, 3, seed="x")


@pytest.fixture
def job():
    source = pod("api-7d9-x", {"app": "api", "pod-template-hash": "7d9"}, sa="api-sa", node="node-3")
    plan = make_plans([API], {"api": [source]}, [DB], {}, timeout=1.5, warmup=2)[0]
    return probe_job(plan, "r123", PodSettings(image="python:3.12-alpine", same_node=True))


def test_probe_job_carries_the_identity_and_the_run_label(job):
    template = job["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "api", "netprobe.io/run": "r123"}
    assert template["spec"]["serviceAccountName"] == "api-sa"
    assert job["metadata"]["namespace"] == "shop"
    assert job["metadata"]["labels"]["netprobe.io/run"] == "r123"
    assert job["metadata"]["name"] == "netprobe-r123-0"


def test_probe_job_is_owned_by_a_job_that_cleans_itself_up(job):
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_probe_pod_is_never_ready(job):
    probe = job["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["initialDelaySeconds"] >= job["spec"]["activeDeadlineSeconds"]


def _restricted_violations(pod_spec: dict, annotations: dict) -> list[str]:
    """Every check of the Pod Security Standard "restricted" profile (baseline included), v1.28."""
    out = []
    psc = pod_spec.get("securityContext", {})
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", []) + \
        pod_spec.get("ephemeralContainers", [])
    # baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            out.append(f"host namespaces: {key}")
    if psc.get("windowsOptions", {}).get("hostProcess"):
        out.append("hostProcess")
    if any("hostPath" in v for v in pod_spec.get("volumes", [])):
        out.append("hostPath volumes")
    allowed_sysctls = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                       "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
    if any(s["name"] not in allowed_sysctls for s in psc.get("sysctls", [])):
        out.append("unsafe sysctls")
    if any(k.startswith("container.apparmor.security.beta.kubernetes.io/") and v not in ("runtime/default",)
           and not v.startswith("localhost/") for k, v in annotations.items()):
        out.append("AppArmor")
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        se = sc.get("seLinuxOptions", {})
        if se.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t") or \
                se.get("user") or se.get("role"):
            out.append(f"{name}: seLinuxOptions")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: only NET_BIND_SERVICE may be added")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for v in pod_spec.get("volumes", []):
        if not (set(v) - {"name"}) <= allowed_volumes:
            out.append(f"volume type {set(v) - {'name'}}")
    return out


def test_restricted_checker_catches_violations():
    bad = {"hostNetwork": True, "containers": [{"name": "c", "securityContext": {"privileged": True}}],
           "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    assert len(_restricted_violations(bad, {})) >= 6


def test_probe_job_meets_every_rule_of_the_restricted_profile(job):
    template = job["spec"]["template"]
    assert _restricted_violations(template["spec"], template["metadata"].get("annotations", {})) == []


def test_ephemeral_probe_container_meets_the_restricted_profile():
    source = pod("api-1", {"app": "api"})
    plan = make_plans([API], {"api": [source]}, [DB], {}, timeout=1.0)[0]
    container = ephemeral_container(plan, "r9", PodSettings())
    assert _restricted_violations({"containers": [container]}, {}) == []


def test_probe_pod_passes_the_restricted_pod_security_standard(job):
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    sc = container["securityContext"]
    # restricted: no privilege escalation, drop ALL, non-root with an explicit uid, seccomp
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0 and sc["runAsGroup"] != 0
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    # baseline: no host namespaces, ports or paths
    for key in ("hostNetwork", "hostPID", "hostIPC", "volumes"):
        assert key not in spec
    assert "ports" not in container
    assert spec["automountServiceAccountToken"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_minified_source_drops_docstrings_comments_and_annotations_but_runs_the_same():
    source = textwrap.dedent('''\
        """module doc"""
        from __future__ import annotations
        class Box:
            """doc"""
            size: int
            label: str = "box"  # a comment
            def __init__(self, size: int) -> None:
                self.size: int = size
        def grow(box: Box, *more: int, by: int = 1, **named: int) -> list[int]:
            out: list[int] = []
            try:
                out.append(box.size + by + sum(more) + sum(named.values()))
            finally:
                note: str
            if not out:
                gone: int
            else:
                kept: int = 1
                out.append(kept)
            return out
        ''')
    small = minified(source)
    assert "doc" not in small and "comment" not in small and ": int" not in small and "->" not in small
    space: dict[str, Any] = {}
    exec(compile(small, "minified", "exec"), space)
    assert space["grow"](space["Box"](2), 3, by=4, extra=5) == [14, 1] and space["Box"].label == "box"
    # without the __future__ import an annotation runs (and may have effects): kept
    assert "x: int = 1" in minified("x: int = 1\n")


def test_agent_and_plan_travel_as_argv_data_not_through_a_shell(job):
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["python3", "-c"]
    # the agent travels compressed, and unpacks to exactly the program netprobe says it runs
    assert command[2] == agent_bootstrap() and len(command[2]) < 16_000
    packed = command[2].split("a2b_base64('")[1].split("')")[0]
    assert zlib.decompress(binascii.a2b_base64(packed)).decode() == agent_program()
    assert "def main(" in agent_program() and '"""' not in agent_program()
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations[AGENT_ANNOTATION] == hashlib.sha256(agent_program().encode()).hexdigest()
    plan = json.loads(command[3])
    assert plan["version"] == 1 and plan["gate"] == {"bound": 2, "connect": [], "block": [],
                                                  "network": "kubernetes.default"}
    assert "warmup" not in plan
    assert plan["checks"] == [{"id": "t0", "kind": "tcp", "host": "db", "port": 5432}]


def test_same_node_pins_the_probe_to_the_source_node(job):
    terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == ["node-3"]


def test_ephemeral_container_request_has_no_fields_the_api_rejects():
    source = pod("api-1", {"app": "api"})
    plan = make_plans([API], {"api": [source]}, [DB], {}, timeout=1.0)[0]
    container = ephemeral_container(plan, "r9", PodSettings())
    assert container["name"] == f"netprobe-r9-{plan.index}"  # one per plan: names can never be reused
    assert "resources" not in container and "readinessProbe" not in container
    assert container["command"][:2] == ["python3", "-c"]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_identity_describes_itself():
    ident = Identity.of(pod("a", {"app": "api", "pod-template-hash": "x"}, sa="api-sa"))
    assert ident.describe() == "shop/app=api sa=api-sa"


# -- the readiness gate's checks (agent.run_gate polls them before the real checks)

ALLOW, DENY = Expectation.ALLOW, Expectation.DENY
WEB = Source(name="web", namespace=NS, selector=Selector.from_labels({"app": "api"}))  # same identity as API
DNS = Target(name="dns", kind=TargetKind.DNS, host="kubernetes.default")
INTERNET = Target(name="internet", kind=TargetKind.TCP, host="203.0.113.10", port=443)
SITE = Target(name="site", kind=TargetKind.HTTP, host="https://example.com/")
SITE_IP = Target(name="site-ip", kind=TargetKind.HTTP, host="http://203.0.113.10:8080/")


def gate_of(targets, expect, sources=(API,), pods=None, **kw):
    source = pod("api-1", {"app": "api"})
    by_source = {s.name: [source] for s in sources}
    plan = make_plans(list(sources), by_source, targets, pods or {}, timeout=2.0, warmup=3.0,
                      expect=expect, **kw)[0]
    return plan, plan_document(plan)


def test_gate_polls_an_expected_allow_and_an_expected_deny_check():
    plan, doc = gate_of([DNS, DB, INTERNET], {("api", "dns"): ALLOW, ("api", "db"): DENY,
                                              ("api", "internet"): ALLOW})
    ids = {plan.refs[c].target: c for c in plan.refs}
    # connect: DNS before an IP address; block: the only deny
    assert doc["gate"] == {"bound": 3.0, "connect": [ids["dns"], ids["internet"]], "block": [ids["db"]],
                           "network": "kubernetes.default"}


def test_the_gate_never_waits_for_a_connection_a_node_may_answer_itself():
    # Some enforcers never filter a pod's traffic to its own node, not even while a fail-closed
    # start drops everything else (the lab's): the API server, a hostNetwork pod, a node address
    # or a Service endpoint without a pod would connect at once and open the gate on nothing.
    node = "10.200.0.1"
    on_node = {"host_ips": (node, "fd00::1"), "namespace": NS}
    apiserver = Target(name="apiserver", kind=TargetKind.TCP, host="kubernetes.default.svc.cluster.local", port=443)
    kubelet = Target(name="kubelet", kind=TargetKind.TCP, host=node, port=10250)
    exporter = Target(name="exporter", kind=TargetKind.PODS, namespace=NS,
                      selector=Selector.from_labels({"app": "exporter"}), port=9100)
    legacy = Target(name="legacy", kind=TargetKind.TCP, host="legacy", port=80)  # a Service without a selector
    found = {"exporter": TargetPods(target="exporter", total=1, pods=(
                 PodInfo(name="exporter-x", labels={"app": "exporter"}, ip=node, **on_node),)),
             "db-pods": TargetPods(target="db-pods", total=1, pods=(
                 PodInfo(name="db-0", labels={"app": "db"}, ip="10.244.0.9", **on_node),))}
    backends = {("legacy", str(NS)): [Backend(pod=f"{NS}/172.18.0.5", ip="172.18.0.5", port=80, has_pod=False)],
                ("db", str(NS)): [Backend(pod=f"{NS}/db-0", ip="10.244.0.9", port=5432)]}
    targets = [apiserver, kubelet, exporter, legacy, DNS, DBPODS, DB, INTERNET]
    allow_all = {("api", t.name): ALLOW for t in targets if t is not INTERNET} | {("api", "internet"): DENY}
    plan, doc = gate_of(targets, allow_all, pods=found, backends=backends)
    names = [plan.refs[c].target for c in doc["gate"]["connect"]]
    # the target pod (in the pod network, on the same node), then the db Service, then the DNS
    assert names == ["db-pods", "db", "db"] and len(set(doc["gate"]["connect"])) == 3
    # with only the node to reach, nothing can show the pod programmed: no "connect" check, so
    # the gate polls the pod's nameserver and waits out its bound
    plan, doc = gate_of([apiserver, kubelet, exporter, legacy, INTERNET], allow_all, pods=found, backends=backends)
    assert doc["gate"]["connect"] == [] and doc["gate"]["network"] == "kubernetes.default"
    assert {plan.refs[c].target for c in plan.node_answered} == {"apiserver", "kubelet", "exporter", "legacy"}


@pytest.mark.parametrize("target", [
    Target(name="n", kind=TargetKind.TCP, host="fd00:0:0::0001", port=10250),   # another spelling
    Target(name="n", kind=TargetKind.TCP, host="::ffff:10.200.0.1", port=10250),  # IPv4-mapped
    Target(name="n", kind=TargetKind.HTTP, host="http://[FD00::1]:10255/metrics"),
    Target(name="n", kind=TargetKind.HTTP, host="http://user@10.200.0.1:10255/"),
    Target(name="n", kind=TargetKind.TCP, host="KUBERNETES.default.svc.cluster.example.", port=443),
])
def test_a_node_is_known_whatever_the_spelling_of_its_address(target):
    source = PodInfo(name="api-1", namespace=NS, labels={"app": "api"}, ip="10.244.0.3",
                     host_ips=("10.200.0.1", "fd00::1"))
    plan = make_plans([API], {"api": [source]}, [target, DNS], {}, timeout=2.0, warmup=3.0,
                      expect={("api", "n"): ALLOW, ("api", "dns"): ALLOW})[0]
    assert [plan.refs[c].target for c in plan.node_answered] == ["n"]
    assert [plan.refs[c].target for c in plan.gate_connect] == ["dns"]


def test_a_connection_a_node_may_answer_shows_no_network():
    # A pod whose only expected allow is the API server: its gate polls its nameserver, which
    # never replied (a fail-closed start that outlasted --warmup). The API server connecting
    # (the node answers it) shows nothing: the deny beside it is not probed, not a match.
    from probe.observe import network_unshown

    gate = {"opened": "bound-reached", "unmet": ["connect"], "connect": ["gate:network"], "network_seen": False}
    results = {"t0": {"verdict": "allowed"}, "t1": {"verdict": "blocked"}}
    kinds = {"t0": "tcp", "t1": "tcp"}
    assert network_unshown(gate, results, kinds, node_answered={"t0"}) == "all"
    assert network_unshown(gate, results, kinds) is None  # a connection through the pod network shows it


TARGETS = [SITE_IP, INTERNET, DB, DBPODS, SITE, DNS]
DBPODS_FOUND = {"db-pods": TargetPods(target="db-pods", pods=(pod("db-0", {"app": "db"}, ip="10.0.0.9"),),
                                      total=1)}


def test_block_checks_prefer_dns_then_target_pods_then_names_then_ip_addresses():
    # what an un-isolated pod would surely reach first: the DNS always answers
    plan, doc = gate_of(TARGETS, {("api", t.name): DENY for t in TARGETS}, pods=DBPODS_FOUND)
    names = [plan.refs[c].target for c in doc["gate"]["block"]]
    assert len(names) == GATE_CANDIDATES == 3
    assert names == ["dns", "db-pods", "db"]  # then site (a name), then the IP addresses
    # Nothing is expected to connect: the gate waits for the cluster DNS (gate.network) to answer
    # instead, so the denies are not probed while a fail-closed CNI still drops everything.
    assert doc["gate"]["connect"] == [] and doc["gate"]["network"] == "kubernetes.default"


def test_connect_checks_prefer_target_pods_then_names_then_dns_then_ip_addresses():
    # what also passes the target's ingress policy first: a target pod, a Service
    plan, doc = gate_of(TARGETS, {("api", t.name): ALLOW for t in TARGETS}, pods=DBPODS_FOUND)
    names = [plan.refs[c].target for c in doc["gate"]["connect"]]
    assert names == ["db-pods", "db", "site"]
    assert doc["gate"]["block"] == [] and doc["gate"]["network"] == "kubernetes.default"


def test_a_target_the_sources_of_one_probe_pod_disagree_on_is_no_gate_check():
    # api and web share an identity, so one probe pod stands for both: for db they disagree.
    plan, doc = gate_of([DB, DNS], {("api", "db"): ALLOW, ("web", "db"): DENY,
                                   ("api", "dns"): ALLOW, ("web", "dns"): ALLOW}, sources=(API, WEB))
    assert plan.sources == ("api", "web")
    assert [plan.refs[c].target for c in doc["gate"]["connect"]] == ["dns"]
    assert doc["gate"]["block"] == []


def test_fixed_warmup_mode_sends_a_plain_wait_and_no_gate():
    _, doc = gate_of([DNS], {("api", "dns"): ALLOW}, warmup_mode="fixed")
    assert doc["warmup"] == 3.0 and "gate" not in doc


def test_no_warmup_means_neither_gate_nor_wait():
    source = pod("api-1", {"app": "api"})
    plan = make_plans([API], {"api": [source]}, [DNS], {}, timeout=2.0, warmup=0.0,
                      expect={("api", "dns"): ALLOW})[0]
    doc = plan_document(plan)
    assert "gate" not in doc and "warmup" not in doc


def test_reprobe_plans_choose_gate_checks_among_their_own_checks():
    plan, doc = gate_of([DNS, DB], {("api", "dns"): ALLOW, ("api", "db"): DENY}, only={"api": {"db"}})
    assert set(plan.refs) == set(doc["gate"]["block"]) and doc["gate"]["connect"] == []
    # a re-probe of a deny alone still waits for the pod's network (the cluster DNS) to answer
    assert doc["gate"]["network"] == "kubernetes.default"


def test_probe_jobs_can_be_built_in_many_threads_at_once():
    # The runner creates Jobs from a thread pool, and the first Job makes the agent program with
    # ast, whose conversion on CPython 3.11 breaks when two threads run it at once. A collection
    # that lets other threads run (a gc callback sleeping 0) makes them interleave there.
    import gc
    import threading
    import time

    import probe.probepod as probepod

    source = pod("api-1", {"app": "api"})
    plan = make_plans([API], {"api": [source]}, [DB], {}, timeout=1.0)[0]

    def yield_the_gil(phase: str, info: dict) -> None:
        time.sleep(0)

    threshold = gc.get_threshold()
    gc.callbacks.append(yield_the_gil)
    gc.set_threshold(50)
    try:
        for _ in range(10):
            for cached in (probepod._agent_program, probepod.agent_bootstrap, probepod.agent_digest):
                cached.cache_clear()
            start = threading.Barrier(8)
            errors: list[BaseException] = []
            commands: list[str] = []

            def build(start: threading.Barrier, commands: list[str], errors: list[BaseException]) -> None:
                start.wait()
                try:
                    commands.append(probe_job(plan, "r1", PodSettings())["spec"]["template"]["spec"]
                                    ["containers"][0]["command"][2])
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=build, args=(start, commands, errors)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == [] and len(set(commands)) == 1 and len(commands) == 8
    finally:
        gc.callbacks.remove(yield_the_gil)
        gc.set_threshold(*threshold)
