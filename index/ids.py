"""Content-derived identities: a renamed or copied video is the same video; an edited one is not."""
from __future__ import annotations

import hashlib
import json


def video_id(path: str, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex, 32 chars). Reads the whole file (I/O-bound, ~1 s/GB)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_id(fingerprint: dict, label_digest: str, window_s: float) -> str:
    """Stable id of everything that determines a tag row: model name, weights, frames, lexicon, label set,
    window length. 16 hex chars."""
    key = json.dumps({**fingerprint, "labels": label_digest, "window_s": float(window_s)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]
