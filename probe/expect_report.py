"""Render `netprobe expect`: per workload (table, connlist, streamed JSON), the diff, and `--pods`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from tabulate import tabulate

from .policy.portset import ALL_PORTS, PortSet, describe
from .workloads import Change, WorkloadView

EXPECT_VERSION = 2  # of the per-workload JSON (`--pods` keeps its version 1 document)


def render_expect(doc: Mapping[str, Any]) -> str:
    """`netprobe expect --pods` as tables (pod-to-pod per port, DNS and external columns) + the expect section."""
    import yaml

    out = []
    pods = list(doc["pods"])
    dns = doc["dns"]
    for block, ext in zip(doc["pod_to_pod"], doc["external"], strict=True):
        matrix = block["matrix"]
        rows = [[src, *("✓" if matrix[src][dst] == "allow" else "✗" for dst in pods),
                 "✓" if dns[src] == "allow" else "✗",
                 "✓" if ext["matrix"][src] == "allow" else "✗"] for src in pods]
        out.append(f"port {block['port']}/{block['protocol']} (✓ allowed, ✗ denied):")
        out.append(tabulate(rows, headers=["from \\ to", *pods, "DNS", "external"], tablefmt="simple"))
        out.append("")
    if "expect" in doc:
        out.append("# expect section computed from the policies:")
        out.append(yaml.safe_dump({"expect": doc["expect"]}, sort_keys=False, default_flow_style=None).rstrip())
        out += [f"# warning: {w}" for w in doc.get("warnings", [])]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ per workload (the default)

# Bounds that keep the table readable at any size (under ~190 columns):
GRID_MAX = 8  # workloads up to which the table is a grid; above, a namespace-level summary
LIST_MAX = 100  # cross-namespace pairs listed under the summary (-o connlist lists every one)
CELL_MAX = 14  # characters of a grid cell; the connection list under it has the full ports
ID_MAX = 40  # characters of a workload id in the grid's first column (full ids in the list below)


def port_list(ports: PortSet) -> list[str]:
    """A port set for JSON: `["all"]` (every port of every protocol) or `["TCP 5432", "TCP 8000-8100"]`."""
    if ports == ALL_PORTS:
        return ["all"]
    return [f"{proto} {lo}" if lo == hi else f"{proto} {lo}-{hi}" for proto, lo, hi in ports]


def _space(view: WorkloadView) -> str:
    return "every port" if view.ports == ALL_PORTS else describe(view.ports)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_connlist(view: WorkloadView) -> str:
    """One line per allowed connection: `src => dst : ports` (netpol-analyzer's format), DNS and external too."""
    return "".join(f"{src} => {dst} : {describe(ports)}\n" for src, dst, ports in view.connlist())


def _cell(ports: PortSet, space: PortSet) -> str:
    if not ports:
        return "✗"
    if ports == space:
        return "✓"
    return _clip(describe(ports), CELL_MAX)


def _dns_cell(ports: PortSet) -> str:
    protos = {p for p, _, _ in ports}
    return "✓" if protos == {"UDP", "TCP"} else "UDP only" if protos == {"UDP"} else "TCP only" if protos else "✗"


def summary_line(view: WorkloadView) -> str:
    """`6 pods in 6 workloads (6 equivalence classes), 3 namespace(s); 14 allowed workload pairs on every port`."""
    namespaces = len({w.namespace for w in view.workloads})
    return (f"{view.pod_count:,} pods in {len(view.workloads):,} workloads ({view.classes:,} equivalence "
            f"classes), {namespaces:,} namespace(s); {len(view.connections):,} allowed workload pairs on "
            f"{_space(view)}")


def render_workload_table(view: WorkloadView, spec_section: Mapping[str, Any] | None = None) -> str:
    """A grid up to GRID_MAX workloads, else a namespace summary and the cross-namespace pairs; bounded width."""
    out = [summary_line(view) + ".", ""]
    ws = view.workloads
    if len(ws) <= GRID_MAX:
        pairs = {(i, j): p for i, j, p in view.connections}
        rows = [[i + 1, _clip(w.id, ID_MAX), len(w.pods),
                 *(_cell(pairs.get((i, j), ()), view.ports) for j in range(len(ws))),
                 _dns_cell(w.dns), _cell(w.external, view.ports)] for i, w in enumerate(ws)]
        out.append(tabulate(rows, headers=["#", "from \\ to", "pods", *map(str, range(1, len(ws) + 1)), "DNS",
                                           "external"], tablefmt="simple"))
        every = "every port" if view.ports == ALL_PORTS else f"every port asked ({_space(view)})"
        out += ["", f"✓ {every}, ✗ none, else the ports (in full below). DNS: UDP and TCP 53 to kube-dns;",
                "external: an address outside the cluster that no policy names.", ""]
        lines = render_connlist(view).splitlines()
        out.append(f"Allowed connections ({len(lines)} lines, with DNS, external and ipBlocks):")
        out += [f"  {line}" for line in lines]
    else:
        out += _namespace_summary(view)
    for w in view.warnings:
        out.append(f"warning: {w}")
    if spec_section is not None:
        out += ["", *_spec_lines(spec_section)]
    return "\n".join(out).rstrip("\n") + "\n"


def _namespace_summary(view: WorkloadView) -> list[str]:
    ws = view.workloads
    stats: dict[str, dict[str, int]] = {}
    for w in ws:
        s = stats.setdefault(w.namespace, dict.fromkeys(("workloads", "pods", "inside", "out", "in", "dns", "ext"), 0))
        s["workloads"] += 1
        s["pods"] += len(w.pods)
        s["dns"] += bool(w.dns)
        s["ext"] += bool(w.external)
    cross = []
    for i, j, ports in view.connections:
        a, b = ws[i].namespace, ws[j].namespace
        if a == b:
            stats[a]["inside"] += 1
        else:
            stats[a]["out"] += 1
            stats[b]["in"] += 1
            cross.append((i, j, ports))
    rows = [[ns, s["workloads"], s["pods"], f"{s['inside']}/{s['workloads'] ** 2}", s["out"], s["in"],
             f"{s['dns']}/{s['workloads']}", f"{s['ext']}/{s['workloads']}"] for ns, s in sorted(stats.items())]
    out = [tabulate(rows, headers=["namespace", "workloads", "pods", "pairs inside", "to other ns", "from other ns",
                                   "DNS", "external"], tablefmt="simple"), "",
           "pairs inside: allowed of possible workload pairs within the namespace; to/from other ns:",
           "allowed workload pairs across namespaces; DNS/external: workloads that may reach them.", "",
           f"Allowed cross-namespace connections ({len(cross):,}):"]
    out += [f"  {ws[i].id} => {ws[j].id} : {describe(p)}" for i, j, p in cross[:LIST_MAX]]
    if len(cross) > LIST_MAX:
        out.append(f"  … and {len(cross) - LIST_MAX:,} more (netprobe expect -o connlist lists every connection)")
    return out


def _spec_lines(section: Mapping[str, Any]) -> list[str]:
    import yaml

    out = ["# expect section computed from the policies:",
           yaml.safe_dump({"expect": section["expect"]}, sort_keys=False, default_flow_style=None).rstrip()]
    return out + [f"# warning: {w}" for w in section.get("warnings", [])]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _array(key: str, items: Iterable[Any], last: bool = False) -> Iterator[str]:
    yield f'"{key}":['
    first = True
    for item in items:
        yield ("\n" if first else ",\n") + _dump(item)
        first = False
    yield "\n]" + ("" if last else ",") + "\n"


def workload_json(view: WorkloadView, spec_section: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The version 2 JSON document (README "expect JSON"), in chunks: one workload or connection a line."""
    ws = view.workloads
    head = {"version": EXPECT_VERSION, "view": "workloads", "ports": port_list(view.ports),
            "summary": {"pods": view.pod_count, "workloads": len(ws), "classes": view.classes,
                        "namespaces": len({w.namespace for w in ws}), "connections": len(view.connections)},
            "warnings": [*view.warnings, *((spec_section or {}).get("warnings", []))]}
    if spec_section is not None:
        head |= {"expect": spec_section["expect"], "reasons": spec_section["reasons"]}
    yield "{" + _dump(head)[1:-1] + ",\n"
    yield from _array("workloads", ({"id": w.id, "namespace": w.namespace, "kind": w.kind, "name": w.name,
                                     "pods": list(w.pods), "dns": port_list(w.dns),
                                     "external": port_list(w.external),
                                     "ip_blocks": [{"to": b, "ports": port_list(p)} for b, p in w.ip_blocks]}
                                    for w in ws))
    yield from _connections(view)
    yield "}\n"


def _connections(view: WorkloadView) -> Iterator[str]:
    """The "connections" array: one line per allowed workload pair.

    Written from pieces dumped once (each workload id, each distinct port set): a cluster of
    bare pods has pods² connections, and one json.dumps per line was most of the CLI's time."""
    ids = [_dump(w.id) for w in view.workloads]
    ports: dict[PortSet, str] = {}
    yield '"connections":['
    sep = "\n"
    for i, j, p in view.connections:
        text = ports.get(p)
        if text is None:
            text = ports[p] = _dump(port_list(p))
        yield f'{sep}{{"from":{ids[i]},"to":{ids[j]},"ports":{text}}}'
        sep = ",\n"
    yield "\n]\n"


def render_diff(changes: Sequence[Change], fmt: str) -> str:
    """`netprobe expect --diff` as `+`/`-` connlist lines (table, connlist) or JSON."""
    if fmt == "json":
        def side(sign: str) -> list[dict[str, Any]]:
            return [{"from": c.source, "to": c.destination, "ports": port_list(c.ports)}
                    for c in changes if c.sign == sign]
        return json.dumps({"version": EXPECT_VERSION, "view": "diff", "added": side("+"), "removed": side("-")},
                          indent=1, ensure_ascii=False) + "\n"
    lines = [f"{c.sign} {c.source} => {c.destination} : {describe(c.ports)}" for c in changes]
    added = sum(c.sign == "+" for c in changes)
    if fmt == "connlist":
        return "".join(f"{line}\n" for line in lines)
    total = (f"{added} connection(s) added, {len(changes) - added} removed" if changes
             else "no change in allowed connectivity")
    return "\n".join([*lines, *([""] if lines else []), total]) + "\n"
