"""Markdown and HTML documents built side by side, and written to a folder.

A report is a :class:`Doc`: code calls ``doc.h2(...)``, ``doc.p(...)``, ``doc.table(...)``,
``doc.image(...)`` once, and the Doc appends the Markdown and the HTML of each element. The HTML page
is ``template.html`` (beside this module: inline CSS and a small script that sorts a table by the
clicked column) with the title and body filled in; images are embedded as base64 PNG, so the page has
no external resources. :func:`write_doc` writes ``<stem>.md``, ``<stem>.html`` and the PNGs under
``figures/``.

Text may use a little Markdown, rendered in HTML too: ``code``, **bold** and [links](url).
"""
from __future__ import annotations

import base64
import html
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from oodbench.benchmark.io import atomic_write
from oodbench.benchmark.reporting.formatting import is_missing


@lru_cache(maxsize=1)
def html_template() -> str:
    """``template.html``: a whole page with the placeholders ``{{title}}`` and ``{{body}}``."""
    return resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8")


class Doc:
    """Builds the markdown and the HTML of one report side by side from the same calls.

    ``md`` and ``html`` are the lines of each rendering; ``images`` maps a figure's file name to its
    PNG bytes (written by :func:`write_doc`)."""

    def __init__(self, title: str):
        self.title = title
        self.md: list[str] = [f"# {title}", ""]
        self.html: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.images: dict[str, bytes] = {}

    def h2(self, t, anchor=None):
        """A section heading; ``anchor`` gives the HTML element the id ``sec-<anchor>``."""
        self.md += [f"## {t}", ""]
        a = f' id="sec-{anchor}"' if anchor else ""
        self.html.append(f"<h2{a}>{html.escape(t)}</h2>")

    def h3(self, t):
        self.md += [f"### {t}", ""]
        self.html.append(f"<h3>{html.escape(t)}</h3>")

    def p(self, t, md_only=False):
        """A paragraph (in the Markdown only with ``md_only``)."""
        self.md += [t, ""]
        if not md_only:
            self.html.append(f"<p>{_md_inline(t)}</p>")

    def bullets(self, items):
        self.md += [f"* {i}" for i in items] + [""]
        self.html.append("<ul>" + "".join(f"<li>{_md_inline(i)}</li>" for i in items) + "</ul>")

    def table(self, headers, rows, sort_keys=None, sortable=False, tid=None):
        """A table. rows: lists of display strings; sort_keys: parallel lists of sort values (numbers or
        strings) that the HTML page sorts by when ``sortable``; ``tid``: the HTML table's id."""
        from tabulate import tabulate

        if not rows:
            self.p("(no data)")
            return
        self.md += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        cls = ' class="sortable"' if sortable else ""
        i = f' id="{tid}"' if tid else ""
        out = [f'<div class="wrap"><table{cls}{i}><thead><tr>']
        for k, h in enumerate(headers):
            t = ' title="click to sort"' if sortable else ""
            out.append(f'<th data-col="{k}"{t}>{html.escape(str(h))}</th>')
        out.append("</tr></thead><tbody>")
        for ri, r in enumerate(rows):
            out.append("<tr>")
            for k, c in enumerate(r):
                key = ""
                if sort_keys is not None:
                    v = sort_keys[ri][k]
                    if isinstance(v, (int, float, np.floating, np.integer)) and not is_missing(float(v)):
                        key = f' data-sort="{float(v):.10g}"'
                    elif isinstance(v, str):
                        key = f' data-sort="{html.escape(v)}"'
                    else:
                        key = ' data-sort=""'
                left = ""
                if str(c)[:1].isalpha() and str(c) not in ("yes", "no"):
                    left = ' class="l w"' if len(str(c)) > 60 else ' class="l"'  # wrap only long text
                out.append(f"<td{left}{key}>{_md_inline(str(c))}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        self.html.append("".join(out))

    def image(self, name: str, png: bytes | None, alt: str):
        """A figure: linked as ``figures/<name>`` in the Markdown, embedded in the HTML; nothing when
        ``png`` is None (the figure had nothing to draw)."""
        if png is None:
            return
        self.images[name] = png
        self.md += [f"![{alt}](figures/{name})", ""]
        b64 = base64.b64encode(png).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" '
                         f'data-name="{name}"><figcaption>{html.escape(alt)}</figcaption></figure>')

    def render_md(self) -> str:
        return "\n".join(self.md).rstrip() + "\n"

    def render_html(self) -> str:
        fill = {"title": html.escape(self.title), "body": "\n".join(self.html)}
        return re.sub(r"\{\{(title|body)\}\}", lambda m: fill[m[1]], html_template())


def _md_inline(t: str) -> str:
    """Escape HTML and render the little markdown we use: `code`, **bold**, [text](url)."""
    s = html.escape(t)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
    return s


def write_doc(doc: Doc, folder: Path, stem: str) -> list[Path]:
    """Write ``folder/<stem>.md``, ``folder/<stem>.html`` and the Doc's images under ``folder/figures/``
    (atomically); return the written paths, images first."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    if doc.images:
        figs = folder / "figures"
        figs.mkdir(exist_ok=True)
        for name, png in sorted(doc.images.items()):
            atomic_write(figs / name, png)
            out.append(figs / name)
    atomic_write(folder / f"{stem}.md", doc.render_md())
    atomic_write(folder / f"{stem}.html", doc.render_html())
    return out + [folder / f"{stem}.md", folder / f"{stem}.html"]
