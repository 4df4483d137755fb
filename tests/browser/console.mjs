// The console in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Started by crates/modelgate/tests/browser.rs against a
// scripted world (a dev authority, a node serving a model with a hostile
// name, a hostile exception and policy). It loads every page and checks what
// each shows, that hostile values are text and never markup, that nothing
// runs that we did not write (no dialog, no injected element), runs axe-core
// for accessibility (no serious or critical violation), follows a
// containment live on the dashboard, and saves screenshots when asked.
//
// usage: node console.mjs CONSOLE_URL MODEL_FILE [SCREENSHOT_DIR]
// Exit 0 when every check passed; otherwise each failure is printed and the
// exit code is 1.

import { checks, launchChromium } from "./chromium.mjs";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const [url, modelFile, shots] = process.argv.slice(2);
if (!url || !modelFile) {
  console.error("usage: node console.mjs CONSOLE_URL MODEL_FILE [SCREENSHOT_DIR]");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const axeSource = readFileSync(join(here, "node_modules/axe-core/axe.min.js"), "utf8");
const HOSTILE = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "<script>alert(3)</script>"];

const { check, finish } = checks();

const browser = await launchChromium();

// Two contexts: the console as any visitor sees it (its CSP enforced), and
// one that lets axe-core's script in (the CSP refuses any script we did not
// serve, which is the point).
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const axeContext = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
const dialogs = [];
const cspViolations = [];

async function open(ctx, path) {
  const page = await ctx.newPage();
  page.on("dialog", async (d) => { dialogs.push(path + ": " + d.message()); await d.dismiss(); });
  page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) cspViolations.push(path + ": " + m.text()); });
  const resp = await page.goto(url.replace(/\/$/, "") + path, { waitUntil: "load" });
  return { page, status: resp.status() };
}

async function noInjection(page, path) {
  const injected = await page.evaluate(() => ({
    imgs: document.querySelectorAll("img").length,
    scripts: [...document.scripts].map((s) => s.src || "inline"),
    handlers: [...document.querySelectorAll("*")].filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
  }));
  check(injected.imgs === 0, `${path}: no injected <img>`);
  const ours = (s) => ["/assets/console.js", "/assets/verify.js", "/assets/lineage.js", "/assets/viewer.js"].some((a) => s.endsWith(a));
  check(injected.scripts.length >= 1 && injected.scripts[0].endsWith("/assets/console.js") && injected.scripts.every(ours),
    `${path}: only the console's own scripts (${injected.scripts.join(", ")})`);
  check(injected.handlers === 0, `${path}: no element with an on* attribute`);
}

async function axe(path) {
  const { page } = await open(axeContext, path);
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `${path}: axe-core finds no serious or critical violation` +
    (bad.length ? " (" + bad.map((v) => v.id + ": " + v.nodes.length).join(", ") + ")" : ""));
  await page.close();
}

const pages = [
  ["/", "overview", ["Origin", "localhost/modelgate-dev", "Models registered", "Healthy"]],
  ["/models", "models", [HOSTILE[0], "dev-signer", "Approved"]],
  ["/policies", "policies", ["(in force)", HOSTILE[2], "Changes from version 1", "dev-policy-admin"]],
  ["/trust-root", "trust-root", ["Version 2 (in force)", "dev-approver-1", "root-1", "Thresholds"]],
  ["/entries", "log", ["trust-root", "policy-set", "approval", "exception", "node-enrollment"]],
  ["/entries/1", "entry", ["Payload", "tlog-proof", "root-1"]],
  ["/health", "health", ["Serving", "AuditVerified", "Calls per second"]],
  ["/lineage", "lineage", ["Lineage id", HOSTILE[0], "allowed", "dev-caller"]],
  ["/lineage?since=yesterday", null, ["is not a time", "Lineage id"]],
  ["/proof?index=1", "proof", ["Keys you trust", "The log's verifier key", "Ready: verification runs in this page."]],
];

for (const [path, name, wants] of pages) {
  const { page, status } = await open(context, path);
  const want = name === null ? 400 : 200;
  check(status === want, `${path}: ${want} (got ${status})`);
  const text = await page.evaluate(() => document.body.innerText);
  for (const w of wants) check(text.includes(w), `${path}: shows ${JSON.stringify(w)}`);
  await noInjection(page, path);
  if (shots && name !== null) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  }
  await page.close();
  await axe(path);
}

// A call's record, reached from the explorer: its chain, each link named.
{
  const { page } = await open(context, "/lineage");
  await page.locator("td a[href*='/lineage/']").first().click();
  await page.waitForLoadState("load");
  const text = await page.evaluate(() => document.body.innerText);
  for (const w of ["Its chain", "Record in the node's lineage log", "Node enrollment", "Model registration", "Approval", "Policy set in force", "Trust root in force"]) {
    check(text.includes(w), `lineage record: shows ${JSON.stringify(w)}`);
  }
  check(text.includes(HOSTILE[0]), "lineage record: the hostile model name shown as text");
  await noInjection(page, "lineage record");
  if (shots) await page.screenshot({ path: join(shots, "lineage-record.png"), fullPage: true });
  const recordPath = new URL(page.url()).pathname;
  // Its full-chain proof, verified in this browser from the record's link
  // (once the node has anchored the call: 409 until then).
  const href = await page.getByRole("link", { name: "in your browser" }).getAttribute("href");
  let status = 0;
  for (let tries = 0; tries < 60 && status !== 200; tries++) {
    if (tries) await page.waitForTimeout(500);
    status = (await page.goto(new URL(href, page.url()).href, { waitUntil: "load" })).status();
  }
  check(status === 200, `the record's proof in the viewer: ${status}`);
  await page.click("#viewer button[type=submit]");
  await page.waitForFunction(() => document.getElementById("verdict").textContent !== "");
  const verdict = await page.textContent("#verdict");
  check(/^Valid: the lineage proof/.test(verdict), `the record's full-chain proof verifies in the console's viewer: ${verdict}`);
  await page.close();
  await axe(recordPath);
}

// The model page, reached by following the link from the models list, shows the hostile exception as text.
{
  const { page } = await open(context, "/models");
  await page.getByRole("link", { name: HOSTILE[0] }).click();
  await page.waitForLoadState("load");
  const text = await page.evaluate(() => document.body.innerText);
  check(text.includes(HOSTILE[1]) && text.includes(HOSTILE[2]), "model page: the exception's ticket and reason shown as text");
  check(text.includes("dev-approver-1"), "model page: the approver named");
  await noInjection(page, "model page");
  if (shots) await page.screenshot({ path: join(shots, "model.png"), fullPage: true });
  await page.close();
}

// The dashboard's charts: the time axis spans the samples held, so a series
// fills the chart's width; tick labels are readable (at least 11 CSS pixels)
// and carry units; a legend names each series; a model shows its real step.
{
  const { page } = await open(context, "/health");
  let drawn = true;
  try {
    await page.waitForFunction(() => (document.querySelector("#chart-contained polyline")?.points?.length || 0) >= 2,
      null, { timeout: 30000, polling: 250 });
  } catch (e) {
    drawn = false;
  }
  check(drawn, "dashboard: the contained-models chart has two samples or more");
  const c = await page.evaluate(() => {
    const svg = document.getElementById("chart-contained");
    const vb = svg.viewBox.baseVal;
    const xs = [...svg.querySelector("polyline")?.points || []].map((p) => p.x);
    const ticks = [...document.querySelectorAll("svg.chart text.tick")];
    return {
      width: vb.width,
      rendered: svg.clientWidth,
      extent: xs.length ? (Math.max(...xs) - Math.min(...xs)) / (vb.width - 88) : 0,
      smallest: Math.min(...ticks.map((t) => parseFloat(getComputedStyle(t).fontSize) * svg.clientWidth / vb.width)),
      labels: ticks.map((t) => t.textContent),
      legend: [...svg.parentElement.querySelectorAll(".legend li")].map((l) => l.textContent),
      models: document.querySelector("tr[data-node] .models")?.innerText || "",
      clipped: [...document.querySelectorAll("svg.chart")].flatMap((g) => {
        const box = g.getBoundingClientRect();
        return [...g.querySelectorAll("text.tick")].filter((t) => {
          const r = t.getBoundingClientRect();
          return r.left < box.left || r.right > box.right;
        }).map((t) => t.textContent);
      }),
    };
  });
  check(Math.abs(c.width - c.rendered) < 2, `dashboard: a chart is drawn at its rendered size (${c.width} of ${c.rendered} px inside its border)`);
  check(c.extent >= 0.4, `dashboard: the series spans ${Math.round(c.extent * 100)}% of the chart's width`);
  check(c.smallest >= 11, `dashboard: tick labels are ${c.smallest.toFixed(1)} px or more`);
  check(c.labels.some((l) => l.endsWith("UTC")) && c.labels.some((l) => l.endsWith(" models")), `dashboard: ticks with units (${c.labels.join(", ")})`);
  check(!c.labels.some((l) => /^\d+\.\d+ (models|entries)$/.test(l)), "dashboard: counts are ticked in whole numbers");
  check(c.clipped.length === 0, `dashboard: every tick label inside its chart (${c.clipped.join(", ")})`);
  check(c.legend.length >= 1, `dashboard: a legend names the series (${c.legend.join(", ")})`);
  check(/step 10 AuditVerified/.test(c.models), `dashboard: the real lifecycle step (${c.models})`);
  if (shots) await page.screenshot({ path: join(shots, "health.png"), fullPage: true });
  await page.close();
}

// Without JavaScript the dashboard is still complete.
{
  const ctx = await browser.newContext({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await page.goto(url.replace(/\/$/, "") + "/health");
  const text = await page.evaluate(() => document.body.innerText);
  check(text.includes("Serving") && text.includes("healthy"), "health without JavaScript: node and model state shown");
  await ctx.close();
}

// A containment, live: one changed byte in the model file, and the open
// dashboard shows the node containing, with the reason, by itself.
{
  const { page } = await open(context, "/health");
  await page.waitForFunction(() => document.querySelector("tr[data-node] .status")?.innerText === "healthy", null, { timeout: 10000 });
  const original = readFileSync(modelFile);
  const changed = Buffer.from(original);
  changed[0] ^= 1;
  const started = Date.now();
  writeFileSync(modelFile, changed);
  let seen = null;
  try {
    await page.waitForFunction(() => {
      const row = document.querySelector("tr[data-node]");
      return row && row.querySelector(".status").innerText === "containing" &&
        row.querySelector(".models").innerText.includes("UnauthorizedModification");
    }, null, { timeout: 10000, polling: 50 });
    seen = Date.now() - started;
  } catch (e) {
    seen = null;
  }
  check(seen !== null, `dashboard: the containment appeared live (${seen} ms after the change)`);
  check(seen !== null && seen <= 2000, `dashboard: within 2 s of the change (${seen} ms)`);
  if (shots) await page.screenshot({ path: join(shots, "health-contained.png"), fullPage: true });
  writeFileSync(modelFile, original);
  try {
    await page.waitForFunction(() => document.querySelector("tr[data-node] .models")?.innerText.includes("Serving"), null, { timeout: 20000, polling: 100 });
    check(true, "dashboard: restored, the model is Serving again");
  } catch (e) {
    check(false, "dashboard: restored, the model is Serving again");
  }
  await page.close();
}

check(dialogs.length === 0, `no dialog opened (${dialogs.join("; ")})`);
check(cspViolations.length === 0, `no Content-Security-Policy violation (${cspViolations.join("; ")})`);
await browser.close();
finish();
