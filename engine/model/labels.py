"""Label sets: the class names a model scores, shipped as data files in ``engine/labels/``.

A label set can be named three ways (see :func:`load_labels`):

* a built-in name: ``kinetics400``, ``k600-split1`` … ``k600-split3`` (the Kinetics-600 classes new
  to K400, zero-shot splits), ``ucf101``, ``hmdb51``, ``activitynet``, ``charades``;
* a file: an ``id,name`` CSV (header optional) or a Charades-style ``c000 name`` text file; only a regular
  file of at most 16 MiB is read (``engine.model.safefile``): a FIFO or ``/dev/zero`` named by a store is refused;
* an inline comma-separated list: ``"dog,cat,surfing crowd"``.

Names are used verbatim in the prompt ``This is a video about {name}`` (docs/model.md §2).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from importlib import resources

from .safefile import MAX_LABEL_FILE_BYTES, UnsafeFile, read_regular

BUILTIN = {
    "kinetics400": "kinetics_400_labels.csv",
    "k600-split1": "k160_labels_split1.csv",
    "k600-split2": "k160_labels_split2.csv",
    "k600-split3": "k160_labels_split3.csv",
    "ucf101": "ucf_labels.csv",
    "hmdb51": "hmdb51_labels.csv",
    "activitynet": "anet1.3_labels.csv",
    "charades": "Charades_v1_classes.txt",
}
ALIASES = {"k400": "kinetics400", "ucf": "ucf101", "hmdb": "hmdb51", "anet": "activitynet"}


class LabelError(ValueError):
    """A label set that cannot be read; the message names the source and the reason."""


@dataclass(frozen=True)
class LabelSet:
    name: str                 # "kinetics400", a file stem, or "inline"
    names: tuple[str, ...]    # class names in id order
    source: str               # where it came from (built-in file, path, or the inline text)

    @property
    def digest(self) -> str:
        """Content hash of the names (order matters): identifies the label set in model ids."""
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


#: Header names accepted for the class-name column of a label CSV.
NAME_COLUMNS = ("name", "label", "class", "class_name", "classname")


def _ordered(path: str, pairs: "list[tuple[int, int, str]]") -> "list[str]":
    """(line, id, name) → names in id order; ids must be exactly 0..C-1, each once."""
    first: dict = {}
    for line, cid, _ in pairs:
        if cid in first:
            raise LabelError(f"{path}: line {line}: duplicate id {cid} (also on line {first[cid]})")
        first[cid] = line
    missing = sorted(set(range(len(pairs))) - set(first))
    if missing:
        extra = sorted(c for c in first if c >= len(pairs))
        raise LabelError(f"{path}: ids must be 0..{len(pairs) - 1} (one per class): id {missing[0]} is missing"
                         + (f", id {extra[0]} is out of range" if extra else ""))
    return [name for _, _, name in sorted(pairs, key=lambda x: x[1])]


def _read_file(path: str) -> list[str]:
    """Names in id order from an ``id,name`` CSV (header optional; the ids decide the order, not the rows),
    a Charades ``c000 name`` file, or a plain one-name-per-line file (row order)."""
    text = read_regular(path, MAX_LABEL_FILE_BYTES, "label file").decode("utf-8")
    with io.StringIO(text, newline="") as f:
        lines = [(n, ln.rstrip("\n\r")) for n, ln in enumerate(f, 1) if ln.strip()]
    if not lines:
        raise LabelError(f"{path}: empty label file")
    first = lines[0][1].split(None, 1)[0]
    if first.startswith("c") and first[1:].isdigit():          # Charades: "c000 Holding some clothes"
        pairs = []
        for n, ln in lines:
            parts = ln.split(None, 1)
            if len(parts) != 2 or not (parts[0].startswith("c") and parts[0][1:].isdigit()):
                raise LabelError(f"{path}: line {n}: expected 'c<id> name', got {ln!r}")
            pairs.append((n, int(parts[0][1:]), parts[1].strip()))
        return _ordered(path, pairs)
    rows = [(n, row) for (n, _), row in zip(lines, csv.reader([ln for _, ln in lines]))]
    head = [c.strip().lower() for c in rows[0][1]]
    id_col, name_col = 0, 1
    if head and (head[0] == "id" or any(c in NAME_COLUMNS for c in head)):      # a header row
        if not any(c in NAME_COLUMNS for c in head):
            raise LabelError(f"{path}: line {rows[0][0]}: the header {','.join(rows[0][1])!r} has no name column "
                             f"(expected 'id,name')")
        name_col = next(k for k, c in enumerate(head) if c in NAME_COLUMNS)
        id_col = head.index("id") if "id" in head else None
        rows = rows[1:]
        if not rows:
            raise LabelError(f"{path}: no classes after the header")
        if id_col is None:                                        # a "name" column only: row order
            return [row[name_col].strip() if len(row) > name_col else "" for _, row in rows]
    elif all(len(row) == 1 for _, row in rows):                   # plain one-name-per-line file: row order
        return [row[0].strip() for _, row in rows]
    plain_pair = (id_col, name_col) == (0, 1)
    pairs = []
    for n, row in rows:
        if len(row) <= max(id_col, name_col) or not row[id_col].strip().isdigit():
            raise LabelError(f"{path}: line {n}: expected 'id,name', got {','.join(row)!r}")
        # an unquoted comma inside the name of a plain "id,name" file stays part of the name
        name = ",".join(row[1:]) if plain_pair and len(head) <= 2 else row[name_col]
        pairs.append((n, int(row[id_col]), name.strip()))
    return _ordered(path, pairs)


def load_labels(spec: "str | LabelSet | list[str]") -> LabelSet:
    """Resolve a built-in name, a label file, or an inline comma-separated list to a :class:`LabelSet`."""
    if isinstance(spec, LabelSet):
        return spec
    if isinstance(spec, (list, tuple)):
        names = [str(s).strip() for s in spec]
        source, name = ",".join(names), "inline"
    else:
        key = ALIASES.get(spec.lower(), spec.lower())
        if key in BUILTIN:
            ref = resources.files("engine") / "labels" / BUILTIN[key]
            with resources.as_file(ref) as path:
                names, source, name = _read_file(str(path)), f"builtin:{key}", key
        elif os.path.exists(spec):
            if os.path.isdir(spec):
                raise LabelError(f"{spec}: is a directory, expected an 'id,name' CSV file")
            try:
                names = _read_file(spec)
            except (OSError, UnicodeDecodeError, UnsafeFile) as e:
                raise LabelError(f"{spec}: cannot read label file: {e}") from None
            source, name = os.path.abspath(spec), os.path.splitext(os.path.basename(spec))[0]
        elif "," in spec:
            names = [s.strip() for s in spec.split(",")]
            source, name = spec, "inline"
        else:
            known = ", ".join(sorted(BUILTIN))
            raise LabelError(f"{spec}: no such label set or file (built-in sets: {known}; "
                             "or give an 'id,name' CSV file or a comma-separated list)")
    names = [n for n in names if n]
    if not names:
        raise LabelError(f"{spec}: label set is empty")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabelError(f"{spec}: duplicate class names: {', '.join(dupes[:5])}")
    return LabelSet(name=name, names=tuple(names), source=source)
