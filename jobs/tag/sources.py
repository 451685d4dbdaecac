"""Which files a tagging job reads: ``bike tag SOURCE...`` → a list of video paths.

A SOURCE is any of:

* a video file (``clip.mp4``);
* a folder, walked recursively;
* a glob (``'archive/**/*.mkv'``, quoted so the shell leaves it alone; ``**`` crosses folders);
* a list file: a ``.txt`` / ``.list`` / ``.lst`` file with one path per line (blank lines and lines
  starting with ``#`` ignored; relative paths are relative to the list file's folder).

Inside folders and globs, hidden entries (a name starting with ``.``) and files whose extension is not a
video extension (:data:`VIDEO_EXTENSIONS`) are skipped and counted, not reported as errors. A file named
explicitly on the command line or in a list file is always kept (even ``notes.mp4`` that is really text:
tagging then records it as an error row with the reason), except hidden files. A path in a list file that
does not exist is kept too (it becomes an error row "file not found"); a command-line SOURCE that matches
nothing is a usage error (most likely a typo).

The same file reached twice (two SOURCEs, a symlink) is listed once; copies with different paths are
found later by their content id (``index.store.ids.video_id``).

Paths are listed absolute and normalised (``os.path.abspath``: the store records where a video is, whatever
directory ``bike tag`` ran in; symbolic links are kept as typed). Folder walks follow symbolic links to
folders but enter each real folder once (device + inode), so a link to a parent or two links to each other
end the walk instead of looping; such links are counted as "symbolic link loops". Inside folders only
regular files are listed (a FIFO named ``x.mp4`` is skipped as "not regular files"); a FIFO or device named
explicitly (``/dev/zero`` in a list file) is kept and becomes an error row without being read
(``index.store.ids.open_regular``). A symbolic link with a video extension whose target cannot be reached (dangling,
or a loop of links) is listed like a file that cannot be decoded: it becomes an error row whose reason says
so ("dangling symbolic link to ...", "symbolic link loop"), counted among the errors of the summary.
"""
from __future__ import annotations

import fnmatch
import glob
import os
from collections import Counter
from dataclasses import dataclass, field

from engine.sources import remote

from jobs.errors import UsageError

#: Extensions (lower case) treated as videos when walking folders and globs.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv", ".vob", ".mxf", ".dv", ".gif", ".y4m",
})
#: Extensions of list files (one path per line).
LIST_EXTENSIONS = frozenset({".txt", ".list", ".lst"})


@dataclass
class Sources:
    """The listed videos (in listing order) and what was skipped, by reason."""
    videos: list = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    objects: dict = field(default_factory=dict)     # URL → engine.sources.remote.RemoteObject (object-storage sources)

    def describe_skipped(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _hidden(path: str, root: str = "") -> bool:
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    return any(part.startswith(".") and part not in (".", "..") for part in rel.split(os.sep))


def _broken_link(path: str) -> bool:
    """A symbolic link whose target cannot be reached (dangling, or a loop of links)."""
    return os.path.islink(path) and not os.path.exists(path)


def _walk(folder: str, loops: "Counter | None" = None):
    """Files under ``folder`` in sorted order, hidden folders not entered, each real folder entered once
    (symbolic-link loops end there; counted in ``loops``); yields (path, hidden)."""
    seen: set = set()
    try:
        st = os.stat(folder)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        hidden_dirs = sorted(d for d in dirnames if d.startswith("."))
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            try:
                st = os.stat(os.path.join(dirpath, d))
            except OSError:                           # a dangling or looping link: nothing to enter
                if loops is not None:
                    loops["symbolic link loops"] += 1
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                if loops is not None:
                    loops["symbolic link loops"] += 1
                continue
            seen.add(key)
            keep.append(d)
        dirnames[:] = keep
        for d in hidden_dirs:
            yield os.path.join(dirpath, d), True
        for name in sorted(filenames):
            yield os.path.join(dirpath, name), name.startswith(".")


def _read_list(path: str) -> list:
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read this list file ({e}); give one video path per line") from None
    return [ln if os.path.isabs(ln) or remote.is_remote(ln) else os.path.join(base, ln)
            for ln in lines if ln and not ln.startswith("#")]


def list_sources(specs) -> Sources:
    """Expand SOURCE arguments (files, folders, globs, list files) into video paths; see the module doc."""
    out = Sources()
    seen: set = set()

    def add(path: str, explicit: bool, root: str = "") -> None:
        if _hidden(path, root) if not explicit else os.path.basename(path).startswith("."):
            out.skipped["hidden"] += 1
            return
        if not explicit and not is_video_name(path):
            out.skipped["not video files (by extension)"] += 1
            return
        key = os.path.realpath(path)
        if key in seen:
            out.skipped["listed twice"] += 1
            return
        seen.add(key)
        out.videos.append(os.path.abspath(path))

    def add_folder(folder: str) -> None:
        for path, hidden in _walk(folder, out.skipped):
            if hidden:
                out.skipped["hidden"] += 1
            elif os.path.isfile(path) or _broken_link(path):
                add(path, explicit=False, root=folder)        # a broken link: an error row that says so
            elif os.path.exists(path) and not os.path.isdir(path):
                out.skipped["not regular files"] += 1

    def add_remote(spec: str) -> None:                      # object storage / web: engine/sources/remote.py
        try:
            objects = remote.list_remote(spec, is_video_name, out.skipped)
        except remote.RemoteError as e:
            raise UsageError(str(e)) from None
        for obj in objects:
            if obj.url in out.objects:
                out.skipped["listed twice"] += 1
            else:
                out.objects[obj.url] = obj
                out.videos.append(obj.url)

    for spec in specs:
        spec = str(spec) if remote.is_remote(spec) else os.path.expanduser(str(spec))
        if remote.is_remote(spec):
            add_remote(spec)
        elif os.path.isdir(spec):
            add_folder(spec)
        elif os.path.isfile(spec) and os.path.splitext(spec)[1].lower() in LIST_EXTENSIONS:
            for path in _read_list(spec):
                if remote.is_remote(path):
                    add_remote(path)
                elif os.path.isdir(path):
                    add_folder(path)
                else:
                    add(path, explicit=True)
        elif os.path.exists(spec):
            add(spec, explicit=True)
        elif glob.has_magic(spec):
            matches = sorted(_glob(spec, out.skipped))
            if not matches:
                raise UsageError(f"{spec}: the pattern matches no file; check the path")
            for path in matches:
                if os.path.isdir(path):
                    continue
                if not os.path.isfile(path) and not _broken_link(path):
                    out.skipped["not regular files"] += 1
                    continue
                add(path, explicit=False, root=_glob_root(spec))
        else:
            raise UsageError(f"{spec}: no such file or folder; give video files, folders, globs or a "
                             f"list file ({'/'.join(sorted(LIST_EXTENSIONS))}) of paths")
    return out


def _match(parts: list, names: list) -> bool:
    """Whether path components ``names`` match pattern components ``parts`` (``**``: any number of them)."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_match(parts[1:], names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], parts[0]) and _match(parts[1:], names[1:])


def _glob(pattern: str, loops: Counter) -> list:
    """``glob.glob(pattern, recursive=True)`` without its endless descent into symbolic-link loops: a
    pattern with ``**`` is matched against a loop-safe walk (:func:`_walk`) below its fixed part; hidden
    names are not matched (as glob does)."""
    if "**" not in pattern:
        return glob.glob(pattern)
    root = _glob_root(pattern)
    rest = [p for p in os.path.relpath(pattern, root).split(os.sep) if p not in ("", ".")] \
        if pattern != root else []
    out = []
    for path, hidden in _walk(root, loops):
        if hidden:
            continue
        names = os.path.relpath(path, root).split(os.sep)
        if not any(n.startswith(".") for n in names) and _match(rest, names):
            out.append(path if os.path.isabs(pattern) or root != "." else os.path.relpath(path))
    return out


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (hidden-ness is judged below it)."""
    parts = pattern.split(os.sep)
    fixed = []
    for p in parts:
        if glob.has_magic(p):
            break
        fixed.append(p)
    return os.sep.join(fixed) or "."
