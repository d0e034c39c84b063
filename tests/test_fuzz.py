"""Fuzzing the two loaders of user input: every input ends in a value or a located error (exit 2)."""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import InputError
from probe.manifests import load_manifests
from probe.spec import parse_spec

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=bool(os.environ.get("CI")))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.text(string.printable, max_size=12), st.sampled_from(["allow", "deny", "*", "2s", "db:5432",
                                                                              "In", "Exists", "1.1.1.1:443"]))
keys = st.sampled_from(["version", "defaults", "sources", "targets", "expect", "name", "namespace", "selector",
                        "dns", "tcp", "http", "external", "timeout", "attempts", "matchLabels",
                        "matchExpressions", "key", "operator", "values", "port", "app", "*", "x"])
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def _parses_or_input_error(text: str) -> None:
    try:
        parse_spec(text, "fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)


@FUZZ
@given(trees)
def test_spec_loader_structured_fuzz(tree):
    _parses_or_input_error(yaml.safe_dump(tree))


@FUZZ
@given(st.text(max_size=200))
def test_spec_loader_text_fuzz(text):
    _parses_or_input_error(text)


@FUZZ
@given(st.dictionaries(keys, trees, max_size=5))
def test_spec_loader_near_valid_fuzz(extra):
    base = {"version": 1, "sources": [{"name": "a", "selector": {"app": "a"}}],
            "targets": [{"name": "t", "tcp": "db:5432"}], "expect": {"a": {"t": "allow"}}}
    base.update(extra)
    _parses_or_input_error(yaml.safe_dump(base))


k8s_keys = st.sampled_from(["apiVersion", "kind", "metadata", "spec", "name", "namespace", "labels", "podSelector",
                            "policyTypes", "ingress", "egress", "from", "to", "ports", "port", "protocol", "endPort",
                            "ipBlock", "cidr", "except", "namespaceSelector", "template", "containers", "items",
                            "matchLabels", "matchExpressions", "status", "podIP"])
k8s_trees = st.recursive(st.one_of(scalars, st.sampled_from(["NetworkPolicy", "Pod", "Deployment", "List",
                                                             "Ingress", "Egress", "TCP", "10.0.0.0/8"])),
                         lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                 st.dictionaries(k8s_keys, inner, max_size=6)), max_leaves=30)


@FUZZ
@given(st.lists(k8s_trees, min_size=1, max_size=3))
def test_manifest_loader_fuzz(docs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        try:
            m = load_manifests([path])
        except InputError as exc:
            assert str(path) in str(exc), str(exc)
        else:
            assert isinstance(m.pods, list)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["NetworkPolicy", "Pod", "Deployment", "CronJob", "Service", "Namespace",
                                           "List"]), k8s_trees, k8s_trees), min_size=1, max_size=3))
def test_manifest_loader_near_valid_fuzz(objs):
    docs = [{"apiVersion": "v1", "kind": kind, "metadata": {"name": "x", "namespace": "n", "labels": labels},
             "spec": spec, "items": [spec] if kind == "List" else None} for kind, spec, labels in objs]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        try:
            load_manifests([path])
        except InputError as exc:
            assert str(path) in str(exc), str(exc)
