"""The friction points of the CLI, each on a real store tagged once (real Ray, ffmpeg, Parquet, FAISS):
a rerun with nothing to do answers without Ray, results you can act on (clip id, span, moment, a play line),
names with control characters escaped, exports, checkpoints that carry their labels and their random lineage,
weights checked before anything is created, `bike weights`, the Python API."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

import jobs.cli
from media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
LABELS = "dog,cat,surfing,cooking"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
EVIL = "evil\nbike tag: 99 ok\x1b[31m.mp4"          # a newline that fakes a line, an escape that colours


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("journeys")
    corpus = root / "corpus"
    corpus.mkdir()
    make_video(corpus / "a.mp4", seconds=3)
    make_video(corpus / EVIL, seconds=2, size=(48, 32))
    store = root / "store"
    assert bike("tag", corpus, "--store", store, "--labels", LABELS, "--window", "1", "--no-progress", *TINY) == 0
    return corpus, store


def test_rerun_with_nothing_to_do_starts_no_ray(tagged):
    """Importing ray is made impossible in the rerun: it must answer from the store alone, quickly."""
    corpus, store = tagged
    code = ("import sys; sys.modules['ray'] = None\n"
            "import jobs.cli\n"
            f"sys.exit(jobs.cli.main({['tag', str(corpus), '--store', str(store), '--labels', LABELS, '--window', '1', '--format', 'json', *TINY]!r}))")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["skipped_done"] == 2 and summary["ok"] == 0 and summary["batches"] == 0
    assert summary["random_init"] is True and summary["ids_hashed"] == 0      # ids from the store's cache
    assert took < 15, took                      # ~1 s on an idle machine; a shared one is slower


def test_rerun_with_new_settings_is_not_mistaken_for_nothing_to_do(tagged, tmp_path):
    """Another window, label set or frame count is another model_id: the quick check must not match it."""
    from index.store import Store
    from jobs.tag.precheck import known_model_id
    from engine.model.labels import load_labels
    _, store = tagged
    s = Store(store)
    kw = dict(name="bike-tiny", random_init=True, lexicon="hmdb51", frames=8)
    assert known_model_id(s, kw, load_labels(LABELS), 1.0) is not None
    assert known_model_id(s, kw, load_labels(LABELS), 2.0) is None
    assert known_model_id(s, kw, load_labels("dog,cat"), 1.0) is None
    assert known_model_id(s, {**kw, "frames": 16}, load_labels(LABELS), 1.0) is None
    assert known_model_id(s, {**kw, "lexicon": "ucf101"}, load_labels(LABELS), 1.0) is None
    assert known_model_id(s, {**kw, "random_init": False}, load_labels(LABELS), 1.0) is None   # openai tag


def test_search_table_is_actionable_and_safe(tagged, capsys):
    _, store = tagged
    assert bike("search", "--store", store, "cat", "-k", "10") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nbike tag: 99 ok" not in out
    assert "clip_id" in out.splitlines()[1] and "moment" in out.splitlines()[1]
    rows = [ln for ln in out.splitlines() if "/" in ln and "s " in ln and "ffplay" not in ln]
    plays = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("ffplay -ss ")]
    assert len(plays) == len(rows) == 5                     # one play line per clip
    evil_play = next(p for p in plays if "evil" in p)
    path = os.path.join(tagged[0], EVIL)
    quoted = evil_play.split(" ", 3)[3]
    assert quoted.startswith("$'")
    echoed = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, text=True).stdout
    assert echoed == path                                   # pasted, it names the real file


def test_search_formats(tagged, capsys):
    _, store = tagged
    assert bike("search", "--store", store, "cat", "-k", "3", "--format", "jsonl") == 0
    lines = capsys.readouterr().out.splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 3 and {"clip_id", "start_s", "end_s", "moment_s", "path"} <= set(recs[0])
    assert recs[0]["random_init"] is True
    assert bike("search", "--store", store, "cat", "-k", "3", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["clip_id"] for r in rows] == [r["clip_id"] for r in recs]
    assert bike("search", "--store", store, "cat", "-k", "3", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["clip_id"] for r in doc["results"]] == [r["clip_id"] for r in recs]


def test_quiet_keeps_stderr_empty(tagged, capsys):
    _, store = tagged
    assert bike("search", "--store", store, "cat", "-k", "1", "-q") == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "result(s)" in cap.out
    assert bike("search", "--store", store, "cat", "-k", "1") == 0
    assert "bike: model:" in capsys.readouterr().err


def test_sql_table_escapes_names_and_out_writes_files(tagged, tmp_path, capsys):
    _, store = tagged
    assert bike("sql", "--store", store, "SELECT regexp_extract(path, '[^/]+$') AS name FROM videos ORDER BY 1") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nevil\\nbike tag: 99 ok\\x1b[31m.mp4\n" in out      # one line per row
    q = "SELECT clip_id, rank, label, score FROM labels ORDER BY clip_id, rank"
    assert bike("sql", "--store", store, q, "--format", "jsonl") == 0
    expect = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    for ext in (".parquet", ".csv", ".json", ".jsonl"):
        path = tmp_path / f"labels{ext}"
        assert bike("sql", "--store", store, q, "--out", path) == 0
        if ext == ".parquet":
            import pyarrow.parquet as pq
            got = pq.read_table(path).to_pylist()
        elif ext == ".csv":
            got = [{**r, "rank": int(r["rank"]), "score": float(r["score"])} for r in csv.DictReader(open(path))]
        elif ext == ".json":
            got = json.loads(path.read_text())
        else:
            got = [json.loads(x) for x in path.read_text().splitlines()]
        assert got == expect, ext
    assert capsys.readouterr().out == ""                    # --out prints no rows
    assert bike("sql", "--store", store, q, "--out", tmp_path / "x.xlsx") == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "x.xlsx").exists()


def test_tag_summary_formats_and_safe_errors(tagged, tmp_path, capsys):
    corpus, _ = tagged
    bad = tmp_path / "bad\x1b]0;owned\x07.mp4"
    bad.write_bytes(b"not a video at all")
    store = tmp_path / "s2"
    assert bike("tag", bad, corpus / "a.mp4", "--store", store, "--labels", LABELS, "--no-progress", "--no-index",
                *TINY) == 0
    cap = capsys.readouterr()
    assert "\x1b" not in cap.out + cap.err and "\x07" not in cap.out + cap.err
    assert "bad\\x1b]0;owned\\x07.mp4" in cap.out
    assert bike("tag", corpus / "a.mp4", "--store", store, "--labels", LABELS, "--format", "csv", *TINY) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["skipped_done"] == "1" and rows[0]["ok"] == "0"


def test_missing_checkpoint_is_said_before_a_store_or_ray(tmp_path, capsys):
    store = tmp_path / "never"
    t0 = time.monotonic()
    assert bike("tag", tmp_path, "--store", store, "--checkpoint", tmp_path / "missing.pt") == 2
    err = capsys.readouterr().err
    assert err.startswith("bike: error: ") and "missing.pt" in err and err.count("\n") == 1
    assert not store.exists() and time.monotonic() - t0 < 10


def test_adapted_checkpoint_carries_labels_and_random_lineage(tagged, tmp_path, capsys):
    corpus, _ = tagged
    shots = tmp_path / "shots.txt"
    make_video(tmp_path / "b.mp4", seconds=2, size=(48, 32))
    shots.write_text(f"{corpus / 'a.mp4'} jumping\n{tmp_path / 'b.mp4'} sitting\n")
    out = tmp_path / "adapted"
    assert bike("adapt", shots, "--shots", "1", "--out", out, "--views", "1", "--steps", "3", "--format", "json",
                *TINY) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["classes"] == 2 and rec["checkpoint"].endswith("adapted.pt")
    assert bike("classify", corpus / "a.mp4", "--checkpoint", out / "adapted.pt", "--lexicon", "hmdb51",
                "--format", "json") == 0
    cap = capsys.readouterr()
    (r,) = json.loads(cap.out)
    assert {x["label"] for x in r["labels"]} == {"jumping", "sitting"}        # its own classes, not Kinetics
    assert r["random_init"] is True and "RANDOM WEIGHTS" in r["model"]
    assert "RANDOM WEIGHTS" in cap.err
    assert bike("classify", corpus / "a.mp4", "--checkpoint", out / "adapted.pt", "--lexicon", "hmdb51") == 0
    assert "[RANDOM WEIGHTS" in capsys.readouterr().out
    # bike tag with it: its labels by default; the rerun is recognised (file hash) without Ray
    store = tmp_path / "s3"
    argv = ["tag", str(corpus / "a.mp4"), "--store", str(store), "--checkpoint", str(out / "adapted.pt"),
            "--lexicon", "hmdb51", "--window", "1", "--no-index", "--format", "json"]
    assert bike(*argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ok"] == 1 and first["random_init"] is True
    from index.store import Store
    assert Store(store).read("models", ["labels"])["labels"].to_pylist() == [["jumping", "sitting"]]
    code = f"import sys; sys.modules['ray'] = None\nimport jobs.cli\nsys.exit(jobs.cli.main({argv!r}))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads(res.stdout)
    assert again["skipped_done"] == 1 and again["model_id"] == first["model_id"] and again["random_init"] is True


def test_weights_command_reports_without_downloading(capsys):
    assert bike("weights", "--format", "json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["weights"] and {"model", "tag", "cached", "where", "source"} <= set(rep["weights"][0])
    assert rep["machine"]["cores"] >= 1 and "ffmpeg" in rep["machine"]
    assert "github.com/whwu95/BIKE" in rep["released"]
    assert bike("weights") == 0
    assert "this machine:" in capsys.readouterr().out


def test_python_api(tagged):
    import bike as api
    _, store = tagged
    assert {"load_model", "classify", "tag", "Searcher", "Store", "SearchResult", "ClassifyResult",
            "TagSummary"} <= set(api.__all__)
    model = api.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    r = api.classify(str(tagged[0] / "a.mp4"), model=model, labels=LABELS, top=2)
    assert isinstance(r, api.ClassifyResult) and len(r.labels) == 2 and r.random_init
    assert all(isinstance(a, api.AttributeScore) for a in r.attributes) and r.attributes
    phrase, score = r.attributes[0]                         # still unpacks like the (phrase, score) pairs
    assert phrase == r.attributes[0].attribute and score == r.attributes[0].score
    hits = api.Searcher(str(store)).search("cat", k=2)
    assert isinstance(hits[0], api.SearchResult) and hits[0].end_s > hits[0].start_s
    cols, rows = api.sql(str(store), "SELECT count(*) AS n FROM videos")
    assert cols == ["n"] and rows[0][0] == 2
    summary = api.tag(str(tagged[0]), store=str(store), labels=LABELS, window=1, model="bike-tiny",
                      random_init=True, lexicon="hmdb51")
    assert isinstance(summary, api.TagSummary) and summary.skipped_done == 2
    assert os.path.isfile(os.path.join(os.path.dirname(api.__file__), "py.typed"))


def test_open_without_a_display_says_so(tagged, capsys, monkeypatch):
    _, store = tagged
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert bike("search", "--store", store, "cat", "-k", "1", "--open") == 0
    cap = capsys.readouterr()
    assert "ffplay -ss " in cap.out and "no display here" in cap.err


def test_classify_csv_one_row_per_label_and_error(tagged, tmp_path, capsys):
    corpus, _ = tagged
    assert bike("classify", corpus / "a.mp4", tmp_path / "missing.mp4", "-k", "2", "--format", "csv", "-q",
                *TINY) == 2
    cap = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(cap.out)))
    assert [r["rank"] for r in rows] == ["0", "1", ""] and rows[2]["error"] == "file not found"
    assert cap.err.count("\n") == 1 and cap.err.startswith("bike: error: ")          # -q keeps errors only
