"""The model recorded for a store is rebuilt faithfully (index/storemodel.py): a checkpoint trained or adapted
from random weights is loaded from its recorded file (hash checked first), not replaced by the seeded random
weights its lineage names; an explicit --checkpoint must be that same file. Fast: stores written by hand
(tests/searchstore.py), no Ray, no decoding. The whole CLI journey is in tests/test_journey.py."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import engine
import jobs.cli
from engine.loading import file_sha256
from engine.temporal import TemporalTransformer
from index.search import Searcher
from index.store import Store
from index.storemodel import ModelMismatch, load_store_model
from jobs.learner import checkpoint_dict, save_atomic
from searchstore import add_video, random_clips

TINY = "bike-tiny"


def random_lineage_checkpoint(path, seed: int = 0, shift: float = 0.05) -> str:
    """A checkpoint "trained" from the seeded random weights: every CLIP tensor moved, a temporal header,
    ``random_init=True`` (the lineage `bike train/adapt --random-init` records)."""
    base = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in base.clip.parameters():
            p.add_(shift * torch.randn(p.shape, generator=g))
    header = TemporalTransformer(base.embed_dim, heads=1, layers=1)
    return save_atomic(checkpoint_dict(TINY, base.clip, header, None, ["jumping", "sitting"], 8, 1, "trained",
                                       random_init=True), str(path))


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("storemodel")
    ckpt = random_lineage_checkpoint(root / "trained.pt")
    model = engine.load_model(None, checkpoint=ckpt, lexicon="hmdb51")
    assert model.random_init and model.header is not None
    labels = engine.load_labels("jumping,sitting")
    store = Store(root / "store", create=True)
    rng = np.random.default_rng(0)
    mid = add_video(store, model, labels, "v1", random_clips(rng, 3, model.frames, model.embed_dim))
    return store, mid, ckpt, model


def test_checkpoint_with_random_lineage_is_loaded_not_replaced_by_random_weights(trained_store):
    store, mid, ckpt, tagged = trained_store
    row = store.read("models").to_pylist()[0]
    assert row["random_init"] and row["checkpoint"] == ckpt          # what `bike tag --checkpoint` records
    got = load_store_model(store, mid)
    assert got.meta["weights_sha"] == file_sha256(ckpt) and got.random_init
    assert got.header is not None                                    # the checkpoint's header, not none
    for name, t in tagged.clip.state_dict().items():
        assert torch.equal(got.clip.state_dict()[name], t), name
    # an explicit file: the same one (a moved copy) is accepted, another is refused on its hash
    moved = shutil.copyfile(ckpt, str(store.root.parent / "moved.pt"))
    assert load_store_model(store, mid, weights=moved).meta["weights_sha"] == file_sha256(ckpt)
    other = random_lineage_checkpoint(store.root.parent / "other.pt", seed=7)
    with pytest.raises(ModelMismatch, match="is not the expected"):
        load_store_model(store, mid, weights=other)


def test_search_finds_clips_of_a_store_tagged_with_such_a_checkpoint(trained_store, capsys):
    store, mid, ckpt, tagged = trained_store
    a = Searcher(store.root).search("jumping", k=3)
    b = Searcher(store, model=tagged).search("jumping", k=3)
    assert [r.clip_id for r in a] == [r.clip_id for r in b] and len(a) == 3
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5)
    assert jobs.cli.main(["search", "--store", str(store.root), "jumping", "-k", "2"]) == 0
    assert jobs.cli.main(["search", "--store", str(store.root), "jumping", "--checkpoint", ckpt]) == 0
    capsys.readouterr()


def test_a_weights_file_for_a_store_tagged_with_seeded_random_weights_is_refused(tmp_path):
    """Random weights need no file: one given is not what tagged the store, and is said, not ignored."""
    model = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    store = Store(tmp_path / "s", create=True)
    mid = add_video(store, model, engine.load_labels("a,b"), "v1",
                    random_clips(np.random.default_rng(0), 1, model.frames, model.embed_dim))
    assert load_store_model(store, mid).meta["weights_sha"] == "random-init:bike-tiny:seed0"
    ckpt = random_lineage_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ModelMismatch, match="seeded random weights"):
        load_store_model(store, mid, weights=ckpt)
