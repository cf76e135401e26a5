"""Renderers escape every text for their own format; tables keep their shape whatever the cells hold."""

from __future__ import annotations

import os
import re
from pathlib import Path

from esa.reports.document import Code, Document, FigureBlock, Heading, Para, Strong, Table, to_html, to_latex, to_markdown

NASTY = ["<script>alert(1)</script>", "a|b", "`tick`", "*bold*", "_x_", "50% & $5 #1 {x} ~ ^ \\"]


def nasty_doc(png: Path) -> Document:
    doc = Document("Title <b>")
    doc.add(Heading(1, "Section & more", anchor="s1"),
            Para(["plain ", Code("model.layers.0.mlp.down_proj.weight"), " and ", Strong("PASS")], kind="pass"),
            Table(["name", "value"], [[t, Code(t)] for t in NASTY], "caption | with pipe", "lr", "tab:nasty"),
            FigureBlock(png, "a figure"))
    return doc


def test_html_escapes_and_embeds(tmp_path, tiny_png):
    page = to_html(nasty_doc(tiny_png))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)  # nothing fetched from the network
    assert page.count("<tr>") == 1 + len(NASTY)


def test_markdown_tables_keep_their_columns(tmp_path, tiny_png):
    md = to_markdown(nasty_doc(tiny_png), tmp_path)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(NASTY)
    for row in rows:  # unescaped pipes split cells: every row has exactly the header's 3 separators
        assert len(re.findall(r"(?<!\\)\|", row)) == 3
    # raw only inside a code span, where CommonMark shows it literally; escaped everywhere else
    assert len(re.findall(r"(?<!\\)<script>", md)) == md.count("`<script>alert(1)</script>`") == 1
    assert "\\<script>" in md
    assert f"]({Path(os.path.relpath(tiny_png, tmp_path)).as_posix()})" in md  # linked relative to the report


def test_latex_uses_booktabs_and_escapes(tiny_png):
    tex = to_latex(nasty_doc(tiny_png))
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    assert r"\label{tab:nasty}" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert r"50\% \& \$5 \#1 \{x\}" in body
    for row in body.strip().splitlines():
        assert row.endswith(r"\\") and row.count(" & ") == 1
