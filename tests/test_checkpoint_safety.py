"""Checkpoints are data, not code: safe loading only, --trust-checkpoint for legacy pickles, hashes before load."""
from __future__ import annotations

import pickle

import pytest
import torch

import engine
from engine.loading import CheckpointError, file_sha256, load_weights
from index.store import Store
from index.storemodel import ModelMismatch, load_store_model
from tests.conftest import TINY
from tests.media import make_video
from tests.searchstore import add_video, random_clips


class _Payload:
    """Unpickling this creates the marker file (a stand-in for any code a crafted .pt could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil(tmp_path, name="evil.pt"):
    marker = tmp_path / f"{name}.PWNED"
    path = tmp_path / name
    torch.save({"model_state_dict": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    return path, marker


def _good(tmp_path):
    src = load_weights(TINY, random_init=True, seed=7, quick_gelu=True)
    path = tmp_path / "good.pt"
    torch.save({"model_state_dict": src.clip.state_dict(), "fusion_model_state_dict": {}, "epoch": 1,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.98)}]}}, path)
    return path


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    path, marker = _evil(tmp_path)
    with pytest.raises(CheckpointError, match="(?s)full unpickling.*--trust-checkpoint"):
        engine.load_model(TINY, checkpoint=str(path))
    with pytest.raises(CheckpointError):
        engine.load_model(TINY, pretrained=str(path))
    assert not marker.exists()
    plain = tmp_path / "plain.pt"                      # a bare pickle (no zip container) too
    plain.write_bytes(pickle.dumps({"model_state_dict": _Payload(marker)}))
    with pytest.raises(CheckpointError):
        engine.load_model(TINY, checkpoint=str(plain))
    assert not marker.exists()


def test_trust_checkpoint_is_the_explicit_way_and_warns(tmp_path, capsys):
    path, marker = _evil(tmp_path)
    with pytest.raises(CheckpointError):               # it unpickles (payload runs), then is not a checkpoint
        engine.load_model(TINY, checkpoint=str(path), trust_checkpoint=True)
    assert marker.exists()
    assert "--trust-checkpoint" in capsys.readouterr().err


def test_ordinary_checkpoints_load_safely(tmp_path):
    path = _good(tmp_path)
    m = engine.load_model(TINY, checkpoint=str(path))
    assert m.meta["weights_sha"] == file_sha256(str(path))
    with pytest.raises(CheckpointError, match="is not the expected"):
        engine.load_model(TINY, checkpoint=str(path), expect_sha="0" * 64)


def test_cli_classify_with_a_crafted_checkpoint_is_one_line(tmp_path, capsys):
    import jobs.cli
    path, marker = _evil(tmp_path)
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    assert jobs.cli.main(["classify", str(video), "--model", TINY, "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bike: error: {path}") and "--trust-checkpoint" in err and "\n" not in err
    assert not marker.exists()


def test_store_naming_a_crafted_checkpoint_is_hashed_before_loading(tmp_path, capsys):
    good = _good(tmp_path)
    model = engine.load_model(TINY, checkpoint=str(good), lexicon="hmdb51")
    labels = engine.load_labels("a,b,c")
    store = Store(tmp_path / "st", create=True)
    rng = __import__("numpy").random.default_rng(0)
    mid = add_video(store, model, labels, "v1", random_clips(rng, 1, model.frames, model.embed_dim))
    assert load_store_model(store, mid).meta["weights_sha"] == file_sha256(str(good))
    # the attacker swaps the recorded file for a payload: refused on its hash, before unpickling
    marker = tmp_path / "swap.PWNED"
    torch.save({"model_state_dict": {}, "payload": _Payload(marker)}, good)
    with pytest.raises(ModelMismatch, match="is not the expected"):
        load_store_model(store, mid)
    assert not marker.exists()
    import jobs.cli                                    # the same through `bike search`: one line, exit 2
    assert jobs.cli.main(["search", "--store", str(store.root), "a dog"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("bike: error:")]
    assert len(err) == 1 and "is not the expected" in err[0] and not marker.exists()
    # a crafted store whose row carries the payload's own hash: the hash matches, safe loading refuses it
    evil, marker2 = _evil(tmp_path, "row.pt")
    import pyarrow as pa
    row = store.read("models").to_pylist()[0]
    row.update(model_id="evil", checkpoint=str(evil), weights_sha=file_sha256(str(evil)))
    store.write_batch({"models": pa.Table.from_pylist([row], schema=store.read("models").schema)}, "evil", {})
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_store_model(store, "evil")
    assert not marker2.exists()
