"""Which Service a target lands on, its ready backends, and when it cannot answer at all."""

from __future__ import annotations

from probe.model import Target, TargetKind
from probe.services import backends, endpointless, service_namespaces

SVC = {"metadata": {"name": "web", "namespace": "shop"},
       "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"],
                "ports": [{"name": "http", "port": 8080, "targetPort": "http"},
                          {"name": "dns", "port": 53, "protocol": "UDP"}]}}


def ep(ports, addresses):
    return {"metadata": {"name": "web", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": name}}
                                       for name, ip in addresses], "ports": ports}]}


READY = [ep([{"name": "http", "port": 80}], [("web-a", "10.244.0.7"), ("web-b", "10.244.0.8")])]


def tcp(host, port=8080, external=False):
    return Target(name="t", kind=TargetKind.TCP, host=host, port=port, external=external)


def test_short_and_qualified_names_resolve_as_the_pods_search_list_does():
    assert [b.pod for b in backends(tcp("web"), "shop", [SVC], READY)] == ["shop/web-a", "shop/web-b"]
    assert backends(tcp("web"), "other", [SVC], READY) == []  # `web` from another namespace is another Service
    assert len(backends(tcp("web.shop.svc.cluster.local"), "other", [SVC], READY)) == 2
    assert {b.port for b in backends(tcp("web.shop"), "x", [SVC], READY)} == {80}  # the endpoint's port


def test_an_http_target_to_a_service_is_checked_even_though_http_defaults_to_external():
    http = Target(name="t", kind=TargetKind.HTTP, host="http://web:8080/", port=8080, external=True)
    assert endpointless(http, "shop", [SVC], []) == "Service shop/web has no ready endpoint for port 8080"
    assert service_namespaces([http], ["shop"]) == {"shop"}
    # two labels marked external: a public name, not Service `example` of namespace `com`
    assert service_namespaces([tcp("example.com", 443, external=True)], ["shop"]) == set()


def test_clusterip_targets_match_every_cluster_ip_and_need_every_namespace():
    assert endpointless(tcp("fd00::5"), "x", [SVC], []) != ""
    assert service_namespaces([tcp("10.96.0.5")], ["shop"]) is None
    assert service_namespaces([tcp("1.1.1.1", external=True)], ["shop"]) == set()


def test_the_protocol_of_the_service_port_counts():
    udp_only = [ep([{"name": "dns", "port": 53, "protocol": "UDP"}], [("dns-a", "10.244.0.9")])]
    assert endpointless(tcp("web", 53), "shop", [SVC], udp_only) == "Service shop/web has no TCP port 53"
    assert endpointless(tcp("web", 8080), "shop", [SVC], udp_only) == \
        "Service shop/web has no ready endpoint for port 8080"


def test_not_ready_addresses_are_not_backends_and_external_names_are_left_alone():
    not_ready = [{"metadata": {"name": "web", "namespace": "shop"},
                  "subsets": [{"notReadyAddresses": [{"ip": "10.244.0.7"}], "ports": [{"name": "http", "port": 80}]}]}]
    assert endpointless(tcp("web"), "shop", [SVC], not_ready) != ""
    cname = {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "ExternalName",
                                                                        "externalName": "example.com"}}
    assert endpointless(tcp("web"), "shop", [cname], []) == "" and backends(tcp("web"), "shop", [cname], []) == []
