"""A report as a list of blocks, rendered to Markdown, self-contained HTML, and LaTeX tables.

Sections are written once, as blocks; each renderer escapes text for its own format, so a decoded
token like `<|endoftext|>` or `a|b` can never break a table or inject markup.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Code:
    """Literal text (parameter names, tokens, commands): monospace, never interpreted."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


Inline = Union[str, Code, Strong]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    parts: list[Inline]
    kind: str = ""  # "", "note" (something missing), "pass", "fail": styled callouts in HTML


@dataclass
class Bullets:
    items: list[list[Inline]]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Inline]]
    caption: str = ""
    align: str = ""  # per column: "l" left, "r" right, "w" left and wrapped (LaTeX p-column); default "lrr..."
    latex_label: str = ""  # set: the table also goes to report_tables.tex

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


@dataclass
class FigureBlock:
    png: Path
    caption: str
    alt: str = ""


Block = Union[Heading, Para, Bullets, Table, FigureBlock]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


# ---- Markdown -------------------------------------------------------------------------------------

# Characters that can start markup mid-line; "_" only at a word edge (intraword "_" is literal in CommonMark).
_MD_SPECIAL = re.compile(r"([\\`*<|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _md_text(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _md_inline(part: Inline, in_table: bool = False) -> str:
    if isinstance(part, Code):
        text = part.text.replace("\n", " ")
        fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
        pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
        span = f"{fence}{pad}{text}{pad}{fence}"
        return span.replace("|", "\\|") if in_table else span  # GFM splits cells at | even inside code
    if isinstance(part, Strong):
        return f"**{_md_text(part.text)}**"
    return _md_text(part)


def _md_parts(parts: list[Inline]) -> str:
    return "".join(_md_inline(p) for p in parts)


def to_markdown(doc: Document, out_dir: Path) -> str:
    """Markdown; figures are linked relative to `out_dir` (where report.md is written)."""
    lines = [f"# {_md_text(doc.title)}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * (block.level + 1)} {_md_text(block.text)}", ""]
        elif isinstance(block, Para):
            lines += [("> " if block.kind else "") + _md_parts(block.parts), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_md_parts(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{_md_text(block.caption)}*", ""]
            lines.append("| " + " | ".join(_md_text(c) for c in block.columns) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in block.alignment()) + "|")
            lines += ["| " + " | ".join(_md_inline(c, in_table=True) for c in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, FigureBlock):
            rel = Path(os.path.relpath(block.png, out_dir)).as_posix()
            lines += [f"![{_md_text(block.alt or block.caption)}]({rel.replace(' ', '%20')})", "",
                      f"*{_md_text(block.caption)}*", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---- HTML -----------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.45}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.2em 0 1.2em;font-size:.88em}p.caption{font-style:italic;font-size:.88em;margin:.8em 0 .2em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f0f0f0}td.r{text-align:right;
font-variant-numeric:tabular-nums}
code{font-family:Menlo,Consolas,monospace;font-size:.92em;background:#f4f4f4;padding:0 .2em;white-space:pre-wrap;
overflow-wrap:anywhere}td code{overflow-wrap:normal}div.table{overflow-x:auto}
.note,.pass,.fail{padding:.5em .8em;border-left:5px solid #888;background:#f6f6f6}
.pass{border-left-color:#009E73;background:#eef8f3}.fail{border-left-color:#D55E00;background:#fdf1ea}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.88em;color:#444}
nav ul{columns:2}
"""


def _html_inline(part: Inline) -> str:
    if isinstance(part, Code):
        return f"<code>{html.escape(part.text)}</code>"
    if isinstance(part, Strong):
        return f"<strong>{html.escape(part.text)}</strong>"
    return html.escape(part)


def _html_parts(parts: list[Inline]) -> str:
    return "".join(_html_inline(p) for p in parts)


def to_html(doc: Document) -> str:
    """One HTML file with inline CSS and figures embedded as base64 PNG: opens offline, anywhere."""
    body = [f"<h1>{html.escape(doc.title)}</h1>"]
    toc = [b for b in doc.blocks if isinstance(b, Heading) and b.level == 1 and b.anchor]
    if len(toc) > 1:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{html.escape(h.anchor)}">{html.escape(h.text)}</a></li>'
                                          for h in toc) + "</ul></nav>")
    for block in doc.blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            body.append(f"<h{block.level + 1}{anchor}>{html.escape(block.text)}</h{block.level + 1}>")
        elif isinstance(block, Para):
            cls = f' class="{block.kind}"' if block.kind else ""
            body.append(f"<p{cls}>{_html_parts(block.parts)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_parts(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            align = block.alignment()
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
            rows = "".join("<tr>" + "".join(f'<td{" class=r" if a == "r" else ""}>{_html_inline(c)}</td>'
                                            for c, a in zip(row, align)) + "</tr>" for row in block.rows)
            if block.caption:  # above the table, as wide as the page: a <caption> wraps to the table's width
                body.append(f'<p class="caption">{html.escape(block.caption)}</p>')
            body.append(f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif isinstance(block, FigureBlock):
            data = base64.b64encode(block.png.read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt or block.caption)}">'
                        f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(doc.title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>\n'
            f"<body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---- LaTeX ----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "\n": " "}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_inline(part: Inline) -> str:
    if isinstance(part, Code):
        return r"\texttt{" + _latex_text(part.text) + "}"
    if isinstance(part, Strong):
        return r"\textbf{" + _latex_text(part.text) + "}"
    return _latex_text(part)


def to_latex(doc: Document) -> str:
    """The tables marked with a latex_label, as booktabs tables ready to \\input into a paper."""
    out = [f"% ESA report tables: {_latex_text(doc.title)}",
           "% Requires \\usepackage{booktabs} in the preamble.", ""]
    for block in doc.blocks:
        if not (isinstance(block, Table) and block.latex_label):
            continue
        out += [r"\begin{table}[htbp]", r"\centering", r"\small"]
        if block.caption:
            out.append(r"\caption{" + _latex_text(block.caption) + "}")
        spec = block.alignment().replace("w", r"p{0.6\linewidth}")
        out += [r"\label{" + block.latex_label + "}", r"\begin{tabular}{" + spec + "}", r"\toprule",
                " & ".join(_latex_text(c) for c in block.columns) + r" \\", r"\midrule"]
        out += [" & ".join(_latex_inline(c) for c in row) + r" \\" for row in block.rows]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)
