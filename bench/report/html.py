"""A self-contained static HTML report: inline CSS, plots as base64 PNG, no script, no CDN.

One file that opens anywhere (mail attachment, CI artefact, air-gapped machine). Every piece of
user text goes through :func:`html.escape`; the page carries a Content-Security-Policy that
forbids scripts and remote loads, so even a missed escape could not run code.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .model import Leaderboard
from .tables import Table, Txt, all_tables, definitions

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1600px;padding:0 16px;color:#1d2330;background:#fff;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;
border-bottom:1px solid #d7dce5;padding-bottom:.2em}
.meta{color:#5b6475;font-size:.85em}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.5em .8em;margin:.6em 0;font-size:.9em}
.warn{background:#fdecea;border-left-color:#d93025}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.82em;margin:.4em 0}
th,td{border-bottom:1px solid #e4e7ee;padding:4px 7px;vertical-align:top;white-space:nowrap}
th{background:#f3f5f9;font-weight:600;text-align:center;white-space:normal;min-width:4.5em}
td.r{text-align:right;font-variant-numeric:tabular-nums}td.l{text-align:left}
td small{display:block;color:#6b7385;font-size:.85em}
tr.group td{background:#fafbfd;font-style:italic;color:#4a5263}
tr.control td,tr.reference td{color:#4a5263}
.strong{font-weight:700}
.caption{font-size:.85em;color:#4a5263}
ul.notes{font-size:.8em;color:#4a5263}
figure{display:inline-block;margin:10px 14px 10px 0;vertical-align:top}
figure img{max-width:760px;width:100%;border:1px solid #e4e7ee}
figcaption{font-size:.8em;color:#4a5263}
dl{font-size:.85em}dt{font-weight:600}dd{margin:0 0 .5em 1.2em;color:#4a5263}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(t: Txt, align: str) -> str:
    main = esc(t.main)
    if t.strong:
        main = f'<span class="strong">{main}</span>'
    sub = f"<small>{esc(t.sub)}</small>" if t.sub else ""
    return f'<td class="{"l" if align == "l" else "r"}">{main}{sub}</td>'


def html_table(table: Table) -> str:
    head = "".join(f'<th title="{esc(c.definition)}">{esc(c.header)}</th>' for c in table.columns)
    body, kind = [], "entry"
    for row_kind, cells in table.rows:
        if row_kind != kind and table.group_title(row_kind):
            body.append(f'<tr class="group"><td colspan="{len(table.columns)}">'
                        f"{esc(table.group_title(row_kind))}</td></tr>")
        kind = row_kind
        tds = "".join(_cell(t, c.align) for t, c in zip(cells, table.columns))
        body.append(f'<tr class="{esc(row_kind)}">{tds}</tr>')
    notes = "".join(f"<li>{esc(n)}</li>" for n in table.notes)
    return (f'<h2 id="{esc(table.key)}">{esc(table.title)}</h2>'
            + (f'<p class="caption">{esc(table.caption)}</p>' if table.caption else "")
            + f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            + f'<tbody>{"".join(body)}</tbody></table></div>'
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render(lb: Leaderboard, plots: dict[str, Path] | None = None) -> str:
    """The page. ``plots`` maps captions to PNG files, embedded as data URIs."""
    meta = [f"suite {lb.suite}" if lb.suite else "all jobs in the store",
            f"results {lb.results_dir}"]
    if lb.data_specs:
        meta.append("data " + ", ".join(lb.data_specs))
    meta += [f"{k} {v}" for k, v in lb.versions.items()]
    if lb.generated:
        meta.append(f"generated {lb.generated}")
    parts = [f'<h1>{esc(lb.title)}</h1><p class="meta">{esc(" · ".join(meta))}</p>']
    parts += [f'<div class="note">{esc(n)}</div>' for n in lb.notes]
    if lb.missing:
        who = ", ".join(sorted({f"{m.get('label')} (seed {m.get('seed')})" for m in lb.missing}))
        parts.append(f'<div class="note warn">Incomplete: {len(lb.missing)} job(s) of this suite '
                     f"have no record yet: {esc(who)}</div>")
    parts += [html_table(t) for t in all_tables(lb)]
    if plots:
        parts.append('<h2 id="plots">Plots</h2>')
        parts += [_img(Path(p), caption) for caption, p in plots.items()]
    defs = "".join(f"<dt>{esc(a)}</dt><dd>{esc(b)}</dd>" for a, b in definitions(lb))
    parts.append(f'<h2 id="definitions">Definitions</h2><dl>{defs}</dl>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(lb.title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "\n</body></html>\n")
