"""The words the page shows, not the CLI's: a bad filter said in plain words, and the notes of a search
without command-line options or commands in them.

``bike search`` speaks to a shell user (``--where kept 12 clip(s)``, ``build one with `bike index ...```); the
page's user typed into a "where" box and never saw a flag. :func:`filter_error` turns the message of an
``index.store.where.WhereError`` (DuckDB's binder / parser error, the ``--where`` prefix and the CLI example) into one
sentence that says what is wrong and what the columns are; :func:`page_notes` rewrites the search notes the
same way (the API keeps the CLI's ``notes`` and adds ``page_notes``).
"""
from __future__ import annotations

import re

from index.store.where import COLUMNS

_COLUMNS = ", ".join(COLUMNS)


def filter_error(message: str) -> str:
    """One plain sentence for a filter DuckDB could not evaluate (the message of a ``WhereError``)."""
    text = message.strip()
    missing = re.search(r'Referenced column "([^"]+)" not found', text)
    if missing:
        return f"the filter names a column that does not exist: no column named '{missing.group(1)}'; " \
               f"columns are {_COLUMNS}"
    if "empty condition" in text:
        return "the filter is empty"
    if "subqueries are not allowed" in text:
        return "the filter may not contain a subquery (SELECT ...): it is one condition on the clip's own columns"
    first = text.splitlines()[0]
    first = re.sub(r"^--where\s+('(?:[^']|'')*'|\"[^\"]*\"|\S+)?:\s*", "", first)
    first = first.replace("DuckDB cannot evaluate it: ", "")
    first = first.replace("one condition only (a single expression): ", "it is not one condition: ")
    first = re.sub(r"\b(Binder|Parser|Conversion|Catalog|Invalid Input|Out of Range) Error:\s*", "", first)
    first = first.replace("LINE 1:", "").strip().rstrip("!").strip()
    return f"the filter cannot be used: {first}; columns are {_COLUMNS} (strings in single quotes, " \
           "e.g. duration_s > 5 AND path LIKE '%/2023/%')"


_NOTES = [
    (re.compile(r"^--where kept (\d+) clip\(s\)$"), lambda m: f"the filters match {_n(m[1], 'clip')}"),
    (re.compile(r"^all (\d+) filtered clips re-ranked \(exact\)$"), None),
    (re.compile(r"^all (\d+) clips re-ranked \(exact;.*\)$"), None),
    (re.compile(r"^no FAISS index for model .*$"), lambda m: "every clip was compared (no search index built yet)"),
    (re.compile(r"^index is stale: \d+ newer batch\(es\) with (\d+) clips .*$"),
     lambda m: f"{_n(m[1], 'newly tagged clip')} compared one by one (the search index does not cover them yet)"),
    (re.compile(r"^(\d+) clip\(s\) of copies of videos already shown left out.*$"),
     lambda m: f"{_n(m[1], 'clip')} of copies of videos already shown left out"),
    (re.compile(r"^relevance feedback: .*$"), None),                 # the page shows 👍 / 👎 counts itself
    (re.compile(r"^min_score (\S+) removed (\d+) result\(s\)$"),
     lambda m: f"the minimum score {m[1]} removed {_n(m[2], 'result')}"),
]


def _n(count: str, noun: str) -> str:
    return f"{count} {noun}{'' if count == '1' else 's'}"


def page_notes(notes: "list[str]") -> "list[str]":
    """The search notes in the page's words: CLI flags and commands out, internals (exact re-ranking) dropped."""
    out = []
    for note in notes:
        for pattern, say in _NOTES:
            m = pattern.match(note)
            if m:
                if say is not None:
                    out.append(say(m))
                break
        else:
            out.append(re.sub(r"\s*\(?[^()]*`bike [^`]*`[^()]*\)?", "", note))   # no command lines
    return out
