// One console page in a real browser: Debian's Chromium, headless, with the
// console's Content-Security-Policy enforced. Checks that the page answers
// 200 and that each TEXT is shown on it (in what a person reads, after any
// script ran), that no dialog opens and no CSP violation is reported.
// Used by crates/modelgate/tests/keyless.rs for the keyless model page.
//
// usage: node page.mjs PAGE_URL TEXT...
// Exit 0 when every check passed; otherwise each failure is printed and the
// exit code is 1.

import { checks, launchChromium } from "./chromium.mjs";

const [url, ...texts] = process.argv.slice(2);
if (!url || texts.length === 0) {
  console.error("usage: node page.mjs PAGE_URL TEXT...");
  process.exit(2);
}
const { check, finish } = checks();

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const dialogs = [];
const csp = [];
page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) csp.push(m.text()); });
const resp = await page.goto(url, { waitUntil: "load" });
check(resp.status() === 200, `${url} answers ${resp.status()}`);
const shown = await page.innerText("body");
for (const t of texts) check(shown.includes(t), `the page shows ${JSON.stringify(t)}`);
check(dialogs.length === 0, `no dialog opened (${dialogs.join("; ")})`);
check(csp.length === 0, `no Content-Security-Policy violation (${csp.join("; ")})`);
await browser.close();
finish();
