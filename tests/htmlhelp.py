"""Helpers for the HTML report tests: an HTML outline parser, fixed results, and headless chromium."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from probe.diff import judge
from probe.model import Cell, Expectation, Proof, RunResult, SubResult, Target, TargetKind, Verdict

A, D = Expectation.ALLOW, Expectation.DENY
ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    """`text` equals tests/golden/NAME; NETPROBE_UPDATE_GOLDEN=1 rewrites it instead (review the diff)."""
    path = GOLDEN / name
    if os.environ.get("NETPROBE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with NETPROBE_UPDATE_GOLDEN=1 to create it, then review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path} differs: rerun with NETPROBE_UPDATE_GOLDEN=1 if the change is intended"


class Node:
    """One element of a parsed page."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.content: list[Node | str] = []  # child elements and text, in document order

    @property
    def children(self) -> list[Node]:
        return [c for c in self.content if isinstance(c, Node)]

    @property
    def text_parts(self) -> list[str]:
        """This element's own text (not its children's)."""
        return [c for c in self.content if isinstance(c, str)]

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """All text under this element (what a user or screen reader gets), whitespace-joined."""
        return "".join(c if isinstance(c, str) else c.text for c in self.content)

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        out = []
        for c in self.children:
            if ((tag is None or c.tag == tag) and (cls is None or cls in c.classes)
                    and all(c.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                out.append(c)
            out += c.find_all(tag, cls, **attrs)
        return out

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


_VOID = {"meta", "link", "input", "br", "img", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}


class Page(HTMLParser):
    """A strict-enough tree builder: every non-void element must be closed in order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.feed(html)
        self.close()
        assert self.cur is self.root, f"unclosed <{self.cur.tag}>"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.content.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        assert self.cur.tag == tag, f"</{tag}> closes <{self.cur.tag}>"
        if tag == "script":
            self.scripts.append((self.cur.attrs, "".join(self.cur.text_parts)))
        assert self.cur.parent is not None
        self.cur = self.cur.parent

    def handle_data(self, data: str) -> None:
        self.cur.content.append(data)

    def data(self) -> dict:
        """The embedded JSON the page's script reads; run cells decoded from their lists as the script
        does, and string-table references resolved (workload cells: `w` words, `dl` (term, words) pairs)."""
        (raw,) = [text for attrs, text in self.scripts if attrs.get("id") == "np-data"]
        data = json.loads(raw)
        if "fields" in data:
            strings = data["strings"]

            def ref(i: int) -> str:
                return "" if i < 0 else strings[i]

            cells = []
            for row in data["cells"]:
                if row is None:
                    cells.append(None)
                    continue
                c = {f: v for f, v in zip(data["fields"], row, strict=False) if v != -1}
                for key in ("e", "o", "st", "l", "d", "r"):
                    if key in c:
                        c[key] = ref(c[key])
                if "by" in c:
                    c["by"] = "; ".join(map(ref, c["by"]))
                if "sub" in c:
                    c["sub"] = [{"verdict": ref(v), "identity": ref(i), "pod": ref(p), "ip": ref(ip),
                                 "detail": c.get("d", "") if d == -2 else ref(d), "proof": ref(pr)}
                                for v, i, p, ip, d, pr in c["sub"]]
                cells.append(c)
            data["cells"] = cells
        if data.get("kind") == "workloads":
            strings = data["strings"]

            def words(v: int | list[int]) -> str:
                return "".join(strings[i] for i in v) if isinstance(v, list) else strings[v]

            for c in data["cells"]:
                if "w" in c:  # a workload cell (the --spec section's cells are plain)
                    c["w"] = strings[c["w"]]
                    dl = c.get("dl", [])
                    c["dl"] = [(strings[dl[k]], words(dl[k + 1])) for k in range(0, len(dl), 2)]
        return data


def outline(node: Node, depth: int = 0) -> list[str]:
    """The page's structure, one element per line: tag, id, classes, role/aria, and short text.

    Style and script bodies are left out, so the golden file records what the page *shows* and
    how it is marked up, and CSS/JS edits do not churn it.
    """
    lines = []
    for c in node.children:
        keys = [c.tag]
        for k in ("id", "class", "role", "aria-label", "data-c", "data-g", "data-name", "data-ns", "scope",
                  "href", "type", "open"):
            if k in c.attrs:
                keys.append(f"{k}={c.attrs[k]!r}")
        own = "".join(c.text_parts).strip()
        if own and c.tag not in ("script", "style"):
            keys.append(f"text={own[:160]!r}")
        lines.append("  " * depth + " ".join(keys))
        if c.tag not in ("script", "style"):
            lines += outline(c, depth + 1)
    return lines


def sub(verdict: Verdict, identity: str = "shop/app=api", pod: str = "", ip: str = "", detail: str = "",
        proof: Proof | None = None) -> SubResult:
    return SubResult(identity=identity, pod=pod, ip=ip, verdict=verdict, detail=detail, proof=proof)


def sample_result() -> RunResult:
    """Every state a cell can be in, with the detail a reviewer needs: the golden-file fixture."""
    cells = (
        Cell(source="api", target="db", expected=A, observed=Verdict.ALLOWED, match=True,
             detail="connected to 10.0.0.5:5432", elapsed_ms=12, history=(Verdict.ALLOWED,),
             subresults=(sub(Verdict.ALLOWED, detail="connected to 10.0.0.5:5432"),), expected_by="spec"),
        Cell(source="api", target="db-pods", expected=A, observed=Verdict.PARTIAL, match=False,
             detail="db-0: allowed; db-1: blocked (timed out after 2s); db-2: allowed",
             reason="db-pods:5432 partly reachable — reached 2 of 3 pods: db-0, db-2; blocked: db-1; some "
                    "replicas or identities are treated differently by a policy",
             elapsed_ms=2003, history=(Verdict.PARTIAL,),
             subresults=(sub(Verdict.ALLOWED, pod="shop/db-0", ip="10.0.0.5", detail="connected to 10.0.0.5:5432"),
                         sub(Verdict.BLOCKED, pod="shop/db-1", ip="10.0.0.6", detail="timed out after 2s"),
                         sub(Verdict.ALLOWED, pod="shop/db-2", ip="10.0.0.7", detail="connected to 10.0.0.7:5432")),
             expected_by="spec"),
        Cell(source="api", target="internet", expected=D, observed=Verdict.BLOCKED, match=True, proof=Proof.DROPPED,
             detail="timed out after 2s", elapsed_ms=2001, history=(Verdict.BLOCKED,),
             subresults=(sub(Verdict.BLOCKED, detail="timed out after 2s", proof=Proof.DROPPED),),
             expected_by="policies: shop/api is egress-isolated by shop/api-egress and no egress rule allows "
                         "<external> on 443/TCP"),
        Cell(source="api", target="metrics", expected=A, observed=Verdict.NO_ENDPOINTS, match=None,
             detail="the Service shop/metrics has no ready endpoints",
             reason="metrics:9090 not probed: the Service shop/metrics has no ready endpoints — kube-proxy rejects "
                    "such connections, which says nothing about the policy",
             history=(Verdict.NO_ENDPOINTS,),
             subresults=(sub(Verdict.NO_ENDPOINTS, detail="the Service shop/metrics has no ready endpoints"),)),
        Cell(source="frontend", target="db", expected=D, observed=Verdict.ALLOWED, match=False,
             detail="connected to 10.0.0.5:5432", attempts=2, history=(Verdict.ALLOWED, Verdict.BLOCKED),
             reason="db:5432 connected (connected to 10.0.0.5:5432) but should be denied — a policy is missing, "
                    "or one allows more than intended", elapsed_ms=9,
             subresults=(sub(Verdict.ALLOWED, identity="shop/app=frontend", detail="connected to 10.0.0.5:5432"),),
             expected_by="policies: egress: shop/frontend is not egress-isolated; ingress: allowed by "
                         "shop/db-ingress ingress rule 0"),
        Cell(source="frontend", target="db-pods", expected=D, observed=Verdict.REFUSED, match=True,
             proof=Proof.REJECTED, detail="connection refused", history=(Verdict.REFUSED,),
             subresults=(sub(Verdict.REFUSED, identity="shop/app=frontend", pod="shop/db-0", ip="10.0.0.5",
                             detail="connection refused", proof=Proof.REJECTED),)),
        Cell(source="frontend", target="internet", expected=A, observed=Verdict.ALLOWED, match=True, unstable=True,
             detail="connected to 203.0.113.10:443", attempts=3,
             history=(Verdict.BLOCKED, Verdict.ALLOWED, Verdict.ALLOWED),
             subresults=(sub(Verdict.ALLOWED, identity="shop/app=frontend", detail="connected to 203.0.113.10:443"),)),
        Cell(source="worker", target="db", expected=D, observed=Verdict.DNS_TIMEOUT, match=True,
             proof=Proof.NOT_RESOLVABLE, detail="DNS failed, port not tested",
             subresults=(sub(Verdict.DNS_TIMEOUT, identity="jobs/app=worker", detail="DNS failed, port not tested",
                             proof=Proof.NOT_RESOLVABLE),)),
        Cell(source="worker", target="db-pods", expected=A, observed=Verdict.NXDOMAIN, match=False,
             detail="NXDOMAIN", reason="db-pods not tested: DNS says db-pods does not exist (NXDOMAIN)",
             subresults=(sub(Verdict.NXDOMAIN, identity="jobs/app=worker", detail="NXDOMAIN"),)),
        Cell(source="worker", target="internet", expected=A, observed=Verdict.ERROR, match=None,
             detail="the probe pod failed: ImagePullBackOff",
             reason="internet (https://example.com) could not be probed: the probe pod failed: ImagePullBackOff",
             subresults=(sub(Verdict.ERROR, identity="jobs/app=worker",
                             detail="the probe pod failed: ImagePullBackOff"),)),
    )
    return RunResult(
        sources=("api", "frontend", "worker"), targets=("db", "db-pods", "internet", "metrics"), cells=cells,
        run_id="5e1f00d1", started="2026-12-02T06:00:00+00:00", duration_s=8.25,
        problems=("source cron matched no running pod in namespace jobs",),
        warnings=("--from-policies: frontend → db: the spec says deny, the policies allow it",),
        drift=(("api", "internet", Verdict.REFUSED, Verdict.BLOCKED),),
        meta={"api_calls": 14, "probe_pods": 3, "identities": 3, "netprobe_version": "0.1.0",
              "context": "kind-netprobe", "baseline_run_id": "0ld0ba5e",
              "gates": [{"probe_pod": 0, "identity": "shop/app=api", "sources": ["api"], "mode": "gate",
                         "opened": "condition-met", "waited_ms": 350, "bound_s": 2.0, "rounds": 3},
                        {"probe_pod": 1, "identity": "shop/app=frontend", "sources": ["frontend"], "mode": "gate",
                         "opened": "bound-reached", "unmet": ["block c2"], "waited_ms": 2000, "bound_s": 2.0,
                         "rounds": 11}]},
    )


def big_result(n_sources: int, n_targets: int, *, namespaces: int = 5, mismatch_every: int = 10,
               identities: int = 1) -> RunResult:
    """A large, realistic run, judged by the real diff: `identities` per source, every fourth
    target a pod selector with 3 pods, policy explanations as --from-policies writes them."""
    sources = tuple(f"team{i % namespaces}-service-{i:03d}" for i in range(n_sources))
    targets = [Target(name=f"backend-{j:03d}", kind=TargetKind.PODS if j % 4 == 0 else TargetKind.TCP,
                      host="" if j % 4 == 0 else f"backend-{j:03d}.data.svc.cluster.local", port=5432)
               for j in range(n_targets)]
    cells = []
    for i, s in enumerate(sources):
        ns = f"team{i % namespaces}"
        idents = [f"{ns}/app=service-{i:03d},tier=web" + (f" sa=worker-{n}" if n else "") for n in range(identities)]
        for j, t in enumerate(targets):
            pods = [f"data/{t.name}-{k}" for k in range(3)] if t.kind is TargetKind.PODS else [""]
            bad = (i * n_targets + j) % mismatch_every == 0
            expected = A if (i + j) % 3 else D
            connected = (expected is A) != bad
            verdict = Verdict.ALLOWED if connected else Verdict.BLOCKED
            subs = [SubResult(identity=ident, pod=p, ip=f"10.1.{j}.{k}", verdict=verdict,
                              detail=f"connected to 10.1.{j}.{k}:5432" if connected else "timed out after 2s")
                    for ident in idents for k, p in enumerate(pods)]
            judged = judge(t, expected, subs)
            cells.append(Cell(
                source=s, target=t.name, expected=expected, observed=judged.observed, match=judged.match,
                detail=judged.detail, reason=judged.reason, proof=judged.proof, subresults=judged.subresults,
                elapsed_ms=12 if connected else 2001, history=(judged.observed,),
                expected_by=f"policies: egress: allowed by {ns}/egress-{i:03d} egress rule {j % 3}; ingress: "
                            f"allowed by data/ingress-{t.name} ingress rule 0" if expected is A else
                            f"policies: data/{t.name} is ingress-isolated by data/ingress-{t.name} and no ingress "
                            f"rule allows {ns}/service-{i:03d} on 5432/TCP"))
    return RunResult(sources=sources, targets=tuple(t.name for t in targets), cells=tuple(cells), run_id="b16b16b1",
                     started="2026-12-02T06:00:00+00:00", duration_s=31.0,
                     meta={"api_calls": 120, "probe_pods": identities * n_sources,
                           "identities": identities * n_sources})


# ------------------------------------------------------------------------ headless chromium

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str | None:
    """The path of a chromium binary, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


BROWSER = chromium()
NO_BROWSER = "no chromium installed (apt-get install -y chromium; .ci/run installs it)"
needs_browser = pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)


def artifacts_dir() -> Path:
    """Where the browser tests keep their screenshots and PDFs (NETPROBE_ARTIFACTS, else out/artifacts)."""
    out = Path(os.environ.get("NETPROBE_ARTIFACTS", ROOT / "out" / "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def browser_session() -> Iterator:
    """One headless chromium driven over the DevTools pipe (a module fixture: `pytest.fixture(...)(this)`)."""
    from tests.cdp import Browser

    if BROWSER is None:
        pytest.skip(NO_BROWSER)
    b = Browser(BROWSER, size=(1300, 1000))
    yield b
    b.close()


def active(browser) -> str:
    """The focused element: tag, data-c / data-g, id."""
    return browser.js("(function(){var a=document.activeElement;return a.tagName+' '+(a.getAttribute('data-c')||'')"
                      "+(a.getAttribute('data-g')||'')+' '+(a.id||'');})()")


def panel_text(browser) -> str:
    """What the open detail panel shows ('' when closed)."""
    return browser.js("(function(){var p=document.getElementById('np-detail');"
                      "return p.classList.contains('open') ? p.innerText : '';})()")


def shown_rows(browser) -> list[str]:
    """The matrix rows the filters leave visible, by name."""
    return browser.js("Array.prototype.filter.call(document.querySelectorAll('#np-matrix tbody tr'), "
                      "function(r){return !r.classList.contains('hide')}).map(function(r){return r.dataset.name})")


def choose_namespace(browser, namespace: str) -> None:
    """Pick a namespace in the filter ('' = all), as a change event of the select."""
    browser.js(f"var s=document.getElementById('np-namespace'); s.value={json.dumps(namespace)}; "
               "s.dispatchEvent(new Event('change'))")


def type_into_source(browser, text: str) -> None:
    """Click the source filter and type into it, key by key."""
    browser.click("#np-source")
    for ch in text:
        browser.call("Input.insertText", session=True, text=ch)


def headless(browser: str, url: str, *, dump_dom: bool = False, screenshot: Path | None = None,
             size: tuple[int, int] = (1280, 900), budget_ms: int = 5000) -> str:
    """Load `url` in headless chromium with every network path closed; the DOM after scripts ran."""
    with tempfile.TemporaryDirectory(prefix="np-chromium-") as profile:
        args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                "--disable-default-apps", f"--user-data-dir={profile}",
                # no network: every name resolves to nothing, and any proxy use goes nowhere
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}"]
        if dump_dom:
            args.append("--dump-dom")
        if screenshot is not None:
            args.append(f"--screenshot={screenshot}")
        proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": profile})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout


# ------------------------------------------------------------------------ manifests for the workload view


def team_manifests(namespaces: int, per_namespace: int) -> dict:
    """A `List` of team namespaces, each with `per_namespace` Deployments in three tiers (web → api
    :8080 → db :5432), default deny both ways plus DNS; team0's api also takes every namespace's web."""
    tiers = ("web", "api", "db")
    docs: list[dict] = []

    def policy(ns: str, name: str, spec: dict) -> None:
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": name, "namespace": ns}, "spec": spec})

    def tier(name: str) -> dict:
        return {"podSelector": {"matchLabels": {"tier": name}}}

    for n in range(namespaces):
        ns = f"team{n}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for w in range(per_namespace):
            t = tiers[w % 3]
            port = {"web": 80, "api": 8080, "db": 5432}[t]
            docs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": f"{t}-{w:02d}", "namespace": ns},
                         "spec": {"replicas": 2, "template": {
                             "metadata": {"labels": {"app": f"{t}-{w:02d}", "tier": t}},
                             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": port}]}]}}}})
        policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        policy(ns, "dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]})
        policy(ns, "web-to-api", {**tier("web"), "policyTypes": ["Egress"], "egress": [
            {"to": [tier("api"), {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team0"}},
                                  **tier("api")}], "ports": [{"port": 8080}]}]})
        peers = [tier("web")] + ([{"namespaceSelector": {}, **tier("web")}] if n == 0 else [])
        policy(ns, "api", {**tier("api"), "policyTypes": ["Ingress", "Egress"],
                           "ingress": [{"from": peers, "ports": [{"port": 8080}]}],
                           "egress": [{"to": [tier("db")], "ports": [{"port": 5432}]}]})
        policy(ns, "db", {**tier("db"), "policyTypes": ["Ingress"],
                          "ingress": [{"from": [tier("api")], "ports": [{"port": 5432}]}]})
    return {"apiVersion": "v1", "kind": "List", "items": docs}
