"""Everything bike prints: results on stdout in one of :data:`FORMATS`, messages on stderr, names made safe.

* Results: :func:`emit` renders a record (a dataclass or a dict) or a list of records as ``table`` (aligned
  text for people), ``json`` (one document: an object, or an array of objects), ``jsonl`` (one object per
  line) or ``csv`` (a header and one row per record, ``\\n`` line endings, nested values as JSON). Every
  command that prints results takes ``--format`` (:func:`add_format_arg`) and hands its records here, so the
  same objects come out of ``bike search --format json`` and of the HTTP API.
* Messages: :func:`info` (hidden by ``-q``), :func:`debug` (shown by ``-v``) and :func:`warn` (always) write
  one ``bike: ...`` line each to stderr; results never go there.
* Names from the outside world (file names, labels, SQL values) may hold newlines, escape sequences or
  bidirectional overrides: :func:`safe` shows them as escapes (``\\n``, ``\\x1b``, ``\\u202e``) in every
  table and message, so a file name can neither fake a line of output nor drive the terminal. JSON escapes
  them itself; CSV keeps the exact value (it is data) in a file or pipe, and escapes it on a terminal.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import unicodedata

FORMATS = ("table", "json", "jsonl", "csv")

#: Longest cell in a table; longer values (embeddings, saliency lists) are cut with "…".
MAX_CELL = 60

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


# ---- names ------------------------------------------------------------------------------------------------
def _unsafe(ch: str) -> bool:
    if ch in _NAMED:
        return True
    cat = unicodedata.category(ch)
    # Cc: C0/C1 controls and DEL; Cf: format characters (bidi overrides, zero-width, ...); Zl/Zp: separators
    return cat in ("Cc", "Cf", "Zl", "Zp")


def safe(text, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters escaped (``\\n``, ``\\x1b``, ``\\u202e``) and ``\\``
    doubled, so it prints as one inert line. ``keep_newlines`` (messages bike wrote itself, whose hint lines are
    indented) keeps a newline followed by two spaces, so a name can still not start a line of its own."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for i, ch in enumerate(s):
        if keep_newlines and ch == "\n" and s[i + 1:i + 3] == "  ":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\" if not keep_newlines else ch)
        elif _unsafe(ch):
            code = ord(ch)
            out.append(_NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


# ---- messages ---------------------------------------------------------------------------------------------
def set_verbosity(level: int) -> None:
    """``QUIET`` (-q: errors and warnings only), ``NORMAL`` or ``VERBOSE`` (-v: also debug lines, Ray's logs)."""
    global _level
    _level = level


def verbosity() -> int:
    return _level


def _say(msg: str) -> None:
    print(safe(msg, keep_newlines=True), file=sys.stderr, flush=True)


def info(msg: str) -> None:
    """A progress or context line (``bike: model: ...``); hidden by ``-q``."""
    if _level >= NORMAL:
        _say(msg)


def debug(msg: str) -> None:
    """Detail for ``-v`` only."""
    if _level >= VERBOSE:
        _say(msg)


def warn(msg: str) -> None:
    """Something the user should know even with ``-q``."""
    _say(msg)


# ---- values -----------------------------------------------------------------------------------------------
def plain(value):
    """A JSON-ready copy of ``value``: dataclasses and objects with ``to_dict()`` become dicts, numpy values
    Python numbers and lists, non-finite floats ``None``, dates ISO strings, anything else its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return plain(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if hasattr(value, "tolist"):                       # numpy arrays and scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _records(data) -> "list[dict]":
    items = data if isinstance(data, (list, tuple)) else [data]
    out = []
    for item in items:
        p = plain(item)
        out.append(p if isinstance(p, dict) else {"value": p})
    return out


def _columns(records: "list[dict]", columns=None) -> list:
    if columns:
        return list(columns)
    seen: dict = {}
    for r in records:
        seen.update(dict.fromkeys(r))
    return list(seen)


def cell(value, width: int = MAX_CELL) -> str:
    """One table cell: ``NULL`` for None, 6 significant digits for floats, long lists cut, names made safe."""
    if value is None:
        s = "NULL"
    elif isinstance(value, float):
        s = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        s = "[" + ", ".join(cell(x, width) for x in value[:16]) + (", …" if len(value) > 16 else "") + "]"
    elif isinstance(value, dict):
        s = json.dumps(plain(value), ensure_ascii=False)
    else:
        s = str(value)
    s = safe(s)
    return s if len(s) <= width else s[:width - 1] + "…"


# ---- renderers --------------------------------------------------------------------------------------------
def table(columns, rows, out=None, footer: bool = True, width: int = MAX_CELL) -> None:
    """Aligned text: a header, a rule, one line per row (``rows`` are sequences in ``columns`` order)."""
    out = out or sys.stdout                  # looked up per call (tests and notebooks swap sys.stdout)
    cells = [[cell(v, width) for v in row] for row in rows]
    heads = [safe(c) for c in columns]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(heads)]
    print("  ".join(c.ljust(w) for c, w in zip(heads, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)
    if footer:
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=out)


def write_json(data, out=None) -> None:
    out = out or sys.stdout
    json.dump(plain(data), out)
    out.write("\n")


def write_jsonl(data, out=None) -> None:
    out = out or sys.stdout
    for r in (data if isinstance(data, (list, tuple)) else [data]):
        out.write(json.dumps(plain(r)) + "\n")


def _csv_value(v, terminal: bool = False):
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return safe(v) if terminal and isinstance(v, str) else v


def write_csv(data, out=None, columns=None) -> None:
    out = out or sys.stdout
    records = _records(data)
    cols = _columns(records, columns)
    terminal = bool(getattr(out, "isatty", lambda: False)())      # a file or pipe gets the exact values
    w = csv.writer(out, lineterminator="\n")
    w.writerow([safe(c) if terminal else c for c in cols])
    for r in records:
        w.writerow([_csv_value(r.get(c), terminal) for c in cols])


def emit(data, fmt: str = "table", table_fn=None, columns=None, out=None) -> None:
    """Print ``data`` (a record or a list of records) in ``fmt``. ``table_fn(data, out)`` draws the table
    form when the command has its own; else a generic table of ``columns`` (default: every key)."""
    out = out or sys.stdout
    if fmt == "json":
        write_json(data, out)
    elif fmt == "jsonl":
        write_jsonl(data, out)
    elif fmt == "csv":
        write_csv(data, out, columns)
    elif fmt == "table":
        if table_fn is not None:
            table_fn(data, out)
        else:
            records = _records(data)
            cols = _columns(records, columns)
            table(cols, [[r.get(c) for c in cols] for r in records], out)
    else:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def emit_rows(columns, rows, fmt: str = "table", out=None) -> None:
    """Like :func:`emit` for a column list and row tuples (SQL results)."""
    if fmt == "table":
        table(columns, rows, out)
    else:
        emit([dict(zip(columns, row)) for row in rows], fmt, columns=columns, out=out)


def add_format_arg(p, default: str = "table", what: str = "", json_alias: str = "json") -> None:
    """``--format table|json|jsonl|csv`` (and the older ``--json`` = ``--format JSON_ALIAS``, not shown)."""
    p.add_argument("--format", choices=FORMATS, default=default,
                   help="table (aligned text), json (one document), jsonl (one object per line) or csv"
                        + (f"; {what}" if what else ""))
    p.add_argument("--json", dest="format", action="store_const", const=json_alias, help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS
