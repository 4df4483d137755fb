// The proof viewer's page: reads what a person pasted or dropped, runs
// verify.js on it, and shows each check passed or failed with its reason.
// It sends nothing anywhere: every byte stays in this page.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("viewer");
  if (!form) return;
  const V = globalThis.modelgateVerify;

  // A file's exact bytes are what is verified (a text field may change
  // line endings); they are dropped as soon as the field is edited.
  const loaded = new Map();
  async function load(id, f) {
    const bytes = new Uint8Array(await f.arrayBuffer());
    $(id).value = new TextDecoder().decode(bytes);
    loaded.set(id, bytes);
  }
  const valueOf = (id) => loaded.get(id) || $(id).value;
  for (const id of ["proof", "entry", "trustroot"]) {
    const area = $(id);
    area.addEventListener("input", () => loaded.delete(id));
    area.addEventListener("dragover", (e) => e.preventDefault());
    area.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer.files[0]) load(id, e.dataTransfer.files[0]);
    });
    $(id + "-file").addEventListener("change", (e) => {
      if (e.target.files[0]) load(id, e.target.files[0]);
    });
  }

  function show(r, kind) {
    const list = $("checks");
    list.replaceChildren();
    for (const s of r.steps) {
      const li = document.createElement("li");
      li.className = s.ok ? "pass" : "fail";
      const mark = document.createElement("strong");
      mark.textContent = (s.ok ? "passed: " : "FAILED: ") + s.name;
      li.append(mark, document.createTextNode(" — " + s.detail));
      list.append(li);
    }
    const verdict = $("verdict");
    verdict.className = r.ok ? "pass" : "fail";
    verdict.textContent = r.ok
      ? `Valid: the ${kind} verifies with the ${kind === "lineage proof" ? "trust root" : "keys"} above, in this browser, with no request to any server.`
      : `Not valid: the ${kind} does not verify (the first failed check is marked).`;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const proof = valueOf("proof");
    const witnesses = $("witnesses").value.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    const q = $("quorum").value.trim();
    const quorum = q === "" ? null : Number(q);
    const logKey = $("logkey").value;
    const head = typeof proof === "string" ? proof : new TextDecoder().decode(proof.slice(0, 32));
    if (head.trimStart().startsWith("{")) {
      // A lineage proof (JSON): checked against the pinned trust root.
      const bytes = (x) => (typeof x === "string" ? new TextEncoder().encode(x) : x);
      const trustRoot = bytes(valueOf("trustroot"));
      if (trustRoot.length === 0) {
        show({ ok: false, steps: [{ name: "trust root", ok: false,
          detail: "a lineage proof is checked against the trust root you pinned (the governance log's entry 0): paste or drop it below" }] },
          "lineage proof");
        return;
      }
      show(await V.verifyLineageProof(bytes(proof), trustRoot), "lineage proof");
      return;
    }
    const isTlogProof = head.startsWith("c2sp.org/tlog-proof@v1\n");
    let r;
    if (isTlogProof) {
      const leafHex = $("leafhash").value.trim();
      const leaf = leafHex !== "" ? { hash: leafHex } : { entry: valueOf("entry") };
      r = await V.verifyTlogProof(proof, leaf, logKey, witnesses, quorum);
    } else {
      r = await V.verifyCheckpoint(proof, logKey, witnesses, quorum);
    }
    show(r, isTlogProof ? "tlog-proof" : "checkpoint");
  });
  $("status").textContent = "Ready: verification runs in this page.";
})();
