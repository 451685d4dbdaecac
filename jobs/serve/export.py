"""Saving what was found: a stored clip (or the results of a query) as MP4 files, a video as a contact sheet.

The functions here look things up in a store and hand the cutting to the engine
(``engine.video.export.export_span``, PyAV in-process: stream copy by default, frame-exact re-encode with
``exact=True``). The source file is the one the store recorded when it was tagged, and it is used only if it
is still that file: a local file is opened and verified on its descriptor by its content id (the same rule as
``bike serve``'s media); an object in a bucket is read with ranged GETs pinned to its current ETag.
"""
from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from index.store import Store, StoreError

#: The most results ``bike export --query`` writes in one run.
MAX_RESULTS = 100
#: The most thumbnails on one contact sheet (a longer video shows evenly spaced clips).
SHEET_MAX = 60


class ExportError(StoreError):
    """Something the user asked to export that the store does not hold, or a file that cannot be used."""


@dataclass
class Span:
    """Where a stored clip lies: the recorded video and the span in it."""
    clip_id: str
    video_id: str
    path: str
    size: "int | None"
    start_s: float
    end_s: float
    duration_s: "float | None"


def _con(store: Store):
    from index.search.search import readonly_connection
    return readonly_connection(store)


def _model(store: Store, model_id: "str | None") -> str:
    from index.search.vectors import resolve_model_id
    return resolve_model_id(store, model_id)


def clip_span(store: Store, clip_id: str, model_id: "str | None" = None, con=None) -> Span:
    """The stored clip ``clip_id``: its video file (as recorded) and its span."""
    mid = _model(store, model_id)
    con = con or _con(store)
    row = con.execute(
        "SELECT c.clip_id, c.video_id, v.path, v.size, c.start_s, c.end_s, v.duration_s FROM clips c "
        "JOIN videos v ON v.video_id = c.video_id AND v.model_id = c.model_id "
        "WHERE c.model_id = $m AND c.clip_id = $c LIMIT 1", {"m": mid, "c": clip_id}).fetchone()
    if row is None:
        raise ExportError(f"clip {clip_id!r}: no such clip in {store.root} (model {mid}); "
                          "`bike search --store S QUERY` prints clip ids")
    return Span(*row[:4], float(row[4]), float(row[5]), None if row[6] is None else float(row[6]))


def video_row(store: Store, video_id: str, model_id: "str | None" = None, con=None) -> "tuple[str, int | None, float | None]":
    """(recorded path, size, duration) of a stored video."""
    mid = _model(store, model_id)
    con = con or _con(store)
    row = con.execute("SELECT path, size, duration_s FROM videos WHERE model_id = $m AND video_id = $v "
                      "AND status = 'ok' LIMIT 1", {"m": mid, "v": video_id}).fetchone()
    if row is None:
        raise ExportError(f"video {video_id!r}: no such video in {store.root} (model {mid}); "
                          "`bike sql --store S \"SELECT video_id, path FROM videos\"` lists them")
    return row[0], row[1], None if row[2] is None else float(row[2])


@contextmanager
def open_source(path: str, size: "int | None", video_id: str):
    """The recorded video as something the engine reads, while the ``with`` lasts: a local file opened and
    verified on its descriptor (``bike serve``'s rule: a regular file of the recorded size whose bytes hash to
    ``video_id``, never a link planted in its place), or a ranged-read source for an object in a bucket (of
    the recorded size, its reads pinned to the ETag)."""
    from engine.sources.remote import is_remote
    if is_remote(path):
        from engine.sources.ranged import RemoteSource
        src = RemoteSource(path)
        if size and src.size != int(size):
            raise ExportError(f"{path}: the object changed since it was tagged ({src.size} bytes, {size} recorded)")
        yield src
        return
    from jobs.serve.media import Identities, MediaError, open_verified
    try:
        opened = open_verified(path, size, video_id, lambda real: False, Identities())
    except MediaError as e:
        raise ExportError(f"{path}: {e}") from None
    with opened:
        yield opened.path


def padded(span: Span, pad_s: float) -> "tuple[float, float]":
    """The clip's span widened by ``pad_s`` on each side, kept inside the video."""
    start = max(0.0, span.start_s - pad_s)
    end = span.end_s + pad_s
    if span.duration_s and math.isfinite(span.duration_s):
        end = min(end, span.duration_s)
    return start, max(end, start)


def export_clip(store: "Store | str", clip_id: str, out, pad_s: float = 0.0, exact: bool = False,
                model_id: "str | None" = None, start_s: "float | None" = None, end_s: "float | None" = None):
    """Write stored clip ``clip_id`` (its span ± ``pad_s``, or ``start_s``–``end_s`` inside its video) to
    ``out`` → :class:`engine.video.export.ExportReport`."""
    from engine.video.export import export_span
    store = store if isinstance(store, Store) else Store(store)
    span = clip_span(store, clip_id, model_id)
    start, end = padded(span, pad_s)
    if start_s is not None:
        start = max(0.0, float(start_s))
    if end_s is not None:
        end = float(end_s)
    with open_source(span.path, span.size, span.video_id) as src:
        return export_span(src, start, end, out, exact=exact)


def result_name(path: str, start_s: float, end_s: float, rank: int) -> str:
    """A file name for a search result: rank, the video's name (safe characters only) and the span."""
    stem = Path(str(path).rstrip("/")).stem or "video"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "video"
    return f"{rank:02d}_{stem}_{start_s:07.2f}-{end_s:07.2f}.mp4"


def export_results(results, out_dir, pad_s: float = 0.0, exact: bool = False, store: "Store | None" = None,
                   on_done=None) -> list:
    """One file per search result in ``out_dir`` (created), named by rank, video and time → a list of
    (result, ExportReport | None, error | None). A result whose video cannot be cut is reported, not fatal."""
    from engine.video import VideoError
    from engine.video.export import export_span
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for r in list(results)[:MAX_RESULTS]:
        span = Span(r.clip_id, r.video_id, r.path, None, float(r.start_s), float(r.end_s), None)
        size = None
        if store is not None:
            try:
                size = video_row(store, r.video_id)[1]
            except ExportError:
                size = None
        start, end = padded(span, pad_s)
        target = out_dir / result_name(r.path or r.video_id, start, end, r.rank)
        try:
            with open_source(r.path, size, r.video_id) as src:
                rep = export_span(src, start, end, target, exact=exact)
            done.append((r, rep, None))
        except (VideoError, ExportError, OSError) as e:
            done.append((r, None, str(e)))
        if on_done:
            on_done(done[-1])
    return done


def contact_sheet(store: "Store | str", video_id: str, out, width: int = 240, columns: int = 5,
                  model_id: "str | None" = None):
    """A JPEG/PNG grid of one frame per shot of ``video_id`` (the ``shots`` table, from ``bike tag --windows
    shots``), else per stored clip, from its start, each captioned with its time → (path, thumbnails)."""
    from PIL import Image, ImageDraw, ImageFont

    from engine.video import VideoError, read_frame_at
    store = store if isinstance(store, Store) else Store(store)
    mid = _model(store, model_id)
    con = _con(store)
    path, size, _ = video_row(store, video_id, mid, con)
    starts = [float(r[1]) for r in con.execute(          # one per shot when the shots are known (--windows shots)
        "SELECT DISTINCT shot, start_s FROM shots WHERE video_id = $v ORDER BY shot", {"v": video_id}).fetchall()]
    if not starts:
        starts = [float(r[0]) for r in con.execute(
            "SELECT start_s FROM clips WHERE model_id = $m AND video_id = $v ORDER BY clip_index",
            {"m": mid, "v": video_id}).fetchall()]
    if not starts:
        raise ExportError(f"video {video_id!r}: the store holds no clips of it")
    if len(starts) > SHEET_MAX:                 # evenly spaced clips of a long video
        step = len(starts) / SHEET_MAX
        starts = [starts[int(i * step)] for i in range(SHEET_MAX)]
    tiles = []
    with open_source(path, size, video_id) as src:
        for t in starts:
            try:
                frame, real_t = read_frame_at(src, t + 0.05, width, threads=1)
            except VideoError as e:
                raise ExportError(f"{path}: {e.reason}") from None
            tiles.append((Image.fromarray(frame), real_t))
    th = max(im.height for im, _ in tiles)
    caption = 16
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * (width + 4) + 4, rows * (th + caption + 4) + 4), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (im, t) in enumerate(tiles):
        x, y = 4 + (i % cols) * (width + 4), 4 + (i // cols) * (th + caption + 4)
        sheet.paste(im, (x, y))
        m, s = divmod(t, 60)
        draw.text((x + 2, y + th + 2), f"{int(m)}:{s:05.2f}", fill=(230, 230, 230), font=font)
    out = Path(out)
    fmt = "PNG" if out.suffix.lower() == ".png" else "JPEG"
    tmp = out.with_name(f".{out.name}.part")
    sheet.save(tmp, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    os.replace(tmp, out)
    return out, len(tiles)
