"""The overview page: every model (its versions, a chart of its main metric with the aliases
marked, the history of its aliases) and the recent runs of every job."""

from __future__ import annotations

from html import escape
from typing import Any

from .chart import metric_chart
from .collect import ModelInfo, Overview, VersionInfo
from .html_parts import Links, frame, mapping, number, text
from ..metric_direction import is_better

PRODUCTION = "production"


def overview_page(overview: Overview, links: Links) -> str:
    signing = ("a signing key is set: every version's signature and files were checked" if overview.signing
               else "no signing key here: every version's files were checked against its MANIFEST, no signature")
    body = [f"<h1>Model store overview</h1><p>Store <code>{text(overview.location)}</code>: {signing}. "
            f'Read-only; as of {text(overview.generated)} UTC.</p>']
    if overview.models:
        body.append("<nav><p>Models: " + ", ".join(f'<a href="#model-{escape(m.name)}">{text(m.name)}</a>' for m in overview.models)
                    + ' · <a href="#runs-section">recent runs</a></p></nav>')
    else:
        body.append('<p id="no-models">No models yet: train one (<code>docker compose run --rm train</code>).</p>')
    body.extend(model_section(model, links) for model in overview.models)
    body.append(runs_section(overview))
    return frame("mljobs: model store overview", "".join(body))


def model_section(model: ModelInfo, links: Links) -> str:
    metric = model.metric
    aliases = " ".join(f'<span class="alias">{text(a)} → {text(v)}</span>' for a, v in model.aliases.items())
    unverified = sum(not v.verified and not v.pending for v in model.versions)
    warning = (f' <span class="bad">{unverified} version(s) failed verification: marked below, never loaded</span>'
               if unverified else "")
    chart = ""
    if metric:
        points = [(v.version, _float(v.metrics.get(metric)), v.verified or v.pending) for v in model.versions]
        chart = metric_chart(metric, points, model.aliases)
    return (f'<section id="model-{escape(model.name)}"><h2>{text(model.name)}</h2><p>Aliases: {aliases or "none"}{warning}</p>'
            f"{chart}{versions_table(model, links)}{alias_history(model)}</section>")


def versions_table(model: ModelInfo, links: Links) -> str:
    metric_names = list(dict.fromkeys(m for v in model.versions for m in v.metrics))
    main = model.metric
    production = model.version(model.aliases.get(PRODUCTION))
    head = ["version", "aliases", "created", "estimator", "rows trained / held out", "data fingerprint", *metric_names]
    if main:
        head.append(f"{main} vs production")
    head += ["checked", "report"]
    rows = [version_row(model, v, metric_names, main, production, links) for v in reversed(model.versions)]
    return (f'<table class="versions" id="versions-{escape(model.name)}"><thead><tr>'
            + "".join(f"<th>{text(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def version_row(model: ModelInfo, v: VersionInfo, metric_names: list[str], main: str | None,
                production: VersionInfo | None, links: Links) -> str:
    meta = v.metadata
    rows = mapping(meta.get("rows"))
    fingerprint = meta.get("data_fingerprint")
    aliases = " ".join(f'<span class="alias">{text(a)}</span>' for a, version in model.aliases.items() if version == v.version)
    cells = [f'<td class="num">{text(v.version)}</td>', f"<td>{aliases}</td>", f"<td>{text(meta.get('created'))}</td>",
             f"<td>{text(v.estimator)}</td>", f'<td class="num">{text(rows.get("train", ""))} / {text(rows.get("valid", ""))}</td>',
             f'<td title="{text(fingerprint)}"><code>{text(str(fingerprint)[:12]) if fingerprint else "—"}</code></td>']
    cells += [f'<td class="num" data-metric="{escape(m)}">{number(v.metrics.get(m))}</td>' for m in metric_names]
    if main:
        cells.append(delta_cell(main, _float(v.metrics.get(main)), _float(production.metrics.get(main)) if production else None,
                                production is v))
    if v.verified:
        cells.append(f'<td class="ok">{"signature and files" if v.signed else "files (MANIFEST)"}</td>')
        link = f'<a href="{escape(links.version(model.name, v.version))}">version page</a>'
        if "report.html" in v.report_files:
            link += f' · <a href="{escape(links.version(model.name, v.version, "report.html"))}">report</a>'
    elif v.pending:
        cells.append('<td class="muted">not checked yet (being checked: reload)</td>')
        link = f'<a href="{escape(links.version(model.name, v.version))}">version page</a>'
    else:
        cells.append(f'<td class="bad">UNVERIFIED: {text(v.problem)}</td>')
        link = f'<a href="{escape(links.version(model.name, v.version))}">why</a>'
    cells.append(f"<td>{link}</td>")
    marked = "" if v.verified or v.pending else ' class="unverified"'
    return f'<tr data-version="{escape(v.version)}"{marked}>{"".join(cells)}</tr>'


def delta_cell(metric: str, value: float | None, reference: float | None, is_reference: bool) -> str:
    if is_reference:
        return '<td class="muted">(production)</td>'
    if value is None or reference is None:
        return "<td></td>"
    delta = value - reference
    kind = "better" if is_better(metric, delta) else ("worse" if delta else "muted")
    return f'<td class="num {kind}">{delta:+.4f}</td>'


def alias_history(model: ModelInfo) -> str:
    events = [e for e in reversed(model.events)]
    if not events:
        return f'<p class="muted" id="aliases-{escape(model.name)}">No alias moves recorded.</p>'
    rows = "".join(
        f"<tr><td>{text(e.get('time'))}</td><td>{text(e.get('alias'))}</td><td>{text(e.get('action'))}</td>"
        f"<td class=\"num\">{text(e.get('version'))}</td><td class=\"num\">{text(e.get('previous'))}</td></tr>"
        for e in events
    )
    return (f'<h3>Alias history</h3><table class="alias-history" id="aliases-{escape(model.name)}"><thead><tr><th>when (UTC)</th>'
            f"<th>alias</th><th>what</th><th>to version</th><th>from version</th></tr></thead><tbody>{rows}</tbody></table>")


NUM = ' class="num"'
RUN_COLUMNS = ("started", "job", "status", "model", "started by", "duration", "rows in", "rows out", "rejected", "exit code", "reason")


def runs_section(overview: Overview) -> str:
    if not overview.runs_available:
        return ('<section id="runs-section"><h2>Recent runs</h2><p class="muted" id="runs-missing">This server does not see the '
                "run records: mount the runs volume read-only at /runs (see the README).</p></section>")
    if not overview.runs:
        return '<section id="runs-section"><h2>Recent runs</h2><p class="muted">No runs recorded yet.</p></section>'
    rows = "".join(run_row(r) for r in overview.runs)
    return (f'<section id="runs-section"><h2>Recent runs</h2><p class="muted">The newest {len(overview.runs)}, newest first.</p>'
            '<table id="runs"><thead><tr>' + "".join(f"<th>{c}</th>" for c in RUN_COLUMNS)
            + f"</tr></thead><tbody>{rows}</tbody></table></section>")


def run_row(r: dict[str, Any]) -> str:
    rows, model = mapping(r.get("rows")), mapping(r.get("model"))
    status = str(r.get("status_detail") or r.get("status") or "")
    duration = r.get("duration_s")
    reason = r.get("reason") or ""
    values = {
        "started": text(r.get("started")), "job": text(r.get("job")),
        "status": f'<span class="{"bad" if r.get("status") == "failed" else "ok" if r.get("status") == "succeeded" else "muted"}">'
                  f"{text(status)}</span>",
        "model": text(f"{model.get('name')}:{model.get('version')}" if model.get("name") else ""),
        "started by": text(r.get("started_by")), "duration": text(f"{duration:.1f} s" if isinstance(duration, (int, float)) else ""),
        "rows in": text(rows.get("in", "")), "rows out": text(rows.get("out", "")), "rejected": text(rows.get("rejected", "")),
        "exit code": text(r.get("exit_code")), "reason": text(reason),
    }
    numeric = ("rows in", "rows out", "rejected", "exit code")
    return f'<tr data-run="{text(r.get("run_id"))}">' + "".join(
        f'<td data-col="{c}"{NUM if c in numeric else ""}>{values[c]}</td>' for c in RUN_COLUMNS) + "</tr>"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
