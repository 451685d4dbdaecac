"""The train/adapt → tag → search → serve → relabel journey, end to end through the CLI, on real components
(Ray local cluster, ffmpeg, Parquet, FAISS, a real `bike serve` on uvicorn on a loopback port):

    bike adapt shots.txt --random-init --out runs/new        (fast adapt of bike-tiny: seconds)
    bike tag corpus --store S --checkpoint runs/new/adapted.pt
    bike search --store S "jumping"            (with and without --checkpoint)
    GET /api/search on `bike serve --store S`
    bike eval --moments ann.jsonl --store S        (a tiny annotation file written by the test)
    bike relabel --store S --checkpoint runs/other/adapted.pt    (another fast adapt of the same base)
    bike tag corpus --store S --checkpoint runs/new/adapted.pt --sampling keyframes    (another model_id)

A checkpoint adapted from random weights records ``random_init`` as its lineage; the store's model must still
be rebuilt from the recorded checkpoint (tests/test_store_model.py has the fast checks of each piece)."""
from __future__ import annotations

import json
import os

import httpx
import pytest

import jobs.cli
from bench.synthetic import VideoSpec, make_dataset
from liveserver import bike_serve

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


def adapt(shots, out, capsys, *extra) -> str:
    assert bike("adapt", shots, "--shots", "1", "--out", out, "--views", "1", "--steps", "3", "--format", "json",
                *TINY, *extra) == 0
    return json.loads(capsys.readouterr().out)["checkpoint"]


def serve_search(store, query: str, k: int) -> dict:
    """Start `bike serve --store STORE` (real uvicorn, loopback), GET /api/search, stop it."""
    with bike_serve(store) as (proc, base):
        r = httpx.get(base + "/api/search", params={"q": query, "k": k}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.mark.slow
def test_adapt_tag_search_serve_relabel(ray_cluster, tmp_path, capsys):
    spec = VideoSpec(size=48, fps=8, seconds=2)
    corpus = make_dataset(str(tmp_path / "corpus"), ["blinking", "growing"], 1, seed=0, spec=spec)
    shots = tmp_path / "shots.txt"
    shots.write_text("".join(f"{p} {'jumping' if n == 'blinking' else 'sitting'}\n" for p, n in corpus))
    ckpt = adapt(shots, tmp_path / "runs" / "new", capsys)

    store = tmp_path / "S"
    assert bike("tag", tmp_path / "corpus", "--store", store, "--checkpoint", ckpt, "--lexicon", "hmdb51",
                "--window", "1", "--no-progress", "--format", "json") == 0
    tagged = json.loads(capsys.readouterr().out)
    assert tagged["ok"] == 2 and tagged["random_init"] is True

    # bike search: the model is rebuilt from the recorded checkpoint (not the random weights of its lineage)
    assert bike("search", "--store", store, "jumping", "-k", "3", "--format", "json") == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["model_id"] == tagged["model_id"] and len(cli["results"]) == 3 and cli["random_init"] is True
    assert f"checkpoint {ckpt}" in cli["model"]
    assert bike("search", "--store", store, "jumping", "-k", "3", "--checkpoint", ckpt, "--format", "json") == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["clip_id"] for r in again["results"]] == [r["clip_id"] for r in cli["results"]]

    # /api/search on a real `bike serve`: the same results as the CLI
    api = serve_search(store, "jumping", 3)
    assert [r["clip_id"] for r in api["results"]] == [r["clip_id"] for r in cli["results"]]
    assert [r["score"] for r in api["results"]] == pytest.approx([r["score"] for r in cli["results"]], abs=1e-5)

    # bike eval --moments on a tiny QVHighlights-style file: every query of a stored video gets a scored
    # prediction inside its video, beside the baselines, and the submission file has one line per query
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps({"qid": i, "query": q, "vid": os.path.splitext(os.path.basename(p))[0],
                                       "relevant_windows": [[0.0, 1.0]]}) + "\n"
                           for i, (p, q) in enumerate([(corpus[0][0], "jumping"), (corpus[1][0], "sitting")]))
                   + json.dumps({"qid": 9, "query": "jumping", "vid": "not_tagged", "relevant_windows": [[0, 1]]})
                   + "\n")
    preds = tmp_path / "preds.jsonl"
    assert bike("eval", "--moments", ann, "--store", store, "--format", "json", "--per-query",
                "--predictions", preds) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["queries"] == 2 and ev["unknown_vids"] == ["not_tagged"]
    for m in (ev["metrics"], ev["baselines"]["random_span"], ev["baselines"]["whole_clip"]):
        assert set(m) >= {"R1@0.5", "R1@0.7", "mAP", "mIoU"} and all(0.0 <= m[k] <= 1.0 for k in m)
    for q in ev["per_query"]:
        assert q["pred"] is not None and 0.0 <= q["pred"][0] < q["pred"][1] <= 2.0 + 1e-6
    subs = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [s["qid"] for s in subs] == [0, 1] and all(s["pred_relevant_windows"] for s in subs)

    # bike relabel with another fast adapt of the same base: same towers, its own classes, no decoding
    shots2 = tmp_path / "shots2.txt"
    shots2.write_text("".join(f"{p} {'waving' if n == 'blinking' else 'clapping'}\n" for p, n in corpus))
    other = adapt(shots2, tmp_path / "runs" / "other", capsys)
    assert bike("relabel", "--store", store, "--checkpoint", other, "--no-progress", "--format", "json") == 0
    rel = json.loads(capsys.readouterr().out)
    assert rel["source"] == tagged["model_id"] and rel["videos"] == 2 and rel["clips"] >= 2
    assert bike("search", "--store", store, "waving", "--model-id", rel["model_id"], "--format", "json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["results"] and {x["label"] for r in res["results"] for x in r["labels"]} <= {"waving", "clapping"}

    # another frame sampling scores other frames: another model_id, nothing skipped; exact kept the old id form
    import hashlib

    from index.store import Store
    row = Store(store).read("models", model_id=tagged["model_id"]).to_pylist()[0]
    old = json.dumps({**json.loads(row["fingerprint"]), "labels": row["label_digest"], "window_s": 1.0},
                     sort_keys=True)
    assert tagged["model_id"] == hashlib.sha256(old.encode()).hexdigest()[:16]
    assert bike("tag", tmp_path / "corpus", "--store", store, "--checkpoint", ckpt, "--lexicon", "hmdb51",
                "--window", "1", "--sampling", "keyframes", "--no-index", "--no-progress", "--format", "json") == 0
    kf = json.loads(capsys.readouterr().out)
    assert kf["model_id"] != tagged["model_id"] and kf["ok"] == 2 and kf["skipped_done"] == 0
