"""The shapes of the store's two kinds of JSON object, checked in one place: commit records and the writer lease.

Both are read from files or objects that anything may have written (a crashed writer, another version, a
person with an editor, an attacker with write access to the bucket), so every reader goes through these
functions before it uses a field, and a malformed object is a reason in one line, never a traceback:

* :func:`commit_record` parses ``_commits/<batch>.json`` and checks every field the store uses (types, ranges,
  names). A record that fails is *unreadable*: its batch is damaged (index/store/core.py), ``bike check`` reports
  it and ``bike repair`` sets it aside.
* :func:`lease_holder` parses ``_lock.json`` (index/store/lease.py) and returns the holder with only well-formed
  fields, plus the reason when the object is malformed.

Unknown extra keys are allowed in both (a newer bike may add fields); a known key with the wrong type is not.
"""
from __future__ import annotations

import json
import math
import re

#: A batch id: ``<20-digit ns time>-<8 hex>``, plus ``-c<hex>`` per compaction level (index/store/compact.py).
BATCH = re.compile(r"[0-9]{20}-[0-9a-f]{8}(-c[0-9a-f]+)*")
#: A shard file name a commit record may give under ``shards`` (object storage: a replacement's new name).
SHARD_NAME = re.compile(r"[0-9]{20}-[0-9a-f]{8}(-c[0-9a-f]+)*(\.[0-9a-f]{6,32})?\.parquet")
#: Largest commit record read (bytes): a compacted record of ~100,000 videos is a few MB.
MAX_RECORD_BYTES = 64 * 2**20
#: Largest lease object read (bytes); bike writes ~200.
MAX_LEASE_BYTES = 64 * 2**10
_SHA256 = re.compile(r"[0-9a-f]{64}")
_batch = BATCH.fullmatch
_sha256 = _SHA256.fullmatch
_MAX_INT = 2**63 - 1


class Malformed(ValueError):
    """A JSON object that does not have the shape bike writes; the message says which field and why."""


def _what(v) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


def parse_json(data: bytes, limit: int) -> object:
    """``data`` as JSON, refusing more than ``limit`` bytes and nesting Python cannot parse (Malformed)."""
    if len(data) > limit:
        raise Malformed(f"{len(data)} bytes, more than the {limit} a valid one can have")
    try:
        return json.loads(data)
    except RecursionError:
        raise Malformed("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:       # JSONDecodeError is a ValueError
        raise Malformed(f"not JSON ({str(e)[:120]})") from None


def _count(v) -> bool:
    return type(v) is int and 0 <= v <= _MAX_INT


def _number(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _need(ok: bool, field: str, v, want: str) -> None:
    if not ok:
        shown = json.dumps(v)[:60] if _what(v) in ("null", "a boolean", "an integer", "a number", "a string") \
            else _what(v)
        raise Malformed(f"{field!r} is {shown}, not {want}")


def _str_map(rec: dict, field: str, values, want: str, required: bool = False) -> None:
    if field not in rec:
        if required:
            raise Malformed(f"no {field!r}")
        return
    m = rec[field]
    _need(isinstance(m, dict), field, m, "an object")
    if all(map(values, m.values())):                 # the common case: no message built per entry
        return
    for k, v in m.items():
        _need(values(v), f"{field}.{k}"[:80], v, want)


def commit_record(data: bytes, name: str) -> dict:
    """The commit record ``_commits/<name>.json`` parsed and checked (see the module docstring); raises
    :class:`Malformed` with the first problem found."""
    rec = parse_json(data, MAX_RECORD_BYTES)
    _need(isinstance(rec, dict), "record", rec, "an object")
    for field in ("batch", "model_id"):
        if field not in rec:
            raise Malformed(f"no {field!r}")
        _need(isinstance(rec[field], str) and rec[field] != "", field, rec[field], "a non-empty string")
    batch = rec["batch"]
    if batch != name:                              # its shards' names derive from it: no other name
        raise Malformed(f"it names batch {batch[:80]!r}, not its own file name")
    _need(bool(BATCH.fullmatch(batch)), "batch", batch, "a batch id")
    _str_map(rec, "videos", lambda v: isinstance(v, str), "a status string", required=True)
    _str_map(rec, "tables", _count, "a row count", required=True)
    if rec.get("files") is not None:
        _str_map(rec, "files", lambda v: isinstance(v, dict), "an object of shard stats")
        for table, st in rec["files"].items():       # messages are built only for a field that fails
            if "bytes" in st and not _count(st["bytes"]):
                _need(False, f"files.{table}.bytes"[:80], st["bytes"], "a byte count")
            if "sha256" in st and not (isinstance(st["sha256"], str) and _sha256(st["sha256"])):
                _need(False, f"files.{table}.sha256"[:80], st["sha256"], "a SHA-256 in hex")
    _str_map(rec, "shards", lambda v: isinstance(v, str) and bool(SHARD_NAME.fullmatch(v))
             and v.startswith(batch + "."), "a shard file of this batch")
    for field in ("replace", "cleaned"):
        if field in rec:
            _need(isinstance(rec[field], bool), field, rec[field], "true or false")
    if "created" in rec:
        _need(_number(rec["created"]), "created", rec["created"], "a time in seconds")
    if "drop" in rec:
        _need(isinstance(rec["drop"], list) and all(isinstance(v, str) for v in rec["drop"]), "drop",
              rec["drop"], "a list of video ids")
    for field in ("compacted", "covers"):
        if field in rec:
            v = rec[field]
            _need(isinstance(v, list) and all(isinstance(b, str) and _batch(b) for b in v), field, v,
                  "a list of batch ids")
    if len(batch) > 29 and not rec.get("compacted"):   # named as a compaction (…-c<hex>): say what it merged
        raise Malformed("a compacted batch (its id ends in -c…) with no 'compacted' list")
    if rec.get("compacted"):
        late = [b for b in rec["compacted"] if b >= batch]
        if late:                                   # a compaction is named after its last member: they sort first
            raise Malformed(f"'compacted' names batch {late[0]}, which is not older than this one")
    return rec


def lease_holder(data: bytes) -> "tuple[dict, str | None]":
    """(the holder's well-formed fields, the reason the lease object is malformed or None) of ``_lock.json``.
    The fields bike writes: ``host`` (string), ``pid`` (integer), ``started`` and ``expires`` (seconds),
    ``token`` (string), ``ttl_s`` (seconds)."""
    try:
        obj = parse_json(data, MAX_LEASE_BYTES)
        _need(isinstance(obj, dict), "lease", obj, "an object")
    except Malformed as e:
        return {}, str(e)
    holder: dict = {}
    problems: list[str] = []
    for field, ok, want in (("host", lambda v: isinstance(v, str), "a string"),
                            ("pid", lambda v: type(v) is int and v > 0, "a process id"),
                            ("started", _number, "a time in seconds"), ("expires", _number, "a time in seconds"),
                            ("token", lambda v: isinstance(v, str), "a string"),
                            ("ttl_s", lambda v: _number(v) and v > 0, "seconds")):
        if field not in obj:
            if field != "ttl_s":
                problems.append(f"no {field!r}")
            continue
        try:
            _need(ok(obj[field]), field, obj[field], want)
            holder[field] = obj[field]
        except Malformed as e:
            problems.append(str(e))
    return holder, ("; ".join(problems) or None)
