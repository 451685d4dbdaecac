"""Text channels of a video: what is said and written in it, as timed text spans (``Cue``).

Three channels, each a plain function of a video file (no Ray, no store):

- ``engine.transcripts.subtitles``: embedded subtitle streams (PyAV) and sidecar ``.srt`` / ``.vtt`` files;
- ``engine.transcripts.ocr``: on-screen text read with rapidocr on frames where the picture changed;
- ``engine.transcripts.asr``: speech recognised by a backend (pocketsphinx, faster-whisper).

``bike tag --text ...`` (jobs/tag/textstage.py) runs them and stores their cues in the ``transcripts`` table;
``index.search.textindex`` makes them searchable and ``index.search.fusion`` merges them with the visual search.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: The longest text one cue keeps (characters); longer text is cut, with "…".
MAX_CUE_CHARS = 2000

#: Sources of the transcripts table (``transcripts.source``) and the channel names of ``bike tag --text``.
SOURCES = {"subtitles": "subtitle", "ocr": "ocr", "asr": "speech"}


class TextError(Exception):
    """A text channel could not read a video (or its sidecar file); the message is one line."""


@dataclass
class Cue:
    """One timed text span: shown or said from ``start_s`` to ``end_s`` (seconds into the video)."""
    start_s: float
    end_s: float
    text: str
    confidence: "float | None" = None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_TAGS = re.compile(r"<[^<>]{0,200}>")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Plain one-line text of a cue: markup tags (``<b>``, ``<font ...>``, WebVTT voice tags) removed, control
    and direction-override characters removed, white space collapsed, cut at :data:`MAX_CUE_CHARS`. What
    is left may still hold ``<`` or ``&``: pages must escape it (they do: jobs/serve/static)."""
    text = _TAGS.sub("", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > MAX_CUE_CHARS:
        text = text[:MAX_CUE_CHARS - 1] + "…"
    return text


def open_media(src):
    """``av.open`` of a local path, or of an ``engine.video.types.ByteSource`` (an object on object storage read
    with ranged GETs: engine/sources/ranged.py) through its seekable file object. Raises :class:`TextError` when it
    cannot be opened."""
    import av

    from engine.video.types import ByteSource
    try:
        return av.open(src.open() if isinstance(src, ByteSource) else src, metadata_errors="ignore")
    except Exception as e:  # noqa: BLE001 - any demuxer (or read) error is the file's
        raise TextError(f"cannot open: {str(e)[:200]}") from None
