"""Moment spans (index/search/moments.py), the moment metrics (jobs/train/momentmetrics.py) against hand-computed values,
and `bike eval --moments` (jobs/train/momenteval.py) on a small real store."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import engine
from index.search.moments import DEFAULT_RULE, SpanRule, moment_span, set_moments, smoothed
from index.search.search import Query, Searcher
from index.store import Store
from jobs.train import momentmetrics as mm
from jobs.cli import main as bike
from jobs.train.momenteval import evaluate_moments, read_annotations
from searchstore import WINDOW_S, add_video

T = 8
STEP = WINDOW_S / T                 # 1.25 s between sampled frames


@pytest.mark.parametrize("rule", [DEFAULT_RULE, SpanRule(0.4, 0.0), SpanRule(0.8, 2.0)])
def test_single_clip_results_at_once_match_the_rule_clip_by_clip(rule):
    """set_moments does chains of one clip together in array operations: the same spans as moment_span, on
    random curves with ties, frame counts 2..16, steps 0.5..5 s and uneven frame times."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(600):
        n = int(rng.choice([2, 3, 8, 16]))
        s, dt = float(rng.integers(0, 20)) * 10, float(rng.choice([0.5, 1.0, 1.25, 2.5, 5.0]))
        times = [s + dt * j + (0.01 * rng.random() if rng.random() < 0.1 else 0.0) for j in range(n)]
        rows.append(SimpleNamespace(video_id=f"v{i}", clip_id=f"v{i}/0", start_s=s, end_s=s + dt * n,
                                    frame_times=times, relevance=rng.random(n).round(int(rng.integers(1, 4))).tolist(),
                                    joined="unset"))
    set_moments(rows, rule)
    for r in rows:
        want = moment_span(r.relevance, r.frame_times, r.start_s, r.end_s, rule)
        assert (r.moment_s, r.moment_start_s, r.moment_end_s, r.joined) == (
            r.frame_times[want.peak], want.start_s, want.end_s, None), r.clip_id


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
    s = moment_span(sal, TIMES, 0.0, 10.0, SpanRule(0.5, 0.0))
    assert (s.first, s.last) == want[:2]
    assert (s.start_s, s.end_s) == pytest.approx(want[2:])
    assert s.peak == int(np.argmax(sal)) and s.first <= s.peak <= s.last


def test_span_is_inside_the_clip_and_follows_its_times():
    times = [10.0 + 2.5 * i for i in range(4)]                 # clip [10, 20], 4 frames
    s = moment_span([0.1, 0.6, 0.2, 0.1], times, 10.0, 20.0, SpanRule(0.5, 0.0))
    assert (s.start_s, s.end_s) == pytest.approx((11.25, 13.75))
    s = moment_span([1.0], [3.0], 2.0, 4.0)                    # one frame: the whole clip
    assert (s.start_s, s.end_s) == (2.0, 4.0)
    with pytest.raises(ValueError):
        moment_span([0.5, 0.5], [1.0], 0.0, 2.0)


def test_smoothing_by_hand():
    # moving average over 3 frames, the ends repeated: [.1 .1 .1 .5 .2 .1 .1] → .1, .7/3, .8/3, .8/3, .4/3
    np.testing.assert_allclose(smoothed([0.1, 0.1, 0.5, 0.2, 0.1], 1), [0.1, 0.7 / 3, 0.8 / 3, 0.8 / 3, 0.4 / 3])
    np.testing.assert_allclose(smoothed([1.0, 2.0], 0), [1.0, 2.0])
    # the radius in seconds becomes frames at the clip's step: ⌊r/Δ + ½⌋
    assert [SpanRule(0.6, r).half_width(0.5) for r in (0.0, 0.2, 0.25, 1.0)] == [0, 0, 1, 2]
    assert [SpanRule(0.6, 1.0).half_width(d) for d in (1.0, 1.25, 2.0, 2.5, 0.0)] == [1, 1, 1, 0, 0]
    # step 2 s, radius 2 s → h = 1. The smoothed peak is frame 2 or 3 (a tie); threshold .1 + .5·(.8/3 − .1)
    # = .1833: frames 1–3 either way, the raw peak among them is frame 2
    s = moment_span([0.1, 0.1, 0.5, 0.2, 0.1], TIMES, 0.0, 10.0, SpanRule(0.5, 2.0))
    assert (s.peak, s.first, s.last, s.start_s, s.end_s) == pytest.approx((2, 1, 3, 1.0, 7.0))
    # a lone high frame (0.8) that smoothing spreads thin loses to a 3-frame event of 0.6
    s = moment_span([0.8, 0.0, 0.0, 0.6, 0.6, 0.6, 0.0, 0.0], [i + 0.5 for i in range(8)], 0.0, 8.0, SpanRule(0.5, 1.0))
    # rs = .533 .267 .2 .4 .6 .4 .2 0: peak 4 (.6), threshold .3: frames 3–5 → [3, 6] s; moment = frame 3
    assert (s.peak, s.first, s.last, s.start_s, s.end_s) == pytest.approx((3, 3, 5, 3.0, 6.0))


def _r(video, clip_id, a, b, rel, step=2.0):
    """A result with a relevance curve: frames at a + step/2, a + 3·step/2, ..."""
    times = [a + step / 2 + step * i for i in range(len(rel))]
    return SimpleNamespace(video_id=video, clip_id=clip_id, start_s=a, end_s=b, relevance=rel, frame_times=times,
                           moment_s=None, moment_start_s=None, moment_end_s=None, joined=None)


def test_a_moment_crossing_a_clip_edge_is_read_along_neighbouring_clips():
    """Two 8-s clips of one video (4 frames each, 2 s apart) with an event on the last frame of the first and
    the first two of the second; another video's clip and a clip of the same video after a gap stay apart."""
    rule = SpanRule(0.5, 0.0)
    rs = [_r("v", "v/1", 8, 16, [0.9, 0.8, 0.1, 0.0]), _r("v", "v/0", 0, 8, [0.0, 0.1, 0.1, 0.7]),
          _r("w", "w/1", 8, 16, [0.1, 0.5, 0.1, 0.1]), _r("v", "v/3", 24, 32, [0.2, 0.3, 0.6, 0.1])]
    set_moments(rs, rule)
    v1, v0, w1, v3 = rs
    # chain v/0 + v/1: curve 0 .1 .1 .7 | .9 .8 .1 0, floor 0. v/0's peak .7 (frame 3, at 7 s): threshold .35,
    # run = frames 3..5 (.7 .9 .8) = [6, 12] s; v/1's peak .9: threshold .45, the same run
    assert v0.joined == v1.joined == {"start_s": 6.0, "end_s": 12.0, "clip_ids": ["v/0", "v/1"]}
    assert (v0.moment_start_s, v0.moment_end_s, v0.moment_s) == (6.0, 8.0, 7.0)     # cut to the clip
    assert (v1.moment_start_s, v1.moment_end_s, v1.moment_s) == (8.0, 12.0, 9.0)
    # w/1 alone: floor .1, peak .5 → threshold .3: frame 1 alone, ± 1 s
    assert (w1.moment_start_s, w1.moment_end_s, w1.joined) == (10.0, 12.0, None)
    # v/3 (after a gap: v/2 is not among the results) is its own chain: floor .1, peak .6, threshold .35
    assert (v3.moment_start_s, v3.moment_end_s, v3.joined) == (28.0, 30.0, None)
    # smoothing along the chain, and the run reaching the chain's ends reaches the clips' edges
    rs = [_r("v", "v/0", 0, 8, [0.5, 0.5, 0.5, 0.5]), _r("v", "v/1", 8, 16, [0.5, 0.5, 0.0, 0.0]),
          _r("v", "v/2", 16, 24, [0.0, 0.0, 0.0, 0.0])]
    set_moments(rs, SpanRule(0.5, 2.0))                      # step 2 s: h = 1 frame
    # rs = .5 .5 .5 .5 | .5 .333 .167 0 | 0 0 0 0; floor 0, peak .5: threshold .25 → frames 0..5 = [0, 12] s
    assert rs[0].joined == rs[1].joined == {"start_s": 0.0, "end_s": 12.0, "clip_ids": ["v/0", "v/1"]}
    assert (rs[0].moment_start_s, rs[0].moment_end_s) == (0.0, 8.0)
    # v/2's own peak is its first frame (0, the first on the tie): threshold 0 → the whole chain
    assert rs[2].joined == {"start_s": 0.0, "end_s": 24.0, "clip_ids": ["v/0", "v/1", "v/2"]}
    for r in rs + [v0, v1, w1, v3]:
        assert r.start_s <= r.moment_start_s <= r.moment_s <= r.moment_end_s <= r.end_s
    # a result without a curve (a text-channel hit) is left as it is and joins nothing
    t = SimpleNamespace(video_id="v", clip_id="v/9", start_s=72, end_s=80, relevance=[], frame_times=[],
                        moment_s=75.0, moment_start_s=75.0, moment_end_s=77.0, joined=None)
    set_moments([t], DEFAULT_RULE)
    assert (t.moment_s, t.moment_start_s, t.moment_end_s, t.joined) == (75.0, 75.0, 77.0, None)


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


def test_evaluate_moments_with_another_span_rule(moment_store, tiny_model, tmp_path):
    """``rule`` recomputes every span (and the joins) with other parameters: the product's own rule changes
    nothing; fraction 1 without smoothing keeps the peak frame alone (± half a step), inside the default span."""
    store, event, vids = moment_store
    ann = read_annotations(_write(tmp_path / "ann.jsonl", [
        {"qid": 1, "query": "the event", "vid": "a", "relevant_windows": [[12.0, 15.5]]},
        {"qid": 2, "query": "the event", "vid": "b", "relevant_windows": [[7.5, 11.5]]}]))
    s = EventSearcher(store, model=tiny_model, event=event)
    base = evaluate_moments(s, ann, scope="video")
    same = evaluate_moments(s, ann, scope="video", rule=DEFAULT_RULE)
    assert [q["pred"] for q in same["per_query"]] == [q["pred"] for q in base["per_query"]]
    assert same["metrics"] == base["metrics"]
    p, b = evaluate_moments(s, ann, scope="video", rule=SpanRule(1.0, 0.0))["per_query"][0], base["per_query"][0]
    assert p["pred"][1] - p["pred"][0] == pytest.approx(STEP)               # video a: an inner peak frame
    assert b["pred"][0] <= p["pred"][0] < p["pred"][1] <= b["pred"][1]
