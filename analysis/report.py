"""Exports of an optimizer comparison: tables as Markdown, LaTeX and CSV, and
one self-contained HTML report.

The report is a single file: figures are embedded as base64 PNG data URIs
and tables written inline, so it opens anywhere, offline, and can be mailed
or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import Plot

_STYLE = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
figure { margin: 1rem 0 2rem; }
img { max-width: 100%; }
.note { color: #7a4b00; }
"""


@dataclass
class Section:
    """One part of the report: a heading, a paragraph of ``text``, then the
    ``tables`` and ``figures`` by caption, then ``notes``.

    A figure may be a matplotlib ``Figure``, a :class:`analysis.figures.Plot`
    or the path of a PNG file (embedded as it is); a ``Plot`` without a figure
    shows its note in place of the image.
    """

    heading: str
    text: str = ""
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, Figure | Plot | Path] = field(default_factory=dict)
    notes: Sequence[str] = ()


def write_report(
    out_dir: Path, title: str, sections: Sequence[Section], setup: str = ""
) -> Path:
    """Writes ``out_dir/report.html`` and returns its path.

    ``setup`` is the opening paragraph, saying what was run (subsets, widths,
    seeds, epochs); an empty one is reported as missing rather than left out,
    so that no report reads as if the setup did not matter.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup = setup or "No description of the setup was given."
    body = [f"<h1>{html.escape(title)}</h1>", _paragraph(setup, "setup")]
    body += [_section(section) for section in sections]
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_tables(
    table: pd.DataFrame, out_dir: Path, stem: str, floatfmt: str = ".4g"
) -> list[Path]:
    """Writes ``stem.md``, ``stem.tex`` and ``stem.csv`` into ``out_dir``.

    All three hold :func:`flat` of ``table``: its index as leading columns
    and any column levels joined by spaces, so that the CSV reads back with a
    plain ``pd.read_csv``. The CSV keeps every digit; Markdown and LaTeX
    format numbers with ``floatfmt``. ``DataFrame.to_latex`` needs jinja2.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = flat(table)
    md, tex, csv = (out_dir / f"{stem}.{ext}" for ext in ("md", "tex", "csv"))
    md.write_text(frame.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    tex.write_text(
        frame.to_latex(index=False, escape=True, float_format=f"{{:{floatfmt}}}".format)
    )
    frame.to_csv(csv, index=False)
    return [md, tex, csv]


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a named or multi-level index moved into columns and
    multi-level column names joined by spaces (``("adam", "mean")`` becomes
    ``"adam mean"``)."""
    frame = table.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [
            " ".join(str(p) for p in parts if str(p)) for parts in frame.columns
        ]
    keep_index = frame.index.nlevels > 1 or frame.index.name is not None
    return frame.reset_index() if keep_index else frame.reset_index(drop=True)


def mean_std_text(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A table of :func:`analysis.stats.mean_std_table` written as
    ``"mean ± std (n)"`` per cell, for reading (``"–"`` where n = 0)."""
    out = {}
    for column in table.columns.get_level_values(0).unique():
        cells = table[column]
        out[column] = [
            _mean_std(row["mean"], row["std"], row["n"], digits)
            for _, row in cells.iterrows()
        ]
    return pd.DataFrame(out, index=table.index).rename_axis(
        columns=table.columns.names[0]
    )


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    """``fig`` as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _section(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.heading)}</h2>"]
    if section.text:
        parts.append(_paragraph(section.text))
    for caption, table in section.tables.items():
        parts.append(f"<h3>{html.escape(caption)}</h3>")
        parts.append(table.to_html(float_format="{:.4g}".format, na_rep="–"))
    for caption, item in section.figures.items():
        parts.append(_figure(caption, item))
    parts += [_paragraph(note, "note") for note in section.notes]
    return "\n".join(parts)


def _figure(caption: str, item: Figure | Plot | Path) -> str:
    if isinstance(item, Path):
        return _image(caption, item.read_bytes(), "")
    plot = item if isinstance(item, Plot) else Plot(item)
    note = _paragraph(plot.note, "note") if plot.note else ""
    if plot.figure is None:
        return f"<h3>{html.escape(caption)}</h3>\n{note}"
    return _image(caption, figure_png(plot.figure), note)


def _image(caption: str, png: bytes, note: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(caption, quote=True)}' "
        f"src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>\n{note}"
    )


def _paragraph(text: str, css: str = "") -> str:
    attribute = f" class='{css}'" if css else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def _mean_std(mean: float, std: float, n: float, digits: int) -> str:
    if not n:
        return "–"
    spread = "" if pd.isna(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread} ({int(n)})"
