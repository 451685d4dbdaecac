"""The training loss and augmentation against their definitions (docs/model.md §6), by direct loops."""
import math

import numpy as np
import pytest
import torch

from engine.video.augment import (AugmentConfig, augment_clip, center_view, grayscale, hflip,
                            random_resized_crop_box)
from engine.video.transform import resized_size
from engine.model.loss import batch_logits, bike_loss, scaled, soft_targets


def _loop_loss(logits, labels):
    """docs/model.md §6 written as loops over rows and entries, in float64."""
    b = len(labels)

    def targets_row(i, g):                      # softmax(10 · G[i, :])
        e = [math.exp(10.0 * g(i, j)) for j in range(b)]
        return [x / sum(e) for x in e]

    def kl(mat, g):
        total = 0.0
        for i in range(b):
            t = targets_row(i, g)
            m = max(mat(i, j) for j in range(b))
            z = sum(math.exp(mat(i, j) - m) for j in range(b))
            for j in range(b):
                log_q = mat(i, j) - m - math.log(z)
                total += t[j] * (math.log(t[j]) - log_q)
        return total / b

    lg = logits.double().tolist()
    g = lambda i, j: 1.0 if labels[i] == labels[j] else 0.0   # noqa: E731
    forward = kl(lambda i, j: lg[i][j], g)
    backward = kl(lambda i, j: lg[j][i], lambda i, j: g(j, i))
    return 0.5 * (forward + backward)


def test_soft_targets_spread_over_positives():
    t = soft_targets(torch.tensor([0, 1, 0, 2]))
    e10 = math.exp(10)
    assert torch.allclose(t[0], torch.tensor([e10, 1, e10, 1]) / (2 * e10 + 2))
    assert torch.allclose(t[1], torch.tensor([1, e10, 1, 1]) / (e10 + 3))
    assert torch.allclose(t.sum(1), torch.ones(4))


def test_loss_matches_the_loop_definition():
    g = torch.Generator().manual_seed(0)
    for labels in ([0, 1, 2, 3], [0, 0, 1, 1, 1, 2], [3, 3, 3], [5, 1, 5, 2, 1]):
        labels_t = torch.tensor(labels)
        logits = torch.randn(len(labels), len(labels), generator=g) * 5
        got = bike_loss(logits, labels_t).item()
        assert abs(got - _loop_loss(logits, labels)) < 1e-4, labels


def test_loss_is_not_symmetric_in_its_argument_but_averages_both_directions():
    # an asymmetric logit matrix: the two directions differ, the loss is their mean
    logits = torch.tensor([[4.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1, 2])
    from engine.model.loss import kl_rows
    t = soft_targets(labels)
    a, b = kl_rows(t, logits).item(), kl_rows(t, logits.T).item()
    assert abs(a - b) > 1e-3
    assert abs(bike_loss(logits, labels).item() - (a + b) / 2) < 1e-6


def test_loss_minimum_and_gradient():
    labels = torch.tensor([0, 1, 0])
    good = 10.0 * (labels[:, None] == labels[None, :]).float()      # logits = 10·G reproduce the target
    assert bike_loss(good, labels).item() < 1e-6
    x = torch.zeros(3, 3, requires_grad=True)
    bike_loss(x, labels).backward()
    assert x.grad[0, 0] < 0 and x.grad[0, 1] > 0                     # pushes positives up, negatives down


def test_batch_logits_and_scale():
    class_logits = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    labels = torch.tensor([2, 0])
    assert torch.equal(batch_logits(class_logits, labels), torch.tensor([[0.3, 0.1], [0.6, 0.4]]))
    assert torch.allclose(scaled(torch.ones(1), torch.tensor(math.log(100.0))), torch.tensor([100.0]))


# ---- augmentation ------------------------------------------------------------------------------------

def test_crop_box_respects_area_and_aspect():
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0, h, w = random_resized_crop_box(256, 341, rng)
        assert 0 <= y0 and y0 + h <= 256 and 0 <= x0 and x0 + w <= 341
        area = h * w / (256 * 341)
        assert 0.07 <= area <= 1.0
        if (h, w) != (256, 341):
            assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_one_resize_rule_for_decoding_training_and_folders():
    """engine.video.transform.resized_size is the rule: short side exact, long side rounded to even. The training
    frame reader (jobs.train.datasets) scales a video to the same grid as the decoders (it used to cut 341 to 340
    where the decoders made 342)."""
    from jobs.train.datasets import FrameReader
    assert resized_size(64, 48, 256) == (342, 256) and resized_size(50, 100, 256) == (256, 512)
    assert resized_size(640, 480, 256) == FrameReader(resize=256)._out_size(640, 480) == (342, 256)
    assert FrameReader(resize=256)._out_size(320, 200) == (320, 200)          # never upscaled there


def test_short_side_and_center_view():
    frames = np.zeros((2, 48, 64, 3), np.uint8)
    frames[:, :, 32:] = 255                                          # right half white
    out = center_view(frames, 224, 256)
    assert out.shape == (2, 224, 224, 3)
    assert out[0, 100, 10].max() < 10 and out[0, 100, 213].min() > 245


def test_flip_and_gray():
    x = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    assert np.array_equal(hflip(x)[:, :, 0], x[:, :, 3])
    g = grayscale(np.array([[[[255, 0, 0], [0, 255, 0]]]], np.uint8))
    assert g.shape == (1, 1, 2, 3) and g[0, 0, 0, 0] == 76 and g[0, 0, 1, 1] == 150


def test_augment_is_the_same_for_every_frame():
    frames = np.random.default_rng(1).integers(0, 255, (1, 60, 80, 3), dtype=np.uint8).repeat(8, 0)
    for seed in range(5):
        out = augment_clip(frames, np.random.default_rng(seed), AugmentConfig(size=32, resize=40))
        assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[t]) for t in range(8))
    # the flip probability is honoured: p=1 always mirrors, p=0 never
    cfg = AugmentConfig(size=40, resize=40, scale=(1.0, 1.0), ratio=(1.0, 1.0), gray=0.0)
    a = augment_clip(frames[:1], np.random.default_rng(0), AugmentConfig(**{**cfg.__dict__, "flip": 1.0}))
    b = augment_clip(frames[:1], np.random.default_rng(0), AugmentConfig(**{**cfg.__dict__, "flip": 0.0}))
    assert np.array_equal(a, hflip(b))


# ---- the global-batch loss over data-parallel workers (released train.py: AllGather + loss on all videos) ----

def _tiny_learner():
    from engine.model.temporal import TemporalTransformer
    from jobs.train.learner import VideoLearner
    torch.manual_seed(0)
    visual = torch.nn.Linear(6, 4)                             # "image tower": one frame (6,) → (4,)
    header = TemporalTransformer(4, heads=1, layers=1)
    scale = torch.nn.Parameter(torch.tensor(2.0))
    cls, tokens = torch.randn(3, 4), torch.randn(3, 77, 4)
    return VideoLearner(visual, scale, cls, tokens, header)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 5, 6, generator=g), torch.tensor([0, 2, 2, 1])   # 4 videos × 5 frames


def _grads(learner):
    return {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}


def _rank_main(rank, port, out):
    import torch.distributed as dist

    from jobs.train.learner import all_gather_labels
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        learner = _tiny_learner()
        x, y = _batch()
        mine = slice(2 * rank, 2 * rank + 2)                   # rank r holds videos 2r, 2r+1
        logits = learner(x[mine], gather=True)
        labels = all_gather_labels(y[mine])
        loss = bike_loss(batch_logits(logits, labels), labels)
        loss.backward()
        torch.save({"loss": loss.detach(), "labels": labels, "grads": _grads(learner)}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_workers_compute_the_global_batch_loss(tmp_path):
    """Each of 2 gloo workers holds half the batch; both get the loss of the whole batch, the header's
    gradient of the whole batch, and image-tower gradients that sum to the whole batch's."""
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    learner = _tiny_learner()                                  # one process, the whole batch
    x, y = _batch()
    want = bike_loss(batch_logits(learner(x), y), y)
    want.backward()
    ref = _grads(learner)
    for r in ranks:
        assert torch.equal(r["labels"], y)
        assert float(r["loss"]) == pytest.approx(float(want.detach()), rel=1e-5)
        for name in ref:
            if not name.startswith("visual."):                 # header, logit scale: the whole batch's
                torch.testing.assert_close(r["grads"][name], ref[name], rtol=1e-4, atol=1e-6)
    for name in ("visual.weight", "visual.bias"):              # each rank: its own videos' share
        torch.testing.assert_close(ranks[0]["grads"][name] + ranks[1]["grads"][name], ref[name],
                                   rtol=1e-4, atol=1e-6)
        assert not torch.allclose(ranks[0]["grads"][name], ref[name])
