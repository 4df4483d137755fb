// modelgate console: live updates of the health dashboard and the overview,
// and the dashboard's charts. Every value goes into the page as text
// (textContent, createElementNS), never as markup.
"use strict";

(function () {
  const body = document.body;
  const live = body.dataset.live;
  if (!live) return;
  const prefix = body.dataset.prefix || "";
  const COLORS = ["#0550ae", "#a40e26", "#116329", "#7d4e00", "#8250df", "#1b7c83"];

  function text(el, value) {
    if (el) el.textContent = value;
  }

  function ago(s) {
    if (s === null || s === undefined) return "never";
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

  function stateSpan(state, reason, decision) {
    const frag = document.createDocumentFragment();
    const span = document.createElement("span");
    span.className = "state " + String(state || "unknown").toLowerCase();
    span.textContent = state || "Unknown";
    frag.appendChild(span);
    if (reason) frag.appendChild(document.createTextNode(" " + reason));
    if (decision) frag.appendChild(document.createTextNode(" (" + decision + ")"));
    return frag;
  }

  function updateRow(row, n) {
    const cell = (c) => row.querySelector("." + c);
    const status = cell("status");
    if (status) {
      status.replaceChildren();
      const s = document.createElement("span");
      s.className = "state " + n.status;
      s.textContent = n.status;
      status.appendChild(s);
    }
    text(cell("heartbeat"), ago(n.heartbeat_age));
    text(cell("lag"), n.lag === null ? "" : n.lag + " entries");
    text(cell("staleness"), n.staleness === null ? "" : n.staleness + " s");
    text(cell("lineage"), n.lineage_size === null ? "" : n.lineage_size + " lineage records");
    const models = cell("models");
    if (models) {
      models.replaceChildren();
      for (const m of n.models) {
        const div = document.createElement("div");
        div.appendChild(document.createTextNode(m.name + ": "));
        div.appendChild(stateSpan(m.state, m.reason, m.decision));
        div.appendChild(document.createTextNode(" · step " + (m.step_number || 0) + " " + (m.step || "")));
        models.appendChild(div);
      }
    }
  }

  // Per-second rates from cumulative counters.
  function rates(h, pick) {
    const out = [];
    for (let i = 1; i < h.length; i++) {
      const dt = h[i].time - h[i - 1].time;
      if (dt > 0) out.push([h[i].time, Math.max(0, (pick(h[i]) - pick(h[i - 1])) / dt)]);
    }
    return out;
  }

  // A step of 1, 2 or 5 times a power of ten that cuts `max` into about `n` parts.
  function niceStep(max, n) {
    const raw = max / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    const two = (x) => String(x).padStart(2, "0");
    return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds());
  }

  function el(ns, name, attrs, textValue) {
    const e = document.createElementNS(ns, name);
    for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    if (textValue !== undefined) e.textContent = textValue;
    return e;
  }

  // A chart whose time axis spans the samples held (at least 20 s, at
  // most the hour kept), so the series fill its width and it grows as
  // samples come; drawn at the size the page gives it, so its labels are
  // read at their real size.
  function draw(id, series, now, unit) {
    const svg = document.getElementById("chart-" + id);
    if (!svg) return;
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const W = Math.max(240, Math.round(svg.clientWidth || 600));
    const H = Math.max(140, Math.round(svg.clientHeight || 180));
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const left = 76, right = 12, top = 10, bottom = 24;
    let first = now, max = 0;
    for (const s of series) for (const p of s.points) {
      first = Math.min(first, p[0]);
      max = Math.max(max, p[1]);
    }
    const span = Math.min(3600, Math.max(20, now - first));
    const from = now - span;
    // Counts (models, entries) are ticked in whole numbers.
    const whole = unit !== "/s";
    const step = whole ? Math.max(1, Math.round(niceStep(max > 0 ? max : 1, 3))) : niceStep(max > 0 ? max : 1, 3);
    const top_value = Math.max(step, Math.ceil((max > 0 ? max : 1) / step) * step);
    const x = (t) => left + (t - from) / span * (W - left - right);
    const y = (v) => H - bottom - v / top_value * (H - top - bottom);
    for (let v = 0; v <= top_value + step / 2; v += step) {
      svg.appendChild(el(ns, "line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
      const shown = Math.round(v * 100) / 100;
      svg.appendChild(el(ns, "text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, shown + (v === 0 ? "" : " " + unit)));
    }
    for (let k = 0; k <= 2; k++) {
      const t = from + span * k / 2;
      svg.appendChild(el(ns, "text", { x: x(t), y: H - 6, "text-anchor": k === 0 ? "start" : k === 2 ? "end" : "middle", class: "tick" },
        clock(t) + (k === 2 ? " UTC" : "")));
    }
    const legend = svg.parentElement && svg.parentElement.querySelector(".legend");
    if (legend) legend.replaceChildren();
    series.forEach((s, k) => {
      const color = COLORS[k % COLORS.length];
      if (legend) {
        const li = document.createElement("li");
        const swatch = document.createElement("span");
        // A class, not a style attribute: the CSP allows no inline style.
        swatch.className = "swatch c" + (k % COLORS.length);
        li.appendChild(swatch);
        li.appendChild(document.createTextNode(s.name));
        legend.appendChild(li);
      }
      const pts = s.points.filter((p) => p[0] >= from);
      if (pts.length === 0) return;
      const line = el(ns, "polyline", { stroke: color,
        points: pts.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") });
      line.appendChild(el(ns, "title", {}, s.name));
      svg.appendChild(line);
    });
  }

  function charts(data) {
    const calls = [], denials = [], contained = [], lag = [];
    const reasons = {};
    for (const n of data.nodes) {
      const h = n.history || [];
      calls.push({ name: n.id, points: rates(h, (s) => s.requests) });
      contained.push({ name: n.id, points: h.map((s) => [s.time, s.contained]) });
      lag.push({ name: n.id, points: h.filter((s) => s.lag !== null).map((s) => [s.time, s.lag]) });
      for (const s of h) for (const r of Object.keys(s.denials)) reasons[r] = true;
    }
    for (const r of Object.keys(reasons).sort()) {
      let points = [];
      for (const n of data.nodes) {
        points = points.concat(rates(n.history || [], (s) => s.denials[r] || 0));
      }
      points.sort((a, b) => a[0] - b[0]);
      denials.push({ name: r, points });
    }
    draw("calls", calls, data.time, "/s");
    draw("denials", denials, data.time, "/s");
    draw("contained", contained, data.time, "models");
    draw("lag", lag, data.time, "entries");
  }

  async function tick() {
    try {
      const r = await fetch(prefix + "/health.json", { cache: "no-store" });
      if (!r.ok) return;
      const data = await r.json();
      if (live === "health") {
        text(document.getElementById("authority-size"), String(data.size));
        for (const n of data.nodes) {
          const row = document.querySelector('tr[data-node="' + CSS.escape(n.id) + '"]');
          if (row) updateRow(row, n);
        }
        charts(data);
      } else if (live === "overview") {
        text(document.getElementById("log-size"), data.size + " entries");
        text(document.getElementById("models-registered"), String(data.models.registered));
        text(document.getElementById("models-serving"), String(data.models.serving));
        text(document.getElementById("models-contained"), String(data.models.contained));
        const count = (s) => data.nodes.filter((n) => n.status === s).length;
        text(document.getElementById("nodes-healthy"), String(count("healthy")));
        text(document.getElementById("nodes-stale"), String(count("stale") + count("silent")));
        text(document.getElementById("nodes-containing"), String(count("containing")));
      }
    } catch (e) {
      // The next tick tries again; the page as served stays readable.
    }
  }

  tick();
  setInterval(tick, 500);
})();
