"""Label sets: the class names a model scores, shipped as data files in ``engine/labels/``.

A label set can be named three ways (see :func:`load_labels`):

* a built-in name: ``kinetics400``, ``k600-split1`` … ``k600-split3`` (the Kinetics-600 classes new
  to K400, zero-shot splits), ``ucf101``, ``hmdb51``, ``activitynet``, ``charades``;
* a file: an ``id,name`` CSV (header optional) or a Charades-style ``c000 name`` text file;
* an inline comma-separated list: ``"dog,cat,surfing crowd"``.

Names are used verbatim in the prompt ``This is a video about {name}`` (docs/model.md §2).
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from importlib import resources

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


def _read_file(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln.rstrip("\n\r") for ln in f if ln.strip()]
    if not lines:
        raise LabelError(f"{path}: empty label file")
    first = lines[0].split(None, 1)[0]
    if first.startswith("c") and first[1:].isdigit():          # Charades: "c000 Holding some clothes"
        return [ln.split(None, 1)[1].strip() for ln in lines]
    rows = list(csv.reader(lines))
    if rows[0] and rows[0][0].strip().lower() == "id":          # header row
        rows = rows[1:]
    names = []
    for i, row in enumerate(rows):
        if len(row) == 1:                                         # plain one-name-per-line file
            names.append(row[0].strip())
        elif len(row) >= 2 and row[0].strip().isdigit():
            names.append(",".join(row[1:]).strip())
        else:
            raise LabelError(f"{path}: line {i + 2}: expected 'id,name', got {','.join(row)!r}")
    return names


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
            except (OSError, UnicodeDecodeError) as e:
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
