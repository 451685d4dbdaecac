"""`bike adapt --mode fast` and the adapted class features stored in checkpoints."""
import numpy as np
import pytest
import torch

import engine
from jobs.train import datasets as ds
from jobs.train.adapt import FastConfig, fast_adapt
from jobs.cli import main as bike_main
from jobs.train.evaluate import evaluate_standard
from jobs.train.learner import checkpoint_dict, save_atomic
from bench.synthetic import VideoSpec, make_dataset

# classes a random-init model can tell apart by how much shape the frames show: adaptation, not temporal order
CLASSES = ["empty scene", "blinking", "growing"]


@pytest.fixture(scope="module")
def shots_and_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    spec = VideoSpec(size=48, fps=8, seconds=2)
    shots = make_dataset(str(root / "shots"), CLASSES, 4, seed=0, spec=spec)
    test = make_dataset(str(root / "test"), CLASSES, 6, seed=1, spec=spec)
    for name, entries in (("shots.txt", shots), ("test.txt", test)):
        (root / name).write_text("".join(f"{p} {n}\n" for p, n in entries))
    return root


def test_checkpoint_class_features_replace_the_text_tower_for_their_names(tmp_path, tiny_model):
    names = ["alpha", "beta"]
    cls = torch.randn(2, tiny_model.embed_dim)
    tokens = torch.randn(2, 77, tiny_model.embed_dim)
    path = save_atomic(checkpoint_dict("bike-tiny", tiny_model.clip, None, None, names, 8, 0, "adapted",
                                       class_features={"names": names, "cls": cls, "tokens": tokens}),
                       str(tmp_path / "a.pt"))
    model = engine.load_model(None, checkpoint=path, lexicon="hmdb51")
    got = model.label_features("alpha,beta")
    assert torch.equal(got.cls, cls) and torch.equal(got.tokens, tokens)
    other = model.label_features("alpha,gamma")                   # another label set: the text tower
    assert torch.allclose(other.cls, tiny_model.label_features("alpha,gamma").cls, atol=1e-5)
    assert not torch.allclose(other.cls[0], cls[0])


def test_fast_adapt_beats_chance_and_loads_in_classify(shots_and_test, tmp_path, capsys):
    root = shots_and_test
    out = tmp_path / "out"
    rc = bike_main(["adapt", str(root / "shots.txt"), "--shots", "4", "--out", str(out), "--model", "bike-tiny",
                    "--random-init", "--lexicon", "hmdb51", "--views", "3", "--steps", "200"])
    assert rc == 0
    model = engine.load_model(None, checkpoint=str(out / "adapted.pt"), lexicon="hmdb51")
    assert list(model.class_features["names"]) == CLASSES and model.attribute_head is not None
    labels = engine.load_labels(CLASSES)
    test = ds.parse_list(str(root / "test.txt"), labels)
    adapted = evaluate_standard(model, test, labels, log_every=0)["top1"]
    base = evaluate_standard(engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51"), test, labels,
                             log_every=0)["top1"]
    assert adapted > 1 / len(CLASSES) + 0.2, (adapted, base)     # chance is 1/3
    assert adapted > base
    capsys.readouterr()
    rc = bike_main(["classify", str(test[0].path), "--checkpoint", str(out / "adapted.pt"),
                    "--labels", ",".join(CLASSES), "--lexicon", "hmdb51", "--json"])
    assert rc == 0 and '"labels"' in capsys.readouterr().out


def test_fast_adapt_is_seconds(shots_and_test, tmp_path, tiny_model):
    labels = engine.load_labels(CLASSES)
    shots = ds.few_shot(ds.parse_list(str(shots_and_test / "shots.txt"), labels), 1)
    import time
    t0 = time.time()
    summary = fast_adapt(tiny_model, shots, CLASSES, str(tmp_path / "a.pt"), FastConfig(views=2, steps=50, attr_steps=50))
    assert summary["examples"] == 3 and time.time() - t0 < 30
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["class_features"]["tokens"].shape == (3, 77, tiny_model.embed_dim)
    assert np.isfinite(ckpt["class_features"]["cls"].numpy()).all()


@pytest.mark.slow
def test_finetune_mode_is_bike_few_shot_through_ray_train(ray_cluster, shots_and_test, tmp_path):
    out = tmp_path / "ft"
    rc = bike_main(["adapt", str(shots_and_test / "shots.txt"), "--shots", "2", "--out", str(out), "--mode",
                    "finetune", "--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--epochs", "2",
                    "--batch", "6", "--lr-clip", "1e-4"])
    assert rc == 0
    ckpt = torch.load(out / "adapted.pt", weights_only=True)
    assert ckpt["fusion_model_state_dict"] == {} and ckpt["labels"] == CLASSES and ckpt["epoch"] == 2
    model = engine.load_model(None, checkpoint=str(out / "adapted.pt"), lexicon="hmdb51")
    assert model.header is None                                   # few-shot recipe: VCS on raw frames
    base = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    assert not torch.equal(model.clip.visual.proj, base.clip.visual.proj)   # the visual tower was trained
