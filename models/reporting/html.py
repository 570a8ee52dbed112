"""Self-contained HTML reports: Markdown-ish tables and PNG pictures embedded as data URIs."""

from __future__ import annotations

import base64
import html


def html_report(title: str, sections: list[tuple[str, str | bytes]]) -> str:
    """One HTML page; each section is ``(heading, markdown table or PNG bytes or text)``."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, bytes):
            data = base64.b64encode(body).decode()
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'/>")
        elif body.lstrip().startswith("|"):
            parts.append(markdown_table_to_html(body))
        else:
            parts.append(f"<pre>{html.escape(body)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_table_to_html(table: str) -> str:
    """A pipe table (header, separator, rows) as an HTML table."""
    rows = [r.strip().strip("|").split("|") for r in table.strip().splitlines()]
    rows = [r for r in rows if not all(set(c.strip()) <= {"-", ":"} for c in r)]
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>"
        for r in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"
