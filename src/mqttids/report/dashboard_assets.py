"""The dashboard's page, script and style, kept as Python strings so that a wheel carries them.

The script builds every visible value with ``textContent`` and every chart
element with SVG attributes computed from numbers; it never parses markup.
The Content-Security-Policy allows script and style from the dashboard
itself only, so an injected inline handler could not run either.
"""

from __future__ import annotations

import html
import json

from mqttids.schema import LABELS

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header><h1>{title}</h1> <span id="status" class="status wait">connecting</span></header>
<main>
<section>
<h2>Traffic per class <span class="small">(packets per second, last 5 minutes)</span></h2>
<svg id="chart" viewBox="0 0 900 260" role="img" aria-label="packets per class over time"></svg>
<table id="totals"><thead><tr><th>class</th><th>packets</th><th>alerts</th></tr></thead>
<tbody></tbody></table>
</section>
<section>
<h2>Alerts <span id="alert-count" class="small">0</span></h2>
<table id="alerts"><thead><tr><th>time (UTC)</th><th>class</th><th>score</th><th>client id</th>
<th>connection</th><th>evidence</th></tr></thead><tbody></tbody></table>
</section>
</main>
</body>
</html>
"""


def page(title: str) -> str:
    """The dashboard's HTML page; the title is escaped like any other value."""
    return _PAGE.format(title=html.escape(title, quote=True))


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header,main{max-width:1180px;margin:0 auto;padding:0 20px}header{padding-top:14px}
h1{display:inline-block;margin:0 12px 0 0}.small{font-size:12px;color:#5a6675;font-weight:400}
.status{padding:2px 8px;border-radius:10px;font-size:12px;color:#fff}
.status.ok{background:#2b7a3d}.status.bad{background:#b23a2e}.status.wait{background:#8a94a3}
svg{width:100%;max-width:900px;height:auto;background:#fff;border:1px solid #dde3ea}
svg text{font:11px system-ui,sans-serif;fill:#5a6675}svg .axis{stroke:#8a94a3}
svg .grid{stroke:#eef2f6}svg polyline{fill:none;stroke-width:1.6}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.wire{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
"""

_COLORS = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b")

SCRIPT = """"use strict";
(function () {
  const LABELS = %(labels)s;
  const COLORS = %(colors)s;
  const EXTRA = ["#b279a2", "#ff9da6", "#9d755d", "#bab0ac"];
  const WINDOW_S = 300, KEEP_S = 600, MAX_ROWS = 200;
  const SVG = "http://www.w3.org/2000/svg";
  const bins = new Map();
  let totals = {}, alertTotals = {}, drawTimer = null;
  const $ = (id) => document.getElementById(id);

  function color(label) {
    const i = LABELS.indexOf(label);
    if (i >= 0) return COLORS[i];
    let h = 0;
    for (const ch of label) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return EXTRA[h %% EXTRA.length];
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function endpoint(host, port) {
    if (host === null || host === undefined) return "?";
    const h = String(host).includes(":") ? "[" + host + "]" : String(host);
    return port === null || port === undefined ? h : h + ":" + port;
  }
  function clock(seconds) {
    return new Date(seconds * 1000).toISOString().substring(11, 19);
  }
  function when(text) {
    const d = new Date(text);
    return isNaN(d) ? String(text) : d.toISOString().replace("T", " ").replace("Z", "");
  }
  function ordered(names) {
    const known = LABELS.filter((x) => names.has(x));
    return known.concat([...names].filter((x) => !LABELS.includes(x)).sort());
  }
  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + kind;
  }

  function addAlert(a) {
    const tr = document.createElement("tr");
    tr.appendChild(cell(when(a.time)));
    tr.appendChild(cell(a.label, "label"));
    tr.appendChild(cell(typeof a.score === "number" ? a.score.toFixed(4) : "", "num"));
    tr.appendChild(cell(a.client_id, "wire client-id"));
    const known = a.src !== undefined && a.src !== null;
    tr.appendChild(cell(known ? endpoint(a.src, a.sport) + " \\u2192 " +
                        endpoint(a.dst, a.dport) : ""));
    tr.appendChild(cell(JSON.stringify(a.evidence === undefined ? null : a.evidence),
                        "wire small"));
    const body = $("alerts").tBodies[0];
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  }

  function drawTotals() {
    const body = $("totals").tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    const names = new Set(Object.keys(totals).concat(Object.keys(alertTotals)));
    let alerts = 0;
    for (const label of ordered(names)) {
      const tr = document.createElement("tr");
      const name = cell(label);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = color(label);
      name.insertBefore(swatch, name.firstChild);
      tr.appendChild(name);
      tr.appendChild(cell((totals[label] || 0).toLocaleString("en"), "num"));
      tr.appendChild(cell((alertTotals[label] || 0).toLocaleString("en"), "num"));
      body.appendChild(tr);
      alerts += alertTotals[label] || 0;
    }
    $("alert-count").textContent = alerts.toLocaleString("en");
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function svgEl(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawChart() {
    drawTimer = null;
    const svg = $("chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = 900, H = 260, L = 56, R = 12, T = 12, B = 28;
    if (bins.size === 0) {
      svg.appendChild(svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle"},
                            "waiting for traffic"));
      return;
    }
    const keys = [...bins.keys()];
    const tmax = Math.max(...keys);
    const tmin = Math.max(tmax - WINDOW_S + 1, Math.min(...keys));
    const span = Math.max(1, tmax - tmin);
    const names = new Set();
    let peak = 1;
    for (const [t, c] of bins) {
      if (t < tmin) continue;
      for (const k in c) { names.add(k); peak = Math.max(peak, c[k]); }
    }
    const ymax = niceCeil(peak);
    const x = (t) => L + (t - tmin) / span * (W - L - R);
    const y = (v) => H - B - v / ymax * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4, yy = y(v);
      svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: yy, y2: yy, class: "grid"}));
      svg.appendChild(svgEl("text", {x: L - 6, y: yy + 4, "text-anchor": "end"},
                            v.toLocaleString("en", {maximumFractionDigits: 1})));
      const t = Math.round(tmin + span * i / 4);
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      svg.appendChild(svgEl("text", {x: x(t), y: H - 8, "text-anchor": anchor}, clock(t)));
    }
    svg.appendChild(svgEl("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}));
    svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}));
    for (const label of ordered(names)) {
      const pts = [];
      for (let t = tmin; t <= tmax; t++) {
        const c = bins.get(t);
        pts.push(x(t).toFixed(1) + "," + y(c && c[label] ? c[label] : 0).toFixed(1));
      }
      const line = svgEl("polyline", {points: pts.join(" "), stroke: color(label)});
      line.appendChild(svgEl("title", {}, label));
      svg.appendChild(line);
    }
  }

  function schedule() {
    if (drawTimer === null) drawTimer = setTimeout(() => { drawChart(); drawTotals(); }, 200);
  }
  function trim() {
    if (bins.size === 0) return;
    const newest = Math.max(...bins.keys());
    for (const t of [...bins.keys()]) if (t < newest - KEEP_S) bins.delete(t);
  }

  const events = new EventSource("events");
  events.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    bins.clear();
    for (const [t, c] of s.bins) bins.set(t, c);
    totals = s.totals;
    alertTotals = s.alert_totals;
    const body = $("alerts").tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    for (const a of s.alerts) addAlert(a);
    drawChart();
    drawTotals();
  });
  events.addEventListener("alert", (e) => {
    const a = JSON.parse(e.data);
    const label = String(a.label);
    alertTotals[label] = (alertTotals[label] || 0) + 1;
    addAlert(a);
    schedule();
  });
  events.addEventListener("counts", (e) => {
    const m = JSON.parse(e.data);
    bins.set(m.t, m.counts);
    totals = m.totals;
    trim();
    schedule();
  });
  events.onopen = () => setStatus("live", "ok");
  events.onerror = () => setStatus("reconnecting", "bad");
})();
""" % {"labels": json.dumps(list(LABELS)), "colors": json.dumps(list(_COLORS))}
