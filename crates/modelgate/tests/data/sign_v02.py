"""Sign a model the way model-signing 0.2.0's key flow did: the in-toto
`Digests/v0.1` statement over a files manifest, signed with an EC key."""
import pathlib
import sys

from model_signing import model
from model_signing.hashing import file, memory
from model_signing.serialization import serialize_by_file
from model_signing.signature import key
from model_signing.signing import in_toto, in_toto_signature

model_path, key_path, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])


def hasher_factory(path: pathlib.Path) -> file.SimpleFileHasher:
    return file.SimpleFileHasher(file=path, content_hasher=memory.SHA256())


serializer = serialize_by_file.ManifestSerializer(file_hasher_factory=hasher_factory)
signer = in_toto_signature.IntotoSigner(key.ECKeySigner.from_path(key_path))
sig = model.sign(
    model_path=model_path,
    signer=signer,
    payload_generator=in_toto.DigestsIntotoPayload.from_manifest,
    serializer=serializer,
    ignore_paths=[out],
)
sig.write(out)
