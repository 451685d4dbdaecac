"""What ``bike serve`` answers, without HTTP: one :class:`Service` per store, shared by every request thread.

It holds one :class:`index.search.search.Searcher` (model, FAISS index and frame cache loaded once, safe across
threads) and answers searches, clip and video details, statistics and SQL. All lookups run on sandboxed
DuckDB connections with ids passed as query parameters. A store that ``bike tag`` is still writing is served
live: before answering, the service looks (at most every ``refresh_s``) whether ``_commits/`` or the index
manifest changed and then lets the searcher pick up the new batches (clips the index does not cover yet are
scanned exactly, as ``bike search`` does) or the rebuilt index. Errors a user can act on are :class:`ServiceError` with an HTTP status.

A store with nothing to search yet — no batch at all, or only batches without clip embeddings (every file
failed: exactly when its error report helps) — is served too: statistics, the error report, video rows and
SQL answer as usual, and a search answers 409 "nothing searchable yet" (:attr:`Service.unsearchable` says
why) until a batch with embeddings is committed; the live refresh then makes the searcher.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

from engine.video import VideoError
from index.search.feedback import parse_ids
from index.search.search import Searcher, SearchError, describe_model_row, readonly_connection
from index.store.sql import SQLError
from index.store.sqlbox import Sandbox, SQLLimitError
from index.store import Store, StoreError
from index.store.where import WhereError

from .export import Span, padded, result_name
from . import media, wording
from .decoding import DecodePool
from .limits import Limits
from .sqlrun import jsonable, run_sql

RANDOM_WARNING = "RANDOM WEIGHTS: scores are meaningless"


class ServiceError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _bad(message: str) -> ServiceError:
    return ServiceError(400, message)


class Service:
    """``searcher``: a ready :class:`Searcher` (default: made from the other arguments; ``cache_bytes`` is its
    frame-cache budget). It stays None while the store holds no clip embeddings (see the module docstring)."""

    def __init__(self, store: "Store | str", searcher: "Searcher | None" = None, model_id: "str | None" = None,
                 limits: Limits = Limits(), weights: "str | None" = None, device=None, refresh_s: float = 0.5,
                 precision: "str | None" = None, cache_bytes: "int | None" = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self._wanted_model = model_id
        self._searcher_opts = {"weights": weights, "device": device, "precision": precision,
                               **({} if cache_bytes is None else {"cache_bytes": cache_bytes})}
        self.limits, self.refresh_s = limits, refresh_s
        self.sql_box = Sandbox(limits.sql())         # /api/sql and `where`: bounded, in child processes (warm())
        self.searcher = searcher or self._make_searcher()
        if self.searcher is not None:
            self.searcher.sql_box = self.sql_box
        self.thumbs = media.thumbs_dir(self.store.root)
        self.thumb_cache = media.ThumbCache(self.thumbs, limits.thumb_cache_bytes)
        self.export_cache = media.ThumbCache(self.thumbs / "exports", limits.export_cache_bytes, suffix=".mp4")
        self.decoding = DecodePool(limits.decode_workers, limits.decode_queue)   # thumbnails and uploads
        self.identities = media.Identities()         # files whose bytes were checked against their video id
        self._lock = threading.Lock()
        self._sig = self._signature()
        self._checked = time.monotonic()
        self.video_timeout_s = 60.0                  # decoding an uploaded example
        self.started = time.time()

    def _make_searcher(self) -> "Searcher | None":
        """The searcher, or None while no committed batch holds clip embeddings. With embeddings, a wrong
        ``model_id`` is the user's error (raised: index.search.vectors.VectorIndexError)."""
        if not any(c["tables"].get("embeddings") for c in self.store.commits()):
            return None
        searcher = Searcher(self.store, self._wanted_model, **self._searcher_opts)
        searcher.sql_box = self.sql_box
        return searcher

    @property
    def model_id(self) -> "str | None":
        """The searched model; with nothing searchable, the one named at start or the latest batch's (the
        one whose error report is shown), None for a store with no batch."""
        if self.searcher is not None:
            return self.searcher.model_id
        commits = self.store.commits()
        return self._wanted_model or (commits[-1]["model_id"] if commits else None)

    @property
    def unsearchable(self) -> "str | None":
        """Why nothing can be searched yet (None once something can)."""
        if self.searcher is not None:
            return None
        commits = self.store.commits()
        if not commits:
            return (f"nothing searchable yet: the store has no tagged batch; run `bike tag VIDEOS --store "
                    f"{self.store.root}` (this page picks up its batches as they are committed)")
        failed = sum(v == "error" for c in commits for v in c.get("videos", {}).values())
        return (f"nothing searchable yet: no clip embeddings in the store ({failed} video(s) failed to tag: "
                "see the error report under Tags & SQL); batches tagged from now on appear here as they commit")

    def _nothing_searchable(self) -> ServiceError:
        return ServiceError(409, self.unsearchable or "nothing searchable yet")

    # ---- start-up and live refresh -------------------------------------------------------------------
    def warm(self) -> None:
        """Load everything a query needs (model, index, frame cache, result details) before serving, and
        start the warm SQL processes (index/store/sqlbox.py) in the background."""
        self.sql_box.start()
        s = self.searcher
        if s is None:                                # nothing to load yet (see the module docstring)
            return
        _ = s.model, s.index, s.con
        s._frames([])
        s.search("warm up", k=1)

    def close(self) -> None:
        """End the SQL processes (they also end on their own when this process exits)."""
        self.sql_box.close()

    def _signature(self):
        """What changes when a batch is committed (``_commits/``) or ``bike index`` replaces the manifest. On
        object storage: one listing of each folder (names and ETags), no object read."""
        model_id = self.model_id if self.searcher is not None else None
        if self.store.remote:
            fs = self.store.fs
            try:
                return (tuple(sorted(fs.list_tags("_commits").items())),
                        fs.list_tags(f"_index/{model_id}").get("manifest.json") if model_id else None)
            except Exception:  # noqa: BLE001 - unreachable for a moment: keep serving what is loaded
                return self._sig if hasattr(self, "_sig") else None

        def stamp(path, count=False):
            try:
                return os.stat(path).st_mtime_ns, len(os.listdir(path)) if count else 0
            except OSError:
                return None
        return (stamp(self.store.root / "_commits", count=True),
                stamp(self.store.root / "_index" / model_id / "manifest.json") if model_id else None)

    def maybe_refresh(self) -> bool:
        """Pick up newly committed batches (checked at most every ``refresh_s``). True when it refreshed."""
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return False
        with self._lock:
            if now - self._checked < self.refresh_s:
                return False
            self._checked = now
            sig = self._signature()
            if sig == self._sig:
                return False
            self._sig = sig
            if self.searcher is None:
                self.store.commits(refresh=True)
                self.searcher = self._make_searcher()
            else:
                self.searcher.refresh()
            return True

    # ---- search --------------------------------------------------------------------------------------
    def _check(self, q: "str | None", k: int, where: "str | None", label: "str | None"):
        L = self.limits
        if q is not None and len(q) > L.max_query_chars:
            raise _bad(f"query too long ({len(q)} characters; at most {L.max_query_chars})")
        if not 1 <= k <= L.max_k:
            raise _bad(f"k={k}: must be between 1 and {L.max_k}")
        for name, v in (("where", where), ("label", label)):
            if v is not None and len(v) > L.max_where_chars:
                raise _bad(f"{name} too long ({len(v)} characters; at most {L.max_where_chars})")
        conds = [c for c in ((where or "").strip(), ) if c]
        if label:
            conds.append("label = '" + label.replace("'", "''") + "'")
        return " AND ".join(f"({c})" for c in conds) or None

    def search(self, q: "str | None" = None, k: int = 10, where: "str | None" = None,
               clip: "str | None" = None, label: "str | None" = None, min_score: "float | None" = None,
               like: "str | None" = None, like_name: "str | None" = None, channels: "str | None" = None,
               weights: "str | None" = None, dedup: bool = True, positive: "str | None" = None,
               negative: "str | None" = None, offset: int = 0, group: "str | None" = None) -> dict:
        """The objects of ``bike search --format json`` (plus ``warning`` for random weights, ``page_notes``:
        the notes in the page's words, and the paging fields below). ``label``: only clips with this label among
        their top labels; ``min_score``: drop results scoring less; ``like``: a video file to search by example
        (``like_name`` is shown as the query). ``positive`` / ``negative``: relevance feedback, comma-separated
        clip ids (index/search/feedback.py); with positives ``q`` may be left out.

        Paging (the page's infinite scroll): ``offset`` skips that many results (or videos); ``offset + k`` is
        at most ``Limits.max_results``; ``has_more`` says whether asking from ``offset + k`` may give more.
        ``group="video"``: one result per video, its best clip, carrying ``more``: the video's other results in
        rank order (at most ``Limits.max_group_moments``) and ``more_count`` (all of them among the clips
        searched: at least ``Limits.group_min_clips``, more while fewer than ``offset + k`` videos came out, up
        to ``Limits.max_results``) — see :func:`group_by_video`."""
        fb = {}
        for name, value in (("positive", positive), ("negative", negative)):
            if value is not None and len(value) > self.limits.max_feedback_chars:
                raise _bad(f"{name} too long ({len(value)} characters; at most {self.limits.max_feedback_chars})")
            ids = parse_ids(value)
            bad = next((c for c in ids if not media.valid_clip_id(c)), None)
            if bad is not None:
                raise _bad(f"{name} clip {bad!r}: not a clip id (ids look like <video_id>/<n>)")
            fb[name] = ",".join(ids) or None
        given = sum(x is not None and x != "" for x in (q, clip, like))
        if given != 1 and not (given == 0 and fb["positive"]):
            raise _bad("give exactly one of: q=TEXT, clip=CLIP_ID, or a video in the request body"
                       + (" (or positive=CLIP_ID,... alone)" if fb["positive"] or fb["negative"] else ""))
        if clip is not None and not media.valid_clip_id(clip):
            raise ServiceError(404, f"clip {clip!r}: not a clip id of this store (ids look like <video_id>/<n>)")
        if min_score is not None and not math.isfinite(min_score):
            raise _bad("min_score must be a finite number")
        cond = self._check(q, k, where, label)
        L = self.limits
        if group not in (None, "", "clip", "video"):
            raise _bad(f"group={group!r}: must be video or clip")
        if not 0 <= offset or offset + k > L.max_results:
            raise _bad(f"offset={offset}: offset + k must be between {k} and {L.max_results}")
        self.maybe_refresh()
        if self.searcher is None:
            raise self._nothing_searchable()
        if group == "video":                         # enough clips for offset + k videos, within max_results
            n = min(L.max_results, max(4 * (offset + k), L.group_min_clips))
            while True:
                page = VideoPage(offset, k, min_score)
                out = self._search_clips(q, n, cond, clip, like, like_name, channels, weights, dedup, fb, min_score,
                                         page)
                groups = group_by_video(out["results"], L.max_group_moments)
                videos = page.videos if page.used else len(groups)
                if videos > offset + k or out["clips_found"] < n or n >= L.max_results:
                    break
                n = min(L.max_results, 2 * n)
            out["results"] = groups if page.used else groups[offset:offset + k]
            out["has_more"] = videos > offset + k or (out["clips_found"] >= n and n < L.max_results)
        else:
            out = self._search_clips(q, offset + k, cond, clip, like, like_name, channels, weights, dedup, fb,
                                     min_score)
            out["has_more"] = out["clips_found"] >= offset + k and offset + k < L.max_results
            out["results"] = out["results"][offset:offset + k]
        out["offset"], out["group"] = offset, group or "clip"
        out["page_notes"] = wording.page_notes(out["notes"])
        return out

    def _search_clips(self, q, k, cond, clip, like, like_name, channels, weights, dedup, fb, min_score,
                      page: "VideoPage | None" = None) -> dict:
        """The best ``k`` clips as JSON objects (``clips_found``: how many the search gave before ``min_score``).
        ``page``: only the clips of the videos on that page are made into results (see :class:`VideoPage`)."""
        if page is not None:
            fb = {**fb, "select": page}
        try:
            if like is not None:                     # decoded here, with a time limit
                res = self.searcher.search(self.searcher.video_query(like, timeout_s=self.video_timeout_s),
                                           k=k, where=cond, dedup=dedup, **fb)
            elif q:                                  # visual + text channels fused (index/search/textsearch.py)
                from index.search.textsearch import fused_search
                for name, v in (("channels", channels), ("weights", weights)):
                    if v is not None and len(v) > 200:
                        raise _bad(f"{name} too long")
                res = fused_search(self.searcher, q, k=k, channels=channels or "visual,text", where=cond,
                                   weights=weights or None, dedup=dedup, **fb)
            else:
                res = self.searcher.search(q if q else None, k=k, where=cond, clip=clip, dedup=dedup, **fb)
        except SQLLimitError as e:                   # the where filter over a bound: 408/413/503
            raise ServiceError(e.status, str(e)) from None
        except WhereError as e:                      # a bad filter: said in plain words (wording.py)
            raise _bad(wording.filter_error(str(e))) from None
        except (SearchError, StoreError, SQLError) as e:
            raise _bad(str(e)) from None
        except VideoError as e:                      # an upload that is no video: name it, not its temp file
            raise _bad(str(e).replace(str(like), like_name or "the uploaded video")) from None
        out = res.to_dict()
        out["clips_found"] = page.found if page is not None and page.used else len(out["results"])
        if like is not None:                         # the upload's temporary file name means nothing to a user
            out["query"] = like_name or "uploaded video"
        if min_score is not None:
            kept = [r for r in out["results"] if r["score"] >= min_score]
            removed = page.removed if page is not None and page.used else len(out["results"]) - len(kept)
            if removed:
                out["notes"].append(f"min_score {min_score:g} removed {removed} result(s)")
            out["results"] = kept
        out["warning"] = RANDOM_WARNING if out["random_init"] else None
        return out                                   # plain floats/strings/lists (app.json_response checks)

    def save_label(self, name: str, positive: "str | None", negative: "str | None" = None,
                   q: "str | None" = None) -> dict:
        """``bike label`` from the page ("Save as tag"): score every stored clip for the tag ``name`` defined by
        the positive / negative clips (and the query) and store it (index/search/usertags.py); the rows show in SQL
        as ``user_labels``. Takes the store's writer lock (409 while ``bike tag`` or another writer runs)."""
        from index.search.usertags import Definition, write_label
        if not name or not name.strip():
            raise _bad("give the tag a name")
        for field, v in (("name", name), ("q", q)):
            if v is not None and len(v) > self.limits.max_query_chars:
                raise _bad(f"{field} too long ({len(v)} characters; at most {self.limits.max_query_chars})")
        ids = {}
        for field, v in (("positive", positive), ("negative", negative)):
            if v is not None and len(v) > self.limits.max_feedback_chars:
                raise _bad(f"{field} too long ({len(v)} characters; at most {self.limits.max_feedback_chars})")
            ids[field] = list(parse_ids(v))
            bad = next((c for c in ids[field] if not media.valid_clip_id(c)), None)
            if bad is not None:
                raise _bad(f"{field} clip {bad!r}: not a clip id (ids look like <video_id>/<n>)")
        if not ids["positive"]:
            raise _bad("a tag needs at least one positive clip (👍)")
        self.maybe_refresh()
        if self.searcher is None:
            raise self._nothing_searchable()
        try:
            with self.store.lock():
                rep = write_label(self.searcher, Definition(name, "", ids["positive"], ids["negative"], q or None))
        except SearchError as e:
            raise _bad(str(e)) from None
        except StoreError as e:
            raise ServiceError(409 if "lock" in str(e).lower() or "writ" in str(e).lower() else 400, str(e)) from None
        d = rep.definition
        return {"label": d.label, "model_id": d.model_id, "clips": rep.clips, "tagged": rep.tagged,
                "threshold": rep.threshold, "positives": d.positives, "negatives": d.negatives, "query": d.query,
                "seconds": round(rep.seconds, 3),
                "sql": "SELECT clip_id, score FROM user_labels WHERE label = '" + d.label.replace("'", "''")
                       + "' AND tagged ORDER BY rank"}

    # ---- details -------------------------------------------------------------------------------------
    def _rows(self, sql: str, params: dict) -> "list[dict]":
        if self.searcher is not None:
            cur = self.searcher.con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, (jsonable(v) for v in row))) for row in cur.fetchall()]
        con = readonly_connection(self.store)        # nothing searchable: a rare page, a connection of its own
        try:
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, (jsonable(v) for v in row))) for row in cur.fetchall()]
        finally:
            con.close()

    def clip(self, clip_id: str) -> dict:
        if not media.valid_clip_id(clip_id):
            raise ServiceError(404, f"clip {clip_id!r}: not a clip id (ids look like <video_id>/<n>)")
        self.maybe_refresh()
        p = {"m": self.model_id, "c": clip_id}
        rows = self._rows("SELECT clip_id, video_id, clip_index, start_s, end_s, frame_times FROM clips "
                          "WHERE model_id = $m AND clip_id = $c LIMIT 1", p)
        if not rows:
            raise ServiceError(404, f"clip {clip_id!r}: no such clip for model {self.model_id}")
        out = rows[0]
        out["labels"] = self._rows("SELECT rank, label, score, video_score, peak_s, saliency FROM labels "
                                   "WHERE model_id = $m AND clip_id = $c ORDER BY rank", p)
        out["attributes"] = self._rows("SELECT rank, attribute, score FROM attributes WHERE model_id = $m AND "
                                       "clip_id = $c ORDER BY rank", p)
        video = self._rows("SELECT path, duration_s FROM videos WHERE model_id = $m AND video_id = $v LIMIT 1",
                           {"m": self.model_id, "v": out["video_id"]})
        out["path"] = video[0]["path"] if video else None
        out["duration_s"] = video[0]["duration_s"] if video else None
        return out

    def video(self, video_id: str) -> dict:
        if not media.valid_video_id(video_id):
            raise ServiceError(404, f"video {video_id!r}: not a video id of this store")
        self.maybe_refresh()
        p = {"m": self.model_id, "v": video_id}
        rows = self._rows("SELECT video_id, path, size, duration_s, fps, width, height, codec, num_clips, status, "
                          "error, tagged_at FROM videos WHERE model_id = $m AND video_id = $v LIMIT 1", p)
        if not rows:
            raise ServiceError(404, f"video {video_id!r}: no such video for model {self.model_id}")
        out = rows[0]
        out["clips"] = self._rows(
            "SELECT c.clip_id, c.clip_index, c.start_s, c.end_s, "
            "list(l.label ORDER BY l.rank) FILTER (WHERE l.label IS NOT NULL) AS labels, "
            "list(l.score ORDER BY l.rank) FILTER (WHERE l.label IS NOT NULL) AS scores "
            "FROM clips c LEFT JOIN labels l ON l.clip_id = c.clip_id AND l.model_id = c.model_id AND l.rank < 3 "
            "WHERE c.model_id = $m AND c.video_id = $v "
            "GROUP BY c.clip_id, c.clip_index, c.start_s, c.end_s ORDER BY c.clip_index", p)
        return out

    # ---- files ---------------------------------------------------------------------------------------
    def _video_row(self, video_id: str) -> dict:
        if not media.valid_video_id(video_id):
            raise ServiceError(404, "no such video")
        rows = self._rows("SELECT video_id, path, size FROM videos WHERE video_id = $v AND status = 'ok' "
                          "ORDER BY tagged_at DESC LIMIT 1", {"v": video_id})
        if not rows:
            raise ServiceError(404, "no such video")
        return rows[0]

    def _recorded(self, real: str) -> bool:
        paths = self._rows("SELECT DISTINCT path FROM videos WHERE status = 'ok'", {})
        return any(os.path.abspath(r["path"] or "") == real for r in paths)

    def media_file(self, video_id: str) -> Path:
        """The recorded file's real path after the path checks of ``media.checked_file`` (no content check:
        :meth:`open_media` is what serves bytes)."""
        row = self._video_row(video_id)
        try:
            return media.checked_file(row["path"], row["size"], self._recorded)
        except media.MediaError as e:
            raise ServiceError(e.status, str(e)) from None

    def open_media(self, video_id: str) -> "media.VerifiedFile":
        """The tagged video, open and verified on its descriptor (``media.open_verified``); the caller closes it."""
        row = self._video_row(video_id)
        try:
            return media.open_verified(row["path"], row["size"], row["video_id"], self._recorded, self.identities)
        except media.MediaError as e:
            raise ServiceError(e.status, str(e)) from None

    def thumb_job(self, clip_id: str, t: "float | None") -> "tuple[Path | None, str, object]":
        """(cached JPEG or None, cache name, job): the lookups and checks of a thumbnail request, without
        decoding. On a miss, ``job()`` (run it in :attr:`decoding`) opens, verifies, decodes and caches it."""
        info = self.clip(clip_id)
        start, end = float(info["start_s"]), float(info["end_s"])
        if t is None:
            t = (start + end) / 2
        if not math.isfinite(t):
            raise _bad("t must be a finite number of seconds")
        t = min(max(t, start), max(start, end - 0.05))
        self.media_file(info["video_id"])                # the path checks, also for a cached thumbnail
        width = self.limits.thumb_width
        name = media.thumb_name(clip_id, t, width)
        hit = self.thumb_cache.get(name)

        def job() -> Path:
            got = self.thumb_cache.get(name)             # made while this job waited
            if got is not None:
                return got
            with self.open_media(info["video_id"]) as opened:
                try:
                    data = media.thumbnail(opened, t, width, timeout_s=self.limits.thumb_timeout_s)
                except media.MediaError as e:
                    raise ServiceError(e.status, str(e)) from None
            return self.thumb_cache.put(name, data)
        return hit, name, job

    def export_job(self, clip_id: str, pad_s: float = 0.0) -> "tuple[Path | None, str, object, str]":
        """(cached MP4 or None, cache name, job, download name) of "Save clip": the clip ± ``pad_s`` stream-copied
        from the keyframe at or before its start (``bike export``'s fast mode, engine/video/export.py). On a
        miss, ``job()`` (run it in :attr:`decoding`) opens and verifies the video, cuts and caches the clip."""
        if not math.isfinite(pad_s) or not 0 <= pad_s <= self.limits.export_max_pad_s:
            raise _bad(f"pad must be between 0 and {self.limits.export_max_pad_s:g} seconds")
        info = self.clip(clip_id)
        self.media_file(info["video_id"])                # the path checks, also for a cached file
        span = Span(clip_id, info["video_id"], info["path"], None, float(info["start_s"]), float(info["end_s"]),
                    info.get("duration_s"))
        start, end = padded(span, pad_s)
        name = media.export_name(clip_id, pad_s)
        download = result_name(info["path"] or info["video_id"], start, end, 1)[3:]

        def job() -> Path:
            from engine.video.export import export_span
            got = self.export_cache.get(name)
            if got is not None:
                return got
            tmp = self.export_cache.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.part.mp4"
            self.export_cache.folder.mkdir(parents=True, exist_ok=True)
            try:
                with self.open_media(info["video_id"]) as opened:
                    try:
                        rep = export_span(opened.path, start, end, tmp, timeout_s=self.limits.thumb_timeout_s)
                    except VideoError as e:
                        raise ServiceError(422, f"this clip cannot be cut out of its video ({e.reason})") from None
                if rep.bytes > self.limits.export_max_bytes:
                    raise ServiceError(413, f"the clip is {rep.bytes >> 20} MB, over the server's limit of "
                                            f"{self.limits.export_max_bytes >> 20} MB; use `bike export`")
                return self.export_cache.put(name, tmp.read_bytes())
            finally:
                tmp.unlink(missing_ok=True)
        return self.export_cache.get(name), name, job, download

    def thumb(self, clip_id: str, t: "float | None") -> Path:
        """The thumbnail's JPEG file, decoded in the bounded pool when not cached (``decoding.Busy`` when the
        pool is full or it took longer than ``Limits.thumb_timeout_s``)."""
        hit, name, job = self.thumb_job(clip_id, t)
        return hit or self.decoding.call(job, timeout_s=self.limits.thumb_timeout_s, key=name)

    # ---- SQL, stats, health --------------------------------------------------------------------------
    def sql_json(self, q: str) -> bytes:
        """The JSON body of ``/api/sql`` (made and size-checked in the query's own process: it is passed on
        as it is, never parsed here)."""
        if not q or not q.strip():
            raise _bad("empty query: give q=SELECT ...")
        self.maybe_refresh()
        try:
            return run_sql(self.sql_box, self.store, q, self.limits)
        except SQLLimitError as e:
            raise ServiceError(e.status, str(e)) from None
        except SQLError as e:
            raise _bad(str(e)) from None

    def sql(self, q: str) -> dict:
        """``/api/sql``'s answer as a dict."""
        import json
        return json.loads(self.sql_json(q))

    def stats(self, top: int = 60) -> dict:
        self.maybe_refresh()
        p = {"m": self.model_id}
        counts = self._rows("SELECT count(DISTINCT video_id) AS videos, "
                            "count(DISTINCT video_id) FILTER (WHERE status = 'error') AS errors "
                            "FROM videos WHERE model_id = $m", p)[0]
        counts["clips"] = self._rows("SELECT count(*) AS n FROM clips WHERE model_id = $m", p)[0]["n"]
        desc, random_init = self.describe_model()
        return {
            **counts, "model_id": self.model_id, "model": desc, "random_init": random_init,
            "warning": RANDOM_WARNING if random_init else None,
            "searchable": self.searcher is not None, "unsearchable": self.unsearchable,
            "models": self._rows("SELECT model_id, name, random_init, frames, window_s, label_set, created_at "
                                 "FROM models ORDER BY created_at", {}),
            "labels": self._rows("SELECT label, count(*) AS clips FROM labels WHERE model_id = $m AND rank = 0 "
                                 f"GROUP BY label ORDER BY clips DESC, label LIMIT {int(top)}", p),
            "error_report": self._rows("SELECT video_id, path, error, tagged_at FROM videos "
                                       "WHERE model_id = $m AND status = 'error' ORDER BY path LIMIT 200", p),
            "batches": len(self.store.commits()),
            "tables": table_columns(),
        }

    def describe_model(self) -> "tuple[str, bool]":
        """(one line naming the model, random weights?); with nothing searchable, from the models row if any."""
        if self.searcher is not None:
            return self.searcher.describe_model()
        if self.model_id is None:
            return "no model yet", False
        try:
            return describe_model_row(self.store, self.model_id)
        except StoreError:                           # no models row for it
            return f"{self.model_id} (no models row)", False

    def health(self) -> dict:
        return {"ok": True, "store": str(self.store.root), "model_id": self.model_id,
                "batches": len(self.store.commits()), "uptime_s": round(time.time() - self.started, 1)}


class VideoPage:
    """The ``select`` of :meth:`Searcher.search` for one page of a search grouped by video: of the ranked clips
    ``[(clip_id, video_id, score)]`` it keeps those scoring at least ``min_score``, orders their videos by
    their best clip, and builds results only for the clips of videos ``offset .. offset + k`` (every clip of
    such a video, those under ``min_score`` too, which the caller drops afterwards: the moments, ``more`` and
    ``more_count`` come out as from all the results). It records
    ``found`` (clips ranked), ``removed`` (by ``min_score``) and ``videos`` (all videos among the kept clips).
    ``used`` stays False when the search did not call it (the fused text channels rank without it): the
    caller then groups every result as before."""

    def __init__(self, offset: int, k: int, min_score: "float | None" = None):
        self.offset, self.k, self.min_score = offset, k, min_score
        self.used, self.found, self.removed, self.videos = False, 0, 0, 0

    def __call__(self, top: "list[tuple]") -> "list[int]":
        kept = [i for i, (_, _, s) in enumerate(top) if self.min_score is None or s >= self.min_score]
        order = list(dict.fromkeys(top[i][1] for i in kept))
        shown = set(order[self.offset:self.offset + self.k])
        self.used, self.found, self.removed, self.videos = True, len(top), len(top) - len(kept), len(order)
        return [i for i, (_, v, _) in enumerate(top) if v in shown]    # min_score drops its own after moments


def group_by_video(results: "list[dict]", max_moments: int) -> "list[dict]":
    """One entry per video, in the rank order of each video's best result: that result, plus ``more`` (the
    video's other results, best first, at most ``max_moments``) and ``more_count`` (all of them). Done here
    rather than in the page so that paging (``offset``) counts videos and a video never comes back on a later
    page; the page shows "n more moments in this video" from ``more``."""
    groups: dict = {}
    for r in results:
        g = groups.get(r["video_id"])
        if g is None:
            groups[r["video_id"]] = {**r, "more": [], "more_count": 0}
        else:
            g["more_count"] += 1
            if len(g["more"]) < max_moments:
                g["more"].append(r)
    return list(groups.values())


def table_columns() -> "dict[str, list[list[str]]]":
    """The SQL views and their columns, ``{table: [[column, type], ...]}`` (``bike sql --schema``): the SQL
    box of the page lists them."""
    from index.store.schema import DERIVED, TABLES
    return {name: [[f.name, str(f.type)] for f in schema]
            for name, schema in [*TABLES.items(), *((n, sch) for n, (_, sch) in DERIVED.items())]}
