"""A self-contained HTML report (figures embedded) and its Markdown twin.

Each section states a paper's claim next to what the run measured, with a plain verdict:
``reproduced``, ``not reproduced`` or ``not testable`` (the model behind the claim did not learn
its task, or the measurement is missing), and the evidence behind it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["Finding", "Section", "Report", "VERDICT_LEGEND"]

VERDICT_LEGEND = (
    "reproduced: the measured effect has the paper's sign (and, where there are confidence "
    "intervals over seeds, they do not overlap); not reproduced: the model learned its task but "
    "the effect is absent or reversed; not testable: the model behind the claim did not learn its "
    "task (or the measurement is missing), so this run cannot test the claim."
)

_VERDICT_STYLE = {
    "reproduced": "#1b7f3a",
    "not reproduced": "#b3261e",
    "not testable": "#8a6d00",
}


@dataclass
class Finding:
    """One claim of a paper and what this run measured."""

    claim: str
    measured: str
    verdict: str  # "reproduced" | "not reproduced" | "not testable"

    def __post_init__(self):
        if self.verdict not in _VERDICT_STYLE:
            raise ValueError(
                f"verdict must be one of {sorted(_VERDICT_STYLE)}; got {self.verdict!r}"
            )


@dataclass
class Section:
    title: str
    intro: str = ""
    findings: list[Finding] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png path)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    markdown_tables: bool = False  # also print the tables in the Markdown report


def _md_table(df: pd.DataFrame) -> list[str]:
    """A DataFrame as Markdown table lines (no optional dependency)."""

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "/")

    out = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return out


class Report:
    def __init__(self, title: str, settings: dict | None = None):
        self.title = title
        self.settings = settings or {}
        self.sections: list[Section] = []

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section

    def verdict_counts(self) -> dict[str, int]:
        out = dict.fromkeys(_VERDICT_STYLE, 0)
        for s in self.sections:
            for f in s.findings:
                out[f.verdict] += 1
        return out

    # ---------------------------------------------------------------------------------------
    def to_html(self, max_rows: int = 40) -> str:
        e = html.escape
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title><style>",
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}",
            "table{border-collapse:collapse;font-size:12px;margin:.5em 0}",
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}",
            "th{background:#f3f3f3}.v{font-weight:600}.claim{margin:.4em 0}",
            "img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}",
            "figcaption{font-size:12px;color:#555}details{margin:.5em 0}",
            "</style></head><body>",
            f"<h1>{e(self.title)}</h1><p>Generated {e(now)}.</p>",
        ]
        counts = self.verdict_counts()
        parts.append(
            "<p>"
            + ", ".join(
                f"<span class='v' style='color:{_VERDICT_STYLE[k]}'>{v} {e(k)}</span>"
                for k, v in counts.items()
            )
            + "</p>"
        )
        parts.append(f"<p style='font-size:12px'>{e(VERDICT_LEGEND)}</p>")
        parts.append("<h2>Contents</h2><ol>")
        for i, s in enumerate(self.sections):
            parts.append(f"<li><a href='#s{i}'>{e(s.title)}</a></li>")
        parts.append("</ol>")
        for i, s in enumerate(self.sections):
            parts.append(f"<h2 id='s{i}'>{e(s.title)}</h2>")
            if s.intro:
                parts.append(f"<p>{e(s.intro)}</p>")
            if s.findings:
                parts.append(
                    "<table><tr><th>paper's claim</th><th>this run</th><th>verdict</th></tr>"
                )
                for f in s.findings:
                    parts.append(
                        f"<tr><td style='text-align:left'>{e(f.claim)}</td>"
                        f"<td style='text-align:left'>{e(f.measured)}</td>"
                        f"<td class='v' style='color:{_VERDICT_STYLE[f.verdict]}'>"
                        f"{e(f.verdict)}</td></tr>"
                    )
                parts.append("</table>")
            for cap, path in s.figures:
                p = Path(path)
                if p.exists():
                    b64 = base64.b64encode(p.read_bytes()).decode()
                    parts.append(
                        f"<figure><img src='data:image/png;base64,{b64}' alt='{e(cap)}'>"
                        f"<figcaption>{e(cap)}</figcaption></figure>"
                    )
            for cap, df in s.tables:
                parts.append(f"<details><summary>{e(cap)} ({len(df)} rows)</summary>")
                parts.append(
                    df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.4g}")
                )
                parts.append("</details>")
            for n in s.notes:
                parts.append(f"<p><em>{e(n)}</em></p>")
        parts.append("<h2>Settings and versions</h2><pre>")
        parts.append(e(json.dumps(self.settings, indent=2, default=str)))
        parts.append("</pre></body></html>")
        return "\n".join(parts)

    def to_markdown(self, max_rows: int = 20) -> str:
        lines = [f"# {self.title}", ""]
        counts = self.verdict_counts()
        lines.append(", ".join(f"{v} {k}" for k, v in counts.items()))
        lines += ["", f"_{VERDICT_LEGEND}_", ""]
        for s in self.sections:
            lines += [f"## {s.title}", ""]
            if s.intro:
                lines += [s.intro, ""]
            if s.findings:
                lines += ["| paper's claim | this run | verdict |", "|---|---|---|"]
                for f in s.findings:
                    lines.append(
                        f"| {f.claim.replace('|', '/')} | {f.measured.replace('|', '/')} "
                        f"| {f.verdict} |"
                    )
                lines.append("")
            for cap, path in s.figures:
                lines += [f"![{cap}](figures/{Path(path).name})", ""]
            if s.markdown_tables:
                for cap, df in s.tables:
                    lines += [f"**{cap}**", "", *_md_table(df.head(max_rows)), ""]
            for n in s.notes:
                lines += [f"_{n}_", ""]
        return "\n".join(lines)

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        folder = Path(folder)
        h = folder / "report.html"
        m = folder / "report.md"
        h.write_text(self.to_html())
        m.write_text(self.to_markdown())
        return h, m
