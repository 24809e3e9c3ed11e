"""One version's page: what it is, whether it was verified, its held-out metrics against the
baseline and against the version `production` points to now, its alias moves, and its plots."""

from __future__ import annotations

from html import escape

from .collect import ModelInfo, VersionInfo
from .html_parts import Links, frame, mapping, number, text
from ..metric_direction import is_better
from .page import PRODUCTION, _float


def version_page(model: ModelInfo, v: VersionInfo, links: Links) -> str:
    meta = v.metadata
    status = (f'<p class="ok">Verified: {"its signature and every file" if v.signed else "every file against its MANIFEST"}.</p>'
              if v.verified else
              f'<p class="bad" id="unverified">UNVERIFIED: {text(v.problem)}. No server or job loads it; its own claims '
              "below are shown as found, unchecked, and its report is not served.</p>")
    aliases = ", ".join(text(a) for a, version in model.aliases.items() if version == v.version) or "none"
    rows = mapping(meta.get("rows"))
    facts = [("created", meta.get("created")), ("estimator", v.estimator), ("task", v.task), ("source", meta.get("source")),
             ("data fingerprint", meta.get("data_fingerprint")), ("rows", ", ".join(f"{k} {n}" for k, n in rows.items())),
             ("evaluation", meta.get("evaluation")), ("training run", meta.get("run_id"))]
    back = f'<p><a href="{escape(links.home)}">← store overview</a></p>' if links.home else ""
    body = [back, f"<h1>{text(model.name)} version {text(v.version)}</h1>", status, f"<p>Aliases here: {aliases}</p>",
            "<table>" + "".join(f"<tr><th>{k}</th><td>{text(value)}</td></tr>" for k, value in facts) + "</table>",
            comparison(model, v), moves(model, v)]
    if v.verified:
        plots = [f for f in v.report_files if f.startswith("plot-")]
        body.append('<h2>Training report</h2><p><a href="report.html">The full report</a> (features, plots).</p>'
                    + "".join(f'<figure><img src="{escape(f)}" alt="{escape(f)}" style="max-width:100%"></figure>' for f in plots))
    return frame(f"{model.name} version {v.version}", "".join(body))


def comparison(model: ModelInfo, v: VersionInfo) -> str:
    baseline = mapping(v.report_data.get("baseline"))
    base_metrics = mapping(baseline.get("metrics"))
    production = model.version(model.aliases.get(PRODUCTION))
    head = ["metric", "this version"]
    if base_metrics:
        head += [f"baseline ({baseline.get('kind', '')}: {baseline.get('predicts', '')})", "vs baseline"]
    if production is not None and production is not v:
        head += [f"production (version {production.version})", "vs production"]
    rows = []
    for metric, value in v.metrics.items():
        cells = [f"<td>{text(metric)}</td>", f'<td class="num">{number(value)}</td>']
        if base_metrics:
            cells += _compared(metric, _float(value), _float(base_metrics.get(metric)))
        if production is not None and production is not v:
            cells += _compared(metric, _float(value), _float(production.metrics.get(metric)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = "" if base_metrics else '<p class="muted">This version has no baseline (trained before reports had one).</p>'
    return ('<h2>Held-out metrics</h2><table id="comparison"><thead><tr>' + "".join(f"<th>{text(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + note)


def _compared(metric: str, value: float | None, other: float | None) -> list[str]:
    if value is None or other is None:
        return ["<td></td>", "<td></td>"]
    delta = value - other
    kind = "better" if is_better(metric, delta) else ("worse" if delta else "muted")
    return [f'<td class="num">{other:.4f}</td>', f'<td class="num {kind}">{delta:+.4f}</td>']


def moves(model: ModelInfo, v: VersionInfo) -> str:
    mine = [e for e in reversed(model.events) if v.version in (e.get("version"), e.get("previous"))]
    if not mine:
        return ""
    rows = "".join(f"<tr><td>{text(e.get('time'))}</td><td>{text(e.get('alias'))}</td><td>{text(e.get('action'))}</td>"
                   f"<td>{text(e.get('previous') or '—')} → {text(e.get('version'))}</td></tr>" for e in mine)
    return f"<h2>Alias moves</h2><table><tr><th>when (UTC)</th><th>alias</th><th>what</th><th>move</th></tr>{rows}</table>"
