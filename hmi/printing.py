"""Printable documents (bills, statements): a Jinja2 HTML template, and the same HTML as a PDF.

The templates live in ``hmi/templates/print/``; an operator replaces one by putting a file of
the same name (``bill.html``, ``statement.html``) in the folder ``[billing] templates_dir``
names. PDFs come from that HTML through xhtml2pdf (on ReportLab): pure-Python wheels, so a
fresh machine needs no system package, and ReportLab's built-in CID font ``STSong-Light``
renders Chinese without a font file. Rendering a PDF is CPU work: it runs in an executor, never
on the event loop. A template that fails to render is the caller's error (``TemplateFailed``),
named by its file, never a half-written document.
"""

from __future__ import annotations

import asyncio
import io
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2

from .i18n import Translator

__all__ = ["PrintTemplates", "TemplateFailed", "html_to_pdf", "money"]

log = logging.getLogger(__name__)


class TemplateFailed(Exception):
    def __init__(self, template: str, message: str) -> None:
        super().__init__(f"{template}: {message}")
        self.template = template
        self.message = message


def money(value: Any) -> str:
    """``"-1234.5"`` → ``"-1,234.50"``-style grouping, the decimals as given."""
    d = Decimal(str(value))
    sign = "-" if d < 0 else ""
    whole, _, frac = format(abs(d), "f").partition(".")
    return f"{sign}{int(whole):,}" + (f".{frac}" if frac else "")


class PrintTemplates:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.PackageLoader("hmi", "templates/print"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders), autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters["money"] = money

    def render(self, name: str, t: Translator, **context: Any) -> str:
        try:
            return self.env.get_template(name).render(t=t, lang=t.language, **context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailed(exc.filename or name, f"line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateFailed(name, str(exc)) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
            raise TemplateFailed(name, f"{type(exc).__name__}: {exc}") from None


def _pdf(html: str) -> bytes:
    from xhtml2pdf import pisa  # noqa: PLC0415 - loaded on the first PDF (ReportLab takes a moment to import)

    out = io.BytesIO()
    status = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if status.err:
        raise ValueError(f"the HTML could not be laid out as a PDF ({status.err} error(s))")
    return out.getvalue()


async def html_to_pdf(html: str, template: str) -> bytes:
    """The HTML as a PDF, rendered in an executor."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, _pdf, html)
    except Exception as exc:
        raise TemplateFailed(template, f"PDF: {exc}") from None
