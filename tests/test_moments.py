"""Moment spans (index/search/moments.py), the moment metrics (jobs/train/momentmetrics.py) against hand-computed values,
and `bike eval --moments` (jobs/train/momenteval.py) on a small real store."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import engine
from index.search.moments import join_moments, moment_span
from index.search.search import Query, Searcher
from index.store import Store
from jobs.train import momentmetrics as mm
from jobs.cli import main as bike
from jobs.train.momenteval import evaluate_moments, read_annotations
from searchstore import WINDOW_S, add_video

T = 8
STEP = WINDOW_S / T                 # 1.25 s between sampled frames


# ---- the span rule on hand-made curves ------------------------------------------------------------------
TIMES = [0.0, 2.0, 4.0, 6.0, 8.0]   # a 10-s clip, 5 frames, step 2 s


@pytest.mark.parametrize("sal, want", [
    ([0.1, 0.1, 0.5, 0.2, 0.1], (2, 2, 3.0, 5.0)),           # one frame above half-way (0.3): ± half a step
    ([0.05, 0.3, 0.3, 0.3, 0.05], (1, 3, 1.0, 7.0)),          # a plateau of three frames
    ([0.4, 0.1, 0.45, 0.1, 0.4], (2, 2, 3.0, 5.0)),           # frames 0 and 4 are high but not contiguous
    ([0.4, 0.35, 0.1, 0.1, 0.05], (0, 1, 0.0, 3.0)),          # the first frame: the span reaches the clip start
    ([0.05, 0.1, 0.1, 0.3, 0.45], (3, 4, 5.0, 10.0)),         # the last frame: it reaches the clip end
    ([0.2] * 5, (0, 4, 0.0, 10.0)),                           # a flat curve says nothing: the whole clip
])
def test_span_rule_on_hand_made_curves(sal, want):
    s = moment_span(sal, TIMES, 0.0, 10.0)
    assert (s.first, s.last) == want[:2]
    assert (s.start_s, s.end_s) == pytest.approx(want[2:])
    assert s.peak == int(np.argmax(sal)) and s.first <= s.peak <= s.last


def test_span_is_inside_the_clip_and_follows_its_times():
    times = [10.0 + 2.5 * i for i in range(4)]                 # clip [10, 20], 4 frames
    s = moment_span([0.1, 0.6, 0.2, 0.1], times, 10.0, 20.0)
    assert (s.start_s, s.end_s) == pytest.approx((11.25, 13.75))
    s = moment_span([1.0], [3.0], 2.0, 4.0)                    # one frame: the whole clip
    assert (s.start_s, s.end_s) == (2.0, 4.0)
    with pytest.raises(ValueError):
        moment_span([0.5, 0.5], [1.0], 0.0, 2.0)


def _r(video, clip_id, a, b, ma, mb):
    return SimpleNamespace(video_id=video, clip_id=clip_id, start_s=a, end_s=b, moment_start_s=ma,
                           moment_end_s=mb, joined=None)


def test_neighbouring_clips_that_meet_at_their_edge_are_joined():
    rs = [_r("v", "v/1", 10, 20, 16, 20), _r("v", "v/0", 0, 10, 2, 5), _r("v", "v/2", 20, 30, 20, 23),
          _r("w", "w/3", 30, 40, 30, 32), _r("v", "v/4", 40, 50, 40, 45)]   # v/4: no v/3 among the results
    join_moments(rs)
    by = {r.clip_id: r.joined for r in rs}
    assert by["v/1"] == by["v/2"] == {"start_s": 16, "end_s": 23, "clip_ids": ["v/1", "v/2"]}
    assert by["v/0"] is None and by["w/3"] is None and by["v/4"] is None
    rs = [_r("v", "v/0", 0, 10, 4, 9), _r("v", "v/1", 10, 20, 10, 12)]    # v/0's moment ends before the edge
    join_moments(rs)
    assert rs[0].joined is None and rs[1].joined is None
    rs = [_r("v", "v/0", 0, 10, 7, 10), _r("v", "v/1", 10, 20, 10, 20), _r("v", "v/2", 20, 30, 20, 21)]
    join_moments(rs)                                                          # a chain across three clips
    assert rs[0].joined == {"start_s": 7, "end_s": 21, "clip_ids": ["v/0", "v/1", "v/2"]}


# ---- metrics against hand computations ------------------------------------------------------------------
def test_iou_by_hand():
    assert mm.iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert mm.iou((0, 10), (2, 4)) == pytest.approx(2 / 10)
    assert mm.iou((0, 10), (10, 20)) == 0.0 and mm.iou((0, 1), (5, 6)) == 0.0
    assert mm.iou((3, 3), (3, 3)) == 0.0 and mm.iou((-1, -1), (0, 5)) == 0.0
    assert mm.best_iou((18, 30), [(0, 10), (20, 30)]) == pytest.approx(10 / 12)


def test_average_precision_by_hand():
    gts = [(0, 10), (20, 30)]
    preds = [(0, 10, 0.9), (40, 50, 0.8), (20, 29, 0.7)]      # TP, FP, TP with IoU 0.9
    # t = 0.5: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 → AP = 1/2·1 + 1/2·2/3
    assert mm.average_precision(preds, gts, 0.5) == pytest.approx(0.5 + 1 / 3)
    # t = 0.95: the third is a miss → AP = 1/2·1
    assert mm.average_precision(preds, gts, 0.95) == pytest.approx(0.5)
    # order by score, not by position; interpolation takes the best precision at or after each recall step
    shuffled = [preds[2], preds[0], preds[1]]
    assert mm.average_precision(shuffled, gts, 0.5) == pytest.approx(0.5 + 1 / 3)
    fp_first = [(40, 50, 0.95), (0, 10, 0.9), (20, 29, 0.7)]  # P: 0, 1/2, 2/3; R: 0, 1/2, 1 → 1/2·2/3 + 1/2·2/3
    assert mm.average_precision(fp_first, gts, 0.5) == pytest.approx(2 / 3)
    # a repeated window is a false positive (the window it matched is taken)
    assert mm.average_precision([(0, 10, 0.9), (0, 10, 0.8)], [(0, 10)], 0.5) == 1.0
    assert mm.average_precision([(0, 10, 0.9), (0, 10, 0.8)], [(0, 10), (30, 40)], 0.5) == pytest.approx(0.5)
    assert mm.average_precision([], gts, 0.5) == 0.0
    # mAP over 0.5:0.05:0.95: IoU 0.9 passes 9 thresholds (0.5 … 0.9), not 0.95
    q = mm.query_metrics(preds, gts)
    assert mm.MAP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert q["AP"] == pytest.approx((9 * (0.5 + 1 / 3) + 0.5) / 10)
    assert (q["iou"], q["R1@0.5"], q["R1@0.7"]) == (1.0, 1.0, 1.0)


def test_recall_at_one_and_miou_by_hand():
    a = mm.query_metrics([(18, 30, 1.0), (0, 10, 0.5)], [(0, 10), (20, 30)])   # top-1 IoU 10/12 with the 2nd
    b = mm.query_metrics([(0, 6, 1.0)], [(0, 10)])                               # IoU 0.6
    c = mm.query_metrics([], [(0, 10)])                                          # no prediction: zeros
    assert (a["R1@0.5"], a["R1@0.7"], b["R1@0.5"], b["R1@0.7"]) == (1.0, 1.0, 1.0, 0.0)
    s = mm.summarize([a, b, c])
    assert set(s) == {"R1@0.5", "R1@0.7", "mAP", "mIoU", "queries"}
    assert s["R1@0.5"] == pytest.approx(2 / 3) and s["R1@0.7"] == pytest.approx(1 / 3)
    assert s["mIoU"] == pytest.approx((10 / 12 + 0.6 + 0) / 3)
    # b: IoU 0.6 is a hit at 0.5 and 0.55, 0.6 → AP 1 at 3 of 10 thresholds
    assert b["AP"] == pytest.approx(0.3)
    assert s["mAP"] == pytest.approx((a["AP"] + 0.3 + 0) / 3)
    assert mm.query_metrics([(0, 10, 1.0)] * 10 + [(55, 60, 0.1)], [(55, 60)])["AP"] == 0.0   # only 10 count


# ---- bike eval --moments on a real store --------------------------------------------------------------
@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


@pytest.fixture(scope="module")
def moment_store(tmp_path_factory, tiny_model, labels):
    """Three 30-s videos (3 clips of 10 s, T = 8) of random frames; in each, one event direction fills frames
    2–4 of clip 1 (11.875–15.625 s once widened) in video a, frames 6–7 of clip 0 + 0–1 of clip 1 (across the
    10-s edge) in video b, and nothing in video c."""
    d = tiny_model.embed_dim
    rng = np.random.default_rng(5)
    event = rng.standard_normal(d).astype(np.float32)
    store = Store(tmp_path_factory.mktemp("moments") / "store", create=True)
    vids = {}
    for name, hits in (("a", {(1, 2), (1, 3), (1, 4)}), ("b", {(0, 6), (0, 7), (1, 0), (1, 1)}), ("c", set())):
        clips = [rng.standard_normal((T, d)).astype(np.float32) for _ in range(3)]
        for c, f in hits:
            clips[c][f] = 4 * event + 0.1 * rng.standard_normal(d)
        vids[name] = f"{name * 8}"
        add_video(store, tiny_model, labels, vids[name], clips, path=f"/videos/{name}.mp4")
    return store, event, vids


class EventSearcher(Searcher):
    """The store's searcher, with the text "the event" encoded as the hand-made event direction (the tiny
    random model's text tower knows no event)."""

    def __init__(self, *a, event=None, **k):
        super().__init__(*a, **k)
        self._event = event

    def text_query(self, text):
        e = torch.tensor(self._event)
        noise = torch.tensor(np.random.default_rng(0).standard_normal((77, e.shape[0])), dtype=torch.float32)
        return Query.from_text_features(text, e, e + 0.05 * noise)


def test_search_results_carry_the_span(moment_store, tiny_model):
    store, event, vids = moment_store
    res = EventSearcher(store, model=tiny_model, event=event).search("the event", k=9)
    assert {r.clip_id for r in res[:2]} == {f"{vids['a']}/1", f"{vids['b']}/0"} or \
        {r.clip_id for r in res[:3]} >= {f"{vids['a']}/1", f"{vids['b']}/0", f"{vids['b']}/1"}
    top = next(r for r in res if r.clip_id == f"{vids['a']}/1")
    assert (top.moment_start_s, top.moment_end_s) == pytest.approx((10 + 2 * STEP - STEP / 2, 10 + 4 * STEP + STEP / 2))
    assert top.start_s <= top.moment_start_s <= top.moment_s <= top.moment_end_s <= top.end_s
    assert top.joined is None
    b0, b1 = (next(r for r in res if r.clip_id == f"{vids['b']}/{i}") for i in (0, 1))
    assert b0.moment_end_s == b0.end_s == 10.0 and b1.moment_start_s == b1.start_s == 10.0
    assert b0.joined == b1.joined == {"start_s": 6 * STEP - STEP / 2, "end_s": 10 + STEP + STEP / 2,
                                      "clip_ids": [f"{vids['b']}/0", f"{vids['b']}/1"]}
    d = top.to_dict()
    assert {"moment_s", "moment_start_s", "moment_end_s", "joined"} <= set(d)
    for r in res:
        assert r.start_s <= r.moment_start_s <= r.moment_s <= r.moment_end_s <= r.end_s


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_evaluate_moments_finds_the_events(moment_store, tiny_model, tmp_path):
    store, event, vids = moment_store
    ann = _write(tmp_path / "ann.jsonl", [
        {"qid": 1, "query": "the event", "vid": "a", "relevant_windows": [[12.0, 15.5]], "duration": 30},
        {"qid": 2, "query": "the event", "vid": "/videos/b.mp4", "relevant_windows": [[7.5, 11.5]]},
        {"qid": 3, "query": "the event", "vid": "nope", "relevant_windows": [[1, 2]]}])
    s = EventSearcher(store, model=tiny_model, event=event)
    r = evaluate_moments(s, read_annotations(ann), scope="video")
    assert r["queries"] == 2 and r["unknown_vids"] == ["nope"]
    a, b = r["per_query"]
    assert a["pred"] == [11.875, 15.625] and a["iou"] == pytest.approx(3.5 / 3.75)
    assert b["pred"] == [6.875, 11.875] and b["iou"] == pytest.approx(4.0 / 5.0)   # joined across the edge
    assert r["metrics"]["R1@0.7"] == 1.0 and r["metrics"]["mIoU"] == pytest.approx((3.5 / 3.75 + 0.8) / 2)
    assert set(r["metrics"]) == {"R1@0.5", "R1@0.7", "mAP", "mIoU"}
    assert r["baselines"]["whole_clip"]["R1@0.5"] == 0.0          # a 10-s (or 20-s) clip vs a 3.5-4 s event
    assert r["baselines"]["random_span"]["R1@0.5"] < 0.5
    sub = r["predictions"][0]
    assert set(sub) == {"qid", "query", "vid", "pred_relevant_windows"} and sub["vid"] == "a"
    w = sub["pred_relevant_windows"]
    assert 1 <= len(w) <= 10 and w[0][:2] == [11.875, 15.625] and all(len(x) == 3 for x in w)
    assert [x[2] for x in w] == sorted((x[2] for x in w), reverse=True)
    c = evaluate_moments(s, read_annotations(ann), scope="corpus")
    assert c["metrics"]["video_R@5"] == 1.0 and c["queries"] == 2


def test_eval_moments_command(moment_store, tmp_path, capsys):
    """The CLI on the store's own (random) model: the JSON keys, the predictions file, the table, errors."""
    store, _, vids = moment_store
    ann = _write(tmp_path / "ann.jsonl", [
        {"qid": "q1", "query": "a ball rolls", "vid": "a", "relevant_windows": [[12.0, 15.5]]},
        {"qid": "q2", "query": "a ball rolls", "vid": vids["c"], "relevant_windows": [[0, 4], [20, 25]]},
        {"qid": "q3", "query": "x", "vid": "zzz", "relevant_windows": [[1, 2]]}])
    preds = tmp_path / "preds.jsonl"
    assert bike(["eval", "--moments", ann, "--store", str(store.root), "--format", "json", "--per-query",
                 "--predictions", str(preds)]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert set(doc["metrics"]) == {"R1@0.5", "R1@0.7", "mAP", "mIoU"}
    assert set(doc["baselines"]) == {"random_span", "whole_clip"} and doc["random_init"] is True
    assert doc["queries"] == 2 and doc["unknown_vids"] == ["zzz"] and "zzz" in out.err
    assert [q["qid"] for q in doc["per_query"]] == ["q1", "q2"]
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [x["qid"] for x in lines] == ["q1", "q2"] and all(x["pred_relevant_windows"] for x in lines)
    # the file scores to the reported numbers
    rows = [mm.query_metrics(x["pred_relevant_windows"], g) for x, g in zip(lines, ([[12.0, 15.5]], [[0, 4], [20, 25]]))]
    assert mm.summarize(rows)["mAP"] == pytest.approx(doc["metrics"]["mAP"], abs=1e-4)
    assert bike(["eval", "--moments", ann, "--store", str(store.root), "--scope", "corpus"]) == 0
    out = capsys.readouterr().out
    assert "random span" in out and "whole clip" in out and "video R@1" in out and "RANDOM WEIGHTS" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "query": "x", "vid": "a", "relevant_windows": [[5, 1]]}\n')
    assert bike(["eval", "--moments", str(bad), "--store", str(store.root)]) == 2
    assert "bad.jsonl: line 1: relevant_windows" in capsys.readouterr().err
    bad.write_text("not json\n")
    assert bike(["eval", "--moments", str(bad), "--store", str(store.root)]) == 2
    assert "line 1: not JSON" in capsys.readouterr().err
    assert bike(["eval", "--moments", ann]) == 2
    assert "--moments needs --store" in capsys.readouterr().err
    assert bike(["eval"]) == 2


def test_evaluate_moments_with_another_span_fraction(moment_store, tiny_model, tmp_path):
    """``fraction`` recomputes every span (and the joins) with the rule's other threshold: the code's own
    fraction changes nothing; fraction 1 keeps the peak frame alone (± half a step), inside the default span."""
    from index.search.moments import SPAN_FRACTION
    store, event, vids = moment_store
    ann = read_annotations(_write(tmp_path / "ann.jsonl", [
        {"qid": 1, "query": "the event", "vid": "a", "relevant_windows": [[12.0, 15.5]]},
        {"qid": 2, "query": "the event", "vid": "b", "relevant_windows": [[7.5, 11.5]]}]))
    s = EventSearcher(store, model=tiny_model, event=event)
    base = evaluate_moments(s, ann, scope="video")
    same = evaluate_moments(s, ann, scope="video", fraction=SPAN_FRACTION)
    assert [q["pred"] for q in same["per_query"]] == [q["pred"] for q in base["per_query"]]
    assert same["metrics"] == base["metrics"]
    p, b = evaluate_moments(s, ann, scope="video", fraction=1.0)["per_query"][0], base["per_query"][0]
    assert p["pred"][1] - p["pred"][0] == pytest.approx(STEP)               # video a: an inner peak frame
    assert b["pred"][0] <= p["pred"][0] < p["pred"][1] <= b["pred"][1]
