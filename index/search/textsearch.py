"""One search over every channel: the visual search (BIKE, index/search/search.py) and the text channels
(subtitles, on-screen text, speech: the ``transcripts`` table through index/search/textindex.py), fused into one
ranked list by weighted reciprocal rank fusion (index/search/fusion.py).

    >>> from index.search.search import Searcher
    >>> from index.search.textsearch import fused_search
    >>> res = fused_search(Searcher("tags/"), "quarterly budget", k=5)
    >>> for r in res:
    ...     print(r.rank, r.matched, r.moment_s, r.text, r.path)

How a text query is answered (docs/search.md "Text channels"):

1. **Visual**: ``Searcher.search`` as before (top max(3k, 30) clips).
2. **Text**: BM25 over the transcripts rows (top max(50, 10k) spans), per source. Spans of one video that
   start within :data:`SAME_MOMENT_S` of each other are one hit (a subtitle in a stream and in a sidecar).
3. **The same item**: a text span that falls inside a clip of the searcher's model is that clip: the visual
   hit and the text hit of one clip fuse into one result. A span in a video without clips (not tagged by this
   model) is an item of its own.
4. **Fusion**: RRF over the channel lists (weights settable: ``weights={"speech": 0.5}``).
5. **Results**: ``matched`` lists the channels that found the item (best rank first); ``text`` is the best
   text hit's words, ``moment_s`` where they are said or shown (its start) and ``moment_start_s`` /
   ``moment_end_s`` their span (inside the clip); for a visual-only result, the saliency peak as before.
   ``score`` is the fused score.

``where`` (a DuckDB condition over ``search_clips``, whose columns subtitles, screen_text and speech hold each
video's transcripts (index/store/where.py), e.g. ``speech ILIKE '%budget%'``) filters both channels: visual results as before, text hits to the allowed clips (or, for
videos without clips, the allowed videos). A store with no transcripts answers exactly as the visual search.
"""
from __future__ import annotations

import time

from .fusion import parse_weights, rrf
from .search import SearchError, SearchResult, SearchResults
from .textindex import open_text_index

#: Text spans of one video starting this close (s) are the same hit.
SAME_MOMENT_S = 0.5
TEXT_SOURCES = ("subtitle", "ocr", "speech")


def parse_channels(spec) -> "set[str]":
    """``"visual,text"`` (or a list) → the set of channels: visual, subtitle, ocr, speech (text = the three)."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec or ()) if s.strip()]
    out: set = set()
    for n in names or ["visual", "text"]:
        if n == "text":
            out.update(TEXT_SOURCES)
        elif n in ("visual", *TEXT_SOURCES):
            out.add(n)
        elif n in ("subtitles", "speech", "asr"):
            out.add({"subtitles": "subtitle", "asr": "speech"}.get(n, n))
        else:
            raise SearchError(f"--channels {spec}: unknown channel {n!r} (visual, text, subtitle, ocr, speech)")
    return out


def _text_index(searcher):
    """The searcher's text index for its current generation (rebuilt after ``refresh()``)."""
    cached = getattr(searcher, "_text_index_cache", None)
    if cached is not None and cached[0] == searcher._gen:
        return cached[1], cached[2]
    with searcher._lock:
        idx, notes = open_text_index(searcher.store)
        searcher._text_index_cache = (searcher._gen, idx, notes)
    return idx, notes


def _clips_of(searcher, video_ids) -> "dict[str, list[tuple]]":
    """video_id → [(clip_id, start_s, end_s, frame_times)] of the searcher's model, by start."""
    if not video_ids:
        return {}
    rows = searcher.con.execute(
        "SELECT video_id, clip_id, start_s, end_s, frame_times FROM clips WHERE model_id = $m AND video_id IN "
        "(SELECT unnest($v)) ORDER BY video_id, start_s", {"m": searcher.model_id, "v": list(video_ids)}).fetchall()
    out: dict = {}
    for vid, cid, s, e, ft in rows:
        out.setdefault(vid, []).append((cid, float(s), float(e), [float(x) for x in (ft or [])]))
    return out


def _clip_at(clips, t: float):
    for c in clips:
        if c[1] <= t < c[2]:
            return c
    return clips[-1] if clips and t >= clips[-1][1] else (clips[0] if clips else None)


def fused_search(searcher, query: str, k: int = 10, channels="visual,text", where: "str | None" = None,
                 weights=None, **visual_kwargs) -> SearchResults:
    """The best ``k`` items for a text ``query`` over the chosen ``channels`` (see the module docstring)."""
    t0 = time.perf_counter()
    chans = parse_channels(channels)
    try:
        w = parse_weights(weights)
    except ValueError as e:
        raise SearchError(f"--fusion-weights: {e}") from None
    if not query or not str(query).strip():
        raise SearchError("empty query: give a text, --like VIDEO or --clip CLIP_ID")
    if k < 1:
        raise SearchError(f"-k {k}: must be at least 1")
    text_chans = [c for c in TEXT_SOURCES if c in chans]
    idx, notes = _text_index(searcher) if text_chans else (None, [])
    select = visual_kwargs.pop("select", None)       # Searcher.search's: only where the visual search answers
    if idx is None and "visual" in chans:            # nothing but pictures: the visual search, unchanged
        res = searcher.search(query, k=k, where=where, select=select, **visual_kwargs)
        return res
    visual = None
    if "visual" in chans:
        visual = searcher.search(query, k=max(3 * k, 30), where=where, **visual_kwargs)
        notes = list(visual.notes) + list(notes)
    allowed = None
    if where:
        if visual is None:
            allowed = set(searcher.sql_box.where(searcher.store, searcher.model_id, where))
            notes.append(f"--where kept {len(allowed)} clip(s)")
        else:                                        # the visual search evaluated it already: again, bounded
            allowed = set(searcher.sql_box.where(searcher.store, searcher.model_id, where))
    hits = idx.search(str(query), k=max(50, 10 * k), sources=text_chans) if idx is not None else []
    clips = _clips_of(searcher, {h.video_id for h in hits})
    allowed_videos = None if allowed is None else {c.rsplit("/", 1)[0] for c in allowed}
    ranked: dict = {"visual": [r.clip_id for r in visual]} if visual is not None else {}
    best_text: dict = {}                             # key → (rank, hit, clip)
    seen: dict = {}                                  # (video, source) → starts already taken
    for hit in hits:
        starts = seen.setdefault((hit.video_id, hit.source), [])
        if any(abs(hit.start_s - s) < SAME_MOMENT_S for s in starts):
            continue
        clip = _clip_at(clips.get(hit.video_id, []), hit.start_s)
        if allowed is not None and (clip[0] not in allowed if clip else hit.video_id not in allowed_videos):
            continue
        starts.append(hit.start_s)
        key = clip[0] if clip else f"{hit.video_id}@{hit.start_s:.2f}"
        lst = ranked.setdefault(hit.source, [])
        if key not in lst:
            lst.append(key)
            rank = len(lst)
            if key not in best_text or rank < best_text[key][0]:
                best_text[key] = (rank, hit, clip)
    fused = rrf(ranked, w)[:k]
    by_clip = {r.clip_id: r for r in (visual or [])}
    need = [key for key, *_ in fused if key not in by_clip and key in best_text and best_text[key][2]]
    labels = searcher._per_clip("labels", "label", need) if need else {}
    results = []
    from engine.model.classify import AttributeScore  # noqa: F401 (the types of SearchResult's lists)
    from .search import ClipLabel
    for i, (key, score, chan_ranks) in enumerate(fused):
        matched = [c for c, _ in sorted(chan_ranks.items(), key=lambda x: (x[1], x[0]))]
        text = best_text.get(key)
        base = by_clip.get(key)
        if base is not None:
            r = SearchResult(**{f: getattr(base, f) for f in base.__dataclass_fields__})
        else:
            _, hit, clip = text
            cid, s, e, ft = clip if clip else (key, hit.start_s, hit.end_s, [])
            r = SearchResult(rank=0, score=0.0, clip_id=cid, video_id=hit.video_id, path=hit.path, start_s=s,
                             end_s=e, moment_s=hit.start_s, moment_start_s=hit.start_s, moment_end_s=hit.end_s,
                             saliency=[], frame_times=ft,
                             labels=[ClipLabel(a, x) for a, x in labels.get(cid, ())], attributes=[],
                             index_score=None)
        r.rank, r.score, r.matched = i + 1, float(score), matched
        if text is not None:                         # the moment: where the words are said or shown
            hit = text[1]
            r.text, r.moment_s = hit.text, float(hit.start_s)
            lo = min(max(float(hit.start_s), r.start_s), r.end_s)
            r.moment_start_s, r.moment_end_s = lo, min(max(float(hit.end_s), lo), r.end_s)
            r.joined = None                          # (a visual moment's span across clips: not the words')
            if r.path is None:
                r.path = text[1].path
        results.append(r)
    if visual is not None:
        kind, model_id, model, rnd = visual.kind, visual.model_id, visual.model, visual.random_init
    else:
        (model, rnd), kind, model_id = searcher.describe_model(), "text", searcher.model_id
    return SearchResults(results, str(query), kind, model_id, model, rnd, notes,
                         (visual.candidates if visual is not None else 0) + len(hits), time.perf_counter() - t0)
