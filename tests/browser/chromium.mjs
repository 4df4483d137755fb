// Debian's Chromium, headless, as every browser test here starts it:
// $CHROMIUM or /usr/bin/chromium, no sandbox, no GPU, no QUIC, no
// background networking, component updates or sync. playwright-core's
// launch() gives it a fresh temporary --user-data-dir of its own.
import { chromium } from "playwright-core";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
