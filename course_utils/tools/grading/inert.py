"""Students' outputs made inert before an instructor opens them.

The autograded notebook (formgrader) and the feedback HTML are opened in a browser that is
logged into the instructor's Jupyter server: a ``<script>`` from a submission would run there
with the instructor's rights. :func:`notebook` keeps of every output only what cannot run:

- text (``text/plain``, streams, errors) and raster images (``image/png``, ``image/jpeg``);
- HTML, Markdown, LaTeX and SVG (which can carry scripts) become their source as plain
  text, unless the output already has a plain-text form;
- JavaScript, widget views and every other kind of output are dropped, with a note;
- the notebook's and the outputs' metadata (widget state, "trusted" flags) are dropped.

Markdown cells (the written answers to grade) keep their text, but raw HTML in them is
shown as text (:func:`markdown`): nbgrader's formgrade and feedback templates render
Markdown without sanitising it, so a ``<script>`` or an ``onerror`` written in an answer
would otherwise run. Code spans and fenced code are left as they are (Markdown shows them
as text anyway).
"""

from __future__ import annotations

import base64
import binascii
import re

import nbformat

#: Output kinds kept as they are.
KEPT = ("text/plain", "image/png", "image/jpeg")
#: Output kinds shown as their source text when there is no text/plain.
AS_TEXT = ("text/html", "text/markdown", "text/latex", "image/svg+xml")


def _image(data: object) -> bool:
    """A base64 raster image (not markup that claims to be one)."""
    if isinstance(data, list):
        data = "".join(str(part) for part in data)
    if not isinstance(data, str):
        return False
    try:
        raw = base64.b64decode(data[:64].strip() + "=" * (-len(data[:64].strip()) % 4),
                               validate=False)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith((b"\x89PNG", b"\xff\xd8\xff"))


def output(out: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """One output, inert (see the module's docstring)."""
    kind = out.get("output_type")
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=out.get("name", "stdout"),
                                      text=str(out.get("text", "")))
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(out.get("ename", "")),
                                      evalue=str(out.get("evalue", "")),
                                      traceback=[str(t) for t in out.get("traceback", [])])
    data = out.get("data", {}) if isinstance(out.get("data"), dict) else {}
    kept = {}
    for mime in KEPT:
        if mime in data and (mime == "text/plain" or _image(data[mime])):
            kept[mime] = data[mime]
    if "text/plain" not in kept:
        source = next((data[m] for m in AS_TEXT if m in data), None)
        if source is not None:
            kept["text/plain"] = source if isinstance(source, str) else "".join(map(str, source))
    dropped = sorted(set(data) - set(kept) - set(AS_TEXT))
    if not kept:
        kept["text/plain"] = f"[output not shown to the grader: {', '.join(dropped) or kind}]"
    if kind == "execute_result":
        return nbformat.v4.new_output("execute_result", data=kept,
                                      execution_count=out.get("execution_count"))
    return nbformat.v4.new_output("display_data", data=kept)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_SCRIPT_LINK = re.compile(r"\]\(\s*(?:javascript|vbscript|data)\s*:", re.I)


def markdown(text: str) -> str:
    """``text`` with every raw HTML tag escaped (``<`` as ``&lt;``, which Markdown shows as
    ``<``) and script links disabled, outside code spans and fenced code."""
    lines, fence, out = text.split("\n"), None, []
    for line in lines:
        match = _FENCE.match(line)
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            out.append(line)
            continue
        if match:
            fence = match.group(1)
            out.append(line)
            continue
        parts, last = [], 0
        for span in _CODE_SPAN.finditer(line):
            parts.append(_escape(line[last:span.start()]))
            parts.append(span.group(0))
            last = span.end()
        parts.append(_escape(line[last:]))
        out.append("".join(parts))
    return "\n".join(out)


def _escape(text: str) -> str:
    return _SCRIPT_LINK.sub("](#blocked:", text.replace("<", "&lt;"))


def notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (changed in place and returned) with every output inert and no widget state."""
    for key in list(nb.metadata):
        if key not in ("kernelspec", "language_info", "jupytext"):
            del nb.metadata[key]
    for cell in nb.cells:
        for key in ("trusted", "widgets"):
            cell.metadata.pop(key, None)
        if isinstance(cell.get("attachments"), dict):  # pictures in an answer: rasters only
            cell.attachments = {name: {m: v for m, v in files.items()
                                       if m in KEPT[1:] and _image(v)}
                                for name, files in cell.attachments.items()
                                if isinstance(files, dict)}
        if cell.cell_type == "code":
            cell.outputs = [output(o) for o in cell.get("outputs", [])]
        elif cell.cell_type == "markdown":
            cell.source = markdown(cell.source)
    return nb
