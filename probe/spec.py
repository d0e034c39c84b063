"""Load and validate the expectation spec (expect.yaml) with errors that name file, line, field.

The spec is a user-facing contract (see README "Spec reference"): extend it, never break it.
Validation walks PyYAML's node tree rather than plain Python values so that every problem
can point at the line it came from; all problems are collected and reported together.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .model import (
    SELECTOR_OPERATORS,
    Expectation,
    Namespace,
    Requirement,
    Selector,
    Source,
    Target,
    TargetKind,
)

SPEC_VERSION = 1
WILDCARD = "*"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def parse_duration(value: object) -> float:
    """`500ms`, `2s`, `1m` or a bare number of seconds → seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 500ms, 2s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        number, unit = float(m.group(1)), m.group(2) or "s"
        seconds = number / 1000 if unit == "ms" else number * 60 if unit == "m" else number
    else:
        raise ValueError("a duration such as 500ms, 2s or 1m")
    if seconds <= 0:
        raise ValueError("a positive duration such as 500ms, 2s or 1m")
    return seconds


def is_valid_host(host: str) -> bool:
    """A DNS name (labels of letters, digits, '-', '_') or an IP address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_DNS_LABEL.match(label) for label in name.split("."))


def split_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); ValueError with what was expected."""
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([^:\s]+):(\d+)$", text)
    if not m:
        raise ValueError("HOST:PORT, e.g. db.default.svc.cluster.local:5432 or 10.0.0.1:443")
    host, port = m.group(1), int(m.group(2))
    if not is_valid_host(host):
        raise ValueError(f"a DNS name or IP address as host, got {host!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"a port between 1 and 65535, got {port}")
    return host, port


@dataclass(frozen=True, slots=True, kw_only=True)
class Defaults:
    """Settings applied to every check unless a target overrides them."""

    timeout: float = 2.0
    attempts: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """A validated expectation spec."""

    sources: tuple[Source, ...]
    targets: tuple[Target, ...]
    expect: Mapping[tuple[str, str], Expectation] = field(default_factory=dict)
    defaults: Defaults = Defaults()
    timeouts: Mapping[str, float] = field(default_factory=dict)  # per-target overrides
    path: str = "<spec>"

    @property
    def has_expectations(self) -> bool:
        """Whether the spec carries an `expect` section."""
        return bool(self.expect)

    def timeout_for(self, target: str) -> float:
        """The probe timeout of one target."""
        return self.timeouts.get(target, self.defaults.timeout)

    def in_namespace(self, namespace: str) -> Spec:
        """A copy where sources and pod targets without a namespace get `namespace`."""
        ns = Namespace(namespace)
        return replace(
            self,
            sources=tuple(s if s.namespace else replace(s, namespace=ns) for s in self.sources),
            targets=tuple(replace(t, namespace=ns) if t.kind is TargetKind.PODS and not t.namespace
                          else t for t in self.targets),
        )

    def source(self, name: str) -> Source:
        """A source by name."""
        return next(s for s in self.sources if s.name == name)

    def target(self, name: str) -> Target:
        """A target by name."""
        return next(t for t in self.targets if t.name == name)


Node = yaml.Node


class _Checker:
    """Walks the node tree, collecting located problems."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: Node | None, path: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f"{path}: " if path else ""
        self.problems.append(f"{self.filename}{line}: {where}{message}")

    def scalar(self, node: Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def mapping(
        self, node: Node, path: str, allowed: tuple[str, ...] | None, what: str
    ) -> dict[str, Node] | None:
        """A mapping node as {key: value node}; None (and a problem) if it is not one."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected {what}, got {_kind(node)}")
            return None
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, path, f"keys must be strings, got {_kind(key_node)}")
                continue
            sub = f"{path}.{key}" if path else key
            if key in out:
                self.fail(key_node, sub, "duplicate key")
                continue
            if allowed is not None and key not in allowed:
                self.fail(key_node, sub, f"unknown key {key!r}; expected one of: {', '.join(allowed)}")
                continue
            out[key] = value_node
        return out

    def sequence(self, node: Node, path: str, what: str) -> list[Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list of {what}, got {_kind(node)}")
            return None
        return list(node.value)

    def string(self, node: Node, path: str, what: str = "a string") -> str | None:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value:
            self.fail(node, path, f"expected {what}, got {_describe(self, node)}")
            return None
        return value

    def typed(
        self, node: Node, path: str, convert: Callable[[Any], Any], what: str
    ) -> Any | None:
        """A scalar passed through convert(); convert raises ValueError with the expectation."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected {what}, got {_kind(node)}")
            return None
        try:
            return convert(self.scalar(node))
        except ValueError as exc:
            self.fail(node, path, f"expected {exc}, got {_describe(self, node)}")
            return None


def _kind(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


def _describe(checker: _Checker, node: Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        return _kind(node)
    value = checker.scalar(node)
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a whole number >= 1")
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("a port number between 1 and 65535")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _expectation(value: object) -> Expectation:
    try:
        return Expectation(value)
    except ValueError:
        raise ValueError("allow or deny") from None


def _namespace(value: object) -> Namespace:
    if not isinstance(value, str) or not _K8S_NAME.match(value) or len(value) > 63:
        raise ValueError("a namespace name (lowercase letters, digits and '-')")
    return Namespace(value)


def _label_key(value: str) -> bool:
    prefix, _, name = value.rpartition("/")
    if prefix and not is_valid_host(prefix):
        return False
    return bool(_LABEL_NAME.match(name))


def parse_selector(checker: _Checker, node: Node, path: str) -> Selector | None:
    """`{app: api}` (matchLabels shorthand) or `{matchLabels: ..., matchExpressions: [...]}`."""
    raw = checker.mapping(node, path, None, "a label selector")
    if raw is None:
        return None
    if raw and set(raw) <= {"matchLabels", "matchExpressions"}:
        labels_node = raw.get("matchLabels")
        exprs_node = raw.get("matchExpressions")
    else:
        labels_node, exprs_node = node, None
        if "matchLabels" in raw or "matchExpressions" in raw:
            checker.fail(node, path, "mix of matchLabels/matchExpressions and plain labels; "
                         "put labels under matchLabels")
            return None
    ok = True
    labels: dict[str, str] = {}
    if labels_node is not None:
        sub = path if exprs_node is None and labels_node is node else f"{path}.matchLabels"
        mapping = checker.mapping(labels_node, sub, None, "a mapping of label: value")
        ok = mapping is not None
        for key, value_node in (mapping or {}).items():
            value: Any = checker.scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
            if isinstance(value, bool | int | float):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            if not _label_key(key):
                checker.fail(value_node, f"{sub}.{key}", "invalid label key")
                ok = False
            elif not isinstance(value, str) or not _LABEL_VALUE.match(value):
                checker.fail(value_node, f"{sub}.{key}",
                             f"expected a label value (letters, digits, '-', '_', '.'), "
                             f"got {_describe(checker, value_node)}")
                ok = False
            else:
                labels[key] = value
    requirements: list[Requirement] = []
    if exprs_node is not None:
        items = checker.sequence(exprs_node, f"{path}.matchExpressions", "requirements") or []
        for i, item in enumerate(items):
            sub = f"{path}.matchExpressions[{i}]"
            req = checker.mapping(item, sub, ("key", "operator", "values"), "a requirement")
            if req is None:
                ok = False
                continue
            req_key = checker.string(req["key"], f"{sub}.key") if "key" in req else None
            op = checker.string(req["operator"], f"{sub}.operator") if "operator" in req else None
            if req_key is None or op is None:
                if "key" not in req or "operator" not in req:
                    checker.fail(item, sub, "a requirement needs `key` and `operator`")
                ok = False
                continue
            if op not in SELECTOR_OPERATORS:
                checker.fail(req["operator"], f"{sub}.operator",
                             f"expected one of {', '.join(SELECTOR_OPERATORS)}, got {op!r}")
                ok = False
                continue
            values: list[str] = []
            if "values" in req:
                for v in checker.sequence(req["values"], f"{sub}.values", "strings") or []:
                    s = checker.scalar(v) if isinstance(v, yaml.ScalarNode) else None
                    if s is None or isinstance(s, list | dict):
                        checker.fail(v, f"{sub}.values", "expected a string value")
                        ok = False
                    else:
                        values.append(str(s).lower() if isinstance(s, bool) else str(s))
            if op in ("In", "NotIn") and not values:
                checker.fail(item, f"{sub}.values", f"operator {op} needs a non-empty `values` list")
                ok = False
            elif op in ("Exists", "DoesNotExist") and values:
                checker.fail(req["values"], f"{sub}.values", f"operator {op} takes no values")
                ok = False
            else:
                requirements.append(Requirement(key=req_key, operator=op, values=tuple(values)))
    if not ok:
        return None
    return Selector(match_labels=tuple(sorted(labels.items())),
                    match_expressions=tuple(requirements))


_TOP_KEYS = ("version", "defaults", "sources", "targets", "expect")
_SOURCE_KEYS = ("name", "namespace", "selector")
_TARGET_KEYS = ("name", "dns", "tcp", "http", "external", "timeout")
_POD_TARGET_KEYS = ("namespace", "selector", "port")


def _parse_sources(c: _Checker, node: Node) -> list[Source]:
    sources: list[Source] = []
    seen: dict[str, Node] = {}
    for i, item in enumerate(c.sequence(node, "sources", "sources") or []):
        path = f"sources[{i}]"
        raw = c.mapping(item, path, _SOURCE_KEYS, "a source {name, namespace, selector}")
        if raw is None:
            continue
        missing = [k for k in ("name", "selector") if k not in raw]
        if missing:
            c.fail(item, path, f"missing required key(s): {', '.join(missing)}")
        name = c.string(raw["name"], f"{path}.name", "a name") if "name" in raw else None
        if name is not None:
            if name == WILDCARD:
                c.fail(raw["name"], f"{path}.name", "'*' is reserved for expect rows")
                name = None
            elif name in seen:
                c.fail(raw["name"], f"{path}.name",
                       f"duplicate source name {name!r} (first at line {seen[name].start_mark.line + 1})")
                name = None
            else:
                seen[name] = raw["name"]
        ns: Namespace | None = Namespace("")  # "": the run's namespace (-n, default "default")
        if "namespace" in raw:
            ns = c.typed(raw["namespace"], f"{path}.namespace", _namespace, "a namespace")
        selector = parse_selector(c, raw["selector"], f"{path}.selector") if "selector" in raw else None
        if name is not None and ns is not None and selector is not None:
            sources.append(Source(name=name, namespace=ns, selector=selector))
    return sources


def _parse_target(c: _Checker, item: Node, path: str) -> tuple[Target, float | None] | None:
    raw = c.mapping(item, path, _TARGET_KEYS, "a target {name, dns|tcp|http, ...}")
    if raw is None:
        return None
    kinds = [k for k in ("dns", "tcp", "http") if k in raw]
    if "name" not in raw:
        c.fail(item, path, "missing required key: name")
    if len(kinds) != 1:
        c.fail(item, path, "expected exactly one of `dns`, `tcp` or `http`"
               + (f", got {' and '.join(kinds)}" if kinds else ""))
    name = c.string(raw["name"], f"{path}.name", "a name") if "name" in raw else None
    if name == WILDCARD:
        c.fail(raw["name"], f"{path}.name", "'*' is reserved for expect rows")
        name = None
    external = False
    if "external" in raw:
        external = c.typed(raw["external"], f"{path}.external", _bool, "true or false") or False
    timeout = None
    if "timeout" in raw:
        timeout = c.typed(raw["timeout"], f"{path}.timeout", parse_duration, "a duration")
    if name is None or len(kinds) != 1:
        return None
    kind = kinds[0]
    value = raw[kind]
    sub = f"{path}.{kind}"
    target: Target | None = None
    if kind == "dns":
        host = c.string(value, sub, "a DNS name")
        if host is not None and not is_valid_host(host):
            c.fail(value, sub, f"expected a DNS name, got {host!r}")
        elif host is not None:
            target = Target(name=name, kind=TargetKind.DNS, host=host, external=external)
    elif kind == "http":
        url = c.string(value, sub, "an http:// or https:// URL")
        m = re.match(r"^(https?)://([^/:\s]+|\[[0-9a-fA-F:.]+\])(?::(\d+))?(/\S*)?$", url or "")
        if url is not None and not m:
            c.fail(value, sub, f"expected an http:// or https:// URL, got {url!r}")
        elif url is not None and m:
            default_port = 443 if m.group(1) == "https" else 80
            port = int(m.group(3)) if m.group(3) else default_port
            if not 1 <= port <= 65535:
                c.fail(value, sub, f"expected a port between 1 and 65535, got {port}")
            else:
                target = Target(name=name, kind=TargetKind.HTTP, host=url, port=port,
                                external=True if "external" not in raw else external)
    elif isinstance(value, yaml.MappingNode):
        pods = c.mapping(value, sub, _POD_TARGET_KEYS, "pods {namespace, selector, port}")
        if pods is not None:
            missing = [k for k in ("selector", "port") if k not in pods]
            if missing:
                c.fail(value, sub, f"missing required key(s): {', '.join(missing)}")
            ns: Namespace | None = Namespace("")
            if "namespace" in pods:
                ns = c.typed(pods["namespace"], f"{sub}.namespace", _namespace, "a namespace")
            sel = parse_selector(c, pods["selector"], f"{sub}.selector") if "selector" in pods else None
            pod_port: int | None = c.typed(pods["port"], f"{sub}.port", _port, "a port") if "port" in pods else None
            if ns is not None and sel is not None and pod_port is not None:
                target = Target(name=name, kind=TargetKind.PODS, namespace=ns, selector=sel,
                                port=pod_port, external=external)
    else:
        text = c.string(value, sub, "HOST:PORT or {namespace, selector, port}")
        if text is not None:
            try:
                host, port = split_host_port(text)
            except ValueError as exc:
                c.fail(value, sub, f"expected {exc}, got {text!r}")
            else:
                target = Target(name=name, kind=TargetKind.TCP, host=host, port=port,
                                external=external)
    return (target, timeout) if target is not None else None


def _parse_expect(
    c: _Checker, node: Node, sources: list[Source], targets: list[Target]
) -> dict[tuple[str, str], Expectation]:
    rows = c.mapping(node, "expect", None, "a mapping of source: {target: allow|deny}")
    if rows is None:
        return {}
    source_names = [s.name for s in sources]
    target_names = [t.name for t in targets]
    out: dict[tuple[str, str], Expectation] = {}
    for src, row_node in rows.items():
        path = f"expect.{src}"
        if src not in source_names:
            c.fail(row_node, path, f"unknown source {src!r}; sources are: {', '.join(source_names) or 'none'}")
            continue
        row = c.mapping(row_node, path, None, "a mapping of target: allow|deny")
        if row is None:
            continue
        default = None
        for tgt, value_node in row.items():
            exp = c.typed(value_node, f"{path}.{tgt}", _expectation, "allow or deny")
            if tgt == WILDCARD:
                default = exp
            elif tgt not in target_names:
                c.fail(value_node, f"{path}.{tgt}",
                       f"unknown target {tgt!r}; targets are: {', '.join(target_names) or 'none'}")
            elif exp is not None:
                out[(src, tgt)] = exp
        missing = [t for t in target_names if (src, t) not in out]
        if default is not None:
            out.update({(src, t): default for t in missing})
        elif missing and WILDCARD not in row:
            c.fail(row_node, path, f"no expectation for target(s) {', '.join(missing)}; "
                   "add them or a \"*\" entry")
    if source_names and not c.problems:
        absent = [s for s in source_names if s not in rows]
        if absent:
            c.fail(node, "expect", f"no expectations for source(s) {', '.join(absent)}; "
                   "every source × target cell needs one")
    return out


def parse_spec(text: str, filename: str = "<spec>", namespace: str = "default") -> Spec:
    """Parse and validate spec text; raise SpecError listing every problem.

    Sources and pod targets that name no namespace get `namespace` (the CLI's -n).
    """
    c = _Checker(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{filename}{line}: YAML syntax error: {problem}"]) from None
    if root is None:
        raise SpecError([f"{filename}: the file is empty; expected a spec with version, sources, "
                         "targets and expect"])
    top = c.mapping(root, "", _TOP_KEYS, "a mapping with version, sources, targets, expect")
    if top is None:
        raise SpecError(c.problems)
    for key in ("version", "sources", "targets"):
        if key not in top:
            c.fail(root, "", f"missing required key: {key}")
    if "version" in top:
        version = c.scalar(top["version"]) if isinstance(top["version"], yaml.ScalarNode) else None
        if version != SPEC_VERSION:
            c.fail(top["version"], "version", f"expected {SPEC_VERSION}, got {version!r}")
    defaults = Defaults()
    if "defaults" in top:
        d = c.mapping(top["defaults"], "defaults", ("timeout", "attempts"), "a mapping") or {}
        timeout = c.typed(d["timeout"], "defaults.timeout", parse_duration, "a duration") \
            if "timeout" in d else defaults.timeout
        attempts = c.typed(d["attempts"], "defaults.attempts", _positive_int, "a number") \
            if "attempts" in d else defaults.attempts
        defaults = Defaults(timeout=timeout or defaults.timeout, attempts=attempts or 1)
    sources = _parse_sources(c, top["sources"]) if "sources" in top else []
    targets: list[Target] = []
    timeouts: dict[str, float] = {}
    seen: dict[str, int] = {}
    for i, item in enumerate(c.sequence(top["targets"], "targets", "targets") or []
                             if "targets" in top else []):
        parsed = _parse_target(c, item, f"targets[{i}]")
        if parsed is None:
            continue
        target, timeout = parsed
        if target.name in seen:
            c.fail(item, f"targets[{i}].name",
                   f"duplicate target name {target.name!r} (first at line {seen[target.name]})")
            continue
        seen[target.name] = item.start_mark.line + 1
        targets.append(target)
        if timeout is not None:
            timeouts[target.name] = timeout
    for key, items in (("sources", sources), ("targets", targets)):
        if key in top and not items and not c.problems:
            c.fail(top[key], key, f"expected at least one entry in {key}")
    expect: dict[tuple[str, str], Expectation] = {}
    if "expect" in top and not c.problems:
        expect = _parse_expect(c, top["expect"], sources, targets)
    if c.problems:
        raise SpecError(c.problems)
    return Spec(sources=tuple(sources), targets=tuple(targets), expect=expect,
                defaults=defaults, timeouts=timeouts, path=filename).in_namespace(namespace)


def load_spec(path: str | Path, namespace: str = "default") -> Spec:
    """Read and validate a spec file (see parse_spec for `namespace`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{p}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{p}: cannot read the spec: {exc}"]) from None
    return parse_spec(text, str(p), namespace)


def require_expectations(spec: Spec) -> None:
    """Raise SpecError when the spec has no `expect` section (needed unless --from-policies)."""
    if not spec.has_expectations:
        raise SpecError([f"{spec.path}: missing `expect` section; write one, or compute it "
                         "from the cluster's NetworkPolicies with --from-policies"])
