"""Assemble one self-contained HTML page (PNG plots inlined as data URIs)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class HtmlReport:
    title: str
    sections: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self.sections.append(f"<p>{html.escape(text)}</p>")

    def image(self, png: bytes, alt: str) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.sections.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.sections.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def render(self) -> str:
        style = (
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}"
        )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.sections)
            + "</body></html>\n"
        )
