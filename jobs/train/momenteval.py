"""``bike eval --moments ANN.jsonl --store S``: how well search finds the moment, on a QVHighlights-style file.

The annotation file has one query per line (the QVHighlights JSONL layout)::

    {"qid": 7, "query": "a ball rolls left", "vid": "street_03", "relevant_windows": [[21.0, 24.0]]}

(``duration`` and ``saliency_scores`` may be there; they are not used). ``vid`` names a stored video by its
file-name stem, its path as tagged, or its video_id; queries whose vid names no stored video (or several) are
counted and named, not fatal.

For each query the store is searched (index/search/search.py) and the results become up to 10 predicted windows,
best first: a result's moment span (``joined`` span when it crosses into a neighbouring result clip; a
window already predicted is not repeated). ``scope="video"`` (the benchmark's protocol) searches the
clips of the query's video only; ``scope="corpus"`` searches the whole store, as a user does (a window in
another video is a miss), and also reports whether the right video comes first (video R@1) or among the
first five distinct videos (video R@5).

Beside the result, in the same run, two baselines with the same ranking: every predicted window replaced by
a uniform-random window of the same length in the same video (mean of RANDOM_DRAWS draws), and by the
whole clip(s) the window came from. Metrics: jobs/train/momentmetrics.py.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

from index.search.moments import SpanRule, set_moments

from jobs.train import momentmetrics as mm
from jobs.errors import UsageError

#: Baseline draws of the random-span baseline (its numbers are the mean over the draws).
RANDOM_DRAWS = 20
#: An annotation file larger than this is refused (bounded memory on untrusted input).
MAX_FILE_BYTES = 256 << 20
#: Results searched per query at corpus scope (to find five distinct videos for video R@5).
CORPUS_DEPTH = 50


@dataclass
class Annotation:
    qid: object
    query: str
    vid: str
    windows: list          # [[start, end], ...] ground truth, seconds


def read_annotations(path: str) -> "list[Annotation]":
    """Parse the JSONL file; a malformed line is an error naming the file and line."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{path}: {size} bytes: larger than {MAX_FILE_BYTES >> 20} MiB")
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {n}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{where}: not JSON ({e.msg})") from None
            if not isinstance(d, dict):
                raise UsageError(f"{where}: expected an object with qid, query, vid, relevant_windows")
            missing = [k for k in ("qid", "query", "vid", "relevant_windows") if k not in d]
            if missing:
                raise UsageError(f"{where}: missing {', '.join(missing)}")
            if not isinstance(d["query"], str) or not d["query"].strip() or not isinstance(d["vid"], (str, int)):
                raise UsageError(f"{where}: query must be a non-empty string and vid a string")
            windows = d["relevant_windows"]
            ok = isinstance(windows, list) and windows and all(
                isinstance(w, list) and len(w) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                            for x in w) and w[0] <= w[1] for w in windows)
            if not ok:
                raise UsageError(f"{where}: relevant_windows must be a non-empty list of [start, end] with "
                                 "start <= end (seconds)")
            out.append(Annotation(d["qid"], d["query"], str(d["vid"]), [[float(a), float(b)] for a, b in windows]))
    if not out:
        raise UsageError(f"{path}: no query in the file")
    return out


def video_names(searcher) -> "tuple[dict, dict]":
    """({name: video_id or None when ambiguous}, {video_id: duration_s}) of the searched model's videos;
    names are video_ids, paths and file-name stems."""
    rows = searcher.con.execute("SELECT video_id, any_value(path), any_value(duration_s) FROM videos "
                                "WHERE model_id = $m GROUP BY video_id", {"m": searcher.model_id}).fetchall()
    names: dict = {}
    durations = {}
    for vid, path, duration in rows:
        durations[vid] = float(duration or 0.0)
        keys = {vid}
        if path:
            keys |= {path, os.path.splitext(os.path.basename(path))[0]}
        for key in keys:
            names[key] = vid if names.get(key, vid) == vid else None
    return names, durations


def predictions(results, scope_video: "str | None" = None) -> "list[dict]":
    """Search results → predicted windows, best first, at most 10, without repeats: ``{"video_id", "start_s",
    "end_s", "score", "clip_start_s", "clip_end_s"}`` (the clip span(s) behind the window, for the whole-clip
    baseline)."""
    out, seen = [], set()
    for r in results:
        if scope_video is not None and r.video_id != scope_video:
            continue
        if r.joined:
            a, b = r.joined["start_s"], r.joined["end_s"]
            members = [x for x in results if x.clip_id in set(r.joined["clip_ids"])]
            ca, cb = min(x.start_s for x in members), max(x.end_s for x in members)
        else:
            a, b, ca, cb = r.moment_start_s, r.moment_end_s, r.start_s, r.end_s
        key = (r.video_id, round(a, 6), round(b, 6))
        if key in seen:
            continue
        seen.add(key)
        out.append({"video_id": r.video_id, "start_s": float(a), "end_s": float(b), "score": float(r.score),
                    "clip_start_s": float(ca), "clip_end_s": float(cb)})
        if len(out) == mm.MAX_PREDICTIONS:
            break
    return out


def _windows(preds, video_id: str, kind: str = "moment", rng=None, duration: float = 0.0) -> list:
    """[(start, end, score)] for the metrics; windows in another video become empty windows at -1 (misses)."""
    out = []
    for p in preds:
        if p["video_id"] != video_id:
            out.append((-1.0, -1.0, p["score"]))
            continue
        if kind == "clip":
            out.append((p["clip_start_s"], p["clip_end_s"], p["score"]))
        elif kind == "random":
            length = p["end_s"] - p["start_s"]
            a = rng.uniform(0.0, max(duration - length, 0.0))
            out.append((a, a + length, p["score"]))
        else:
            out.append((p["start_s"], p["end_s"], p["score"]))
    return out


def respan(results, rule: SpanRule) -> None:
    """Recompute every result's moment and span (and the joins) with another span ``rule``
    (index/search/moments.py): how the rule's parameters are chosen on validation videos (bench/moments.py)."""
    set_moments(results, rule)


def evaluate_moments(searcher, annotations: "list[Annotation]", scope: str = "video", seed: int = 0,
                     rule: "SpanRule | None" = None) -> dict:
    """Search every query, score the predictions and the baselines. Returns ``{"scope", "queries", "metrics",
    "baselines": {"random_span", "whole_clip"}, "unknown_vids", "per_query", "predictions"}`` (plus
    ``"video_R@1"``/``"video_R@5"`` in metrics at corpus scope). ``rule``: the span rule's parameters
    (None: the search's own, index.search.moments.DEFAULT_RULE)."""
    if scope not in ("video", "corpus"):
        raise UsageError(f"--scope {scope}: one of video, corpus")
    names, durations = video_names(searcher)
    rng = random.Random(seed)
    rows, clip_rows, rand_rows, unknown, subs = [], [], [[] for _ in range(RANDOM_DRAWS)], [], []
    hits1 = hits5 = 0
    for a in annotations:
        video_id = names.get(a.vid)
        if video_id is None:
            unknown.append(a.vid)
            continue
        if scope == "video":
            where = "video_id = '" + video_id.replace("'", "''") + "'"
            res = searcher.search(a.query, k=mm.MAX_PREDICTIONS * 3, where=where)
            if rule is not None:
                respan(res, rule)
            preds = predictions(res, video_id)
        else:
            res = searcher.search(a.query, k=CORPUS_DEPTH)
            if rule is not None:
                respan(res, rule)
            preds = predictions(res[:mm.MAX_PREDICTIONS * 3])
            videos = list(dict.fromkeys(r.video_id for r in res))
            hits1 += videos[:1] == [video_id]
            hits5 += video_id in videos[:5]
        mine = _windows(preds, video_id)
        row = mm.query_metrics(mine, a.windows)
        rows.append(row)
        clip_rows.append(mm.query_metrics(_windows(preds, video_id, "clip"), a.windows))
        for d in range(RANDOM_DRAWS):
            rand_rows[d].append(mm.query_metrics(
                _windows(preds, video_id, "random", rng, durations.get(video_id, 0.0)), a.windows))
        top = preds[0] if preds else None
        subs.append({"qid": a.qid, "query": a.query, "vid": a.vid,
                     "pred_relevant_windows": [[round(s, 4), round(e, 4), round(sc, 6)] for s, e, sc in mine]})
        row.update({"qid": a.qid, "vid": a.vid, "query": a.query, "gt": a.windows,
                    "pred": None if top is None else [round(top["start_s"], 3), round(top["end_s"], 3)],
                    "pred_video_id": None if top is None else top["video_id"]})
    metrics = mm.summarize(rows)
    if scope == "corpus":
        n = max(len(rows), 1)
        metrics["video_R@1"], metrics["video_R@5"] = hits1 / n, hits5 / n
    draws = [mm.summarize(r) for r in rand_rows]
    random_span = {k: sum(d[k] for d in draws) / RANDOM_DRAWS for k in ("R1@0.5", "R1@0.7", "mAP", "mIoU")}
    clip = mm.summarize(clip_rows)
    return {"scope": scope, "queries": len(rows), "metrics": {k: metrics[k] for k in metrics if k != "queries"},
            "baselines": {"random_span": random_span,
                          "whole_clip": {k: clip[k] for k in ("R1@0.5", "R1@0.7", "mAP", "mIoU")}},
            "unknown_vids": unknown, "per_query": rows, "predictions": subs}


def write_predictions(path: str, subs: "list[dict]") -> None:
    """The QVHighlights submission layout: one ``{"qid", "query", "vid", "pred_relevant_windows"}`` per line."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for s in subs:
            f.write(json.dumps(s) + "\n")
    os.replace(tmp, path)


def format_report(r: dict) -> str:
    """The table form: the result and the baselines side by side."""
    keys = ["R1@0.5", "R1@0.7", "mAP", "mIoU"]
    lines = [f"moments: {r['queries']} queries, scope {r['scope']}"
             + (f"; {len(r['unknown_vids'])} unknown vid(s): {', '.join(map(str, r['unknown_vids'][:5]))}"
                + (" …" if len(r["unknown_vids"]) > 5 else "") if r["unknown_vids"] else ""),
             f"{'':<22}" + "".join(f"{k:>9}" for k in keys)]
    for name, m in (("bike", r["metrics"]), ("random span (same len)", r["baselines"]["random_span"]),
                    ("whole clip", r["baselines"]["whole_clip"])):
        lines.append(f"{name:<22}" + "".join(f"{m[k]:9.3f}" for k in keys))
    if "video_R@1" in r["metrics"]:
        lines.append(f"video R@1 {r['metrics']['video_R@1']:.3f}  video R@5 {r['metrics']['video_R@5']:.3f}")
    return "\n".join(lines)


def format_per_query(rows: "list[dict]") -> str:
    lines = [f"{'qid':>8} {'vid':<24} {'iou':>6} {'AP':>6}  pred | gt"]
    for q in rows:
        pred = "-" if q["pred"] is None else f"{q['pred'][0]:.1f}-{q['pred'][1]:.1f}"
        gt = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in q["gt"])
        lines.append(f"{str(q['qid']):>8} {str(q['vid'])[:24]:<24} {q['iou']:6.3f} {q['AP']:6.3f}  {pred} | {gt}")
    return "\n".join(lines)
