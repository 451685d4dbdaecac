"""The model recorded for a store is rebuilt faithfully (index/store/storemodel.py): a checkpoint trained or adapted
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
from engine.model.loading import file_sha256
from engine.model.temporal import TemporalTransformer
from index.search.search import Searcher
from index.store import Store
from index.store.storemodel import ModelMismatch, load_store_model
from jobs.train.learner import checkpoint_dict, save_atomic
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


# ---- bike relabel --checkpoint: another model with the same towers -----------------------------------------
def adapted_checkpoint(base, path, names=("jumping", "sitting"), seed: int = 3) -> str:
    """What `bike adapt --mode fast` writes: the base's CLIP weights and header untouched, learnt class
    features for ``names`` (no decoding needed to make one)."""
    g = torch.Generator().manual_seed(seed)
    cf = {"names": list(names), "cls": torch.randn(len(names), base.embed_dim, generator=g),
          "tokens": torch.randn(len(names), 77, base.embed_dim, generator=g)}
    return save_atomic(checkpoint_dict(TINY, base.clip, base.header, None, list(names), base.frames, 0, "adapted",
                                       random_init=base.random_init, class_features=cf), str(path))


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A store tagged with the seeded random weights (labels a,b; lexicon hmdb51)."""
    root = tmp_path_factory.mktemp("relabel")
    base = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    store = Store(root / "store", create=True)
    rng = np.random.default_rng(1)
    labels = engine.load_labels("a,b")
    for v in ("v1", "v2"):
        mid = add_video(store, base, labels, v, random_clips(rng, 2, base.frames, base.embed_dim))
    return store, mid, base


def test_relabel_with_a_fast_adapted_checkpoint_scores_its_classes_from_the_stored_embeddings(base_store, tmp_path,
                                                                                              capsys):
    import json

    from index.store import ids
    from index.store.sql import query
    from jobs.tag.relabel import score_stored, source_videos
    store, mid, base = base_store
    ckpt = adapted_checkpoint(base, tmp_path / "adapted.pt")
    # no --labels: the checkpoint's own classes; no --lexicon/--frames: the source's
    assert jobs.cli.main(["relabel", "--store", str(store.root), "--checkpoint", ckpt, "--precision", "fp32",
                          "--no-index", "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    adapted = engine.load_model(None, checkpoint=ckpt, lexicon="hmdb51")
    labels = engine.load_labels(["jumping", "sitting"])
    want_id = ids.model_id(adapted.fingerprint(), labels.digest, 10.0)      # what `bike tag --checkpoint` uses
    assert summary["source"] == mid and summary["model_id"] == want_id and summary["videos"] == 2
    store = Store(store.root)                                           # a fresh view of what relabel wrote
    row = store.read("models", model_id=want_id).to_pylist()[0]
    assert row["checkpoint"] == ckpt and row["labels"] == ["jumping", "sitting"] and row["lexicon"] == "hmdb51"
    # the numbers are the adapted model's (its class features) on the stored frame embeddings
    items = list(source_videos(store, mid, set()))
    want = score_stored(adapted, labels, [f for it in items for f in it.features],
                        [a for it in items for a in it.attributes], [s for it in items for s in it.spans])
    _, got = query(store, f"SELECT label, score FROM labels WHERE model_id = '{want_id}' AND rank = 0 "
                          "ORDER BY video_id, clip_id")
    assert [g[0] for g in got] == [w.labels[0].label for w in want]
    assert [g[1] for g in got] == pytest.approx([w.labels[0].score for w in want], abs=1e-5)
    # and the new model_id is searchable: its checkpoint is what the store records for it
    assert Searcher(store.root, want_id).search("jumping", k=2)


@pytest.mark.parametrize("part", ["image tower", "text tower"])
def test_relabel_refuses_a_checkpoint_whose_towers_differ_in_one_line(base_store, tmp_path, capsys, part):
    store, mid, base = base_store
    other = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    with torch.no_grad():
        name, p = next((n, p) for n, p in other.clip.named_parameters()
                       if n.startswith("visual.") == (part == "image tower"))
        p.add_(0.01)
    ckpt = adapted_checkpoint(other, tmp_path / "moved.pt")
    before = Store(store.root).read("models").num_rows
    assert jobs.cli.main(["relabel", "--store", str(store.root), "--checkpoint", ckpt, "--no-index",
                          "--no-progress"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("bike: error:")]
    assert len(err) == 1 and ckpt in err[0] and mid in err[0] and "tag the videos again" in err[0]
    assert ("image tower / temporal header differs" if part == "image tower" else "text tower") in err[0]
    assert Store(store.root).read("models").num_rows == before                       # nothing written
