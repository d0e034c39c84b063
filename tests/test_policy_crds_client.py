"""KubeCluster.list_custom_objects with the real kubernetes client over real HTTP: a small API
server on loopback serves the policy CRDs' LIST endpoints (paginated), 404 for APIs it does not
serve, 403 for one it forbids."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from probe.analysis import world_from_cluster
from probe.cluster import KubeCluster
from probe.errors import PermissionDenied

GNP = {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
       "metadata": {"name": "deny-db"}, "spec": {"selector": "app == 'db'", "ingress": [{"action": "Deny"}]}}
EMPTY_LIST = {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}


class Handler(BaseHTTPRequestHandler):
    forbidden: ClassVar[set[str]] = set()
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.seen.append(self.path)
        if url.path in self.forbidden:
            self.send(403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                            "message": f"cannot list resource at {url.path}"})
        elif url.path == "/apis/crd.projectcalico.org/v1":  # discovery: Calico's CRDs are installed
            self.send(200, {"kind": "APIResourceList", "groupVersion": "crd.projectcalico.org/v1",
                            "resources": [{"name": n, "namespaced": n == "networkpolicies", "kind": "X",
                                           "verbs": ["list"]}
                                          for n in ("tiers", "networkpolicies", "globalnetworkpolicies")]})
        elif url.path == "/apis/crd.projectcalico.org/v1/globalnetworkpolicies":
            if "continue" not in query:  # page 1 of 2
                self.send(200, {"kind": "GlobalNetworkPolicyList", "metadata": {"continue": "p2"}, "items": []})
            else:
                self.send(200, {"kind": "GlobalNetworkPolicyList", "metadata": {}, "items": [GNP]})
        elif url.path.startswith(("/apis/crd.projectcalico.org/v1/", "/api/v1/", "/apis/networking.k8s.io/v1/")):
            self.send(200, EMPTY_LIST)
        else:  # projectcalico.org (no Calico API server), policy.networking.k8s.io (no CRDs)
            self.send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": "the server could not find the requested resource"})


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[str, type[Handler]]]:
    handler = type("H", (Handler,), {"forbidden": set(), "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    try:
        yield str(kubeconfig), handler
    finally:
        server.shutdown()
        server.server_close()


def test_absent_apis_are_silent_and_crd_pages_are_followed(api_server):
    kubeconfig, handler = api_server
    cluster = KubeCluster(kubeconfig=kubeconfig)
    assert cluster.list_custom_objects("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies") is None
    assert cluster.list_custom_objects("crd.projectcalico.org", "v1", "globalnetworkpolicies") == [GNP]
    gnp = "/apis/crd.projectcalico.org/v1/globalnetworkpolicies"
    assert [p for p in handler.seen if p.startswith(gnp)] == [f"{gnp}?limit=500", f"{gnp}?limit=500&continue=p2"]
    world = world_from_cluster(cluster)
    assert [p.key for p in world.policies] == ["GlobalNetworkPolicy deny-db"] and not world.warnings
    # the Calico API server (projectcalico.org/v3) was looked for first, then its CRDs; APIs that
    # discovery says are absent are never listed (a LIST there could be 403 before it is 404)
    paths = [p.split("?")[0] for p in handler.seen]
    assert paths.index("/apis/projectcalico.org/v3") < paths.index("/apis/crd.projectcalico.org/v1/tiers")
    assert not [p for p in paths if p.startswith(("/apis/projectcalico.org/v3/", "/apis/policy.networking"))
                and p.count("/") > 4]


def test_a_forbidden_list_names_the_rbac_rule_to_add(api_server):
    kubeconfig, handler = api_server
    handler.forbidden.add("/apis/crd.projectcalico.org/v1/globalnetworkpolicies")
    with pytest.raises(PermissionDenied) as err:
        world_from_cluster(KubeCluster(kubeconfig=kubeconfig))
    message = str(err.value)
    assert "forbidden (HTTP 403)" in message
    assert "{apiGroups: [crd.projectcalico.org], resources: [globalnetworkpolicies], verbs: [list]}" in message
