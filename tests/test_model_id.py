"""The frame sampling is part of a store's model_id (index.store.ids.model_id): `--sampling keyframes` scores other
frames than `exact`, so its rows must not be mistaken for exact ones (nor skipped as "already tagged"). The
default (exact) keeps the id form stores were tagged with before, so they stay valid. Fast: no Ray, stores
written by hand (tests/searchstore.py); the CLI run of both samplings is in tests/test_journey.py."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import engine
from index.store import ids
from index.store import Store
from jobs.errors import UsageError
from jobs.tag.precheck import known_model_id
from jobs.tag.relabel import source_sampling
from jobs.tag.tag import frame_sampling
from searchstore import WINDOW_S, add_video, random_clips

FP = {"name": "bike-tiny", "weights": "random-init:bike-tiny:seed0", "frames": 8, "lexicon": "abc",
      "random_init": True}


def old_model_id(fingerprint, label_digest, window_s) -> str:
    """The id as it was computed before the sampling counted (what existing stores hold)."""
    key = json.dumps({**fingerprint, "labels": label_digest, "window_s": float(window_s)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_keyframes_and_exact_get_different_ids_and_exact_keeps_the_old_one():
    exact = ids.model_id(FP, "d1", 10.0)
    assert exact == ids.model_id(FP, "d1", 10.0, "exact") == old_model_id(FP, "d1", 10.0)
    keyframes = ids.model_id(FP, "d1", 10.0, "keyframes")
    assert keyframes != exact and len(keyframes) == 16
    row = {"fingerprint": json.dumps(FP), "label_digest": "d1", "window_s": 10.0}
    assert ids.sampling_of({**row, "model_id": keyframes}, ("exact", "keyframes")) == "keyframes"
    assert ids.sampling_of({**row, "model_id": exact}, ("exact", "keyframes")) == "exact"
    assert ids.sampling_of({**row, "model_id": "0" * 16}, ("exact", "keyframes")) is None
    assert source_sampling({**row, "model_id": keyframes}) == "keyframes"      # relabel keeps it
    assert source_sampling({**row, "model_id": "0" * 16}) == "exact"


def test_the_sampling_is_resolved_once_on_the_driver(monkeypatch):
    monkeypatch.delenv("BIKE_SAMPLING", raising=False)
    assert frame_sampling(None) == "exact" and frame_sampling("keyframes") == "keyframes"
    monkeypatch.setenv("BIKE_SAMPLING", "keyframes")
    assert frame_sampling(None) == "keyframes" and frame_sampling("exact") == "exact"
    monkeypatch.setenv("BIKE_SAMPLING", "sometimes")
    with pytest.raises(UsageError, match="sometimes"):
        frame_sampling(None)


def test_a_store_tagged_exact_is_not_nothing_to_do_for_keyframes(tmp_path):
    """The quick rerun check (no Ray, no model) finds the exact rows only for an exact run."""
    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    labels = engine.load_labels("a,b")
    store = Store(tmp_path / "s", create=True)
    mid = add_video(store, model, labels, "v1", random_clips(np.random.default_rng(0), 1, 8, model.embed_dim))
    kw = dict(name="bike-tiny", random_init=True, lexicon="hmdb51", frames=8, precision="fp32")
    found = known_model_id(store, kw, labels, WINDOW_S)
    assert found is not None and found[0] == mid
    assert known_model_id(store, kw, labels, WINDOW_S, sampling="exact")[0] == mid
    assert known_model_id(store, kw, labels, WINDOW_S, sampling="keyframes") is None


def test_relabel_keeps_the_sampling_of_its_source_and_asks_when_there_are_both(tmp_path, monkeypatch, capsys):
    import searchstore
    from jobs.cli import main
    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    labels = engine.load_labels("a,b")
    store = Store(tmp_path / "s", create=True)
    rng = np.random.default_rng(0)
    exact = add_video(store, model, labels, "v1", random_clips(rng, 1, 8, model.embed_dim))
    monkeypatch.setattr(searchstore, "model_id_of",         # the same clips, as a keyframes run writes them
                        lambda m, lab: ids.model_id(m.fingerprint(), lab.digest, WINDOW_S, "keyframes"))
    keyframes = add_video(store, model, labels, "v1", random_clips(rng, 1, 8, model.embed_dim))
    assert keyframes != exact
    argv = ["relabel", "--store", str(store.root), "--labels", "c,d", "--precision", "fp32", "--no-index",
            "--no-progress", "--format", "json"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "different --sampling modes" in err and exact in err and keyframes in err
    assert main([*argv, "--model-id", keyframes]) == 0
    out = json.loads(capsys.readouterr().out)
    fp = json.loads(Store(store.root).read("models", model_id=keyframes).to_pylist()[0]["fingerprint"])
    assert out["model_id"] == ids.model_id(fp, engine.load_labels("c,d").digest, WINDOW_S, "keyframes")
