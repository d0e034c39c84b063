"""A RunResult, or what `netprobe expect` computed, as one self-contained HTML page.

`--report html=PATH`, `netprobe report RESULT.json -o html` (run_view.py) and `netprobe expect -o html`
(expect_view.py: the pod matrices with `--pods`; workload_view.py: the per-workload view). The page
(page.py, report.css, report.js) is a single file with inline CSS and one small inline script: no
CDN, no external font, script or style, so it opens offline from a CI artifact store. What the
script adds (cell detail on click or keyboard focus, filters, arrow-key navigation) is an
enhancement: with scripts blocked (some artifact viewers do) the summary, the mismatch list with
every detail and the coloured, symbol-marked matrix are all plain HTML.

Everything that comes from the cluster or the spec (names, details, reasons, meta) is
untrusted: it is escaped with `html.escape` in markup, `<`, `>` and `&` are escaped inside
the embedded JSON, the script writes it with `textContent` only, and a Content-Security-Policy
allows no script but the page's own (by hash) — an injected `<script>` cannot run.

Pure functions: no I/O, no clock (the page shows the run's own start time), so the same input
renders to the same bytes (the golden tests rely on it).
"""

from .expect_view import render_expect_html
from .page import MATRIX_LIMIT
from .run_view import mark, render_html
from .workload_view import render_workload_html

__all__ = ["MATRIX_LIMIT", "mark", "render_expect_html", "render_html", "render_workload_html"]
