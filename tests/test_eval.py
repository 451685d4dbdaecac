"""Evaluation metrics against hand-computed values, and `bike eval` end to end on synthetic videos."""
import math

import pytest
import torch

from engine.model.metrics import (average_precision, average_views, half_class_accuracy, half_class_splits,
                            mean_average_precision, mean_std, topk_accuracy, zeroshot_frame_logits,
                            zeroshot_probs)


def test_topk_by_hand():
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.15, 0.05],    # order 1,2,3,0,4
                           [0.3, 0.1, 0.2, 0.25, 0.15],    # order 0,3,2,4,1
                           [0.0, 0.1, 0.2, 0.3, 0.4]])     # order 4,3,2,1,0
    targets = torch.tensor([1, 2, 0])
    acc = topk_accuracy(scores, targets, ks=(1, 2, 3, 5))
    assert acc["top1"] == pytest.approx(1 / 3)              # only row 0
    assert acc["top2"] == pytest.approx(1 / 3)
    assert acc["top3"] == pytest.approx(2 / 3)              # row 1's target 2 is third
    assert acc["top5"] == pytest.approx(1.0)


def test_view_average_by_hand():
    views = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]])   # softmax: (.25,.75), (.75,.25)
    assert torch.allclose(average_views(views), torch.tensor([[0.5, 0.5]]))
    probs = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]])
    assert torch.allclose(average_views(probs, softmax=False), torch.tensor([[0.4, 0.6]]))


def test_average_precision_by_hand():
    # ranked: s=.9 (pos), .8 (neg), .7 (pos), .1 (neg) → precisions at the positives 1/1, 2/3
    assert average_precision([0.9, 0.1, 0.7, 0.8], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.9], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.7, 0.3]])
    targets = torch.tensor([[1, 0], [0, 0], [1, 0]])         # class 1 has no positive: left out
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    targets = torch.tensor([[1, 0], [0, 1], [0, 1]])
    # class 0: positives {0} ranked 1st → 1; class 1: ranking 1 (.8, pos), 2 (.3, pos) → 1
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    targets = torch.tensor([[0, 1], [1, 0], [0, 0]])
    # class 0: ranking .9(neg) .7(neg) .1(pos) → 1/3 ; class 1: ranking .8 .3 .2(pos) → 1/3
    assert mean_average_precision(scores, targets) == pytest.approx(1 / 3)


def test_zeroshot_protocol_by_hand():
    # 1 video, 2 frames, D=2; classes along the axes (cls not normalised: the protocol normalises it)
    f = torch.tensor([[[0.02, 0.0], [0.0, 0.01]]])           # unnormalised frame features (kept as they are)
    cls = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    logits = zeroshot_frame_logits(f, cls)
    assert torch.allclose(logits, torch.tensor([[[2.0, 0.0], [0.0, 1.0]]]))
    e2, e1 = math.exp(2), math.exp(1)
    expected = 0.5 * (torch.tensor([e2, 1.0]) / (e2 + 1) + torch.tensor([1.0, e1]) / (e1 + 1))
    assert torch.allclose(zeroshot_probs(logits)[0], expected.float())


def test_half_class_splits_and_accuracy():
    splits = half_class_splits(10, splits=10, seed=0)
    assert len(splits) == 10 and all(len(s) == 5 and len(set(s)) == 5 for s in splits)
    assert splits == half_class_splits(10, splits=10, seed=0)            # seeded
    assert splits != half_class_splits(10, splits=10, seed=1)
    # 3 videos, 1 frame, 4 classes; on the half {0, 1}: video 0 (label 0) right, video 1 (label 1)
    # wrong (its best class overall is 3, outside the half, so it falls back to 0); video 2 not in the half
    logits = torch.tensor([[[5.0, 1.0, 0.0, 0.0]], [[2.0, 1.0, 0.0, 9.0]], [[0.0, 0.0, 3.0, 0.0]]])
    targets = torch.tensor([0, 1, 2])
    assert half_class_accuracy(logits, targets, [0, 1]) == pytest.approx(0.5)
    assert half_class_accuracy(logits, targets, [2, 3]) == pytest.approx(1.0)
    assert math.isnan(half_class_accuracy(logits, targets, [3]))
    m, s = mean_std([0.5, 1.0, float("nan")])
    assert m == pytest.approx(0.75) and s == pytest.approx(0.25)


# ---- `bike eval` end to end ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from bench.synthetic import VideoSpec, make_dataset
    root = tmp_path_factory.mktemp("eval")
    entries = make_dataset(str(root / "v"), ["moving up", "growing", "blinking"], 2, seed=0,
                           spec=VideoSpec(size=48, fps=8, seconds=1))
    (root / "list.txt").write_text("".join(f"{p} {n}\n" for p, n in entries))
    (root / "multi.txt").write_text("".join(f"{p} {n},blinking\n" for p, n in entries[:4]))
    return root, entries


def test_eval_standard_matches_classify_views(videos, tiny_model):
    import engine
    from jobs.train import datasets as ds
    from jobs.train.evaluate import evaluate_standard
    root, entries = videos
    labels = engine.load_labels("moving up,growing,blinking")
    samples = ds.parse_list(str(root / "list.txt"), labels)
    r = evaluate_standard(tiny_model, samples, labels, clips=2, crops=3, log_every=0)
    # the same numbers by hand: classify (which averages the fused probabilities of the 6 views) per video
    probs = []
    for path, _ in entries:
        c = tiny_model.classify(path, labels, clips=2, crops=3, top_k=3)
        probs.append([{x.label: x.score for x in c.labels}[n] for n in labels.names])
    expected = topk_accuracy(torch.tensor(probs), torch.tensor([s.label for s in samples]), ks=(1, 5))
    assert r["videos"] == 6 and r["views"] == 6 and r["failed"] == 0
    assert r["top1"] == pytest.approx(expected["top1"]) and r["top5"] == 1.0


def test_eval_cli_protocols(videos, capsys):
    import json
    from jobs.cli import main
    root, _ = videos
    common = ["--labels", "moving up,growing,blinking", "--model", "bike-tiny", "--random-init",
              "--lexicon", "hmdb51", "--json"]
    assert main(["eval", str(root / "list.txt"), "--protocol", "zeroshot-half", "--splits", "4", *common]) == 0
    z = json.loads(capsys.readouterr().out)
    assert z["splits"] == 4 and len(z["top1_per_split"]) == 4 and 0 <= z["top1_mean"] <= 1
    assert main(["eval", str(root / "multi.txt"), "--multilabel", *common]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["videos"] == 4 and 0 < m["mAP"] <= 1
    # a broken line is a usage error naming file:line
    (root / "bad.txt").write_text(f"{root}/v/growing_0000.mp4 swimming\n")
    assert main(["eval", str(root / "bad.txt"), *common]) == 2
    assert "bad.txt:1: unknown label 'swimming'" in capsys.readouterr().err
