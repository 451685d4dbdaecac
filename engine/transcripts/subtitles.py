"""Subtitles of a video, with no model: embedded subtitle streams and sidecar ``.srt`` / ``.vtt`` files.

    >>> from engine.transcripts.subtitles import read_subtitles
    >>> tracks, warnings = read_subtitles("talk.mp4")     # [Track(backend, cues)], [one-line warnings]

- **Embedded streams** (mov_text in MP4, subrip / ass / webvtt in Matroska...) are demuxed and decoded with
  PyAV; a cue's span is its packet's pts and duration. ASS dialogue markup (``{\\b1}``, ``\\N``) is removed.
- **Sidecar files** beside the video: ``name.srt``, ``name.vtt`` and ``name.<lang>.srt|vtt`` (``name.en.srt``).

Everything is untrusted and bounded: a sidecar larger than :data:`MAX_SIDECAR_BYTES` or with binary content
is refused with a one-line reason (the video's other tracks are still read); an embedded stream stops after
:data:`MAX_STREAM_TEXT_BYTES` of text, :data:`MAX_CUES` cues or :data:`STREAM_SECONDS` seconds (what was read is
kept, and a warning says it was cut). Malformed blocks of a ``.srt`` are skipped and counted.
"""
from __future__ import annotations

import glob
import os
import re
import time
from dataclasses import dataclass, field

from engine.transcripts import Cue, TextError, clean_text, open_media

#: The largest sidecar file read (bytes).
MAX_SIDECAR_BYTES = 20 << 20
#: Text bytes kept from one embedded stream (a 100 MB stream is read up to here, then cut).
MAX_STREAM_TEXT_BYTES = 8 << 20
#: Cues kept per track.
MAX_CUES = 100_000
#: Time spent demuxing one video's subtitle streams at most.
STREAM_SECONDS = 60.0
#: Sidecar extensions.
SIDECAR_EXTS = (".srt", ".vtt")

_TIME = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_ASS_OVERRIDE = re.compile(r"\{[^{}]{0,500}\}")


@dataclass
class Track:
    """The cues of one subtitle track and where they came from (``transcripts.backend``)."""
    backend: str                       # e.g. "sidecar name.en.srt", "stream 2 mov_text"
    cues: list = field(default_factory=list)


def _seconds(h, m, s, ms) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_cues(text: str, name: str = "subtitles") -> "tuple[list[Cue], int]":
    """SRT or WebVTT text → (cues in file order, number of malformed blocks skipped). A block is a timing line
    ``[HH:]MM:SS,mmm --> [HH:]MM:SS,mmm`` followed by text lines up to a blank line; what precedes the timing
    line (an SRT number, a VTT cue id) is ignored. Raises :class:`TextError` when non-empty text holds no cue."""
    cues: list[Cue] = []
    bad = 0
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i, n = 0, len(lines)
    while i < n and len(cues) < MAX_CUES:
        m = _TIMING.match(lines[i])
        if not m:
            if lines[i].strip() and (i + 1 >= n or not _TIMING.match(lines[i + 1])) \
                    and not lines[i].strip().startswith(("WEBVTT", "NOTE", "STYLE", "REGION", "Kind:", "Language:")):
                # text outside any block (not an id before a timing line): a malformed block
                if i == 0 or not lines[i - 1].strip():
                    bad += 1
            i += 1
            continue
        g = m.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        i += 1
        body = []
        while i < n and lines[i].strip() and not _TIMING.match(lines[i]):
            body.append(lines[i])
            i += 1
        words = clean_text(" ".join(body))
        if end < start:
            bad += 1
            continue
        if words:
            cues.append(Cue(start, end, words))
    if not cues and text.strip() and bad:
        raise TextError(f"{name}: no subtitle cues found ({bad} malformed blocks): not an SRT/WebVTT file?")
    return cues, bad


def read_sidecar(path: str) -> "tuple[list[Cue], list[str]]":
    """The cues of one sidecar file → (cues, warnings). Raises :class:`TextError` (one line) for a file too large,
    binary, or with no cue at all."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_SIDECAR_BYTES:
            raise TextError(f"{name}: {size} bytes, larger than the {MAX_SIDECAR_BYTES >> 20} MiB a subtitle "
                            "file may have")
        with open(path, "rb") as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as e:
        raise TextError(f"{name}: cannot read: {e.strerror or e}") from None
    if b"\x00" in raw[:65536]:
        raise TextError(f"{name}: binary content (NUL bytes), not a subtitle file")
    text = raw.decode("utf-8-sig", errors="replace")
    if text.count("\ufffd") > max(16, len(text) // 100):
        text = raw.decode("latin-1")                   # older .srt files: one byte per character
    cues, bad = parse_cues(text, name)
    return cues, [f"{name}: {bad} malformed block(s) skipped"] if bad else []


def sidecar_files(video: str) -> "list[str]":
    """Sidecar subtitle files of ``video``: ``stem.srt``, ``stem.vtt``, ``stem.<lang>.srt|vtt``, sorted."""
    stem, _ = os.path.splitext(video)
    found = [stem + ext for ext in SIDECAR_EXTS if os.path.isfile(stem + ext)]
    for ext in SIDECAR_EXTS:
        for p in glob.glob(glob.escape(stem) + ".*" + ext):
            lang = p[len(stem) + 1:-len(ext)]
            if re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?", lang) and os.path.isfile(p):
                found.append(p)
    return sorted(set(found))


def _ass_text(ass: str) -> str:
    """The text of an ASS dialogue line (``ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text``)."""
    parts = ass.split(",", 8)
    text = parts[8] if len(parts) == 9 else ass
    text = _ASS_OVERRIDE.sub("", text).replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    return clean_text(text)


def read_embedded(path: str, seconds: float = STREAM_SECONDS) -> "tuple[list[Track], list[str]]":
    """Cues of every subtitle stream in a video (PyAV) → (tracks, warnings). Bounded in text bytes, cues and time;
    a stream that cannot be decoded becomes a warning. Raises :class:`TextError` when the file cannot be opened."""
    container = open_media(path)
    tracks: list[Track] = []
    warnings: list[str] = []
    with container:
        streams = list(container.streams.subtitles)
        if not streams:
            return [], []
        by_index = {s.index: Track(f"stream {s.index} {s.codec_context.name}") for s in streams}
        sizes = dict.fromkeys(by_index, 0)
        cut: set = set()
        deadline = time.monotonic() + seconds
        try:
            for packet in container.demux(streams):
                idx = packet.stream.index
                if idx in cut or packet.pts is None:
                    if len(cut) == len(by_index):
                        break
                    continue
                if time.monotonic() > deadline:
                    warnings.append(f"subtitle streams: stopped after {seconds:g} s")
                    break
                tb = packet.time_base
                start = float(packet.pts * tb)
                end = start + float((packet.duration or 0) * tb)
                try:
                    subs = packet.decode()
                except Exception as e:  # noqa: BLE001 - one bad packet: skip it
                    warnings.append(f"stream {idx}: undecodable packet at {start:.2f} s ({str(e)[:80]})")
                    continue
                for sub in subs:
                    items = sub if hasattr(sub, "__iter__") else [sub]
                    for rect in items:
                        raw = getattr(rect, "ass", b"") or getattr(rect, "text", b"") or b""
                        raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                        text = _ass_text(raw) if getattr(rect, "ass", None) else clean_text(raw)
                        if not text:
                            continue
                        track = by_index[idx]
                        sizes[idx] += len(text)
                        track.cues.append(Cue(start, max(end, start), text))
                        if sizes[idx] > MAX_STREAM_TEXT_BYTES or len(track.cues) >= MAX_CUES:
                            cut.add(idx)
                            warnings.append(f"{track.backend}: cut after {len(track.cues)} cues "
                                            f"({sizes[idx] >> 20} MiB of text)")
                            break
        except Exception as e:  # noqa: BLE001 - a demux error mid-file: keep what was read
            warnings.append(f"subtitle streams: read stopped at an error ({str(e)[:120]})")
        tracks = [t for t in by_index.values() if t.cues]
    return tracks, warnings


def read_subtitles(path: str) -> "tuple[list[Track], list[str]]":
    """Every subtitle track of a video file: embedded streams, then sidecar files → (tracks, warnings). ``path``
    may be an ``engine.video.types.ByteSource`` (object storage): its embedded streams only.
    A sidecar that cannot be used is a warning (one line), not a failure of the others."""
    tracks, warnings = read_embedded(path)
    if not isinstance(path, (str, os.PathLike)):       # an object read through a byte source: no sidecars
        return tracks, warnings
    for side in sidecar_files(path):
        try:
            cues, notes = read_sidecar(side)
        except TextError as e:
            warnings.append(str(e))
            continue
        warnings.extend(notes)
        if cues:
            tracks.append(Track(f"sidecar {os.path.basename(side)}", cues))
    return tracks, warnings
