#!/usr/bin/env python3
"""A private Sigstore instance for tests: mints keyless OMS bundles.

It plays every part of the public-good instance a keyless signature
touches, with keys of its own: a Fulcio-like CA (root and intermediate)
issuing a short-lived leaf certificate with the Fulcio extensions (OIDC
issuer, 1.3.6.1.4.1.57264.1.8 and the deprecated .1.1) and an embedded SCT
from a test CT log; a Rekor-like v1 log holding a `dsse` 0.0.1 entry, with
an RFC 6962 inclusion proof, a signed checkpoint and a signed entry
timestamp; and the trusted root naming them. The bundle is laid out as
`model_signing sign sigstore` writes it (bundle v0.3, DSSE envelope).

The payload is taken from an OMS bundle signed with a key (so the in-toto
statement is exactly what the model's files hash to), and signed again
with the leaf's key.

    mint.py --oms KEY_SIGNED.sig --identity ID --issuer URL --out DIR [--mutate NAME]

writes DIR/model.sig, DIR/trusted_root.json and DIR/trust_config.json
(a ClientTrustConfig for `model_signing verify sigstore --trust_config`).
`--mutate` makes one defect (see MUTATIONS); `--list` prints their names.
Needs `cryptography` and `rfc8785` (both in the reference venv).
"""

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import struct
import sys

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

B64 = lambda b: base64.b64encode(b).decode()
SHA256 = lambda b: hashlib.sha256(b).digest()
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
LOG_ORIGIN = "rekor.test.modelgate - 2605736670972794746"
LOG_NAME = "rekor.test.modelgate"

# Defects made while minting (the signatures over them stay valid) or
# after (the bytes a verifier reads are changed).
MUTATIONS = [
    "payload-byte", "signature-byte", "signature-missing", "second-signature",
    "set-byte", "set-missing", "integrated-time", "log-index",
    "proof-hash", "proof-missing-hash", "proof-root", "proof-tree-size",
    "checkpoint-root", "checkpoint-signature", "checkpoint-missing",
    "body-payload-hash", "body-signature", "body-verifier", "body-kind",
    "log-id", "certificate-byte", "certificate-missing",
    "sct-signature", "sct-missing", "sct-log-unknown",
    "leaf-expired", "leaf-not-yet-valid", "leaf-no-code-signing", "leaf-no-digital-signature",
    "leaf-untrusted-ca", "leaf-no-issuer-extension",
    "root-ca-window-ended", "root-tlog-key-unknown", "root-ctlog-key-unknown",
    "root-tlog-window-ended", "media-type",
]

# Families of byte-level defects, each member flipping one byte at a
# different place of one piece of evidence (spread over its whole length).
FAMILIES = {
    "certificate": 40,  # the leaf's DER: TBS, extensions, SCT, signature
    "payload": 30,  # the DSSE payload (the OMS statement)
    "body": 30,  # the log entry's canonicalized body
    "signature": 15,  # the DSSE signature
    "set": 15,  # the signed entry timestamp
    "checkpoint-sig": 15,  # the checkpoint's signature line (key hint and signature)
    "root-hash": 10,  # the inclusion proof's root hash
    "proof-hashes": 12,  # the inclusion proof's hashes
}
MUTATIONS += [f"{f}-flip-{k}" for f, n in FAMILIES.items() for k in range(n)]
MUTATIONS += [f"integrated-time-{d}" for d in ("plus-1", "plus-3600", "minus-3600", "zero", "far-future")]


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def der_length(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_utf8(s):
    b = s.encode()
    assert len(b) < 128
    return bytes([0x0C, len(b)]) + b


def rfc3339(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ca_cert(name, key, issuer_name, issuer_key, start, end, parent_key=None):
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelgate.test"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent_key is None else 0), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if parent_key is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()), False)
    return b.sign(issuer_key, hashes.SHA384())


def sct_list(sct_key, ct_log_id, issuer_key_hash, tbs, when_ms, corrupt=False):
    """An RFC 6962 SignedCertificateTimestampList holding one precert SCT."""
    signed_entry = issuer_key_hash + struct.pack("!I", len(tbs))[1:] + tbs
    data = struct.pack("!BBQH", 0, 0, when_ms, 1) + signed_entry + struct.pack("!H", 0)
    sig = sct_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if corrupt:
        sig = sig[:-1] + bytes([sig[-1] ^ 1])
    sct = struct.pack("!B", 0) + ct_log_id + struct.pack("!Q", when_ms) + struct.pack("!H", 0)
    sct += bytes([4, 3]) + struct.pack("!H", len(sig)) + sig
    one = struct.pack("!H", len(sct)) + sct
    return struct.pack("!H", len(one)) + one


def leaf_cert(m, leaf_key, inter, inter_key, identity, issuer, start, end, ct_key, ct_log_id):
    def builder():
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(inter.subject)
            .public_key(leaf_key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
        )
        if m != "leaf-no-digital-signature":
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
        else:
            b = b.add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), True)
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH] if m == "leaf-no-code-signing" else [ExtendedKeyUsageOID.CODE_SIGNING]
        b = b.add_extension(x509.ExtendedKeyUsage(eku), False)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter_key.public_key()), False)
        san = x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)
        b = b.add_extension(x509.SubjectAlternativeName([san]), True)
        if m != "leaf-no-issuer-extension":
            b = b.add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), False)
            b = b.add_extension(x509.UnrecognizedExtension(ISSUER_V2, der_utf8(issuer)), False)
        return b

    serial = x509.random_serial_number()
    precert = builder().sign(inter_key, hashes.SHA256())
    if m == "sct-missing":
        return precert
    issuer_key_hash = SHA256(spki(inter_key.public_key()))
    when = int(start.timestamp() * 1000) + 1000
    lst = sct_list(ct_key, ct_log_id, issuer_key_hash, precert.tbs_certificate_bytes, when, m == "sct-signature")
    ext = bytes([0x04]) + der_length(len(lst)) + lst
    cert = builder().add_extension(x509.UnrecognizedExtension(SCT_LIST, ext), False).sign(inter_key, hashes.SHA256())
    assert cert.tbs_precertificate_bytes == precert.tbs_certificate_bytes
    return cert


def leaf_hash(b):
    return SHA256(b"\x00" + b)


def node_hash(l, r):
    return SHA256(b"\x01" + l + r)


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(i, leaves):
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if i < k:
        return path(i, leaves[:k]) + [mth(leaves[k:])]
    return path(i - k, leaves[k:]) + [mth(leaves[:k])]


def sign_note(key, key_id, text, corrupt=False):
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    if corrupt:
        sig = sig[:-1] + bytes([sig[-1] ^ 1])
    return text + "\n\u2014 " + LOG_NAME + " " + B64(key_id[:4] + sig) + "\n"


def flip(b64, at=-3):
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return B64(bytes(raw))


def mint(oms, identity, issuer, m):
    env = json.loads(oms)["dsseEnvelope"]
    payload = base64.b64decode(env["payload"])
    ptype = env["payloadType"]
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    day = dt.timedelta(days=1)

    root_key, inter_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelgate.test"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "test-fulcio-root")])
    root = ca_cert("test-fulcio-root", root_key, root_name, root_key, now - 30 * day, now + 3650 * day)
    inter = ca_cert("test-fulcio-intermediate", inter_key, root.subject, root_key, now - 30 * day,
                    now + 3650 * day, parent_key=root_key)
    signing_inter, signing_inter_key = inter, inter_key
    if m == "leaf-untrusted-ca":
        k = ec.generate_private_key(ec.SECP384R1())
        signing_inter = ca_cert("test-fulcio-intermediate", k, root.subject, k, now - 30 * day, now + 3650 * day)
        signing_inter_key = k

    ct_key, log_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ct_id, log_id = SHA256(spki(ct_key.public_key())), SHA256(spki(log_key.public_key()))
    sct_id = SHA256(b"another log") if m == "sct-log-unknown" else ct_id

    start = now - dt.timedelta(minutes=2)
    end = start + dt.timedelta(minutes=10)
    integrated = int(now.timestamp())
    if m == "leaf-expired":
        integrated = int((end + dt.timedelta(minutes=1)).timestamp())
    if m == "leaf-not-yet-valid":
        integrated = int((start - dt.timedelta(minutes=1)).timestamp())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_cert(m, leaf_key, signing_inter, signing_inter_key, identity, issuer, start, end, ct_key, sct_id)
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)

    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
    sig = leaf_key.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope = {"payload": B64(payload), "payloadType": ptype, "signatures": [{"sig": B64(sig)}]}
    env_bytes = json.dumps(envelope, separators=(",", ":")).encode()
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    body_sig = B64(sig)
    if m == "body-signature":
        body_sig = flip(body_sig)
    verifier = B64(pem)
    if m == "body-verifier":
        verifier = B64(pem.replace(b"A", b"B", 1))
    payload_hash = hashlib.sha256(payload).hexdigest()
    if m == "body-payload-hash":
        payload_hash = hashlib.sha256(payload + b" ").hexdigest()
    body = {
        "apiVersion": "0.0.1",
        "kind": "intoto" if m == "body-kind" else "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(env_bytes).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": payload_hash},
            "signatures": [{"signature": body_sig, "verifier": verifier}],
        },
    }
    body_bytes = rfc8785.dumps(body)

    # A log of 13 entries, ours at index 6; the rest are other entries.
    index, size = 6, 13
    leaves = [leaf_hash(b"other entry %d" % i) for i in range(size)]
    leaves[index] = leaf_hash(body_bytes)
    root_hash = mth(leaves)
    proof = path(index, leaves)
    note = "%s\n%d\n%s\n" % (LOG_ORIGIN, size, B64(root_hash if m != "checkpoint-root" else SHA256(b"x")))
    checkpoint = sign_note(log_key, log_id, note, m == "checkpoint-signature")

    set_payload = rfc8785.dumps({"body": B64(body_bytes), "integratedTime": integrated,
                                 "logID": log_id.hex(), "logIndex": index})
    set_sig = log_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))

    entry = {
        "logIndex": str(index),
        "logId": {"keyId": B64(log_id)},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": str(integrated),
        "inclusionPromise": {"signedEntryTimestamp": B64(set_sig)},
        "inclusionProof": {
            "logIndex": str(index),
            "rootHash": B64(root_hash),
            "treeSize": str(size),
            "hashes": [B64(h) for h in proof],
            "checkpoint": {"envelope": checkpoint},
        },
        "canonicalizedBody": B64(body_bytes),
    }
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": B64(leaf_der)}, "tlogEntries": [entry]},
        "dsseEnvelope": envelope,
    }

    def key(pub, start_t, end_t=None, details="PKIX_ECDSA_P256_SHA_256"):
        v = {"start": rfc3339(start_t)}
        if end_t is not None:
            v["end"] = rfc3339(end_t)
        return {"rawBytes": B64(spki(pub)), "keyDetails": details, "validFor": v}

    tlog_pub = ec.generate_private_key(ec.SECP256R1()).public_key() if m == "root-tlog-key-unknown" else log_key.public_key()
    ct_pub = ec.generate_private_key(ec.SECP256R1()).public_key() if m == "root-ctlog-key-unknown" else ct_key.public_key()
    ca_end = now - dt.timedelta(minutes=5) if m == "root-ca-window-ended" else None
    tlog_end = now - dt.timedelta(minutes=5) if m == "root-tlog-window-ended" else None
    ca_valid = {"start": rfc3339(now - 30 * day)}
    if ca_end:
        ca_valid["end"] = rfc3339(ca_end)
    trusted_root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": "https://rekor.test.modelgate", "hashAlgorithm": "SHA2_256",
                   "publicKey": key(tlog_pub, now - 30 * day, tlog_end),
                   "logId": {"keyId": B64(SHA256(spki(tlog_pub)))}}],
        "certificateAuthorities": [{
            "subject": {"organization": "modelgate.test", "commonName": "test-fulcio"},
            "uri": "https://fulcio.test.modelgate",
            "certChain": {"certificates": [{"rawBytes": B64(inter.public_bytes(serialization.Encoding.DER))},
                                           {"rawBytes": B64(root.public_bytes(serialization.Encoding.DER))}]},
            "validFor": ca_valid,
        }],
        "ctlogs": [{"baseUrl": "https://ctfe.test.modelgate", "hashAlgorithm": "SHA2_256",
                    "publicKey": key(ct_pub, now - 30 * day),
                    "logId": {"keyId": B64(SHA256(spki(ct_pub)))}}],
        "timestampAuthorities": [],
    }
    post_mint(bundle, m)
    return bundle, trusted_root


def post_mint(bundle, m):
    e = bundle["verificationMaterial"]["tlogEntries"][0]
    env = bundle["dsseEnvelope"]
    p = e["inclusionProof"]
    edits = {
        "payload-byte": lambda: env.__setitem__("payload", flip(env["payload"], 40)),
        "signature-byte": lambda: env["signatures"][0].__setitem__("sig", flip(env["signatures"][0]["sig"])),
        "signature-missing": lambda: env.__setitem__("signatures", []),
        "second-signature": lambda: env["signatures"].append({"sig": flip(env["signatures"][0]["sig"])}),
        "set-byte": lambda: e["inclusionPromise"].__setitem__("signedEntryTimestamp",
                                                              flip(e["inclusionPromise"]["signedEntryTimestamp"])),
        "set-missing": lambda: e.pop("inclusionPromise"),
        "integrated-time": lambda: e.__setitem__("integratedTime", str(int(e["integratedTime"]) - 1)),
        "log-index": lambda: e.__setitem__("logIndex", str(int(e["logIndex"]) + 1)),
        "proof-hash": lambda: p["hashes"].__setitem__(0, flip(p["hashes"][0])),
        "proof-missing-hash": lambda: p["hashes"].pop(),
        "proof-root": lambda: p.__setitem__("rootHash", flip(p["rootHash"])),
        "proof-tree-size": lambda: p.__setitem__("treeSize", str(int(p["treeSize"]) + 1)),
        "checkpoint-missing": lambda: p.pop("checkpoint"),
        "log-id": lambda: e["logId"].__setitem__("keyId", flip(e["logId"]["keyId"])),
        "certificate-byte": lambda: bundle["verificationMaterial"]["certificate"].__setitem__(
            "rawBytes", flip(bundle["verificationMaterial"]["certificate"]["rawBytes"], 200)),
        "certificate-missing": lambda: bundle["verificationMaterial"].pop("certificate"),
        "media-type": lambda: bundle.__setitem__("mediaType", "application/vnd.dev.sigstore.bundle.v0.2+json"),
    }
    if m in edits:
        edits[m]()
    elif m and ("-flip-" in m or m.startswith("integrated-time-")):
        family_flip(bundle, m)


def flip_at(b64, k, n):
    """Flip one bit of the byte at the k-th of n places spread over the decoded bytes."""
    raw = bytearray(base64.b64decode(b64))
    raw[(k * len(raw)) // n] ^= 0x10
    return B64(bytes(raw))


def family_flip(bundle, m):
    e = bundle["verificationMaterial"]["tlogEntries"][0]
    env = bundle["dsseEnvelope"]
    p = e["inclusionProof"]
    if m.startswith("integrated-time-"):
        t = int(e["integratedTime"])
        e["integratedTime"] = str({"plus-1": t + 1, "plus-3600": t + 3600, "minus-3600": t - 3600,
                                   "zero": 0, "far-future": 4102444800}[m[len("integrated-time-"):]])
        return
    family, k = m.rsplit("-flip-", 1)
    k, n = int(k), FAMILIES[family]
    if family == "certificate":
        c = bundle["verificationMaterial"]["certificate"]
        c["rawBytes"] = flip_at(c["rawBytes"], k, n)
    elif family == "payload":
        env["payload"] = flip_at(env["payload"], k, n)
    elif family == "body":
        e["canonicalizedBody"] = flip_at(e["canonicalizedBody"], k, n)
    elif family == "signature":
        env["signatures"][0]["sig"] = flip_at(env["signatures"][0]["sig"], k, n)
    elif family == "set":
        promise = e["inclusionPromise"]
        promise["signedEntryTimestamp"] = flip_at(promise["signedEntryTimestamp"], k, n)
    elif family == "checkpoint-sig":
        note, sig = p["checkpoint"]["envelope"].rsplit(" ", 1)
        p["checkpoint"]["envelope"] = note + " " + flip_at(sig.strip(), k, n) + "\n"
    elif family == "root-hash":
        p["rootHash"] = flip_at(p["rootHash"], k, n)
    elif family == "proof-hashes":
        i = k % len(p["hashes"])
        p["hashes"][i] = flip_at(p["hashes"][i], k // len(p["hashes"]), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oms")
    ap.add_argument("--identity", default="signer@example.com")
    ap.add_argument("--issuer", default="https://accounts.example.com")
    ap.add_argument("--out")
    ap.add_argument("--mutate")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        print("\n".join(MUTATIONS))
        return 0
    if a.mutate and a.mutate not in MUTATIONS:  # every family member is listed
        sys.exit(f"unknown mutation {a.mutate!r}; --list names them")
    bundle, root = mint(open(a.oms, "rb").read(), a.identity, a.issuer, a.mutate)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.sig"), "w") as f:
        json.dump(bundle, f)
    with open(os.path.join(a.out, "trusted_root.json"), "w") as f:
        json.dump(root, f)
    config = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": root,
        "signingConfig": {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                          "caUrls": [], "oidcUrls": [], "rekorTlogUrls": [], "tsaUrls": [],
                          "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}},
    }
    with open(os.path.join(a.out, "trust_config.json"), "w") as f:
        json.dump(config, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
