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

  function draw(id, series, now) {
    const svg = document.getElementById("chart-" + id);
    if (!svg) return;
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const W = 600, H = 160, from = now - 3600;
    let max = 0;
    for (const s of series) for (const p of s.points) max = Math.max(max, p[1]);
    max = max > 0 ? max : 1;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4");
    label.setAttribute("y", "12");
    label.textContent = "max " + (Math.round(max * 100) / 100);
    svg.appendChild(label);
    series.forEach((s, k) => {
      if (s.points.length === 0) return;
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("stroke", COLORS[k % COLORS.length]);
      line.setAttribute("points", s.points.map((p) =>
        ((p[0] - from) / 3600 * W).toFixed(1) + "," + (H - 4 - p[1] / max * (H - 20)).toFixed(1)).join(" "));
      const title = document.createElementNS(ns, "title");
      title.textContent = s.name;
      line.appendChild(title);
      svg.appendChild(line);
      const key = document.createElementNS(ns, "text");
      key.setAttribute("x", String(W - 4));
      key.setAttribute("y", String(12 + 12 * k));
      key.setAttribute("text-anchor", "end");
      key.setAttribute("fill", COLORS[k % COLORS.length]);
      key.textContent = s.name;
      svg.appendChild(key);
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
    draw("calls", calls, data.time);
    draw("denials", denials, data.time);
    draw("contained", contained, data.time);
    draw("lag", lag, data.time);
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
