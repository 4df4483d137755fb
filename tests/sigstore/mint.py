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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

B64 = lambda b: base64.b64encode(b).decode()
SHA256 = lambda b: hashlib.sha256(b).digest()
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
LOG_ORIGIN = "rekor.test.modelgate - 2605736670972794746"
LOG_NAME = "rekor.test.modelgate"
LOG2_NAME = "rekor-v2.test.modelgate"

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

# Defects of the RFC 3161 timestamp and of the timestamp authority.
TSA_MUTATIONS = [
    "tsa-missing", "tsa-imprint", "tsa-untrusted", "tsa-window-ended", "tsa-no-eku",
    "tsa-eku-not-critical", "tsa-status", "tsa-duplicate", "tsa-cert-expired", "tsa-content-digest",
    "tsa-attr-content-type", "root-tsa-missing",
]
# Rekor v2: no SET and no integrated time (the time is the timestamp's), a
# hashedrekord 0.0.2 body, an Ed25519 log.
V2_FAMILIES = {"certificate": 20, "payload": 10, "body": 20, "signature": 10, "checkpoint-sig": 15,
               "root-hash": 5, "proof-hashes": 6, "tsa": 30}
V2_MUTATIONS = [m for m in MUTATIONS[:36] if not m.startswith(("set-", "integrated-time"))]
V2_MUTATIONS += ["body-key-details", "kind-version"] + TSA_MUTATIONS
V2_MUTATIONS += [f"{f}-flip-{k}" for f, n in V2_FAMILIES.items() for k in range(n)]
# Rekor v1 with a timestamp too (what the public-good instance writes today).
V1_TSA_MUTATIONS = ["tsa-imprint", "tsa-untrusted", "tsa-status", "tsa-window-ended", "tsa-duplicate",
                    "tsa-content-digest", "leaf-expired", "signature-byte", "body-payload-hash", "set-byte"]
PROFILES = {"v1": MUTATIONS, "v2": V2_MUTATIONS, "v1-tsa": V1_TSA_MUTATIONS}


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
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig, name = key.sign(text.encode()), LOG2_NAME
    else:
        sig, name = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())), LOG_NAME
    if corrupt:
        sig = sig[:-1] + bytes([sig[-1] ^ 1])
    return text + "\n\u2014 " + name + " " + B64(key_id[:4] + sig) + "\n"


def log_id_v2(pub):
    """A Rekor v2 log's id: its C2SP signed-note key hash (name, 0x0A, 0x01, key)."""
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SHA256(LOG2_NAME.encode() + b"\n\x01" + raw)


def flip(b64, at=-3):
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return B64(bytes(raw))


def tsa_chain(now, m):
    """A test timestamp authority: a P-384 root and its timeStamping leaf."""
    day = dt.timedelta(days=1)
    root_key, leaf_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    root = ca_cert("test-tsa-root", root_key, x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelgate.test"),
                                                        x509.NameAttribute(NameOID.COMMON_NAME, "test-tsa-root")]),
                   root_key, now - 30 * day, now + 3650 * day)
    leaf_end = now - dt.timedelta(minutes=5) if m == "tsa-cert-expired" else now + 3650 * day
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelgate.test"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, "test-tsa")]))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 30 * day)
        .not_valid_after(leaf_end)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
    )
    if m != "tsa-no-eku":
        usage = [ExtendedKeyUsageOID.TIME_STAMPING]
        b = b.add_extension(x509.ExtendedKeyUsage(usage), m != "tsa-eku-not-critical")
    return root, b.sign(root_key, hashes.SHA384()), leaf_key


def timestamp(tsa_cert, tsa_key, message, when, m):
    """An RFC 3161 TimeStampResp over `message`, as a TSA returns it."""
    from asn1crypto import cms, tsp
    from asn1crypto import x509 as ax509

    imprint = SHA256(message if m != "tsa-imprint" else message + b"other")
    tst = tsp.TSTInfo({"version": "v1", "policy": "1.3.6.1.4.1.57264.2",
                       "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": imprint},
                       "serial_number": int.from_bytes(os.urandom(8), "big"), "gen_time": when,
                       "nonce": int.from_bytes(os.urandom(8), "big")})
    tst_der = tst.dump()
    cert_der = tsa_cert.public_bytes(serialization.Encoding.DER)
    digest = SHA256(tst_der + (b"x" if m == "tsa-content-digest" else b""))
    content_type = "data" if m == "tsa-attr-content-type" else "tst_info"
    attrs = [cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
             cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
             cms.CMSAttribute({"type": "signing_certificate_v2", "values": [{"certs": [{"cert_hash": SHA256(cert_der)}]}]})]
    attrs.sort(key=lambda a: a.dump())
    signed = cms.CMSAttributes(attrs)
    sig = tsa_key.sign(signed.dump(), ec.ECDSA(hashes.SHA256()))
    acert = ax509.Certificate.load(cert_der)
    sid = {"issuer_and_serial_number": {"issuer": acert.issuer, "serial_number": acert.serial_number}}
    si = cms.SignerInfo({"version": "v1", "sid": cms.SignerIdentifier(sid), "digest_algorithm": {"algorithm": "sha256"},
                         "signed_attrs": signed, "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": sig})
    sd = cms.SignedData({"version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
                         "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(tst_der)},
                         "certificates": [acert], "signer_infos": [si]})
    status = "rejection" if m == "tsa-status" else "granted"
    token = cms.ContentInfo({"content_type": "signed_data", "content": sd})
    return tsp.TimeStampResp({"status": {"status": status}, "time_stamp_token": token}).dump()


def entry_body(m, profile, payload, pae, sig, leaf, env_bytes):
    """The log entry's body: dsse 0.0.1 (Rekor v1) or hashedrekord 0.0.2 (v2)."""
    body_sig = flip(B64(sig)) if m == "body-signature" else B64(sig)
    if profile == "v2":
        leaf_der = leaf.public_bytes(serialization.Encoding.DER)
        digest = SHA256(pae + (b" " if m == "body-payload-hash" else b""))
        cert = B64(leaf_der) if m != "body-verifier" else flip(B64(leaf_der), 200)
        return {"kind": "dsse" if m == "body-kind" else "hashedrekord", "apiVersion": "0.0.2", "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": B64(digest)},
                "signature": {"content": body_sig, "verifier": {
                    "x509Certificate": {"rawBytes": cert},
                    "keyDetails": "PKIX_ECDSA_P384_SHA_384" if m == "body-key-details" else "PKIX_ECDSA_P256_SHA_256"}}}}}
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    verifier = B64(pem.replace(b"A", b"B", 1)) if m == "body-verifier" else B64(pem)
    payload_hash = hashlib.sha256(payload + (b" " if m == "body-payload-hash" else b"")).hexdigest()
    return {
        "apiVersion": "0.0.1",
        "kind": "intoto" if m == "body-kind" else "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(env_bytes).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": payload_hash},
            "signatures": [{"signature": body_sig, "verifier": verifier}],
        },
    }


def mint(oms, identity, issuer, m, profile="v1"):
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

    ct_key = ec.generate_private_key(ec.SECP256R1())
    ct_id = SHA256(spki(ct_key.public_key()))
    if profile == "v2":
        log_key = ed25519.Ed25519PrivateKey.generate()
        log_id = log_id_v2(log_key.public_key())
    else:
        log_key = ec.generate_private_key(ec.SECP256R1())
        log_id = SHA256(spki(log_key.public_key()))
    sct_id = SHA256(b"another log") if m == "sct-log-unknown" else ct_id

    start = now - dt.timedelta(minutes=2)
    end = start + dt.timedelta(minutes=10)
    signed_at = now
    if m == "leaf-expired":
        signed_at = end + dt.timedelta(minutes=1)
    if m == "leaf-not-yet-valid":
        signed_at = start - dt.timedelta(minutes=1)
    integrated = int(signed_at.timestamp())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_cert(m, leaf_key, signing_inter, signing_inter_key, identity, issuer, start, end, ct_key, sct_id)
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)

    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
    sig = leaf_key.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope = {"payload": B64(payload), "payloadType": ptype, "signatures": [{"sig": B64(sig)}]}
    env_bytes = json.dumps(envelope, separators=(",", ":")).encode()
    body_bytes = rfc8785.dumps(entry_body(m, profile, payload, pae, sig, leaf, env_bytes))

    # A log of 13 entries, ours at index 6; the rest are other entries.
    index, size = 6, 13
    leaves = [leaf_hash(b"other entry %d" % i) for i in range(size)]
    leaves[index] = leaf_hash(body_bytes)
    root_hash = mth(leaves)
    proof = path(index, leaves)
    origin = LOG2_NAME if profile == "v2" else LOG_ORIGIN
    note = "%s\n%d\n%s\n" % (origin, size, B64(root_hash if m != "checkpoint-root" else SHA256(b"x")))
    checkpoint = sign_note(log_key, log_id, note, m == "checkpoint-signature")

    entry = {
        "logIndex": str(index),
        "logId": {"keyId": B64(log_id)},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": str(integrated),
        "inclusionProof": {
            "logIndex": str(index),
            "rootHash": B64(root_hash),
            "treeSize": str(size),
            "hashes": [B64(h) for h in proof],
            "checkpoint": {"envelope": checkpoint},
        },
        "canonicalizedBody": B64(body_bytes),
    }
    if profile == "v2":
        entry.pop("integratedTime")
        entry["kindVersion"] = {"kind": "dsse" if m == "kind-version" else "hashedrekord", "version": "0.0.2"}
    else:
        set_payload = rfc8785.dumps({"body": B64(body_bytes), "integratedTime": integrated,
                                     "logID": log_id.hex(), "logIndex": index})
        entry["inclusionPromise"] = {"signedEntryTimestamp": B64(log_key.sign(set_payload, ec.ECDSA(hashes.SHA256())))}
    material = {"certificate": {"rawBytes": B64(leaf_der)}, "tlogEntries": [entry]}
    tsa_root, tsa_leaf, tsa_key = tsa_chain(now, m)
    if profile != "v1" and m != "tsa-missing":
        signer_cert, signer_key = tsa_leaf, tsa_key
        if m == "tsa-untrusted":
            _, signer_cert, signer_key = tsa_chain(now, m)
        stamp = B64(timestamp(signer_cert, signer_key, sig, signed_at, m))
        stamps = [{"signedTimestamp": stamp}] * (2 if m == "tsa-duplicate" else 1)
        material["timestampVerificationData"] = {"rfc3161Timestamps": stamps}
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": material,
        "dsseEnvelope": envelope,
    }

    def key(pub, start_t, end_t=None, details="PKIX_ECDSA_P256_SHA_256"):
        v = {"start": rfc3339(start_t)}
        if end_t is not None:
            v["end"] = rfc3339(end_t)
        return {"rawBytes": B64(spki(pub)), "keyDetails": details, "validFor": v}

    if profile == "v2":
        tlog_pub = ed25519.Ed25519PrivateKey.generate().public_key() if m == "root-tlog-key-unknown" else log_key.public_key()
        tlog_id, tlog_details, tlog_url = log_id_v2(tlog_pub), "PKIX_ED25519", "https://" + LOG2_NAME
    else:
        tlog_pub = ec.generate_private_key(ec.SECP256R1()).public_key() if m == "root-tlog-key-unknown" else log_key.public_key()
        tlog_id, tlog_details, tlog_url = SHA256(spki(tlog_pub)), "PKIX_ECDSA_P256_SHA_256", "https://rekor.test.modelgate"
    ct_pub = ec.generate_private_key(ec.SECP256R1()).public_key() if m == "root-ctlog-key-unknown" else ct_key.public_key()
    ca_end = now - dt.timedelta(minutes=5) if m == "root-ca-window-ended" else None
    tlog_end = now - dt.timedelta(minutes=5) if m == "root-tlog-window-ended" else None
    ca_valid = {"start": rfc3339(now - 30 * day)}
    if ca_end:
        ca_valid["end"] = rfc3339(ca_end)
    tsa_valid = {"start": rfc3339(now - 30 * day)}
    if m == "tsa-window-ended":
        tsa_valid["end"] = rfc3339(now - dt.timedelta(minutes=5))
    der = lambda c: {"rawBytes": B64(c.public_bytes(serialization.Encoding.DER))}
    trusted_root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": tlog_url, "hashAlgorithm": "SHA2_256",
                   "publicKey": key(tlog_pub, now - 30 * day, tlog_end, tlog_details),
                   "logId": {"keyId": B64(tlog_id)}}],
        "certificateAuthorities": [{
            "subject": {"organization": "modelgate.test", "commonName": "test-fulcio"},
            "uri": "https://fulcio.test.modelgate",
            "certChain": {"certificates": [der(inter), der(root)]},
            "validFor": ca_valid,
        }],
        "ctlogs": [{"baseUrl": "https://ctfe.test.modelgate", "hashAlgorithm": "SHA2_256",
                    "publicKey": key(ct_pub, now - 30 * day),
                    "logId": {"keyId": B64(SHA256(spki(ct_pub)))}}],
        "timestampAuthorities": [] if m == "root-tsa-missing" else [{
            "subject": {"organization": "modelgate.test", "commonName": "test-tsa"},
            "uri": "https://tsa.test.modelgate",
            "certChain": {"certificates": [der(tsa_leaf), der(tsa_root)]},
            "validFor": tsa_valid,
        }],
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
    k, n = int(k), (V2_FAMILIES if "inclusionPromise" not in e else FAMILIES)[family]
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
    elif family == "tsa":
        stamp = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
        stamp["signedTimestamp"] = flip_at(stamp["signedTimestamp"], k, n)
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
    ap.add_argument("--profile", choices=sorted(PROFILES), default="v1",
                    help="v1: Rekor v1 with a SET; v1-tsa: and an RFC 3161 timestamp; "
                         "v2: Rekor v2 (no SET) with a timestamp")
    ap.add_argument("--list", action="store_true", help="the profile's mutations")
    a = ap.parse_args()
    if a.list:
        print("\n".join(PROFILES[a.profile]))
        return 0
    if a.mutate and a.mutate not in PROFILES[a.profile]:  # every family member is listed
        sys.exit(f"unknown mutation {a.mutate!r} for profile {a.profile}; --list names them")
    bundle, root = mint(open(a.oms, "rb").read(), a.identity, a.issuer, a.mutate, a.profile)
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
