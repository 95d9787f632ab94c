"""The HTML rendering of a report (:func:`render_html`): one self-contained page, every
value escaped with :func:`html.escape`, no script, a Content-Security-Policy that forbids
loading anything."""

from __future__ import annotations

import datetime as dt
import html
from typing import TYPE_CHECKING

from .store import CATEGORIES

if TYPE_CHECKING:
    from .report import EntityReport, ReportIndex

__all__ = ["render_html"]

_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;"
    "padding:.25em .6em;text-align:left;vertical-align:top}.high{color:#a00;font-weight:bold}"
    ".medium{color:#a60}.low{color:#070}footer{font-size:.85em;color:#555}"
)


def _e(value: object) -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    return html.escape(str(value), quote=True)


def _rows(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def _index_html(ix: ReportIndex) -> str:
    cat = ix.category if ix.category in CATEGORIES else "unknown"
    flags = [f for f, on in (("partial", ix.partial), ("overridden", ix.overridden)) if on]
    reasons = ", ".join(r.code for r in ix.reasons) or None
    coverage = ", ".join(
        f"{s}: {v}"
        for part in (ix.coverage.preliminary, ix.coverage.direct)
        for s, v in part.items()
    )
    trend = " &larr; ".join(f"{_e(p.value)} ({_e(p.category)})" for p in ix.history)
    head = (
        f"<h3>{_e(ix.index)}: <span class='{cat}'>{_e(ix.value)} &middot; {_e(ix.category)}"
        f"</span></h3>"
    )
    return head + (
        "<table>"
        + _rows(
            [
                ("probability", f"{ix.probability:.4f}"),
                ("flags", ", ".join(flags) or None),
                ("overridden by lists", ", ".join(ix.overrides) or None),
                ("reason codes", reasons),
                ("coverage", coverage or None),
            ]
        )
        + f"<tr><th>history (newest first)</th><td>{trend or '&mdash;'}</td></tr></table>"
    )


def render_html(report: EntityReport, json_sha256: str) -> bytes:
    """The report as a self-contained HTML page (every value escaped, no script)."""
    e = report.entity
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        f"<title>Report {_e(report.report_id)}</title><style>{_STYLE}</style></head><body>",
        "<h1>Business partners register: report of a check</h1>",
        f"<p>{_e(report.user)} checked {_e(e.bin)} at {_e(report.issued_at)}.</p>",
        "<h2>Entity</h2><table>",
        _rows(
            [
                ("BIN/IIN", e.bin),
                ("kind", e.entity_kind),
                ("name", e.name),
                ("legal form", e.legal_form),
                ("status", e.status),
                ("registered", e.registration_date),
                ("region (KATO)", e.region),
                ("activity (OKED)", e.oked),
                ("state lists", ", ".join(report.lists) or "none"),
            ]
        ),
        "</table><h2>Scoring indexes</h2>",
    ]
    if report.run_id is not None:
        parts.append(
            f"<p>Run {_e(report.run_id)}, release {_e(report.release_id)}, computed "
            f"{_e(report.computed_at)}.</p>"
        )
    parts += [_index_html(ix) for ix in report.indexes]
    parts += [f"<p><em>{_e(n)}</em></p>" for n in report.notes]
    parts.append(
        "<footer><table>"
        + _rows(
            [
                ("report", report.report_id),
                ("issued", report.issued_at),
                ("user", report.user),
                ("issued by", f"{report.register} (key {report.key_id})"),
                ("SHA-256 of the JSON report", json_sha256),
            ]
        )
        + "</table><p>This page and the JSON report are signed by the register's key: check "
        "them with <code>minisign -Vm FILE -p register.minisign.pub</code> or "
        "<code>registry-combiner verify-report FILE</code>.</p></footer></body></html>\n"
    )
    return "".join(parts).encode("utf-8")
