"""The expectation spec: the documented shape loads, and each class of mistake gets a located error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from probe.errors import SpecError
from probe.model import Expectation, TargetKind
from probe.spec import load_spec, parse_duration, parse_spec

EXAMPLE = textwrap.dedent("""\
    version: 1
    defaults: {timeout: 2s, attempts: 2}
    sources:
      - {name: api, namespace: default, selector: {app: api}}
      - {name: frontend, namespace: default, selector: {matchLabels: {app: frontend}}}
    targets:
      - {name: dns, dns: db.default.svc.cluster.local}
      - {name: db, tcp: "db.default.svc.cluster.local:5432"}
      - {name: db-pods, tcp: {namespace: default, selector: {app: db}, port: 5432}}
      - {name: internet, tcp: "1.1.1.1:443", external: true}
    expect:
      api:      {dns: allow, db: allow, internet: deny, db-pods: allow}
      frontend: {"*": deny, dns: allow}
    """)


def test_issue_example_loads_with_wildcard_expanded():
    spec = parse_spec(EXAMPLE, "expect.yaml")
    assert spec.defaults.timeout == 2.0 and spec.defaults.attempts == 2
    assert [t.kind for t in spec.targets] == [TargetKind.DNS, TargetKind.TCP, TargetKind.PODS, TargetKind.TCP]
    assert spec.target("db").host == "db.default.svc.cluster.local" and spec.target("db").port == 5432
    assert spec.target("internet").external
    assert spec.expect[("frontend", "db")] is Expectation.DENY
    assert spec.expect[("frontend", "dns")] is Expectation.ALLOW
    assert len(spec.expect) == 8


def test_tutorial_example_validates():
    spec = load_spec(Path(__file__).parent.parent / "examples" / "tutorial" / "expect.yaml", "shop")
    assert {s.namespace for s in spec.sources} == {"shop"}
    assert spec.target("db-pods").namespace == "shop"


def test_match_expressions_select_like_kubernetes():
    spec = parse_spec(textwrap.dedent("""\
        version: 1
        sources:
          - name: web
            selector:
              matchLabels: {tier: web}
              matchExpressions:
                - {key: env, operator: In, values: [prod, staging]}
                - {key: canary, operator: DoesNotExist}
                - {key: team, operator: NotIn, values: [legacy]}
                - {key: app, operator: Exists}
        targets: [{name: d, dns: example.com}]
        expect: {web: {d: allow}}
        """))
    sel = spec.source("web").selector
    assert sel.matches({"tier": "web", "env": "prod", "app": "x"})
    assert not sel.matches({"tier": "web", "env": "dev", "app": "x"})
    assert not sel.matches({"tier": "web", "env": "prod", "app": "x", "canary": "1"})
    assert not sel.matches({"tier": "web", "env": "prod", "app": "x", "team": "legacy"})
    assert not sel.matches({"tier": "web", "env": "prod"})
    assert sel.to_label_selector() == "tier=web,env in (prod,staging),!canary,team notin (legacy),app"


@pytest.mark.parametrize("text, expected", [
    ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1.5s", 1.5), (3, 3.0)])
def test_durations(text, expected):
    assert parse_duration(text) == expected


BASE = """\
version: 1
sources:
  - {name: api, selector: {app: api}}
targets:
  - {name: db, tcp: "db:5432"}
expect:
  api: {db: allow}
"""


@pytest.mark.parametrize("text, message", [
    ("version: 1\nsources: [\n", "expect.yaml:3: YAML syntax error"),
    ("", "expect.yaml: the file is empty"),
    (BASE.replace("version: 1", "version: 1\ncolour: blue"), "expect.yaml:2: colour: unknown key 'colour'"),
    (BASE.replace("{name: api, selector", "{name: api, labels: {a: b}, selector"),
     "expect.yaml:3: sources[0].labels: unknown key 'labels'; expected one of: name, namespace, selector"),
    (BASE.replace('tcp: "db:5432"', "tcp: 5432"),
     "expect.yaml:5: targets[0].tcp: expected HOST:PORT or {namespace, selector, port}, got int 5432"),
    (BASE.replace('"db:5432"', '"db:70000"'),
     "expect.yaml:5: targets[0].tcp: expected a port between 1 and 65535, got 70000"),
    (BASE.replace('"db:5432"', '{selector: {app: db}, port: 0}'),
     "expect.yaml:5: targets[0].tcp.port: expected a port number between 1 and 65535, got int 0"),
    (BASE.replace("version: 1", "version: 1\ndefaults: {timeout: soon}"),
     "expect.yaml:2: defaults.timeout: expected a duration such as 500ms, 2s or 1m, got str 'soon'"),
    (BASE.replace("api: {db: allow}", "api: {db: allow}\n  web: {db: deny}"),
     "expect.yaml:8: expect.web: unknown source 'web'; sources are: api"),
    (BASE.replace("api: {db: allow}", "api: {db: allow, cache: deny}"),
     "expect.yaml:7: expect.api.cache: unknown target 'cache'; targets are: db"),
    (BASE.replace("api: {db: allow}", "api: {db: maybe}"),
     "expect.yaml:7: expect.api.db: expected allow or deny, got str 'maybe'"),
    (BASE.replace("  - {name: db, tcp", "  - {name: db, dns: db}\n  - {name: db, tcp"),
     "expect.yaml:6: targets[1].name: duplicate target name 'db' (first at line 5)"),
    (BASE.replace("  - {name: api, selector: {app: api}}",
                  "  - {name: api, selector: {app: api}}\n  - {name: api, selector: {app: x}}"),
     "expect.yaml:4: sources[1].name: duplicate source name 'api' (first at line 3)"),
    (BASE.replace("version: 1", "version: 2"), "expect.yaml:1: version: expected 1, got 2"),
    (BASE.replace("targets:\n  - {name: db, tcp: \"db:5432\"}",
                  "targets:\n  - {name: db, tcp: \"db:5432\"}\n  - {name: web, dns: web}"),
     "expect.yaml:8: expect.api: no expectation for target(s) web; add them or a \"*\" entry"),
    (BASE.replace("{app: api}", "{matchExpressions: [{key: a, operator: Near}]}"),
     "sources[0].selector.matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist"),
    (BASE.replace("{app: api}", "{matchExpressions: [{key: a, operator: In}]}"),
     "operator In needs a non-empty `values` list"),
    (BASE.replace("namespace", "x").replace("{name: api, selector", "{name: api, namespace: Prod, selector"),
     "sources[0].namespace: expected a namespace name"),
    (BASE.replace('"db:5432"', '"db..x:5432"'), "expected a DNS name or IP address as host"),
    ("- just\n- a list\n", "expect.yaml:1: expected a mapping with version, sources, targets, expect"),
    (BASE.replace("expect:\n  api: {db: allow}\n", "expect:\n  api: {db: allow}\n  api: {db: deny}\n"),
     "expect.yaml:8: expect.api: duplicate key"),
], ids=["yaml-syntax", "empty-file", "unknown-top-key", "unknown-source-key", "wrong-type",
        "port-out-of-range", "pod-port-zero", "bad-duration", "unknown-source-in-expect",
        "unknown-target-in-expect", "bad-expectation", "duplicate-target", "duplicate-source",
        "wrong-version", "missing-cell", "bad-operator", "in-without-values", "bad-namespace",
        "bad-host", "not-a-mapping", "duplicate-yaml-key"])
def test_bad_spec_names_file_line_and_field(text, message):
    with pytest.raises(SpecError) as info:
        parse_spec(text, "expect.yaml")
    assert any(message in p for p in info.value.problems), info.value.problems
    assert info.value.exit_code == 2


def test_every_problem_is_reported_not_just_the_first():
    text = BASE.replace('"db:5432"', '"db:0"').replace("version: 1", "version: 1\ndefaults: {attempts: 0}")
    with pytest.raises(SpecError) as info:
        parse_spec(text, "e.yaml")
    assert len(info.value.problems) == 2
    assert {p.split(":")[1] for p in info.value.problems} == {"2", "6"}


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
