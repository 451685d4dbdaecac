"""``bike tag`` end to end on a real Ray local cluster (one per session: the ``ray_cluster`` fixture).

One small corpus is tagged once (module fixture); the tests then check the rows, every bad-input case,
skip-on-rerun, ``--force``, a second label set, ``bike relabel`` (no decoding; same numbers as ``bike tag``)
and a SIGKILL in the middle of a run followed by a resume (in a subprocess with its own Ray).
"""
from __future__ import annotations

import glob
import os
import shutil
import sys

import numpy as np
import pytest

import jobs.cli
from index.store import Store
from killjob import sigkill_when
from media import make_audio, make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
LABELS_A = "dog,cat,surfing,cooking,playing guitar,riding a bike,swimming"
LABELS_B = "juggling,skateboarding,yoga,walking the dog,painting"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


def sql(store, q):
    con = Store(store).connect()
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """good: 3 s, 12 s (2 clips), a copy of the first; bad: empty, text, truncated, audio only, missing."""
    root = tmp_path_factory.mktemp("corpus")
    c = root / "videos"
    c.mkdir()
    make_video(c / "short.mp4", seconds=3, fps=10, size=(96, 64), pattern="testsrc")
    make_video(c / "long.mp4", seconds=12, fps=10, size=(96, 64), pattern="testsrc")
    shutil.copy(c / "short.mp4", c / "short_copy.mp4")
    (c / "empty.mp4").write_bytes(b"")
    (c / "text.mp4").write_text("this is not a video\n" * 20)
    data = (c / "long.mp4").read_bytes()
    (c / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (c / ".hidden.mp4").write_bytes(data)
    (c / "readme.md").write_text("not a video")
    make_audio(root / "audio.m4a", seconds=1)
    (root / "more.txt").write_text("audio.m4a\nmissing.mp4\n")
    return root


@pytest.fixture(scope="module")
def tagged(ray_cluster, corpus, tmp_path_factory):
    """The corpus tagged with label set A; also a copy of the store taken right after (for relabel)."""
    store = tmp_path_factory.mktemp("store") / "s"
    rc = bike("tag", corpus / "videos", corpus / "more.txt", "--store", store, "--labels", LABELS_A,
              *TINY, "--no-index", "--batch", "2", "--no-progress")
    assert rc == 0
    snapshot = tmp_path_factory.mktemp("snapshot") / "s"
    shutil.copytree(store, snapshot)
    return store, snapshot


def model_ids(store):
    return [r[0] for r in sql(store, "SELECT model_id FROM models ORDER BY created_at")]


def test_rows_of_a_tagged_corpus(tagged):
    store, _ = tagged
    (mid,) = model_ids(store)
    videos = dict(sql(store, "SELECT regexp_extract(path, '[^/]+$'), status FROM videos"))
    assert videos == {"short.mp4": "ok", "long.mp4": "ok", "empty.mp4": "error", "text.mp4": "error",
                      "truncated.mp4": "error", "audio.m4a": "error", "missing.mp4": "error"}
    assert sql(store, "SELECT regexp_extract(path, '[^/]+$'), num_clips FROM videos WHERE status = 'ok' "
                      "ORDER BY 1") == [("long.mp4", 2), ("short.mp4", 1)]
    assert sql(store, "SELECT count(*), count(DISTINCT clip_id) FROM clips") == [(3, 3)]
    assert sql(store, "SELECT count(*) FROM labels") == [(15,)]
    assert sql(store, "SELECT count(*) FROM attributes") == [(15,)]
    assert sql(store, "SELECT count(*) FROM embeddings") == [(3,)]
    assert sql(store, "SELECT DISTINCT model_id FROM labels") == [(mid,)]
    # the 12 s video: windows [0, 10) and [10, 12); frame times inside them; saliency peaks at a frame
    spans = sql(store, "SELECT c.start_s, c.end_s, c.frame_times, len(c.frame_embeddings), "
                       "len(c.frame_embeddings[1]) FROM clips c JOIN videos v USING (video_id) "
                       "WHERE v.path LIKE '%long.mp4' ORDER BY c.start_s")
    assert [(s[0], s[1]) for s in spans] == [(0.0, 10.0), (10.0, 12.0)]
    assert all(s[0] <= t < s[1] for s in spans for t in s[2]) and all(s[3] == 8 for s in spans)
    for sal, peak, times, score in sql(store, "SELECT l.saliency, l.peak_s, c.frame_times, l.score FROM labels l "
                                              "JOIN clips c USING (clip_id) WHERE l.rank = 0"):
        assert sum(sal) == pytest.approx(1, abs=1e-4)
        assert peak == pytest.approx(times[int(np.argmax(sal))])
        assert 0 < score <= 1
    (row,) = sql(store, "SELECT name, random_init, label_set, len(labels), window_s FROM models")
    assert row == ("bike-tiny", True, "inline", 7, 10.0)


@pytest.mark.parametrize("name, reason", [
    ("empty.mp4", "empty file"), ("text.mp4", "not a video"), ("truncated.mp4", "truncated"),
    ("audio.m4a", "no video stream"), ("missing.mp4", "file not found")])
def test_every_bad_input_is_an_error_row_with_its_reason(tagged, name, reason):
    store, _ = tagged
    rows = sql(store, f"SELECT video_id, error FROM videos WHERE path LIKE '%/{name}'")
    assert len(rows) == 1 and reason in rows[0][1], rows
    if name == "missing.mp4":
        assert rows[0][0].startswith("path:")          # nothing to hash: the id comes from the path


def test_decoder_past_its_time_limit_is_an_error_row(ray_cluster, tmp_path):
    video = make_video(tmp_path / "slow.mp4", seconds=20, fps=25, size=(640, 480), pattern="testsrc")
    store = tmp_path / "s"
    assert bike("tag", video, "--store", store, "--labels", LABELS_A, *TINY, "--no-index",
                "--timeout", "0.01", "--no-progress") == 0
    ((status, error),) = sql(store, "SELECT status, error FROM videos")
    assert status == "error" and "longer than" in error


def test_rerun_skips_what_is_done(tagged, corpus, capsys):
    store, _ = tagged
    commits = len(Store(store).commits(refresh=True))
    assert bike("tag", corpus / "videos", corpus / "more.txt", "--store", store, "--labels", LABELS_A,
                *TINY, "--no-index", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "0 ok, 0 error, 8 skipped (7 already in the store, 1 same content as another listed file) of 8 listed" \
        in out
    # nothing changed on disk: every readable file's content id is known from the first run (index/store/idcache.py)
    assert "content ids: 0 files hashed, 7 unchanged files known from earlier runs" in out
    assert bike("tag", corpus / "videos", corpus / "more.txt", "--store", store, "--labels", LABELS_A,
                *TINY, "--no-index", "--no-progress", "--rehash") == 0
    out = capsys.readouterr().out
    assert "0 ok, 0 error, 8 skipped" in out and "content ids: 7 files hashed, 0 unchanged" in out
    assert len(Store(store).commits(refresh=True)) == commits


def test_force_redoes_without_duplicates(tagged, corpus, capsys):
    store, _ = tagged
    before = sql(store, "SELECT clip_id, rank, label FROM labels ORDER BY 1, 2")
    assert bike("tag", corpus / "videos", "--store", store, "--labels", LABELS_A, *TINY, "--no-index",
                "--force", "--no-progress") == 0
    assert "2 ok, 3 error, 1 skipped (0 already in the store, 1 same content" in capsys.readouterr().out
    assert sql(store, "SELECT count(*), count(DISTINCT video_id) FROM videos") == [(7, 7)]
    assert sql(store, "SELECT count(*), count(DISTINCT clip_id) FROM clips") == [(3, 3)]
    assert sql(store, "SELECT clip_id, rank, label FROM labels ORDER BY 1, 2") == before


def test_second_label_set_coexists_and_gets_its_vector_index(tagged, corpus, capsys):
    store, _ = tagged
    assert bike("tag", corpus / "videos", corpus / "more.txt", "--store", store, "--labels", LABELS_B, *TINY,
                "--no-progress") == 0
    out = capsys.readouterr().out
    assert "bike tag: vector index" in out and "NOT" not in out and "3 clips" in out
    a, b = model_ids(store)
    assert a != b
    counts = dict(sql(store, "SELECT model_id, count(*) FROM labels GROUP BY 1"))
    assert counts == {a: 15, b: 15}
    labels_b = {r[0] for r in sql(store, f"SELECT DISTINCT label FROM labels WHERE model_id = '{b}'")}
    assert labels_b <= set(LABELS_B.split(","))


def test_relabel_matches_tag_without_decoding(tagged, corpus, monkeypatch):
    """Relabel the snapshot (label set A only) to B; compare with the B rows `bike tag` wrote."""
    store, snapshot = tagged
    if len(model_ids(store)) < 2:
        assert bike("tag", corpus / "videos", corpus / "more.txt", "--store", store, "--labels", LABELS_B,
                    *TINY, "--no-index", "--no-progress") == 0
    import engine.video

    def no_decoding(*a, **k):
        raise AssertionError("relabel must not decode videos")
    for fn in ("probe", "iter_clips", "read_video"):
        monkeypatch.setattr(engine.video, fn, no_decoding)
    # no model options: relabel loads the model that tagged the snapshot from its `models` row
    assert bike("relabel", "--store", snapshot, "--labels", LABELS_B, "--no-index", "--no-progress") == 0
    b = model_ids(store)[1]
    assert b in model_ids(snapshot)                   # the same model_id as `bike tag --labels B`
    q = (f"SELECT clip_id, rank, label, score, video_score, attribute_score, saliency, peak_s FROM labels "
         f"WHERE model_id = '{b}' ORDER BY clip_id, rank")
    got, want = sql(snapshot, q), sql(store, q)
    assert [r[:3] for r in got] == [r[:3] for r in want]
    np.testing.assert_allclose([r[3:6] for r in got], [r[3:6] for r in want], atol=1e-4)
    np.testing.assert_allclose([r[6] for r in got], [r[6] for r in want], atol=5e-3)
    q = f"SELECT clip_id, embedding FROM embeddings WHERE model_id = '{b}' ORDER BY clip_id"
    np.testing.assert_allclose([r[1] for r in sql(snapshot, q)], [r[1] for r in sql(store, q)], atol=1e-3)
    q = f"SELECT video_id, status, error FROM videos WHERE model_id = '{b}' ORDER BY 1"
    assert sql(snapshot, q) == sql(store, q)


def test_relabel_without_model_options_asks_which_model_when_there_are_several(ray_cluster, corpus, tmp_path,
                                                                               capsys):
    store = tmp_path / "s"
    for lexicon in ("hmdb51", "ucf101"):                 # two models: the lexicon is part of the model
        assert bike("tag", corpus / "videos" / "short.mp4", "--store", store, "--labels", LABELS_A, "--model",
                    "bike-tiny", "--random-init", "--lexicon", lexicon, "--no-index", "--no-progress") == 0
    capsys.readouterr()
    assert bike("relabel", "--store", store, "--labels", LABELS_B, "--no-index", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "holds clips of 2 models; choose the source with --model-id" in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["store is a file", "bad label file", "no weights"])
def test_jobs_that_cannot_start_exit_2_with_a_message(ray_cluster, corpus, tmp_path, capsys, case):
    args = ["tag", corpus / "videos", "--store", tmp_path / "s", "--no-index"]
    if case == "store is a file":
        (tmp_path / "s").write_text("x")
        args += ["--labels", LABELS_A, *TINY]
        expect = "not a directory"
    elif case == "bad label file":
        (tmp_path / "labels.csv").write_text("id,name\nx,y,z\n")
        args += ["--labels", tmp_path / "labels.csv", *TINY]
        expect = "labels.csv"
    else:
        args += ["--labels", LABELS_A, "--model", "bike-tiny", "--pretrained", "openai"]
        expect = "random-init"
    assert bike(*args) == 2
    err = "".join(ln for ln in capsys.readouterr().err.splitlines(True)
                  if not ln.startswith("bike tag: loading the model"))           # start-up progress
    assert err.startswith("bike: error:") and expect in err and "Traceback" not in err


def test_sigkill_while_writing_then_resume_is_exactly_once(ray_cluster, corpus, tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    base = (corpus / "videos" / "short.mp4").read_bytes()
    for i in range(16):                              # 16 distinct files (trailing bytes change the content id)
        (src / f"v{i:02d}.mp4").write_bytes(base + b"\0" * (i + 1))
    store = tmp_path / "s"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "jobs.cli", "tag", str(src), "--store", str(store), "--labels", LABELS_A,
           *TINY, "--batch", "2", "--model-batch", "2", "--no-index", "--no-progress"]
    sigkill_when(cmd, lambda: len(glob.glob(str(store / "_commits" / "*.json"))) >= 2,   # batches being written
                 cwd=ROOT, env=env, timeout_s=180, poll_s=0.02)
    partial = Store(store).done_videos(Store(store).model_ids().pop())
    assert 2 <= len(partial) < 16
    assert bike("tag", src, "--store", store, "--labels", LABELS_A, *TINY, "--no-index", "--batch", "4",
                "--no-progress") == 0
    assert sql(store, "SELECT count(*), count(DISTINCT video_id), count(*) FILTER (status = 'ok') "
                      "FROM videos") == [(16, 16, 16)]
    assert sql(store, "SELECT count(*), count(DISTINCT clip_id) FROM clips") == [(16, 16)]
    assert sql(store, "SELECT count(*), count(DISTINCT (clip_id, rank)) FROM labels") == [(80, 80)]
    assert sql(store, "SELECT count(*) FROM embeddings") == [(16,)]
    committed = {p.stem for p in (store / "_commits").glob("*.json")}
    for table in ("clips", "labels", "videos"):
        assert {p.stem for p in (store / table).glob("*.parquet")} <= committed
    assert not list(store.rglob("*.tmp"))
