"""Scores + clip spans → store rows (jobs.tag.records), the decode stage, and the scoring stage, without Ray."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from index.store.schema import TABLES
from jobs.tag.decode import decode_video
from jobs.tag.records import ClipSpan, VideoResult, clip_results, model_facts, model_row, tables
from media import make_video


def test_clip_results_and_tables_follow_the_schema(tiny_model):
    labels = "dog,cat,surfing,cooking,running,dancing"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 8, 224, 224, 3), dtype=np.uint8)
    scores = tiny_model.score_frames(frames, labels)
    spans = [ClipSpan(i, 10.0 * i, 10.0 * i + 10, [10.0 * i + t for t in range(8)]) for i in range(3)]
    res = clip_results(scores, spans, top_k=5)
    assert len(res) == 3
    for b, r in enumerate(res):
        assert [lr.label for lr in r.labels] == [x.label for x in scores.top(b, 5)]
        top = r.labels[0]
        c = scores.labels.index(top.label)
        sal = scores.spotting.saliency[b, c].numpy()
        assert top.saliency == pytest.approx(sal.tolist(), abs=1e-7)
        assert top.peak_s == spans[b].frame_times[int(np.argmax(sal))]
        assert sum(top.saliency) == pytest.approx(1.0, abs=1e-5)
        assert r.frame_embeddings.dtype == np.float16 and r.frame_embeddings.shape == (8, tiny_model.embed_dim)
        np.testing.assert_allclose(r.frame_embeddings, scores.features[b].numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(r.embedding, scores.spotting.embedding(c)[b].numpy(), atol=1e-6)
        assert len(r.attributes) == 5
    ok = VideoResult("vid1", "/x/a.mp4", size=10, duration_s=30.0, fps=25.0, width=64, height=48, codec="h264",
                     clips=res)
    bad = VideoResult.failed("vid2", "/x/b.mp4", "empty file", size=0)
    t = tables("m1", [ok, bad])
    for name, table in t.items():
        assert table.schema == TABLES[name]
    assert t["videos"].to_pydict()["status"] == ["ok", "error"]
    assert t["videos"].to_pydict()["num_clips"] == [3, 0]
    assert t["clips"]["clip_id"].to_pylist() == ["vid1/0", "vid1/1", "vid1/2"]
    assert t["labels"].num_rows == 15 and t["attributes"].num_rows == 15 and t["embeddings"].num_rows == 3
    back = np.array(t["clips"]["frame_embeddings"][1].as_py(), np.float16)
    np.testing.assert_array_equal(back, res[1].frame_embeddings)
    m = model_row("m1", model_facts(tiny_model), scores.labels, 10.0)
    assert m.schema == TABLES["models"] and m["labels"][0].as_py() == list(scores.labels.names)


def test_decode_video_stream_protocol(tmp_path):
    path = make_video(tmp_path / "v.mp4", seconds=23, fps=10, size=(80, 64), pattern="testsrc")
    msgs = list(decode_video(str(path), frames=4, window_s=10, size=32, resize=36, chunk_clips=2))
    kinds = [m["kind"] if isinstance(m, dict) else "frames" for m in msgs]
    assert kinds == ["head", "chunk", "frames", "chunk", "frames", "end"]
    assert msgs[0]["info"].duration_s == pytest.approx(23, abs=0.2)
    assert msgs[2].shape == (2, 4, 32, 32, 3) and msgs[4].shape == (1, 4, 32, 32, 3)
    assert [s.index for s in msgs[1]["spans"] + msgs[3]["spans"]] == [0, 1, 2]
    assert msgs[-1]["clips"] == 3 and msgs[-1]["error"] is None


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"hello, not a video", "not a video")])
def test_decode_video_reports_bad_input_as_a_message(tmp_path, content, reason):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    msgs = list(decode_video(str(p)))
    assert [m["kind"] for m in msgs] == ["head", "end"]
    assert reason in msgs[0]["error"] and msgs[-1]["error"] == msgs[0]["error"]


def test_scorer_splits_a_batch_back_into_chunks():
    from jobs.tag.scoring import Scorer
    s = Scorer(dict(name="bike-tiny", random_init=True, lexicon="hmdb51"), "dog,cat,bird")
    a = np.zeros((2, 8, 224, 224, 3), np.uint8)
    b = np.full((1, 8, 224, 224, 3), 200, np.uint8)
    spans = [[ClipSpan(0, 0, 10, list(range(8))), ClipSpan(1, 10, 20, list(range(10, 18)))],
             [ClipSpan(0, 0, 5, list(range(8)))]]
    out = s.score(spans, a, b)
    assert [len(x) for x in out] == [2, 1]
    alone = s.score([spans[1]], b)[0][0]
    assert alone.labels[0].label == out[1][0].labels[0].label
    assert alone.labels[0].score == pytest.approx(out[1][0].labels[0].score, abs=1e-5)
    torch.set_num_threads(2)
