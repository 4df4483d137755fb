// modelgate's proof verifier for the browser: C2SP signed notes and
// checkpoints, timestamped cosignatures, RFC 6962 inclusion proofs and C2SP
// tlog-proofs, with WebCrypto's SHA-256 and Ed25519 and nothing else. It
// makes no request of any kind. Its rules are modelgate-tlog's, line for
// line (a differential test holds them to the same verdicts as
// `modelgate log verify-proof` and `modelgate log verify-checkpoint`).
//
// Every check returns a list of steps {name, ok, detail}; the verdict is
// valid only when every step passed.
"use strict";
(function (root) {
  const enc = new TextEncoder();
  const MAX_NOTE_BYTES = 1 << 20;
  const MAX_SIGNATURES = 100;
  const MAX_PROOF_HASHES = 64;
  const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";
  const SIG_PREFIX = "\u2014 ";
  const U64_MAX = (1n << 64n) - 1n;
  const I64_MAX = (1n << 63n) - 1n;

  class Refused extends Error {}
  const refuse = (m) => { throw new Refused(m); };

  // Canonical padded base64 only, as the Rust side's STANDARD engine:
  // no whitespace, padding exactly where due, zero trailing bits.
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function b64decode(s) {
    if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*(={0,2})$/.test(s)) return null;
    const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
    const n = (s.length / 4) * 3 - pad;
    const out = new Uint8Array(n);
    let o = 0;
    for (let i = 0; i < s.length; i += 4) {
      const v = [0, 1, 2, 3].map((k) => (s[i + k] === "=" ? 0 : B64.indexOf(s[i + k])));
      const w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
      if (o < n) out[o++] = (w >> 16) & 255;
      if (o < n) out[o++] = (w >> 8) & 255;
      if (o < n) out[o++] = w & 255;
    }
    return b64encode(out) === s ? out : null;
  }
  function b64encode(b) {
    let s = "";
    for (let i = 0; i < b.length; i += 3) {
      const w = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
      s += B64[(w >> 18) & 63] + B64[(w >> 12) & 63];
      s += i + 1 < b.length ? B64[(w >> 6) & 63] : "=";
      s += i + 2 < b.length ? B64[w & 63] : "=";
    }
    return s;
  }
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  function unhex(s) {
    if (!/^[0-9a-fA-F]*$/.test(s) || s.length % 2) return null;
    return Uint8Array.from(s.match(/../g) || [], (x) => parseInt(x, 16));
  }
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  const leafHash = (entry) => sha256(concat(Uint8Array.of(0), entry));
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

  // A decimal without sign or leading zero that fits in 64 bits.
  function parseDecimal(s) {
    if (!/^(0|[1-9][0-9]*)$/.test(s)) return null;
    const v = BigInt(s);
    return v > U64_MAX ? null : v;
  }
  function parseHash(s) {
    const b = b64decode(s);
    return b && b.length === 32 ? b : null;
  }
  function utf8(bytes) {
    try { return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes); } catch { return null; }
  }
  const controlChar = (s) => { for (const c of s) if (c < " " && c !== "\n") return c; return null; };
  const validKeyName = (n) => n.length > 0 && !/[\s+\p{Cc}]/u.test(n);

  async function keyId(name, type, key) {
    const d = await sha256(concat(enc.encode(name + "\n"), Uint8Array.of(type), key));
    return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
  }

  // A verifier key string `name+id+base64(type || key)`: Ed25519 (0x01) or
  // a cosignature/v1 key (0x04).
  async function parseVerifierKey(s) {
    const a = s.indexOf("+");
    if (a < 0) refuse("missing key id");
    const name = s.slice(0, a);
    const rest = s.slice(a + 1);
    const b = rest.indexOf("+");
    if (b < 0) refuse("missing key material");
    const idHex = rest.slice(0, b);
    const material = rest.slice(b + 1);
    if (!validKeyName(name)) refuse(`invalid key name ${JSON.stringify(name)}`);
    if (!/^[0-9a-f]{8}$/.test(idHex)) refuse(`key id ${JSON.stringify(idHex)} is not 8 lowercase hex digits`);
    const raw = b64decode(material);
    if (!raw) refuse("key material is not base64");
    if (raw.length === 0) refuse("empty key material");
    const type = raw[0];
    if (type !== 1 && type !== 4) refuse(`unsupported signature type 0x${type.toString(16).padStart(2, "0")}`);
    const key = raw.slice(1);
    if (key.length !== 32) refuse(`Ed25519 key is ${key.length} bytes, want 32`);
    const id = parseInt(idHex, 16) >>> 0;
    if ((await keyId(name, type, key)) !== id) refuse(`key id ${idHex} does not match the name and key`);
    let cryptoKey;
    try {
      cryptoKey = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    } catch {
      refuse("Ed25519 public key is not a valid point");
    }
    return { name, id, type, key, cryptoKey, text: s };
  }

  async function ed25519(key, msg, sig) {
    if (sig.length !== 64) return false;
    try { return await crypto.subtle.verify({ name: "Ed25519" }, key.cryptoKey, sig, msg); } catch { return false; }
  }

  // The signature's timestamp for a cosignature, null for a plain one;
  // undefined when it does not verify.
  async function verifySig(key, text, sig) {
    if (key.type === 1) return (await ed25519(key, enc.encode(text), sig)) ? null : undefined;
    if (sig.length !== 72) return undefined;
    let ts = 0n;
    for (let i = 0; i < 8; i++) ts = (ts << 8n) | BigInt(sig[i]);
    if (ts > I64_MAX) return undefined;
    const msg = enc.encode(`cosignature/v1\ntime ${ts}\n${text}`);
    return (await ed25519(key, msg, sig.slice(8))) ? ts : undefined;
  }

  function parseNote(bytes) {
    if (bytes.length > MAX_NOTE_BYTES) refuse(`note is larger than ${MAX_NOTE_BYTES} bytes`);
    const msg = utf8(bytes);
    if (msg === null) refuse("not valid UTF-8");
    const c = controlChar(msg);
    if (c !== null) refuse(`contains control character U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`);
    const split = msg.lastIndexOf("\n\n");
    if (split < 0) refuse("no blank line before signatures");
    const text = msg.slice(0, split + 1);
    let sigs = msg.slice(split + 2);
    if (sigs === "") refuse("no signature lines");
    if (!sigs.endsWith("\n")) refuse("signature block must end with a newline");
    sigs = sigs.slice(0, -1);
    const signatures = [];
    for (const line of sigs.split("\n")) {
      if (signatures.length === MAX_SIGNATURES) refuse(`more than ${MAX_SIGNATURES} signatures`);
      if (!line.startsWith(SIG_PREFIX)) refuse("signature line must start with an em dash and a space");
      const rest = line.slice(SIG_PREFIX.length);
      const sp = rest.indexOf(" ");
      if (sp < 0) refuse("signature line has no signature");
      const name = rest.slice(0, sp);
      if (!validKeyName(name)) refuse(`invalid key name ${JSON.stringify(name)} on a signature line`);
      const raw = b64decode(rest.slice(sp + 1));
      if (!raw) refuse(`signature by ${name} is not base64`);
      if (raw.length < 5) refuse(`signature by ${name} is too short`);
      const id = ((raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]) >>> 0;
      signatures.push({ name, id, sig: raw.slice(4) });
    }
    return { text, signatures };
  }

  function parseCheckpoint(text) {
    if (!text.endsWith("\n")) refuse("text must end with a newline");
    const lines = text.slice(0, -1).split("\n");
    const origin = lines[0];
    if (!origin) refuse("empty origin line");
    if (lines.length < 2) refuse("missing tree size");
    const size = parseDecimal(lines[1]);
    if (size === null) refuse(`tree size ${JSON.stringify(lines[1])} is not a canonical decimal`);
    if (lines.length < 3) refuse("missing root hash");
    const rootHash = parseHash(lines[2]);
    if (!rootHash) refuse(`root ${JSON.stringify(lines[2])} is not a base64 SHA-256 hash`);
    const extensions = lines.slice(3);
    if (extensions.some((l) => l === "")) refuse("empty extension line");
    return { origin, size, root: rootHash, extensions };
  }

  // The keys a checkpoint must carry: the log's own signature and `quorum`
  // of the witnesses' cosignatures.
  async function makePolicy(logKeyText, witnessTexts, quorum) {
    const logKey = await parseVerifierKey(logKeyText.trim());
    const witnesses = [];
    for (const w of witnessTexts) witnesses.push(await parseVerifierKey(w.trim()));
    if (logKey.type !== 1) refuse(`log key ${logKey.name} must be an Ed25519 (0x01) note key`);
    const q = quorum === null || quorum === undefined ? witnesses.length : quorum;
    if (q > witnesses.length) refuse(`quorum ${q} exceeds the ${witnesses.length} witnesses given`);
    witnesses.forEach((w, i) => {
      if (witnesses.slice(0, i).some((o) => o.name === w.name)) refuse(`witness ${w.name} is listed twice`);
      if (w.text === logKey.text) refuse("the log key cannot also count as a witness");
    });
    return { logKey, witnesses, quorum: q };
  }

  async function verifyCheckpointNote(bytes, policy, steps) {
    const note = parseNote(bytes);
    steps.push({ name: "signed note", ok: true, detail: `${note.signatures.length} signature line(s)` });
    const cp = parseCheckpoint(note.text);
    steps.push({ name: "checkpoint", ok: true, detail: `origin ${cp.origin}, size ${cp.size}, root ${b64encode(cp.root)}` });
    const known = [policy.logKey, ...policy.witnesses];
    const verified = [];
    for (const s of note.signatures) {
      const key = known.find((k) => k.name === s.name && k.id === s.id);
      if (!key) continue;
      if (verified.some((v) => v.key === key)) refuse(`two signatures by ${s.name}`);
      const ts = await verifySig(key, note.text, s.sig);
      if (ts === undefined) refuse(`the signature by ${s.name} (${s.id.toString(16).padStart(8, "0")}) does not verify`);
      verified.push({ key, ts });
    }
    if (verified.length === 0 || cp.origin !== policy.logKey.name || !verified.some((v) => v.key === policy.logKey)) {
      if (verified.length > 0 && cp.origin !== policy.logKey.name) {
        refuse(`the checkpoint's origin is ${JSON.stringify(cp.origin)}, the log key's ${JSON.stringify(policy.logKey.name)}`);
      }
      refuse(`no valid signature by the log key ${policy.logKey.text}`);
    }
    steps.push({ name: "log signature", ok: true, detail: `signed by ${policy.logKey.name}` });
    const cosigned = verified.filter((v) => v.key !== policy.logKey);
    if (cosigned.length < policy.quorum) {
      refuse(`witness quorum not met: ${cosigned.length} of ${policy.quorum} (${cosigned.map((v) => v.key.name).join(", ") || "none"})`);
    }
    steps.push({
      name: "witness quorum",
      ok: true,
      detail: `${cosigned.length} of ${policy.quorum} required` +
        cosigned.map((v) => `; ${v.key.name} at ${v.ts === null ? "?" : new Date(Number(v.ts) * 1000).toISOString()}`).join(""),
    });
    return cp;
  }

  function inclusionProofLen(index, size) {
    let fn = index, sn = size - 1n, n = 0;
    while (sn > 0n) {
      if ((fn & 1n) === 1n || fn !== sn) n++;
      fn >>= 1n; sn >>= 1n;
    }
    return n;
  }

  // RFC 9162 §2.1.3.2.
  async function verifyInclusion(leaf, index, size, proof, rootHash) {
    if (index >= size) refuse(`index ${index} is not below the tree size ${size}`);
    const want = inclusionProofLen(index, size);
    if (proof.length !== want) refuse(`the inclusion proof has ${proof.length} hashes, want ${want}`);
    let fn = index, sn = size - 1n, r = leaf;
    for (const p of proof) {
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) refuse(`the inclusion proof has ${proof.length} hashes, want ${want}`);
    if (!equal(r, rootHash)) refuse("the inclusion proof leads to another root than the checkpoint's");
  }

  function parseTlogProof(bytes) {
    if (bytes.length > MAX_NOTE_BYTES + 4096) refuse("proof is too large");
    const text = utf8(bytes);
    if (text === null) refuse("not valid UTF-8");
    const split = text.indexOf("\n\n");
    if (split < 0) refuse("no blank line before the checkpoint");
    const lines = text.slice(0, split).split("\n");
    const checkpoint = bytes.slice(enc.encode(text.slice(0, split + 2)).length);
    if (lines[0] !== TLOG_PROOF_HEADER) refuse(`first line must be ${TLOG_PROOF_HEADER}`);
    let k = 1;
    if (k >= lines.length) refuse("missing index line");
    if (lines[k].startsWith("extra ")) {
      const raw = b64decode(lines[k].slice(6));
      if (!raw) refuse("extra data is not base64");
      if (raw.length === 0) refuse("empty extra line");
      k++;
      if (k >= lines.length) refuse("missing index line");
    }
    const index = lines[k].startsWith("index ") ? parseDecimal(lines[k].slice(6)) : null;
    if (index === null) refuse(`expected \`index N\`, found ${JSON.stringify(lines[k])}`);
    const hashes = [];
    for (const l of lines.slice(k + 1)) {
      if (hashes.length === MAX_PROOF_HASHES) refuse(`more than ${MAX_PROOF_HASHES} proof hashes`);
      const h = parseHash(l);
      if (!h) refuse(`${JSON.stringify(l)} is not a base64 hash`);
      hashes.push(h);
    }
    return { index, hashes, checkpoint };
  }

  // Run `body(steps)`; a refusal becomes the failed step `name`.
  async function run(first, body) {
    const steps = [];
    let ok = true;
    let result = null;
    try {
      result = await body(steps);
    } catch (e) {
      ok = false;
      const name = steps.length === 0 ? first : "next check after " + steps[steps.length - 1].name;
      steps.push({ name, ok: false, detail: e instanceof Refused ? e.message : "error: " + e });
    }
    return { ok, steps, result };
  }

  const bytesOf = (x) => (typeof x === "string" ? enc.encode(x) : x);

  /// A checkpoint against a log key, witness keys and a quorum.
  async function verifyCheckpoint(checkpoint, logKey, witnesses, quorum) {
    return run("trusted keys", async (steps) => {
      const policy = await makePolicy(logKey, witnesses, quorum);
      steps.push({ name: "trusted keys", ok: true, detail: describePolicy(policy) });
      return verifyCheckpointNote(bytesOf(checkpoint), policy, steps);
    });
  }

  /// A tlog-proof for an entry (its bytes) or a leaf hash (hex).
  async function verifyTlogProof(proof, leaf, logKey, witnesses, quorum) {
    return run("trusted keys", async (steps) => {
      const policy = await makePolicy(logKey, witnesses, quorum);
      steps.push({ name: "trusted keys", ok: true, detail: describePolicy(policy) });
      let lh;
      if (leaf.hash !== undefined) {
        lh = unhex(leaf.hash.trim());
        if (!lh || lh.length !== 32) refuse("the leaf hash must be 64 hex digits");
        steps.push({ name: "leaf hash", ok: true, detail: hex(lh) + " (given)" });
      } else {
        lh = await leafHash(bytesOf(leaf.entry));
        steps.push({ name: "leaf hash", ok: true, detail: hex(lh) + " = SHA-256(0x00 || entry)" });
      }
      const p = parseTlogProof(bytesOf(proof));
      steps.push({ name: "tlog-proof", ok: true, detail: `index ${p.index}, ${p.hashes.length} hash(es)` });
      const cp = await verifyCheckpointNote(p.checkpoint, policy, steps);
      await verifyInclusion(lh, p.index, cp.size, p.hashes, cp.root);
      steps.push({ name: "inclusion", ok: true, detail: `entry ${p.index} is in the tree of ${cp.size} entries` });
      return { index: p.index, checkpoint: cp };
    });
  }

  function describePolicy(p) {
    const w = p.witnesses.map((k) => k.text).join(", ");
    return `log key ${p.logKey.text}` + (p.witnesses.length ? `; witnesses ${w}; quorum ${p.quorum}` : "; no witness required");
  }

  // What lineage.js builds its checks from: the same parsers and rules.
  const internals = {
    Refused, refuse, enc, b64decode, b64encode, hex, unhex, concat, equal, sha256, leafHash,
    parseDecimal, utf8, parseVerifierKey, ed25519, verifyCheckpointNote, verifyInclusion,
    parseTlogProof, parseHash,
  };
  root.modelgateVerify = { verifyCheckpoint, verifyTlogProof, b64decode, b64encode, hex, internals };
})(globalThis);
