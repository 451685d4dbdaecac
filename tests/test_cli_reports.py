"""What small commands report and accept: `bike weights` says what a run would use (asked of the same
resolvers), `bike index --kind` takes the names its help uses and `auto` chooses again, `bike classify`
exits 2 on a missing file and says the truth about object-storage URLs."""
from __future__ import annotations

import json

import pytest

import jobs.cli
from media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


# ---- bike weights ---------------------------------------------------------------------------------------------
def _weights(capsys) -> dict:
    assert bike("weights", "--format", "json") == 0
    return json.loads(capsys.readouterr().out)


def test_weights_reports_the_precision_and_device_a_run_uses(capsys):
    import engine
    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51", precision="auto")   # as the CLI
    said = _weights(capsys)["uses"]["classify / tag / eval / search (model)"]
    assert said.startswith(f"{model.device.type}, {model.precision.name} "), said


def test_weights_reports_the_decoder_a_run_uses(capsys, monkeypatch):
    from engine.video import available, get_decoder
    monkeypatch.delenv("BIKE_DECODER", raising=False)
    rep = _weights(capsys)
    assert rep["uses"]["classify / eval / train (decoding)"] == get_decoder(None).name
    assert rep["uses"]["tag (decoding)"].startswith(f"{get_decoder('auto-cpu').name} on the CPUs")
    # NVDEC: "yes" only where the nvdec backend can run (a GPU, its driver), not because PyAV lists cuvid codecs
    assert rep["machine"]["nvdec"] is (available()["nvdec"] is None)
    if not rep["machine"]["nvdec"]:
        assert rep["machine"]["nvdec_why"] and "no NVDEC here" in rep["uses"]["tag (decoding)"]
    monkeypatch.setenv("BIKE_DECODER", "ffmpeg")          # what --decoder ffmpeg exports for a command
    assert _weights(capsys)["uses"]["classify / eval / train (decoding)"] == "ffmpeg"


# ---- bike index --kind ----------------------------------------------------------------------------------------
@pytest.fixture()
def store(tmp_path, tiny_model):
    from test_vectors import make_store
    from engine.model.labels import load_labels
    s, _ = make_store(tmp_path / "s", tiny_model, load_labels("dog,cat,surfing"), videos=2)
    return s


def _index(capsys, store, *extra) -> dict:
    assert bike("index", "--store", store.root, "--format", "json", *extra) == 0
    return json.loads(capsys.readouterr().out)


def test_index_kind_spellings_of_the_help_work(capsys, store):
    assert _index(capsys, store, "--kind", "ivf-flat")["kind"] == "ivf"
    assert _index(capsys, store, "--kind", "ivf-pq")["kind"] == "ivfpq"
    with pytest.raises(SystemExit) as refused:                      # refused by argparse, exit 2
        bike("index", "--store", store.root, "--kind", "annoy")
    assert refused.value.code == 2
    assert "choose one of auto, flat, ivf, ivfpq, hnsw" in capsys.readouterr().err


def test_index_kind_auto_chooses_by_size_again(capsys, store):
    assert _index(capsys, store, "--kind", "hnsw")["kind"] == "hnsw"
    assert _index(capsys, store)["kind"] == "hnsw"                  # a plain update keeps the kind asked for
    again = _index(capsys, store, "--kind", "auto")
    assert again["kind"] == "flat" and again["rebuilt"]              # 6 clips: exact
    assert _index(capsys, store)["kind"] == "flat"


def test_index_kind_names_match_the_index_module():
    from index.search.vectors import KINDS
    from jobs.cli.commands.index import KIND_ALIASES, KIND_NAMES
    assert set(KIND_NAMES) == set(KINDS) and set(KIND_ALIASES.values()) <= set(KINDS)


# ---- bike classify --------------------------------------------------------------------------------------------
def test_classify_missing_file_exits_2_in_one_line(tmp_path, capsys):
    assert bike("classify", tmp_path / "missing.mp4", *TINY, "-q") == 2
    err = capsys.readouterr().err
    assert err == f"bike: error: {tmp_path / 'missing.mp4'}: file not found\n"


def test_classify_object_storage_url_says_what_is_true(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    assert bike("classify", "s3://bucket/clip.mp4", video, *TINY, "-q", "--format", "jsonl") == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "s3://bucket/clip.mp4: bike classify reads local files only" in cap.err
    assert "bike tag" in cap.err and "file not found" not in cap.err
    recs = [json.loads(line) for line in cap.out.splitlines()]
    assert "error" in recs[0] and "labels" in recs[1]                # the local file is still classified
