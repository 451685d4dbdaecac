"""Which branches score (docs/model.md §8): video / attributes / fused, the default per kind of weights, and
the authors' protocol for checkpoints without trained attributes heads (video branch alone)."""
import json

import pytest
import torch

import engine
from engine.model.attributes import fuse
from engine.model.loading import load_weights
from engine.model.model import default_branches

TINY = "bike-tiny"


def test_fuse_by_branches():
    v, a = torch.randn(3, 5), torch.randn(3, 5)
    fused, pv, pa = fuse(v, a)
    torch.testing.assert_close(fused, 0.7 * v.softmax(-1) + 0.3 * a.softmax(-1))
    video, _, _ = fuse(v, a, "video")
    torch.testing.assert_close(video, v.softmax(-1))
    attr, _, _ = fuse(v, a, "attributes")
    torch.testing.assert_close(attr, a.softmax(-1))
    only, _, none = fuse(v, None, "fused")                          # no attribute scores: the video branch
    assert none is None and torch.equal(only, v.softmax(-1))
    with pytest.raises(ValueError, match="attribute scores"):
        fuse(v, None, "attributes")
    with pytest.raises(ValueError, match="video, attributes, fused"):
        fuse(v, a, "both")


def _checkpoint(tmp_path, heads: bool):
    from engine.model.attributes import AttributeHead
    src = load_weights(TINY, random_init=True, seed=9, quick_gelu=True)
    ckpt = {"model_state_dict": src.clip.state_dict(), "fusion_model_state_dict": {}}
    if heads:
        ckpt["attributes_state_dict"] = AttributeHead(64).state_dict()
    path = tmp_path / f"ck{int(heads)}.pt"
    torch.save(ckpt, path)
    return str(path)


def test_default_branches_follow_the_weights(tmp_path):
    assert default_branches(load_weights(TINY, random_init=True)) == "fused"     # plain CLIP: zero-shot fusion
    bare = engine.load_model(None, checkpoint=_checkpoint(tmp_path, False), lexicon="hmdb51")
    assert bare.branches == "video" and "branches video" in bare.describe()
    assert bare.fingerprint()["branches"] == "video"
    trained = engine.load_model(None, checkpoint=_checkpoint(tmp_path, True), lexicon="hmdb51")
    assert trained.branches == "fused"
    forced = engine.load_model(None, checkpoint=_checkpoint(tmp_path, False), lexicon="hmdb51", branches="fused")
    assert forced.branches == "fused"
    with pytest.raises(ValueError, match="branches"):
        engine.load_model(TINY, random_init=True, branches="audio")


def test_scores_come_from_the_chosen_branches(tmp_path):
    raw = torch.randn(2, 8, 64)
    by = {b: engine.load_model(TINY, random_init=True, lexicon="hmdb51", branches=b).score_features(raw, "a,b,c")
          for b in ("video", "attributes", "fused")}
    assert by["video"].branches == "video" and by["video"].attribute is None          # branch not run
    torch.testing.assert_close(by["video"].fused, by["video"].video)
    torch.testing.assert_close(by["attributes"].fused, by["attributes"].attribute)
    torch.testing.assert_close(by["fused"].fused, 0.7 * by["fused"].video + 0.3 * by["fused"].attribute)
    torch.testing.assert_close(by["video"].video, by["fused"].video)                   # same video branch


@pytest.mark.slow
def test_train_without_attribute_heads_then_eval_is_the_video_branch(ray_cluster, tmp_path, capsys):
    """`bike train --attr-epochs 0` on a temporal task; `bike eval` on the held-out videos reports the video
    branch's top-1, exactly what training measured on them, and says so; fusing with the untrained
    attributes branch is only done when asked."""
    from jobs.train import datasets as ds
    from jobs.cli import main
    from bench.synthetic import VideoSpec, make_dataset, write_labels, write_list
    from jobs.train.training import read_history
    classes = ["moving left", "moving right", "blinking"]
    entries = make_dataset(str(tmp_path / "v"), classes, 6, seed=1, spec=VideoSpec(size=48, fps=8, seconds=2))
    lst, labels_csv = write_list(str(tmp_path / "all.txt"), entries, classes), write_labels(str(tmp_path / "l.csv"),
                                                                                             classes)
    out = tmp_path / "run"
    assert main(["train", lst, "--labels", labels_csv, "--out", str(out), "--epochs", "3", "--attr-epochs", "0",
                 "--workers", "1", "--model", TINY, "--random-init", "--lexicon", "hmdb51", "--batch", "4",
                 "--lr", "5e-4", "--lr-clip", "5e-5", "--no-flip", "--val-fraction", "0.34",
                 "--precision", "fp32"]) == 0   # the held-out top-1 in fp32, as `bike eval --precision fp32` below
    video_top1 = [h for h in read_history(str(out)) if h["stage"] == "video"][-1]["val_top1"]
    labels = engine.load_labels(labels_csv)
    _, held = ds.split_holdout(ds.parse_list(lst, labels), 0.34, 0)
    val = tmp_path / "val.txt"
    val.write_text("".join(f"{s.path} {labels.names[s.label]}\n" for s in held))
    common = ["eval", str(val), "--labels", labels_csv, "--checkpoint", str(out / "checkpoint.pt"),
              "--lexicon", "hmdb51", "--precision", "fp32", "--json"]
    capsys.readouterr()
    assert main(common) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["branches"] == "video" and r["videos"] == len(held) == 6
    assert r["top1"] == pytest.approx(video_top1)
    assert main([*common, "--branches", "fused"]) == 0
    assert json.loads(capsys.readouterr().out)["branches"] == "fused"


def test_models_row_records_precision_and_branches(tmp_path):
    from jobs.tag.records import model_facts, model_row
    m = engine.load_model(None, checkpoint=_checkpoint(tmp_path, False), lexicon="hmdb51", precision="bf16")
    row = model_row("m1", model_facts(m), engine.load_labels("a,b"), 10.0).to_pylist()[0]
    assert row["precision"] == "bf16" and row["branches"] == "video"
    fp = json.loads(row["fingerprint"])
    assert fp["precision"] == "bf16" and fp["branches"] == "video"     # part of the store's model_id
