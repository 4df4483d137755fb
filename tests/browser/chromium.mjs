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

// Named checks, each printed as it is made; finish() exits 1 when any
// failed (saying how many), else prints that every check passed.
export function checks() {
  const failures = [];
  return {
    check(ok, what) {
      if (!ok) failures.push(what);
      console.log((ok ? "ok   " : "FAIL ") + what);
    },
    finish() {
      if (failures.length) {
        console.log(`${failures.length} check(s) failed`);
        process.exit(1);
      }
      console.log("every browser check passed");
    },
  };
}
