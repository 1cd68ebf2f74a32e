"""The review report's HTML: one self-contained page (thumbnails and charts as files beside it).

Rendered with Jinja2 (autoescaping on: record ids and error text are data, never markup). The page carries
a small script that, once everything has loaded, marks any thumbnail that failed to load and records on
``<body>`` how many images loaded (``data-img-count``, ``data-img-loaded``, ``data-img-widths``), which the
headless-browser test reads back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import jinja2

from facelink.rates import format_rate
from facelink.report.data import QUALITY_FIELDS, ClusterItem, DqRow, PairItem, RunAccount, StageRow

DISCLAIMER = (
    "Everything below is a CANDIDATE for review by trained staff, not an identification. A score is the "
    "similarity of two face images; the estimated error rates come from a calibration on labelled photos and are "
    "estimates. No decision about a person may rest on this report alone: each candidate is decided by trained "
    "reviewers, and a pair counts as confirmed only when two different reviewers agree."
)


@dataclass(frozen=True)
class Thumb:
    """A thumbnail written beside the page (``path`` relative to it), or why there is none."""

    path: str | None
    photo_width: int | None
    photo_height: int | None
    error: str | None = None


@dataclass(frozen=True)
class ReportContent:
    """Everything one report page shows."""

    run_id: str
    generated_at: dt.datetime
    operator: str
    lake_root: str
    match_run_id: str | None
    dedup_run_id: str | None
    match: RunAccount | None
    dedup: RunAccount | None
    stages_latest: list[StageRow]
    stages_recent: list[StageRow]
    dq: list[DqRow] | None
    charts: list[tuple[str, str]]
    strong: list[PairItem]
    strong_total: int
    clusters: list[ClusterItem]
    clusters_total: int
    thumbs: dict[str, Thumb] = field(default_factory=dict)
    dq_docs: str | None = None


def box_style(box: tuple[float, float, float, float] | None, thumb: Thumb | None) -> str:
    """CSS placing the compared face's box over the thumbnail, in percent of the photo; '' if unknown."""
    if not box or thumb is None or not thumb.photo_width or not thumb.photo_height:
        return ""
    x, y, w, h = box
    pw, ph = thumb.photo_width, thumb.photo_height
    return (f"left:{100 * x / pw:.2f}%;top:{100 * y / ph:.2f}%;"
            f"width:{100 * w / pw:.2f}%;height:{100 * h / ph:.2f}%")


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.globals["rate"] = format_rate
_ENV.filters["score"] = lambda v: f"{v:.4f}" if v is not None else "n/a"
_ENV.filters["stamp"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "n/a"
_ENV.globals["box_style"] = box_style
_ENV.globals["QUALITY_FIELDS"] = QUALITY_FIELDS

CSS = """
body{font-family:'DejaVu Sans','Liberation Sans',Arial,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;
color:#1a1a1a;background:#fff;font-size:14px}
h1{font-size:22px;margin:16px 0 8px}h2{font-size:18px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:28px}
.banner{border:3px solid #b2182b;background:#fdecea;padding:12px 16px;font-size:15px;margin:12px 0}
.banner strong{display:block;font-size:20px;color:#b2182b;margin-bottom:4px;letter-spacing:.5px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.bad{color:#b2182b;font-weight:bold}.ok{color:#1b7837}
.muted{color:#666}.pair{border:1px solid #bbb;border-radius:6px;padding:8px 10px;margin:10px 0;background:#fafafa}
.pair header{font-weight:bold;margin-bottom:6px}.band{display:inline-block;padding:1px 6px;border-radius:4px;color:#fff;
font-size:12px;text-transform:uppercase}.band-strong{background:#b2182b}.band-possible{background:#ef8a62}
.sides{display:flex;gap:18px;flex-wrap:wrap}figure{margin:0;display:flex;gap:10px;min-width:440px;flex:1}
.thumb{position:relative;display:inline-block;line-height:0;align-self:flex-start}.thumb img{display:block;
border:1px solid #999}.facebox{position:absolute;border:2px solid #33a02c;box-sizing:border-box}
figure.missing .thumb::after{content:'thumbnail missing';position:absolute;top:0;left:0;background:#b2182b;color:#fff;
font-size:11px;line-height:14px;padding:2px}.nothumb{width:120px;height:120px;border:1px dashed #b2182b;font-size:11px;
padding:4px;box-sizing:border-box;line-height:14px}figcaption{font-size:12px}figcaption dl{margin:2px 0;
display:grid;grid-template-columns:auto auto;column-gap:8px}figcaption dt{color:#555}figcaption dd{margin:0}
.cluster{border-left:4px solid #ef8a62;padding-left:10px;margin:18px 0}.charts img{max-width:100%;border:1px solid #ddd}
footer.page{margin-top:30px;font-size:12px;color:#555}
"""

IMG_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var widths = imgs.map(function (im) { return im.complete ? im.naturalWidth : 0; });
  imgs.forEach(function (im, i) {
    var fig = im.closest('figure');
    if (!widths[i] && fig) { fig.classList.add('missing'); }
  });
  document.body.setAttribute('data-img-count', String(imgs.length));
  document.body.setAttribute('data-img-loaded', String(widths.filter(function (w) { return w > 0; }).length));
  document.body.setAttribute('data-img-widths', widths.join(','));
});
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>facelink review report {{ c.run_id }}</title>
<style>{{ css | safe }}</style>
<script>{{ js | safe }}</script>
</head>
<body data-report-run-id="{{ c.run_id }}">
<h1>facelink review report</h1>
<div class="banner" role="alert"><strong>CANDIDATES FOR TRAINED HUMAN REVIEW — NOT IDENTIFICATIONS</strong>
{{ disclaimer }}</div>
<p class="muted">Report run <code>{{ c.run_id }}</code>, generated {{ c.generated_at | stamp }} by {{ c.operator }}
from the lake at <code>{{ c.lake_root }}</code>. Match run: <code>{{ c.match_run_id or "none" }}</code>;
de-duplication run: <code>{{ c.dedup_run_id or "none" }}</code>.</p>

<h2>Accountability</h2>
{% if c.match or c.dedup %}
<table><tr><th></th>{% for a in [c.match, c.dedup] if a %}<th>{{ a.job }} run <code>{{ a.run_id }}</code></th>{% endfor %}</tr>
{% for label, attr in [("operator", "operator"), ("purpose", "purpose"), ("authority", "authority"),
  ("outcome", "outcome"), ("model id", "model_id"), ("index version", "index_version"),
  ("calibration version", "calibration"), ("gallery size", "gallery_size")] %}
<tr><th>{{ label }}</th>{% for a in [c.match, c.dedup] if a %}<td>{{ a[attr] if a[attr] is not none else "not recorded" }}</td>{% endfor %}</tr>
{% endfor %}
<tr><th>precision of the estimates</th>{% for a in [c.match, c.dedup] if a %}<td>{{ a.precision }}</td>{% endfor %}</tr>
<tr><th>band thresholds (score)</th>{% for a in [c.match, c.dedup] if a %}<td>{% for band, t in a.band_thresholds | dictsort %}{{ band }} &ge; {{ t | score }}{% if not loop.last %}; {% endif %}{% else %}not recorded{% endfor %}</td>{% endfor %}</tr>
<tr><th>ran</th>{% for a in [c.match, c.dedup] if a %}<td>{{ a.started_at | stamp }} – {{ a.ended_at | stamp }}</td>{% endfor %}</tr>
<tr><th>tables read (Delta version)</th>{% for a in [c.match, c.dedup] if a %}<td>{% for t, v in a.inputs | dictsort %}{{ t }}@{{ v }} {% endfor %}</td>{% endfor %}</tr>
</table>
{% else %}<p class="bad">No audit record found for a match or de-duplication run: nothing to review.</p>{% endif %}

<h2>Pipeline runs</h2>
<p>Latest run of each job (from <code>runs</code>):</p>
{{ stage_table(c.stages_latest) }}
<details><summary>{{ c.stages_recent | length }} most recent runs</summary>{{ stage_table(c.stages_recent) }}</details>

<h2>Data quality</h2>
{% if c.dq is none %}<p class="muted">No data-quality results in this lake (the <code>dq_results</code> table does not exist yet).</p>
{% elif not c.dq %}<p class="muted">The <code>dq_results</code> table is empty.</p>
{% else %}
{% set failed = c.dq | rejectattr("success") | list %}
<p>Newest gate run per table: {{ c.dq | length }} expectations,
<span class="{{ 'bad' if failed else 'ok' }}">{{ failed | length }} failed</span>
({{ failed | selectattr("severity", "equalto", "critical") | list | length }} critical).
{% if c.dq_docs %}<a href="{{ c.dq_docs }}">Data Docs</a>{% endif %}</p>
<table><tr><th>table</th><th>gate run</th><th>expectation</th><th>severity</th><th>result</th><th>observed</th></tr>
{% for d in c.dq %}<tr><td>{{ d.table_name }}{% if d.table_version is not none %}@{{ d.table_version }}{% endif %}</td>
<td><code>{{ d.run_id }}</code></td><td>{{ d.expectation }}</td><td>{{ d.severity }}</td>
<td class="{{ 'ok' if d.success else 'bad' }}">{{ "passed" if d.success else "FAILED" }}</td><td>{{ d.observed or "" }}</td></tr>
{% endfor %}</table>
{% endif %}

<h2>Score distributions</h2>
<div class="charts">{% for title, path in c.charts %}<figure style="display:block"><img src="{{ path }}" alt="{{ title }}" width="800" height="320"></figure>{% else %}<p class="muted">No candidates to chart.</p>{% endfor %}</div>

<h2>Strong probe candidates{% if c.match_run_id %} (match run <code>{{ c.match_run_id }}</code>){% endif %}</h2>
{% if c.match_run_id %}
<p>{{ c.strong_total }} candidate(s) in the strong band{% if c.strong_total > c.strong | length %}; the {{ c.strong | length }} with the highest scores are shown{% endif %}. Each is a candidate for review, not an identification.</p>
{% for p in c.strong %}{{ pair_card(p) }}{% endfor %}
{% else %}<p class="muted">No succeeded match run in this lake.</p>{% endif %}

<h2>Duplicate clusters{% if c.dedup_run_id %} (de-duplication run <code>{{ c.dedup_run_id }}</code>){% endif %}</h2>
{% if c.dedup_run_id %}
<p>{{ c.clusters_total }} cluster(s) of records linked by candidate pairs{% if c.clusters_total > c.clusters | length %}; the {{ c.clusters | length }} with the highest scores are shown{% endif %}. A cluster is a set of candidates, not a finding that the records belong to one person.</p>
{% for cl in c.clusters %}
<section class="cluster" data-cluster-id="{{ cl.cluster_id }}"><h3>Cluster {{ cl.cluster_id }} · {{ cl.size }} records · best link {{ cl.best_score | score }} <span class="band band-{{ cl.best_band }}">{{ cl.best_band }}</span></h3>
<p>Records: {% for m in cl.members %}<code>{{ m }}</code> {% endfor %}· review subject: cluster <code>{{ cl.cluster_id }}</code></p>
{% for p in cl.pairs %}{{ pair_card(p) }}{% endfor %}
{% if cl.pairs_total > cl.pairs | length %}<p class="muted">{{ cl.pairs_total - cl.pairs | length }} more pair(s) in this cluster not shown.</p>{% endif %}
</section>
{% endfor %}
{% else %}<p class="muted">No succeeded de-duplication run in this lake.</p>{% endif %}

<footer class="page">facelink compares face images for similarity only; it infers no personal attributes from faces.
Thumbnails are reduced copies for review; the photos themselves stay in the archive.</footer>
</body></html>
"""  # noqa: E501 - template markup reads better unwrapped

MACROS = """
{% macro stage_table(rows) %}
<table><tr><th>job</th><th>run</th><th>status</th><th>started</th><th>seconds</th><th>counts</th></tr>
{% for s in rows %}<tr><td>{{ s.job }}</td><td><code>{{ s.run_id }}</code></td>
<td class="{{ 'ok' if s.status == 'succeeded' else 'bad' }}">{{ s.status }}</td><td>{{ s.started_at | stamp }}</td>
<td>{{ "%.0f" | format(s.seconds) }}</td><td>{% for k, v in s.counts | dictsort %}{{ k }}={{ v }} {% endfor %}{% if s.error %}<span class="bad">{{ s.error }}</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="6" class="muted">no runs recorded</td></tr>{% endfor %}</table>
{% endmacro %}
{% macro side(f) %}
{% set t = thumbs.get(f.photo_id) %}
<figure data-photo-id="{{ f.photo_id }}">
{% if t and t.path %}<div class="thumb"><img class="photo-thumb" src="{{ t.path }}" alt="{{ f.label }} photo of record {{ f.record_id }}">{% if box_style(f.box, t) %}<span class="facebox" style="{{ box_style(f.box, t) }}"></span>{% endif %}</div>
{% else %}<div class="nothumb">no thumbnail: {{ t.error if t else "photo not in the archive" }}</div>{% endif %}
<figcaption><b>{{ f.label }}</b><dl><dt>record</dt><dd><code>{{ f.record_id }}</code></dd>
<dt>photo</dt><dd><code title="{{ f.photo_id }}">{{ f.photo_id[:12] }}…</code>{% if f.face_index is not none %} face {{ f.face_index }}{% endif %}</dd>
<dt>quality</dt><dd>{% if f.quality_ok is none %}<span class="muted">not recorded</span>{% elif f.quality_ok %}<span class="ok">passes</span>{% else %}<span class="bad">fails: {{ f.quality_reasons | join(", ") }}</span>{% endif %}</dd>
{% for name, label, unit in QUALITY_FIELDS if name in f.measures %}<dt>{{ label }}</dt><dd>{{ "%.2f" | format(f.measures[name]) }}{{ unit }}</dd>{% endfor %}
</dl></figcaption></figure>
{% endmacro %}
{% macro pair_card(p) %}
<article class="pair" data-subject-type="{{ p.subject_type }}" data-subject-id="{{ p.subject_id }}">
<header><span class="band band-{{ p.band }}">{{ p.band }}</span> {{ p.heading }} · score {{ p.score | score }}
{% if p.est_fmr is not none %}· est. FMR {{ rate(p.est_fmr, p.fmr_floor) }} {% endif %}· est. FPIR {{ rate(p.est_fpir, p.fpir_floor) }}</header>
<div class="sides">{{ side(p.left) }}{{ side(p.right) }}</div>
<p class="muted">Review subject: {{ p.subject_type }} <code>{{ p.subject_id }}</code> (run <code>{{ p.source_run_id }}</code>) ·
{{ p.reviews }} decision(s) recorded so far.</p>
</article>
{% endmacro %}
"""  # noqa: E501 - template markup reads better unwrapped

_TEMPLATE = _ENV.from_string(MACROS + TEMPLATE)


def render_report(content: ReportContent) -> str:
    """The page's HTML for ``content``."""
    return _TEMPLATE.render(c=content, thumbs=content.thumbs, css=CSS, js=IMG_CHECK_JS, disclaimer=DISCLAIMER)
