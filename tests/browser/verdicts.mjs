// One verdict, two verifiers: the saved proof viewer (one self-contained
// HTML file, opened from file:// in Debian's Chromium with the network off)
// verifies every case of CASES_JSON; its verdicts are written to OUT_JSON
// for crates/modelgate/tests/proof_viewer.rs to compare with the CLI's.
//
// It also drives the viewer's form once as a person would (paste, Verify,
// read the verdict), and fails when the page makes any request at all.
//
// usage: node verdicts.mjs VIEWER_HTML CASES_JSON OUT_JSON [SCREENSHOT]
// A case: {kind: "tlog-proof" | "checkpoint", proof, entry (base64 bytes),
// leaf_hash (hex, optional), log_key, witnesses: [..], quorum}, or
// {kind: "lineage", proof, trust_root (base64 bytes), full}. For lineage
// proofs it also times the verification of each valid full-chain proof.
// Exit 0 when the page ran every case; 1 otherwise (printed).

import { launchChromium } from "./chromium.mjs";
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [viewer, casesFile, outFile, shot] = process.argv.slice(2);
if (!viewer || !casesFile || !outFile) {
  console.error("usage: node verdicts.mjs VIEWER_HTML CASES_JSON OUT_JSON [SCREENSHOT]");
  process.exit(2);
}
const cases = JSON.parse(readFileSync(casesFile, "utf8"));
const fileUrl = pathToFileURL(viewer).href;

const browser = await launchChromium();
const context = await browser.newContext({ offline: true, viewport: { width: 1100, height: 1400 } });
const page = await context.newPage();
const requests = [];
const errors = [];
page.on("request", (r) => { if (r.url() !== fileUrl) requests.push(r.url()); });
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) errors.push("CSP: " + m.text()); });
await page.goto(fileUrl, { waitUntil: "load" });

let failed = false;
const status = await page.textContent("#status");
if (!/Ready/.test(status)) { console.log("FAIL the viewer's script did not start: " + status); failed = true; }

// As a person would: the first valid tlog-proof pasted into the form.
const first = cases.find((c) => c.kind === "tlog-proof" && c.expect_valid);
if (first) {
  const text = (b64) => Buffer.from(b64, "base64").toString("utf8");
  await page.fill("#proof", text(first.proof));
  await page.fill("#entry", text(first.entry));
  await page.fill("#logkey", first.log_key);
  await page.fill("#witnesses", first.witnesses.join("\n"));
  await page.fill("#quorum", String(first.quorum));
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.getElementById("verdict").textContent !== "");
  const verdict = await page.textContent("#verdict");
  const checks = await page.$$eval("#checks li", (l) => l.map((x) => x.textContent));
  console.log((/^Valid/.test(verdict) ? "ok   " : "FAIL ") + "the form verifies a pasted proof: " + verdict);
  if (!/^Valid/.test(verdict) || !checks.some((c) => /passed: inclusion/.test(c))) failed = true;
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  // One byte of the proof changed: the form says not valid.
  const bad = text(first.proof).replace(/index (\d+)/, (_, n) => "index " + (Number(n) + 1));
  await page.fill("#proof", bad);
  await page.click("button[type=submit]");
  await page.waitForFunction(() => /Not valid/.test(document.getElementById("verdict").textContent));
  console.log("ok   the form refuses a changed index");
}

// A full-chain lineage proof pasted as a person would, against the trust
// root the saved viewer came with (left as downloaded).
const lineage = cases.find((c) => c.kind === "lineage" && c.expect_valid && c.full);
if (lineage) {
  const text = (b64) => Buffer.from(b64, "base64").toString("utf8");
  const prefilled = await page.inputValue("#trustroot");
  if (prefilled !== text(lineage.trust_root)) {
    console.log("FAIL the saved viewer is not prefilled with the pinned trust root");
    failed = true;
  }
  await page.fill("#proof", text(lineage.proof));
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.getElementById("verdict").textContent !== "");
  const verdict = await page.textContent("#verdict");
  const checks = await page.$$eval("#checks li", (l) => l.map((x) => x.textContent));
  const ok = /^Valid/.test(verdict) && ["grant", "registration", "policy set", "anchor"].every((n) => checks.some((c) => c.startsWith("passed: " + n)));
  console.log((ok ? "ok   " : "FAIL ") + "the form verifies a pasted full-chain proof: " + verdict + "\n     " + checks.join("\n     "));
  if (!ok) failed = true;
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  const bad = text(lineage.proof).replace(/"scope": "prod\/credit\/scoring"/, '"scope": "prod/credit/other"');
  await page.fill("#proof", bad);
  await page.click("button[type=submit]");
  await page.waitForFunction(() => /Not valid/.test(document.getElementById("verdict").textContent));
  console.log("ok   the form refuses a changed readable copy: " + (await page.$$eval("#checks li.fail", (l) => l.map((x) => x.textContent).join(" "))));
}

const verdicts = await page.evaluate(async (cases) => {
  const V = globalThis.modelgateVerify;
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const out = [];
  for (const c of cases) {
    let r;
    if (c.kind === "lineage") {
      r = await V.verifyLineageProof(bytes(c.proof), bytes(c.trust_root));
    } else if (c.kind === "tlog-proof") {
      const leaf = c.leaf_hash ? { hash: c.leaf_hash } : { entry: bytes(c.entry) };
      r = await V.verifyTlogProof(bytes(c.proof), leaf, c.log_key, c.witnesses, c.quorum);
    } else {
      r = await V.verifyCheckpoint(bytes(c.proof), c.log_key, c.witnesses, c.quorum);
    }
    const failedStep = r.steps.find((s) => !s.ok);
    out.push({ valid: r.ok, reason: failedStep ? failedStep.detail : "" });
  }
  return out;
}, cases);
writeFileSync(outFile, JSON.stringify(verdicts));

// In-browser time of one full-chain verification (every link, WebCrypto).
const timed = cases.filter((c) => c.kind === "lineage" && c.expect_valid && c.full);
if (timed.length) {
  const ms = await page.evaluate(async (cases) => {
    const V = globalThis.modelgateVerify;
    const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const out = [];
    for (let round = 0; round < 20; round++) {
      for (const c of cases) {
        const p = bytes(c.proof), t = bytes(c.trust_root);
        const start = performance.now();
        const r = await V.verifyLineageProof(p, t);
        // A proof the browser refuses is a disagreement the test reports.
        if (r.ok) out.push(performance.now() - start);
      }
    }
    return out;
  }, timed);
  if (ms.length === 0) ms.push(NaN);
  ms.sort((a, b) => a - b);
  const q = (f) => ms[Math.min(ms.length - 1, Math.floor(f * ms.length))].toFixed(1);
  const size = Math.max(...timed.map((c) => Buffer.from(c.proof, "base64").length));
  console.log(`full-chain verification in the browser: ${ms.length} runs, median ${q(0.5)} ms, p99 ${q(0.99)} ms (proofs up to ${size} bytes)`);
}

if (requests.length) { console.log("FAIL the viewer made requests: " + requests.join(", ")); failed = true; }
if (errors.length) { console.log("FAIL page errors: " + errors.join("; ")); failed = true; }
console.log(`${verdicts.length} verdicts, ${verdicts.filter((v) => v.valid).length} valid`);
await browser.close();
process.exit(failed ? 1 : 0);
