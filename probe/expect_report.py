"""Render `netprobe expect`'s document (analysis.expect_document) as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tabulate import tabulate


def render_expect(doc: Mapping[str, Any]) -> str:
    """`netprobe expect` as tables (pod-to-pod per port, DNS and external columns) + the expect section."""
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
