// modelgate's lineage-proof verifier for the browser: the whole chain of
// `modelgate-lineage-proof/v1` (record → node checkpoint → anchor →
// governance checkpoint, the node's enrollment) and `/v2` (also the trust-root
// version, the model's registration with its OMS bundle, the approval or
// exception and the policy set in force), from the pinned trust root alone.
// Its rules are modelgate-node's `verify_lineage_proof`, check for check; a
// differential test holds the two to the same verdict on every proof.
//
// Built on verify.js (signed notes, checkpoints, RFC 6962, tlog-proofs) and
// WebCrypto (SHA-256, Ed25519, ECDSA, RSA). It makes no request of any kind.
//
// What the browser cannot do, it refuses rather than pass: Ed25519ph model
// signatures (no WebCrypto algorithm), certificate-signed model bundles,
// keyless (Sigstore) model bundles, whose X.509, SCT, SET and RFC 3161
// checks it leaves to `modelgate lineage verify` and says so, and
// reference v0.2 statements. Cedar policy ids are read with a Cedar lexer
// (annotations and policy boundaries), not a full Cedar parser: the policy
// set is an entry proven in the governance log, which the authority accepts
// only once Cedar has compiled and validated it.
"use strict";
(function (root) {
  const V = root.modelgateVerify.internals;
  const { Refused, refuse, enc, b64decode, hex, unhex, concat, equal, sha256, leafHash } = V;

  const PROOF_FORMAT = "modelgate-lineage-proof/v1";
  const PROOF_FORMAT_V2 = "modelgate-lineage-proof/v2";
  const MAX_PROOF_BYTES = 16 << 20;
  const MAX_ENVELOPE_BYTES = 65535;
  const GOVERNANCE_PAYLOAD_TYPE = "application/vnd.modelgate.governance+json";
  const OMS_PAYLOAD_TYPE = "application/vnd.in-toto+json";
  const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
  const PREDICATE_TYPE = "https://model_signing/signature/v1.0";
  const U64_MAX = (1n << 64n) - 1n;
  const I64_MIN = -(1n << 63n);
  const SAFE = (1n << 53n) - 1n;

  // ---- JSON as serde_json reads it ----------------------------------------
  // Numbers keep serde_json's three kinds (unsigned, negative, float), so a
  // `5.0` is never taken for the integer 5; objects are Maps (no prototype
  // keys), a repeated key keeps its last value; nesting stops at 128.
  class Num {
    constructor(kind, big, f) { this.kind = kind; this.big = big; this.f = f; }
  }
  function parseJson(text, what) {
    let i = 0;
    const fail = (m) => refuse(`${what} is not JSON: ${m} at character ${i}`);
    const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
    function value(depth) {
      ws();
      if (i >= text.length) fail("unexpected end");
      const c = text[i];
      if (c === "{" || c === "[") {
        if (depth + 1 >= 128) fail("recursion limit exceeded");
        i++;
        ws();
        if (c === "[") {
          const out = [];
          if (text[i] === "]") { i++; return out; }
          for (;;) {
            out.push(value(depth + 1));
            ws();
            if (text[i] === ",") { i++; continue; }
            if (text[i] === "]") { i++; return out; }
            fail("expected , or ]");
          }
        }
        const out = new Map();
        if (text[i] === "}") { i++; return out; }
        for (;;) {
          ws();
          if (text[i] !== '"') fail("expected a key");
          const k = string();
          ws();
          if (text[i] !== ":") fail("expected :");
          i++;
          out.set(k, value(depth + 1));
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "}") { i++; return out; }
          fail("expected , or }");
        }
      }
      if (c === '"') return string();
      for (const [lit, v] of [["true", true], ["false", false], ["null", null]]) {
        if (text.startsWith(lit, i)) { i += lit.length; return v; }
      }
      const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 2048));
      if (!m || m[0] === "" || m[0] === "-") fail("expected a value");
      const after = text[i + m[0].length];
      if (after !== undefined && /[0-9.eE+-]/.test(after)) fail("invalid number");
      i += m[0].length;
      const raw = m[0];
      if (m[2] === undefined && m[3] === undefined) {
        const v = BigInt(raw);
        if (v >= 0n && !raw.startsWith("-") && v <= U64_MAX) return new Num("u", v, Number(v));
        if (v < 0n && v >= I64_MIN) return new Num("i", v, Number(v));
      }
      const f = Number(raw);
      if (!Number.isFinite(f)) fail("number out of range");
      return new Num("f", null, f);
    }
    function string() {
      i++;
      let out = "";
      for (;;) {
        if (i >= text.length) fail("unterminated string");
        const c = text[i];
        if (c === '"') { i++; return out; }
        if (c < " ") fail("control character in a string");
        if (c !== "\\") { out += c; i++; continue; }
        const e = text[i + 1];
        i += 2;
        const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e in simple) { out += simple[e]; continue; }
        if (e !== "u") fail("invalid escape");
        const unit = () => {
          const h = text.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("invalid \\u escape");
          i += 4;
          return parseInt(h, 16);
        };
        const u = unit();
        if (u >= 0xdc00 && u <= 0xdfff) fail("lone trailing surrogate");
        if (u >= 0xd800 && u <= 0xdbff) {
          if (text[i] !== "\\" || text[i + 1] !== "u") fail("lone leading surrogate");
          i += 2;
          const t = unit();
          if (t < 0xdc00 || t > 0xdfff) fail("lone leading surrogate");
          out += String.fromCharCode(u, t);
        } else {
          out += String.fromCharCode(u);
        }
      }
    }
    const v = value(0);
    ws();
    if (i !== text.length) fail("trailing characters");
    return v;
  }
  function jsonOfBytes(bytes, what) {
    const text = V.utf8(bytes);
    if (text === null) refuse(`${what} is not JSON: not UTF-8`);
    return parseJson(text, what);
  }
  // serde_json's Value equality.
  function same(a, b) {
    if (a instanceof Num || b instanceof Num) {
      if (!(a instanceof Num && b instanceof Num) || a.kind !== b.kind) return false;
      return a.kind === "f" ? a.f === b.f : a.big === b.big;
    }
    if (Array.isArray(a) || Array.isArray(b)) {
      return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, k) => same(x, b[k]));
    }
    if (a instanceof Map || b instanceof Map) {
      if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
      for (const [k, v] of a) if (!b.has(k) || !same(v, b.get(k))) return false;
      return true;
    }
    return a === b;
  }
  const field = (v, k) => (v instanceof Map ? v.get(k) : undefined);
  const asStr = (v) => (typeof v === "string" ? v : undefined);
  const asU64 = (v) => (v instanceof Num && v.kind === "u" ? v.big : undefined);

  // RFC 8785 for governance documents (modelgate-governance's `canonical`).
  function canonical(v) {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (v instanceof Num) {
      if (v.kind === "f") refuse(`non-integer number ${v.f} (governance documents use integers only)`);
      if (v.big > SAFE || v.big < -SAFE) refuse(`integer ${v.big} is beyond ±2^53-1`);
      return v.big.toString();
    }
    if (typeof v === "string") return canonicalString(v);
    if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
    const keys = [...v.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return "{" + keys.map((k) => canonicalString(k) + ":" + canonical(v.get(k))).join(",") + "}";
  }
  function canonicalString(s) {
    let out = '"';
    for (const c of s) {
      const esc = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" }[c];
      if (esc) out += esc;
      else if (c < " ") out += "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
      else out += c;
    }
    return out + '"';
  }
  function parseCanonical(bytes, what) {
    const v = jsonOfBytes(bytes, what);
    if (!equal(enc.encode(canonical(v)), bytes)) {
      refuse(`${what} is not in canonical form (RFC 8785: sorted keys, no whitespace, minimal escapes)`);
    }
    return v;
  }

  // ---- serde-derive decoding with deny_unknown_fields ----------------------
  const str = (v, what) => (typeof v === "string" ? v : refuse(`${what}: expected a string`));
  const u64 = (v, what) => (v instanceof Num && v.kind === "u" ? v.big : refuse(`${what}: expected an unsigned integer`));
  const bool = (v, what) => (typeof v === "boolean" ? v : refuse(`${what}: expected a boolean`));
  const any = (v) => v;
  const arr = (dec) => (v, what) => (Array.isArray(v) ? v.map((x, k) => dec(x, `${what}[${k}]`)) : refuse(`${what}: expected a list`));
  const map = (dec) => (v, what) => {
    if (!(v instanceof Map)) refuse(`${what}: expected an object`);
    return new Map([...v].map(([k, x]) => [k, dec(x, `${what}.${k}`)]));
  };
  const oneOf = (names) => (v, what) => (names.includes(v) ? v : refuse(`${what}: unknown variant ${JSON.stringify(v)}`));
  // Optional fields: absent or null is "none".
  const opt = (dec) => ({ opt: dec });
  function struct(spec) {
    return (v, what) => {
      if (!(v instanceof Map)) refuse(`${what}: expected an object`);
      for (const k of v.keys()) if (!(k in spec)) refuse(`${what}: unknown field ${JSON.stringify(k)}`);
      const out = {};
      for (const [k, d] of Object.entries(spec)) {
        const x = v.get(k);
        if (d.opt) { out[k] = x === undefined || x === null ? null : d.opt(x, `${what}.${k}`); continue; }
        if (x === undefined) refuse(`${what}: missing field ${JSON.stringify(k)}`);
        out[k] = d(x, `${what}.${k}`);
      }
      return out;
    };
  }

  const RecordProof = struct({ index: u64, entry: str, inclusion: arr(str) });
  const GovernedEntry = struct({ index: u64, entry: str, tlog_proof: str });
  const GovernanceLinks = struct({
    checkpoint: str, trust_root: GovernedEntry,
    registration: opt(GovernedEntry), grant: opt(GovernedEntry), policy: opt(GovernedEntry),
  });
  const LineageProof = struct({
    format: str, id: str, node: str, anchored: bool,
    records: arr(struct({ index: u64, record: any })),
    proof: struct({
      records: arr(RecordProof), lineage_checkpoint: str, anchor: GovernedEntry,
      enrollment: GovernedEntry, governance: opt(GovernanceLinks),
    }),
  });
  const ROLES = ["root", "authority", "witness", "model-signer", "approver", "policy-admin", "node-admin"];
  const TIERS = ["low", "medium", "high", "critical"];
  const PAYLOADS = {
    "trust-root": struct({
      type: str, version: u64, root_version: u64,
      principals: map(struct({
        roles: arr(oneOf(ROLES)), keys: arr(str), model_keys: arr(str),
        keyless: opt(arr(struct({ issuer: str, identity: opt(str), identity_regexp: opt(str) }))),
      })),
      sigstore_trusted_root: opt(any),
      thresholds: struct({
        root: u64, model: u64, approval: struct({ low: u64, medium: u64, high: u64, critical: u64 }),
        revocation: u64, exception: u64, policy: u64, enrollment: u64,
      }),
      authority: struct({ log: str, cosigner: str }),
      witnesses: arr(str), witness_quorum: u64,
      freshness: struct({ max_staleness_seconds: u64, anchor_max_age_seconds: u64 }),
    }),
    model: struct({ type: str, version: u64, model_name: str, model_version: str, bundle: str }),
    approval: struct({
      type: str, version: u64, model: str, scopes: arr(str), valid_from: u64, valid_until: u64,
      risk_tier: oneOf(TIERS), ticket: str,
    }),
    exception: struct({
      type: str, version: u64, model: str, scopes: arr(str), expires: u64, risk_tier: oneOf(TIERS),
      ticket: str, reason: str,
    }),
    "policy-set": struct({ type: str, version: u64, name: str, policies: str, replaces: str }),
    "node-enrollment": struct({ type: str, version: u64, node: str, key: str, scopes: arr(str) }),
    "node-anchor": struct({ type: str, version: u64, node: str, checkpoint: str, consistency: arr(str) }),
  };
  // Types this verifier never reads but the log holds: known, not decoded.
  const OTHER_TYPES = ["revocation", "containment-report"];
  const versionOf = (kind) => (kind === "policy-set" ? 2n : kind === "containment-report" ? 3n : 1n);

  // ---- governance entries (DSSE envelopes of canonical JSON) --------------
  function pae(payload) {
    const t = GOVERNANCE_PAYLOAD_TYPE;
    return concat(enc.encode(`DSSEv1 ${enc.encode(t).length} ${t} ${payload.length} `), payload);
  }
  function parseEnvelope(bytes, what) {
    if (bytes.length > MAX_ENVELOPE_BYTES) refuse(`${what}: envelope is ${bytes.length} bytes; the limit is ${MAX_ENVELOPE_BYTES}`);
    const env = struct({ payload: str, payloadType: str, signatures: arr(struct({ keyid: str, sig: str })) })(
      parseCanonical(bytes, `${what}'s envelope`), `${what}'s envelope`);
    if (env.payloadType !== GOVERNANCE_PAYLOAD_TYPE) refuse(`${what}: payloadType ${JSON.stringify(env.payloadType)}`);
    const payload = b64decode(env.payload);
    if (!payload) refuse(`${what}: payload is not base64`);
    parseCanonical(payload, `${what}'s payload`);
    if (env.signatures.length === 0 || env.signatures.length > 16) refuse(`${what}: ${env.signatures.length} signatures; 1 to 16 allowed`);
    const signatures = [];
    for (const s of env.signatures) {
      if (!/^[0-9a-f]{64}$/.test(s.keyid)) refuse(`${what}: key id ${JSON.stringify(s.keyid)} is not 64 lowercase hex digits`);
      if (signatures.some((x) => x.keyid === s.keyid)) refuse(`${what}: key ${s.keyid} signed twice`);
      const sig = b64decode(s.sig);
      if (!sig) refuse(`${what}: signature by ${s.keyid} is not base64`);
      if (sig.length !== 64) refuse(`${what}: signature by ${s.keyid} is not 64 bytes`);
      signatures.push({ keyid: s.keyid, sig });
    }
    return { payload, signatures };
  }
  // The key ids whose signatures verify; a known key that fails refuses.
  async function verifiedKeys(env, lookup, what) {
    const msg = pae(env.payload);
    const ok = [];
    for (const s of env.signatures) {
      const key = lookup(s.keyid);
      if (!key) continue;
      if (!(await V.ed25519({ cryptoKey: key }, msg, s.sig))) refuse(`${what}: the signature by ${s.keyid} does not verify`);
      ok.push(s.keyid);
    }
    return ok;
  }
  function decodePayload(payloadBytes, what) {
    const v = parseCanonical(payloadBytes, `${what}'s payload`);
    const kind = asStr(field(v, "type"));
    if (kind === undefined) refuse(`${what}'s payload has no string "type"`);
    const version = asU64(field(v, "version"));
    if (version === undefined) refuse(`${what}'s payload has no integer "version"`);
    if (!(kind in PAYLOADS) && !OTHER_TYPES.includes(kind)) refuse(`${what}: unknown entry type ${JSON.stringify(kind)}`);
    if (version !== versionOf(kind)) refuse(`${what}: ${kind} version ${version} is not supported`);
    return { kind, doc: kind in PAYLOADS ? PAYLOADS[kind](v, `${what}'s ${kind}`) : null };
  }
  const keyIdOf = async (raw) => hex(await sha256(raw));

  // ---- the trust root --------------------------------------------------------
  async function trustRootOf(doc, what) {
    if (doc.type !== "trust-root" || doc.version !== 1n) refuse(`${what}: not a trust-root v1 document`);
    if (doc.root_version === 0n) refuse(`${what}: root_version starts at 1`);
    const keys = new Map();
    const modelKeys = [];
    const ids = [...doc.principals.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const id of ids) {
      const p = doc.principals.get(id);
      if (id === "" || enc.encode(id).length > 128 || /[\p{Cc}\s]/u.test(id)) refuse(`${what}: principal id ${JSON.stringify(id)} is empty, too long or has spaces`);
      if (p.roles.length === 0) refuse(`${what}: principal ${id} has no role`);
      for (const k of p.keys) {
        const raw = b64decode(k);
        if (!raw || raw.length !== 32) refuse(`${what}: principal ${id}: key ${JSON.stringify(k)} is not base64 of 32 bytes`);
        let cryptoKey;
        try { cryptoKey = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]); } catch {
          refuse(`${what}: principal ${id}: key ${k} is not a valid Ed25519 key`);
        }
        const kid = await keyIdOf(raw);
        if (keys.has(kid)) refuse(`${what}: key ${k} is listed for both ${keys.get(kid).principal} and ${id}`);
        keys.set(kid, { principal: id, cryptoKey });
      }
      if (p.model_keys.length > 0 && !p.roles.includes("model-signer")) refuse(`${what}: principal ${id} has model keys but not the model-signer role`);
      for (const pem of p.model_keys) modelKeys.push({ principal: id, key: await modelKey(pem, `${what}: principal ${id}`) });
    }
    const holders = (role) => [...doc.principals.values()].filter((p) => p.roles.includes(role) && p.keys.length > 0).length;
    const t = doc.thresholds;
    for (const [name, need] of [["root", t.root], ["model", t.model], ["approval.low", t.approval.low],
      ["approval.medium", t.approval.medium], ["approval.high", t.approval.high], ["approval.critical", t.approval.critical],
      ["revocation", t.revocation], ["exception", t.exception], ["policy", t.policy], ["enrollment", t.enrollment]]) {
      if (need === 0n) refuse(`${what}: threshold ${name} is 0`);
    }
    if (t.root > BigInt(holders("root"))) refuse(`${what}: threshold root is ${t.root} but only ${holders("root")} principals hold that role with keys`);
    let logKey, cosigner;
    const witnesses = [];
    try { logKey = await V.parseVerifierKey(doc.authority.log); } catch (e) { refuse(`${what}: authority.log: ${e.message}`); }
    if (logKey.type !== 1) refuse(`${what}: authority.log must be an Ed25519 (0x01) note key`);
    try { cosigner = await V.parseVerifierKey(doc.authority.cosigner); } catch (e) { refuse(`${what}: authority.cosigner: ${e.message}`); }
    if (cosigner.type !== 4) refuse(`${what}: authority.cosigner must be a cosignature/v1 (0x04) key`);
    for (const w of doc.witnesses) {
      try { witnesses.push(await V.parseVerifierKey(w)); } catch (e) { refuse(`${what}: witness ${w}: ${e.message}`); }
    }
    if (doc.witness_quorum > BigInt(witnesses.length)) refuse(`${what}: witness_quorum ${doc.witness_quorum} exceeds the ${witnesses.length} witnesses`);
    if (doc.freshness.max_staleness_seconds === 0n || doc.freshness.anchor_max_age_seconds === 0n) refuse(`${what}: freshness bounds must be positive`);
    const principalsWith = (kids, role) => new Set(kids.map((k) => keys.get(k)?.principal)
      .filter((p) => p !== undefined && doc.principals.get(p).roles.includes(role)));
    return { doc, keys, modelKeys, logKey, witnesses, principalsWith, key: (kid) => keys.get(kid)?.cryptoKey };
  }

  // The pinned trust root (the log's entry 0): a valid genesis entry, signed
  // by its own root threshold.
  async function pinnedRoot(bytes) {
    const env = parseEnvelope(bytes, "the trust root file");
    const p = decodePayload(env.payload, "the trust root file");
    if (p.kind !== "trust-root") refuse("the trust root file is not a trust-root entry");
    const tr = await trustRootOf(p.doc, "the trust root file");
    if (p.doc.root_version !== 1n) refuse(`the trust root file is version ${p.doc.root_version}; the pinned root is version 1`);
    const roots = tr.principalsWith(await verifiedKeys(env, tr.key, "the trust root file"), "root");
    if (BigInt(roots.size) < p.doc.thresholds.root) refuse(`the trust root file is signed by ${roots.size} root principals, the threshold is ${p.doc.thresholds.root}`);
    return tr;
  }

  function policyOf(logKey, witnesses, quorum) {
    if (logKey.type !== 1) refuse(`log key ${logKey.name} must be an Ed25519 (0x01) note key`);
    if (quorum > witnesses.length) refuse(`quorum ${quorum} exceeds the ${witnesses.length} witnesses given`);
    witnesses.forEach((w, k) => {
      if (witnesses.slice(0, k).some((o) => o.name === w.name)) refuse(`witness ${w.name} is listed twice`);
      if (w.text === logKey.text) refuse("the log key cannot also count as a witness");
    });
    return { logKey, witnesses, quorum };
  }

  // A governance entry proven in the log under `policy`.
  async function governedEntry(g, what, policy) {
    const entry = b64decode(g.entry);
    if (!entry) refuse(`proof.${what}.entry: not base64`);
    let tp;
    try { tp = V.parseTlogProof(enc.encode(g.tlog_proof)); } catch (e) { refuse(`proof.${what}.tlog_proof: ${e.message}`); }
    if (tp.index !== g.index) refuse(`the ${what} tlog-proof is for index ${tp.index}, the entry claims ${g.index}`);
    let cp;
    try {
      cp = await V.verifyCheckpointNote(tp.checkpoint, policy, []);
      await V.verifyInclusion(await leafHash(entry), tp.index, cp.size, tp.hashes, cp.root);
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      refuse(`the ${what} entry is not proven in the governance log: ${e.message}`);
    }
    const env = parseEnvelope(entry, `the ${what} entry`);
    return { payload: decodePayload(env.payload, `the ${what} entry`), env, size: cp.size };
  }

  // ---- OMS bundles (bare public keys) -------------------------------------
  function derItem(b, at) {
    if (at + 2 > b.length) refuse("truncated DER");
    const tag = b[at];
    let len = b[at + 1];
    let start = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 3 || start + n > b.length) refuse("bad DER length");
      len = 0;
      for (let k = 0; k < n; k++) len = (len << 8) | b[start + k];
      start += n;
    }
    if (start + len > b.length) refuse("truncated DER");
    return { tag, start, end: start + len };
  }
  const OIDS = {
    "2a8648ce3d030107": ["ECDSA", "P-256", "SHA-256", 32],
    "2b81040022": ["ECDSA", "P-384", "SHA-384", 48],
    "2b81040023": ["ECDSA", "P-521", "SHA-512", 66],
  };
  async function modelKey(pem, what) {
    const m = /^\s*-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END PUBLIC KEY-----\s*$/.exec(pem);
    const der = m && b64decode(m[1].replace(/[\r\n]/g, ""));
    if (!der) refuse(`${what}: model key is not a PEM public key`);
    const spki = derItem(der, 0);
    const alg = derItem(der, spki.start);
    const oid = derItem(der, alg.start);
    const oidHex = hex(der.slice(oid.start, oid.end));
    let params;
    if (oidHex === "2a8648ce3d0201") {
      const curve = derItem(der, oid.end);
      const c = OIDS[hex(der.slice(curve.start, curve.end))];
      if (!c) refuse(`${what}: model key's curve is not P-256, P-384 or P-521`);
      params = { import: { name: "ECDSA", namedCurve: c[1] }, verify: { name: "ECDSA", hash: c[2] }, size: c[3] };
    } else if (oidHex === "2a864886f70d010101") {
      params = { import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } };
    } else if (oidHex === "2b6570") {
      params = { import: { name: "Ed25519" }, verify: { name: "Ed25519" }, ed25519: true };
    } else {
      refuse(`${what}: model key algorithm is not one OMS uses (ECDSA P-256, P-384, P-521; RSA; Ed25519)`);
    }
    let cryptoKey;
    try { cryptoKey = await crypto.subtle.importKey("spki", der, params.import, false, ["verify"]); } catch (e) {
      refuse(`${what}: model key does not import: ${e.message}`);
    }
    const b64 = V.b64encode(der);
    const canonicalPem = "-----BEGIN PUBLIC KEY-----\n" + b64.match(/.{1,64}/g).join("\n") + "\n-----END PUBLIC KEY-----\n";
    return { cryptoKey, params, hint: hex(await sha256(enc.encode(canonicalPem))) };
  }
  // A DER ECDSA signature as WebCrypto's fixed-size r || s.
  function ecdsaRaw(sig, size) {
    try {
      const seq = derItem(sig, 0);
      if (seq.tag !== 0x30 || seq.end !== sig.length) return null;
      const out = new Uint8Array(2 * size);
      let at = seq.start;
      for (let k = 0; k < 2; k++) {
        const n = derItem(sig, at);
        if (n.tag !== 0x02) return null;
        let v = sig.slice(n.start, n.end);
        while (v.length > 1 && v[0] === 0) v = v.slice(1);
        if (v.length > size) return null;
        out.set(v, (k + 1) * size - v.length);
        at = n.end;
      }
      return at === seq.end ? out : null;
    } catch { return null; }
  }
  function omsPae(payload) {
    return concat(enc.encode(`DSSEv1 ${OMS_PAYLOAD_TYPE.length} ${OMS_PAYLOAD_TYPE} ${payload.length} `), payload);
  }
  // A keyless bundle: a Fulcio certificate and a Rekor entry, no bare key.
  function isKeyless(bundleBytes) {
    let top;
    try { top = jsonOfBytes(bundleBytes, "the OMS bundle"); } catch (e) { if (e instanceof Refused) return false; throw e; }
    const vm = top instanceof Map ? top.get("verificationMaterial") : undefined;
    return vm instanceof Map && vm.has("certificate") && vm.has("tlogEntries");
  }
  const KEYLESS_LEFT_TO_CLI = "registration: the model's OMS bundle is signed keyless (a Fulcio certificate naming a " +
    "Sigstore identity, a Rekor entry); this viewer leaves that step to `modelgate lineage verify`, which checks it " +
    "offline under the Sigstore trusted root the trust root carries. The browser does not verify X.509 certificate " +
    "chains, certificate extensions, SCTs, signed entry timestamps or RFC 3161 timestamps, so it cannot pass it";

  // The OMS bundle's root digest (hex) when it verifies with `key`; else the reason.
  async function omsRootDigest(bundleBytes, key) {
    const top = jsonOfBytes(bundleBytes, "the OMS bundle");
    if (!(top instanceof Map)) return "the bundle is not a JSON object";
    for (const k of top.keys()) {
      if (!["mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"].includes(k)) return `bundle: unknown field ${k}`;
    }
    const media = asStr(field(top, "mediaType"));
    if (media !== "application/vnd.dev.sigstore.bundle.v0.3+json" && media !== "application/vnd.dev.sigstore.bundle+json;version=0.3") {
      return `mediaType ${JSON.stringify(media)}`;
    }
    const vm = field(top, "verificationMaterial");
    const pk = field(vm, "publicKey");
    if (!(pk instanceof Map)) return "the bundle is not signed with a bare public key (certificate bundles are checked by the CLI only)";
    const hint = field(pk, "hint");
    if (hint !== undefined && hint !== key.hint) return "the bundle was signed for a different public key (publicKey.hint does not match)";
    const env = field(top, "dsseEnvelope");
    const sigs = field(env, "signatures");
    if (!Array.isArray(sigs) || sigs.length !== 1) return "the bundle's envelope must carry exactly one signature";
    const payload = b64decode(asStr(field(env, "payload")) ?? "");
    const sig = b64decode(asStr(field(sigs[0], "sig")) ?? "");
    if (!payload || !sig) return "the bundle's payload or signature is not base64";
    if (field(env, "payloadType") !== OMS_PAYLOAD_TYPE) return "payloadType is not in-toto";
    let ok = false;
    const msg = omsPae(payload);
    if (key.params.size) {
      const raw = ecdsaRaw(sig, key.params.size);
      ok = raw !== null && await crypto.subtle.verify(key.params.verify, key.cryptoKey, raw, msg);
    } else {
      try { ok = await crypto.subtle.verify(key.params.verify, key.cryptoKey, sig, msg); } catch { ok = false; }
    }
    if (!ok) {
      return key.params.ed25519
        ? "the DSSE signature does not verify as pure Ed25519 (Ed25519ph signatures are checked by the CLI only)"
        : "the DSSE signature does not verify with the key";
    }
    const st = jsonOfBytes(payload, "the OMS statement");
    if (field(st, "_type") !== STATEMENT_TYPE) return "the statement is not in-toto v1";
    if (field(st, "predicateType") !== PREDICATE_TYPE) return "the statement's predicate is not OMS v1.0 (earlier forms are checked by the CLI only)";
    for (const k of st.keys()) if (!["_type", "subject", "predicateType", "predicate"].includes(k)) return `statement: unknown field ${k}`;
    const subjects = field(st, "subject");
    if (!Array.isArray(subjects) || subjects.length !== 1) return "the statement must have exactly one subject";
    const want = asStr(field(field(subjects[0], "digest"), "sha256"));
    if (!want || !/^[0-9a-f]{64}$/.test(want)) return "the subject digest is not 64 hex digits";
    const resources = field(field(st, "predicate"), "resources");
    if (!Array.isArray(resources) || resources.length === 0) return "the statement lists no resource";
    const digests = [];
    for (const r of resources) {
      const d = unhex(asStr(field(r, "digest")) ?? "z");
      if (!d || d.length === 0) return "a resource digest is not hex";
      digests.push(d);
    }
    const root = hex(await sha256(concat(...digests)));
    if (root !== want) return `subject digest ${want} is not the root digest of the listed resources (${root})`;
    return { digest: root };
  }

  // ---- Cedar policy ids -----------------------------------------------------
  // Each policy's `@id("…")` where given, else Cedar's `policyN`.
  function cedarIds(text) {
    const toks = [];
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      if (/\s/.test(c)) { i++; continue; }
      if (text.startsWith("//", i)) { while (i < text.length && text[i] !== "\n") i++; continue; }
      if (c === '"') {
        let v = "";
        i++;
        for (;;) {
          if (i >= text.length) refuse("unterminated string in the policy set");
          const d = text[i];
          if (d === '"') { i++; break; }
          if (d !== "\\") { v += d; i++; continue; }
          const e = text[i + 1];
          const simple = { n: "\n", r: "\r", t: "\t", "\\": "\\", 0: "\0", "'": "'", '"': '"' };
          if (e in simple) { v += simple[e]; i += 2; continue; }
          const u = /^u\{([0-9a-fA-F]{1,6})\}/.exec(text.slice(i + 1, i + 11));
          if (!u) refuse("an escape the policy viewer does not read in a policy string");
          v += String.fromCodePoint(parseInt(u[1], 16));
          i += 1 + u[0].length;
        }
        toks.push({ s: v });
        continue;
      }
      const w = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 256));
      if (w) { toks.push({ w: w[0] }); i += w[0].length; continue; }
      toks.push({ p: c });
      i++;
    }
    const ids = [];
    let depth = 0;
    let current = { id: undefined, started: false };
    for (let k = 0; k < toks.length; k++) {
      const t = toks[k];
      if (depth === 0 && !current.started && t.p === "@") {
        const name = toks[k + 1]?.w;
        if (!name) refuse("an annotation without a name in the policy set");
        let value = "";
        k++;
        if (toks[k + 1]?.p === "(") {
          if (toks[k + 2]?.s === undefined || toks[k + 3]?.p !== ")") refuse("an annotation the policy viewer does not read");
          value = toks[k + 2].s;
          k += 3;
        }
        if (name === "id") current.id = value;
        continue;
      }
      current.started = true;
      if (t.p === "(" || t.p === "[" || t.p === "{") depth++;
      if (t.p === ")" || t.p === "]" || t.p === "}") depth--;
      if (depth < 0) refuse("unbalanced brackets in the policy set");
      if (depth === 0 && t.p === ";") {
        ids.push(current.id ?? `policy${ids.length}`);
        current = { id: undefined, started: false };
      }
    }
    if (current.started || current.id !== undefined || depth !== 0) refuse("the policy set ends inside a policy");
    if (ids.length === 0) refuse("the policy set is empty");
    if (new Set(ids).size !== ids.length) refuse("two policies have one id");
    return ids;
  }

  function scopeMatches(pattern, scope) {
    if (pattern === "*") return true;
    if (pattern.endsWith("/*")) {
      const prefix = pattern.slice(0, -2);
      return scope.length > prefix.length + 1 && scope.startsWith(prefix) && scope[prefix.length] === "/";
    }
    return pattern === scope;
  }

  // ---- the proof ------------------------------------------------------------
  async function verifyLineageProof(proofBytes, pinnedBytes) {
    const steps = [];
    const pass = (name, detail) => steps.push({ name, ok: true, detail });
    let stage = "proof document";
    try {
      if (proofBytes.length > MAX_PROOF_BYTES) refuse(`a proof is at most ${MAX_PROOF_BYTES} bytes`);
      const v = jsonOfBytes(proofBytes, "the proof");
      if (field(v, "anchored") === false) {
        refuse("this record is not anchored yet: there is no proof chain to check (fetch it again after the next anchor)");
      }
      const full = field(v, "format") === PROOF_FORMAT_V2;
      if (field(v, "format") !== PROOF_FORMAT && !full) refuse(`the proof's format is neither ${PROOF_FORMAT} nor ${PROOF_FORMAT_V2}`);
      const doc = LineageProof(v, "proof");
      pass(stage, `${full ? PROOF_FORMAT_V2 : PROOF_FORMAT} for node ${doc.node}, lineage id ${doc.id}`);

      stage = "trust root";
      const root = await pinnedRoot(pinnedBytes);
      const policy = policyOf(root.logKey, root.witnesses, Number(root.doc.witness_quorum));
      pass(stage, `pinned trust root version 1 (SHA-256 ${hex(await sha256(pinnedBytes))}): log key ${root.logKey.text}` +
        (root.witnesses.length ? `, witness quorum ${root.doc.witness_quorum} of ${root.witnesses.length}` : ", no witness required"));

      stage = "enrollment";
      const enr = await governedEntry(doc.proof.enrollment, "enrollment", policy);
      if (enr.payload.kind !== "node-enrollment") refuse("the enrollment entry is not a node-enrollment");
      if (enr.payload.doc.node !== doc.node) refuse(`the enrollment is for node ${JSON.stringify(enr.payload.doc.node)}, the proof for ${JSON.stringify(doc.node)}`);
      let nodeKey;
      try { nodeKey = await V.parseVerifierKey(enr.payload.doc.key); } catch (e) { refuse(`enrolled key: ${e.message}`); }
      pass(stage, `node ${doc.node}'s key ${nodeKey.text}, enrolled in entry ${doc.proof.enrollment.index}`);

      stage = "anchor";
      const anc = await governedEntry(doc.proof.anchor, "anchor", policy);
      if (anc.payload.kind !== "node-anchor") refuse("the anchor entry is not a node-anchor");
      if (anc.payload.doc.node !== doc.node) refuse(`the anchor is by node ${JSON.stringify(anc.payload.doc.node)}, not ${JSON.stringify(doc.node)}`);
      const nodeKid = await keyIdOf(nodeKey.key);
      const signers = await verifiedKeys(anc.env, (k) => (k === nodeKid ? nodeKey.cryptoKey : undefined), "the anchor entry");
      if (signers.length === 0) refuse("the anchor entry is not signed by the node's enrolled key");
      const note = doc.proof.lineage_checkpoint;
      if (anc.payload.doc.checkpoint !== note) refuse("the lineage checkpoint is not the one the anchor entry carries");
      pass(stage, `entry ${doc.proof.anchor.index}, signed by the node, in the governance log of ${anc.size} entries`);

      stage = "lineage checkpoint";
      let cp;
      try { cp = await V.verifyCheckpointNote(enc.encode(note), policyOf(nodeKey, [], 0), []); } catch (e) {
        if (!(e instanceof Refused)) throw e;
        refuse(`the lineage checkpoint: ${e.message}`);
      }
      pass(stage, `the node's lineage log of ${cp.size} records, signed by ${nodeKey.name}`);

      stage = "records";
      if (doc.proof.records.length === 0) refuse("the proof has no records");
      const shown = [];
      for (const [k, r] of doc.proof.records.entries()) {
        const entry = b64decode(r.entry);
        if (!entry) refuse(`proof.records[${k}].entry: not base64`);
        const hashes = r.inclusion.map((h) => V.parseHash(h) || refuse(`proof.records[${k}].inclusion: every hash must be base64 SHA-256`));
        try { await V.verifyInclusion(await leafHash(entry), r.index, cp.size, hashes, cp.root); } catch (e) {
          if (!(e instanceof Refused)) throw e;
          refuse(`lineage record ${r.index} is not in the node's checkpoint (size ${cp.size}): ${e.message}`);
        }
        let rv = null;
        try { rv = jsonOfBytes(entry, "record"); } catch (e) { if (!(e instanceof Refused)) throw e; }
        const copy = doc.records.find((x) => x.index === r.index);
        if (copy && !same(copy.record, rv)) refuse(`the readable copy of record ${r.index} differs from the proven bytes`);
        shown.push([r.index, rv]);
      }
      pass(stage, shown.map(([i, r]) => `record ${i} (${asStr(field(r, "type")) ?? "?"})`).join(", ") + " in that checkpoint");

      const g = doc.proof.governance;
      if (full && !g) { stage = "governance"; refuse(`a ${PROOF_FORMAT_V2} proof needs proof.governance`); }
      if (!full && g) { stage = "governance"; refuse(`proof.governance belongs in a ${PROOF_FORMAT_V2} proof`); }
      if (full) {
        stage = "governance checkpoint";
        await governanceLinks(doc.proof, g, shown, root, policy, pass, (s) => { stage = s; });
      }
      return { ok: true, steps };
    } catch (e) {
      steps.push({ name: stage, ok: false, detail: e instanceof Refused ? e.message : "error: " + e });
      return { ok: false, steps };
    }
  }

  async function governanceLinks(chain, g, shown, pinned, policy, pass, at) {
    const one = enc.encode(g.checkpoint);
    for (const [what, e] of [["anchor", chain.anchor], ["enrollment", chain.enrollment], ["trust_root", g.trust_root],
      ["registration", g.registration], ["grant", g.grant], ["policy", g.policy]]) {
      if (!e) continue;
      let tp;
      try { tp = V.parseTlogProof(enc.encode(e.tlog_proof)); } catch (x) { refuse(`proof.${what}.tlog_proof: ${x.message}`); }
      if (!equal(tp.checkpoint, one)) refuse(`the ${what} entry is proven against another checkpoint than proof.governance.checkpoint`);
    }
    let cp;
    try { cp = await V.verifyCheckpointNote(one, policy, []); } catch (e) {
      if (!(e instanceof Refused)) throw e;
      refuse(`the governance checkpoint: ${e.message}`);
    }
    pass("governance checkpoint", `every governance entry below is in the governance log of ${cp.size} entries (signed by ${pinned.logKey.text}, witness quorum met)`);
    const found = shown.find(([, r]) => ["request", "denial"].includes(asStr(field(r, "type"))));
    if (!found) refuse("a full-chain proof proves a request or a denial record");
    const [recordAt, call] = found;
    const decidedIn = asU64(field(field(call, "governance"), "size"));
    const before = (what, index) => {
      if (decidedIn !== undefined && index >= decidedIn) {
        refuse(`the ${what} entry (index ${index}) was logged after the state the node decided in (size ${decidedIn})`);
      }
    };
    const s = (k) => asStr(field(call, k));

    at("trust-root version");
    const tre = await governedEntry(g.trust_root, "trust_root", policy);
    if (tre.payload.kind !== "trust-root") refuse("the trust_root entry is not a trust-root");
    const root = await trustRootOf(tre.payload.doc, "the trust_root entry");
    if (root.logKey.text !== pinned.logKey.text) refuse("the trust_root entry names another log key than the pinned trust root");
    before("trust_root", g.trust_root.index);
    pass("trust-root version", `trust root version ${root.doc.root_version} (entry ${g.trust_root.index}), the log key of the pinned root`);

    const digest = s("digest");
    if (digest !== undefined) {
      at("registration");
      if (!g.registration) refuse(`record ${recordAt} names model ${digest} but the proof has no registration`);
      const reg = await governedEntry(g.registration, "registration", policy);
      if (reg.payload.kind !== "model") refuse("the registration entry is not a model registration");
      const bundle = b64decode(reg.payload.doc.bundle);
      if (!bundle) refuse("the registration's bundle is not base64");
      if (isKeyless(bundle)) refuse(KEYLESS_LEFT_TO_CLI);
      let signer = null;
      const why = [];
      for (const mk of root.modelKeys) {
        let r;
        try { r = await omsRootDigest(bundle, mk.key); } catch (e) { if (!(e instanceof Refused)) throw e; r = e.message; }
        if (typeof r === "string") { why.push(`${mk.principal}: ${r}`); continue; }
        if (r.digest === digest) { signer = mk.principal; break; }
        why.push(`${mk.principal}: signed digest ${r.digest}`);
      }
      if (signer === null) {
        refuse(`the registration's OMS bundle does not verify with a model key of the trust root for digest ${digest}` +
          (why.length ? ` (${why.join("; ")})` : ""));
      }
      before("registration", g.registration.index);
      pass("registration", `model ${reg.payload.doc.model_name} ${reg.payload.doc.model_version} (${digest}) registered in entry ${g.registration.index}, its OMS bundle signed by ${signer}`);
    }

    const grantId = s("approval") ?? s("exception");
    if (grantId !== undefined) {
      at("grant");
      if (!g.grant) refuse(`record ${recordAt} names grant ${grantId} but the proof has none`);
      const gr = await governedEntry(g.grant, "grant", policy);
      if (hex(await sha256(gr.env.payload)) !== grantId) refuse(`the grant entry is not ${grantId}, the one the record names`);
      const signed = await verifiedKeys(gr.env, root.key, "the grant");
      const approvers = root.principalsWith(signed, "approver");
      let kind, model, scopes, from, until, tier;
      if (gr.payload.kind === "approval") {
        const a = gr.payload.doc;
        [kind, model, scopes, from, until, tier] = ["approval", a.model, a.scopes, a.valid_from, a.valid_until, a.risk_tier];
      } else if (gr.payload.kind === "exception") {
        const x = gr.payload.doc;
        [kind, model, scopes, from, until, tier] = ["exception", x.model, x.scopes, 0n, x.expires, x.risk_tier];
      } else {
        refuse("the grant entry is neither an approval nor an exception");
      }
      if (model !== s("digest")) refuse(`the ${kind} is for model ${model}, not the record's`);
      const scope = s("scope") ?? "";
      if (!scopes.some((p) => scopeMatches(p, scope))) refuse(`the ${kind} does not cover scope ${JSON.stringify(scope)}`);
      const t = asU64(field(call, "time")) ?? 0n;
      if (t < from || t >= until) refuse(`the ${kind} is valid from ${from} until ${until}, the call was at ${t}`);
      const need = root.doc.thresholds.approval[tier];
      if (BigInt(approvers.size) < need) refuse(`the ${kind} is signed by ${approvers.size} approver(s) of the trust root; its ${tier} tier needs ${need}`);
      before("grant", g.grant.index);
      pass("grant", `${kind} ${grantId} (entry ${g.grant.index}) by ${[...approvers].sort().join(", ")} (${tier} tier, ${need} needed) covers scope ${scope} at ${t}`);
    }

    const policies = field(call, "policies");
    const decided = Array.isArray(policies) ? policies.filter((p) => typeof p === "string") : [];
    if (g.policy) {
      at("policy set");
      const p = await governedEntry(g.policy, "policy", policy);
      if (p.payload.kind !== "policy-set") refuse("the policy entry is not a policy set");
      const ids = cedarIds(p.payload.doc.policies);
      const missing = decided.find((id) => !ids.includes(id));
      if (missing !== undefined) refuse(`policy ${JSON.stringify(missing)}, which decided the call, is not in the policy set`);
      before("policy", g.policy.index);
      pass("policy set", `policy set ${JSON.stringify(p.payload.doc.name)} (entry ${g.policy.index}) holds ${decided.length ? decided.join(", ") : "the policies in force"}`);
    } else if (decided.length > 0) {
      at("policy set");
      refuse("the record names deciding policies but the proof has no policy set");
    }
  }

  root.modelgateVerify.verifyLineageProof = verifyLineageProof;
})(globalThis);
