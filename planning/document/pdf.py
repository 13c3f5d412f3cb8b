"""The plan document as a PDF (ReportLab): real text, tables and vector graphics on A4.

Layout: the identification block; prescription and plan; the RBE model with every
parameter; beams; objectives and the optimizer's result; three views through the target with
the dose colour bar and the isodose legend; the DVHs; the metrics of each dose; the robust
evaluation, when the plan has one (settings, DVH bands, per-structure scenario tables);
warnings; the approval block (planned / checked / approved by, with signature and date
lines). Every page carries the identification in its header and the page number in its
footer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from planning import __version__
from planning.document.content import DoseSection, PlanDocument, RobustnessSection, TextTable
from planning.document.drawings import (
    colour_bar_drawing,
    dvh_drawing,
    isodose_legend_drawing,
    structure_legend_drawing,
    view_drawing,
)
from planning.document.fonts import FONT, text_runs
from planning.document.naming import file_stem, write_new_file

MARGIN = 15 * mm
#: Width of the text column, points.
FRAME_WIDTH = A4[0] - 2 * MARGIN
_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontName=FONT, fontSize=8.5,
                       leading=10.5)
_CELL = ParagraphStyle("cell", parent=_BODY, fontSize=7.5, leading=9)
_H1 = ParagraphStyle("h1", parent=_STYLES["Title"], fontName=FONT + "-Bold", fontSize=16,
                     alignment=0, spaceAfter=4)
# Headings stay on the page of what follows them (keepWithNext): a heading at the foot of a
# page left its table on the next page without a title.
_H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontName=FONT + "-Bold", fontSize=11,
                     spaceBefore=8, spaceAfter=3, keepWithNext=1)
_H3 = ParagraphStyle("h3", parent=_H2, fontSize=9, spaceBefore=5, spaceAfter=2)
_HEADER_FILL = colors.Color(0.88, 0.90, 0.93)
_RULE = colors.Color(0.70, 0.72, 0.75)


def markup(text: str) -> str:
    """Paragraph markup of plain ``text``: escaped, non-WinAnsi runs in :data:`CJK_FONT`."""
    return "".join(escape(run) if font == FONT else f'<font name="{font}">{escape(run)}</font>'
                   for run, font in text_runs(text))


def _p(text: str, style: ParagraphStyle = _CELL) -> Paragraph:
    return Paragraph(markup(text), style)


def _draw_runs(canvas: Canvas, x: float, y: float, text: str, size: float) -> None:
    """Draw ``text`` from ``(x, y)``, each run in its font."""
    for run, font in text_runs(text):
        canvas.setFont(font, size)
        canvas.drawString(x, y, run)
        x += pdfmetrics.stringWidth(run, font, size)


def _width(text: str, size: float) -> float:
    """Width of ``text`` drawn by :func:`_draw_runs` at ``size``, points."""
    return sum(pdfmetrics.stringWidth(run, font, size) for run, font in text_runs(text))


#: Smallest font size a page header shrinks to before it is cut, points.
_HEADER_MIN_SIZE = 5.0


def header_lines(text: str, size: float, width: float) -> tuple[list[str], float]:
    """``text`` (parts joined by " | ") as lines that each fit ``width`` points: whole parts
    per line, at most two lines, the font shrunk (to :data:`_HEADER_MIN_SIZE`) where a line
    still does not fit; (lines, font size)."""
    parts = text.split(" | ")
    lines = [parts[0]]
    for part in parts[1:]:
        joined = f"{lines[-1]} | {part}"
        if _width(joined, size) <= width or len(lines) == 2:
            lines[-1] = joined
        else:
            lines.append(part)
    while size > _HEADER_MIN_SIZE and max(_width(line, size) for line in lines) > width:
        size -= 0.25
    return lines, size


def _table(table: TextTable) -> Table:
    """A bordered table; a header row (repeated on a new page) when ``table`` has one, else
    label/value rows with bold labels."""
    widths: list[float] | None = [f * FRAME_WIDTH for f in table.widths] or None
    rows: list[list[Any]] = [[_p(c) for c in row] for row in table.rows]
    if not table.header:
        rows = [[Paragraph(f"<b>{markup(r[0])}</b>", _CELL), *cells[1:]]
                for r, cells in zip(table.rows, rows, strict=True)]
        widths = widths or [0.3 * FRAME_WIDTH, 0.7 * FRAME_WIDTH]
    style = [("GRID", (0, 0), (-1, -1), 0.3, _RULE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    if table.header:
        if not rows:
            rows = [[_p("none"), *[""] * (len(table.header) - 1)]]
        rows.insert(0, [Paragraph(f"<b>{markup(h)}</b>", _CELL) for h in table.header])
        style.append(("BACKGROUND", (0, 0), (-1, 0), _HEADER_FILL))
    return Table(rows, colWidths=widths, repeatRows=1 if table.header else 0,
                 style=TableStyle(style), hAlign="LEFT")


def _views(doc: PlanDocument) -> list[Flowable]:
    gap = 4.0
    size = (FRAME_WIDTH - 2 * gap) / 3
    row = Table([[view_drawing(v, size) for v in doc.views]],
                colWidths=[size + gap] * len(doc.views), hAlign="LEFT",
                style=TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0),
                                  ("RIGHTPADDING", (0, 0), (-1, -1), 0)]))
    half = FRAME_WIDTH / 2 - 10
    scales = Table([[colour_bar_drawing(doc.display, half),
                     isodose_legend_drawing(doc.display, half)]],
                   colWidths=[half + 20, half], hAlign="LEFT",
                   style=TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    structures = structure_legend_drawing(doc.views, FRAME_WIDTH)
    note = _p(f"Three planes through {doc.views[0].focus}, "
              f"{doc.views[0].pixel_mm * doc.views[0].rgb.shape[0]:.0f} mm wide; "
              f"colour wash: {doc.sections[0].title}. Structure outlines thin and dashed, "
              "isodose lines thicker and solid.", _BODY)
    return [KeepTogether([Paragraph("Dose", _H2), row, Spacer(1, 3), scales, Spacer(1, 2),
                          structures, note])]


def _robustness(section: RobustnessSection) -> list[Flowable]:
    """Robustness heading, settings, the DVH bands and one scenario table per structure."""
    return [
        KeepTogether([Paragraph("Robustness", _H2),
                      _p("The plan's dose recalculated in each error scenario (the spots and "
                         f"weights unchanged). Doses in {section.unit}, whole plan.", _BODY),
                      Spacer(1, 2), _table(section.settings)]),
        KeepTogether([Paragraph("DVH bands over the scenarios", _H3),
                      dvh_drawing(section.band_lines, section.unit, FRAME_WIDTH, 230,
                                  section.band_legend)]),
        *(KeepTogether([Paragraph(markup(title), _H3), _table(table)])
          for title, table in section.tables),
    ]


def _dose_section(section: DoseSection) -> KeepTogether:
    """A dose's heading, its metrics table and the note on the table, if any."""
    parts: list[Flowable] = [Paragraph(markup(section.title), _H2), _table(section.metrics)]
    if section.note:
        parts += [Spacer(1, 2), _p(section.note, _BODY)]
    return KeepTogether(parts)


def _approval() -> Table:
    """Planned / checked / approved by, each with lines for name, signature and date."""
    rows: list[list[Any]] = [["", _p("Name"), "", _p("Signature"), "", _p("Date")]]
    rows += [[Paragraph(f"<b>{role}</b>", _BODY), "", "", "", "", ""]
             for role in ("Planned by", "Checked by", "Approved by")]
    line = 0.6, colors.black
    return Table(rows, colWidths=[f * FRAME_WIDTH for f in (0.17, 0.30, 0.03, 0.30, 0.03,
                                                            0.17)],
                 rowHeights=[12] + [26] * 3, hAlign="LEFT",
                 style=TableStyle([("LINEBELOW", (c, 1), (c, -1), *line) for c in (1, 3, 5)]
                                  + [("VALIGN", (0, 0), (-1, -1), "BOTTOM")]))


def _story(doc: PlanDocument) -> list[Flowable]:
    ident = doc.ident
    story: list[Flowable] = [
        Paragraph("Carbon-ion treatment plan", _H1),
        _table(TextTable((), (("Patient", ident.patient_text), ("Patient ID", ident.patient_id),
                              ("Plan", ident.plan_name), ("RBE model", ident.model),
                              ("Date", ident.date_text)))),
        Paragraph("Prescription and plan", _H2), _table(doc.plan_facts),
        Paragraph("RBE model", _H2),
        _p(f"{doc.model_name}: {doc.model_variant}.", _BODY), Spacer(1, 2),
        _table(doc.model_parameters),
        Paragraph("Beams", _H2), _table(doc.beams),
        Paragraph("Objectives", _H2), _table(doc.objectives),
        Paragraph("Optimizer", _H2), _table(doc.optimizer),
        *_views(doc),
        KeepTogether([Paragraph("Dose-volume histograms", _H2),
                      dvh_drawing(doc.dvh_lines, doc.dvh_unit, FRAME_WIDTH, 230,
                                  doc.dvh_legend)]),
    ]
    story += [_dose_section(section) for section in doc.sections]
    if doc.robustness is not None:
        story += _robustness(doc.robustness)
    story.append(Paragraph("Warnings", _H2))
    story += [_p(f"- {w}", _BODY) for w in doc.warnings]
    story.append(KeepTogether([Paragraph("Approval", _H2), _approval()]))
    return story


def pdf_bytes(doc: PlanDocument) -> bytes:
    """The whole PDF file of ``doc``."""
    buffer = io.BytesIO()
    header = doc.ident.one_line()
    header_text, header_size = header_lines(header, 7.0, FRAME_WIDTH)

    def page(canvas: Canvas, template: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFillColor(colors.Color(0.3, 0.3, 0.33))
        for i, line in enumerate(header_text):  # within the frame's width (a long name)
            _draw_runs(canvas, MARGIN, A4[1] - (8.5 + 3 * i) * mm, line, header_size)
        canvas.setFont(FONT, 7)
        canvas.drawString(MARGIN, 8 * mm, f"IonPlan {__version__} - research software, not a "
                                          "certified medical device")
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, f"Page {template.page}")
        canvas.restoreState()

    template = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN + 3 * mm,
        bottomMargin=MARGIN, title=f"Treatment plan {doc.ident.plan_name}",
        author="IonPlan", subject=header, creator=f"IonPlan {__version__}")
    template.build(_story(doc), onFirstPage=page, onLaterPages=page)
    return buffer.getvalue()


def write_plan_pdf(doc: PlanDocument, folder: str | Path) -> Path:
    """Write ``<patientID>_<plan>_<YYYYmmdd-HHMMSS>_report.pdf`` (``-2``, ... when taken)
    into ``folder`` atomically; an existing file is never replaced. Returns its path."""
    data = pdf_bytes(doc)

    def write(fh: BinaryIO) -> None:
        fh.write(data)

    return write_new_file(folder, file_stem(doc.ident), "_report.pdf", write)
