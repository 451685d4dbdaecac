"""`bike train` end to end on the real Ray local cluster: learning, checkpoints, restart after a kill, --resume."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

import engine
from engine.model.loss import batch_logits, bike_loss
from jobs.train import datasets as ds
from jobs.cli import main as bike_main
from jobs.train.learner import VideoLearner, new_header, normalize
from jobs.train.optim import lr_factor, warmup_epochs
from bench.synthetic import VideoSpec, make_dataset, write_labels, write_list
from jobs.train.training import TrainConfig, local_indices, read_history, run_training

CLASSES = ["empty scene", "growing"]
FAST = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--batch", "4", "--lr", "5e-4",
        "--lr-clip", "5e-5", "--no-flip", "--crop-scale", "0.8", "1.0", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    entries = make_dataset(str(root / "v"), CLASSES, 8, seed=0, spec=VideoSpec(size=48, fps=8, seconds=2))
    return {"list": write_list(str(root / "list.txt"), entries, CLASSES),
            "labels": write_labels(str(root / "labels.csv"), CLASSES), "root": root}


def test_schedule_and_sharding():
    assert warmup_epochs(30) == 5 and warmup_epochs(6) == 1
    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(9, 100, 10) == 1.0
    assert lr_factor(55, 100, 10) == pytest.approx(0.5) and lr_factor(100, 100, 10) == pytest.approx(0.0)
    a, b = local_indices(10, 4, 0, 2, 0, 0), local_indices(10, 4, 1, 2, 0, 0)
    assert len(a) == len(b) == 4 and not set(a) & set(b)             # equal steps, disjoint shares
    assert local_indices(10, 4, 0, 2, 0, 1) != a                       # reshuffled every epoch


def test_optimiser_recipe_groups_and_rates():
    """jobs.train.optim is the one recipe: new modules at LR_NEW, CLIP visual + logit_scale at LR_CLIP (left out at 0)."""
    from jobs.train import optim
    visual, header, scale = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Parameter(torch.ones(()))
    opt = optim.adamw(optim.video_groups(visual, scale, [header, None]))
    assert [(g["name"], g["lr"], g["weight_decay"], g["betas"]) for g in opt.param_groups] == [
        ("new", 5e-5, 0.2, (0.9, 0.999)), ("clip", 5e-6, 0.2, (0.9, 0.999))]
    assert len(opt.param_groups[1]["params"]) == 3                       # weight, bias, logit_scale
    assert [g["name"] for g in optim.video_groups(visual, scale, [header], lr_clip=0)] == ["new"]
    sched = optim.schedule(opt, epochs=6, steps_per_epoch=10)            # warm-up 1 epoch = 10 steps
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-6)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_history_write_is_idempotent_per_epoch_and_stage(tmp_path):
    """A report Ray Train runs again (a retried final report) replaces its history line, never duplicates it."""
    from jobs.train.training import write_history
    out = str(tmp_path)
    write_history(out, {"epoch": 1, "stage": "video", "loss": 2.0})
    write_history(out, {"epoch": 2, "stage": "video", "loss": 1.5})
    write_history(out, {"epoch": 2, "stage": "done", "val_top1": 0.5})
    write_history(out, {"epoch": 2, "stage": "done", "val_top1": 0.75})        # the retried final report
    write_history(out, {"epoch": 1, "stage": "video", "loss": 1.9})            # an epoch run again, in place
    assert read_history(out) == [{"epoch": 1, "stage": "video", "loss": 1.9},
                                 {"epoch": 2, "stage": "video", "loss": 1.5},
                                 {"epoch": 2, "stage": "done", "val_top1": 0.75}]
    assert os.listdir(out) == ["history.jsonl"]                                  # no temporary left behind


def _fixed_batch_loss(learner, samples, reader):
    with torch.no_grad():
        x = normalize(torch.from_numpy(np.stack([ds.eval_clip(reader, s, 8) for s in samples])))
        y = torch.tensor([s.label for s in samples])
        return float(bike_loss(batch_logits(learner(x), y), y))


@pytest.fixture(scope="module")
def trained(ray_cluster, data, tmp_path_factory):
    """One real `bike train` run: 2 Ray Train workers (DDP over gloo), 6 epochs + the attributes stage."""
    out = tmp_path_factory.mktemp("run") / "out"
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", str(out), "--epochs", "6",
                    "--attr-epochs", "3", "--workers", "2", *FAST])
    assert rc == 0
    return out


def test_train_lowers_loss_and_checkpoint_loads_in_classify(trained, data, capsys):
    out = trained
    hist = read_history(str(out))
    assert [(h["epoch"], h["stage"]) for h in hist] == [(e, "video") for e in range(1, 7)] + [(6, "done")]
    assert all(h["clips_per_s"] > 0 and 0 <= h["val_top1"] <= 1 for h in hist[:6])
    assert "val_fused_top1" in hist[-1]
    from engine.model.precision import resolve         # --precision auto: what `bike train` resolves on this CPU
    assert {h["precision"] for h in hist[:6]} == {resolve("auto", "cpu")}

    # the loss on a fixed batch (eval views of the training videos) went down from the initial weights
    labels = engine.load_labels(data["labels"])
    samples = ds.parse_list(data["list"], labels)
    reader = ds.FrameReader()
    init = engine.load_model("bike-tiny", random_init=True, seed=0, lexicon="hmdb51")
    with torch.no_grad():                          # where training starts a random-init model (docs/model.md §6)
        init.clip.logit_scale.fill_(math.log(100.0))
    text = init.label_features(labels)
    before = VideoLearner(init.clip.visual, init.clip.logit_scale, text.cls, text.tokens, new_header(64, 64)).eval()
    trained = engine.load_model(None, checkpoint=str(out / "checkpoint.pt"), lexicon="hmdb51")
    after = VideoLearner(trained.clip.visual, trained.clip.logit_scale, text.cls, text.tokens, trained.header).eval()
    assert _fixed_batch_loss(after, samples, reader) < _fixed_batch_loss(before, samples, reader)

    # released layout, and `bike classify --checkpoint` gives the training module's numbers
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model_state_dict", "fusion_model_state_dict", "attributes_state_dict", "labels", "model_name",
            "epoch", "optimizer", "scheduler"} <= set(ckpt)
    assert ckpt["labels"] == CLASSES and ckpt["model_name"] == "bike-tiny" and ckpt["epoch"] == 6
    # open_clip's random init is 1/0.07 ≈ 14.3; training started at 100 and moves it only slowly
    assert 50 < float(ckpt["model_state_dict"]["logit_scale"].exp()) <= 100.0 + 1e-3
    assert trained.attribute_head is not None and trained.header is not None
    video = samples[0].path
    capsys.readouterr()
    assert bike_main(["classify", video, "--checkpoint", str(out / "checkpoint.pt"), "--labels", data["labels"],
                      "--lexicon", "hmdb51", "--precision", "fp32", "--json"]) == 0
    got = {d["label"]: d["video_score"] for d in json.loads(capsys.readouterr().out)["labels"]}
    frames = engine.read_video(video, frames=8).frames                          # (1, T, S, S, 3)
    with torch.no_grad():
        probs = torch.softmax(after.raw_logits(trained.preprocess(frames)), dim=-1)[0]
    for c, name in enumerate(CLASSES):
        assert got[name] == pytest.approx(float(probs[c]), abs=1e-5)


def _config(data, out, epochs, **kw):
    labels = engine.load_labels(data["labels"])
    train, val = ds.split_holdout(ds.parse_list(data["list"], labels), 0.25, 0)
    return TrainConfig(model={"name": "bike-tiny", "random_init": True, "lexicon": "hmdb51", "seed": 0},
                       labels=list(labels.names), train=train, val=val, out=str(out), epochs=epochs, batch=4,
                       lr_new=1e-3, lr_clip=1e-4, attr_epochs=0, **kw)


def test_resume_continues_from_the_last_checkpoint(trained, data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    steps = torch.load(out / "checkpoint.pt", weights_only=True)["scheduler"]["last_epoch"] // 6
    monkeypatch.chdir(tmp_path)                 # a relative --out, as in the README (Ray workers run elsewhere)
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", "copy", "--epochs", "7",
                    "--attr-epochs", "0", "--resume", *FAST])
    assert rc == 0
    hist = read_history(str(out))
    # epochs 1-6 from the first run, then only epoch 7: it started from epoch 6's checkpoint
    assert [(h["epoch"], h["stage"]) for h in hist] == ([(e, "video") for e in range(1, 7)] + [(6, "done")]
                                                        + [(7, "video"), (7, "done")])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 7 and ckpt["scheduler"]["last_epoch"] == 7 * steps   # optimizer state carried on


def _sigkilled_once_after_epoch_1(config: dict) -> None:
    """The Ray Train loop of the fault test, run in the worker: ``train_loop`` with rank 0 SIGKILLing itself
    right after epoch 1's checkpoint is reported (once: the marker file stops the restarted worker)."""
    import signal

    import jobs.train.training as training
    report = training._report

    def report_then_die(rank, cfg, metrics, ckpt):
        report(rank, cfg, metrics, ckpt)
        marker = os.path.join(cfg.out, ".failed-once")
        if rank == 0 and metrics.get("stage") == "video" and metrics.get("epoch") == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    training._report = report_then_die
    training.train_loop(config)


@pytest.mark.slow
def test_worker_sigkilled_then_restarted_from_its_checkpoint(ray_cluster, data, tmp_path):
    import sys

    import ray.cloudpickle
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this file
    out = tmp_path / "run"
    cfg = _config(data, out, epochs=2)
    hist = run_training(cfg, workers=1, max_failures=1, loop=_sigkilled_once_after_epoch_1)
    assert os.path.exists(out / ".failed-once")                       # the worker really was SIGKILLed
    # epoch 1 ran once: the restarted worker group continued from epoch 1's checkpoint
    assert [(h["epoch"], h["stage"]) for h in hist] == [(1, "video"), (2, "video"), (2, "done")]
    steps = ds.steps_per_epoch(len(cfg.train), cfg.batch)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["scheduler"]["last_epoch"] == 2 * steps


def test_resume_without_checkpoint_is_a_usage_error(data, tmp_path, capsys):
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", str(tmp_path / "none"), "--resume",
                    *FAST])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "payload"])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_keeps_it(trained, data, tmp_path, capsys, monkeypatch,
                                                                   damage):
    out = tmp_path / "run"
    out.mkdir()
    good = (trained / "checkpoint.pt").read_bytes()
    marker = tmp_path / "PWNED"
    bad = {"truncated": good[: len(good) // 2], "garbage": b"\x00not a checkpoint" * 64,
           "payload": __import__("pickle").dumps({"model_state_dict": _Marker(str(marker)), "epoch": 1})}[damage]
    (out / "checkpoint.pt").write_bytes(bad)
    monkeypatch.chdir(tmp_path)
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", "run", "--epochs", "7",
                    "--attr-epochs", "0", "--resume", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("bike: error: ") and "checkpoint.pt" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert (out / "checkpoint.pt").read_bytes() == bad and not marker.exists()     # left as it was


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unwritable_out_is_one_line(data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")          # --out below a regular file: unwritable even for root
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", str(blocker / "run"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"bike: error: {blocker / 'run'}") and "Traceback" not in "".join(err)
    assert blocker.read_text() == "not a folder"


def test_worker_disk_full_becomes_one_line():
    """A worker's ENOSPC (or a bad checkpoint) inside Ray Train's real failure types is found for one line."""
    import errno as _errno

    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    from engine.model.loading import CheckpointError
    from jobs.train.training import worker_user_error
    full = OSError(_errno.ENOSPC, "No space left on device", "/out/checkpoint.pt")
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as wrapped:
        group = WorkerGroupError("worker 0 failed", {0: wrapped})
    assert worker_user_error(group) is full
    bad = CheckpointError("/out/checkpoint.pt: not a PyTorch weights file")
    assert worker_user_error(ControllerError(WorkerGroupError("x", {1: bad}))) is bad
    assert worker_user_error(WorkerGroupError("x", {0: ValueError("a bug")})) is None


def test_training_precision_resolves_like_inference_and_refuses_fp16_on_a_cpu():
    from engine.model.precision import cpu_has_bf16
    from jobs.train.learner import training_precision
    assert training_precision("fp32", "cpu") == ("fp32", None)
    assert training_precision("bf16", "cpu") == ("bf16", torch.bfloat16)
    assert training_precision("auto", "cpu") == (("bf16", torch.bfloat16) if cpu_has_bf16() else ("fp32", None))
    assert training_precision("auto", "cuda") == ("fp16", torch.float16)
    with pytest.raises(ValueError, match="fp16 trains on GPUs only"):
        training_precision("fp16", "cpu")


def test_bf16_training_step_runs_the_tower_in_bf16_and_stays_close_to_fp32():
    """Mixed precision: the image tower under bf16 autocast, the header, VCS and loss in fp32; the gradients
    reach the fp32 master weights, and the logits stay within bf16 rounding of the fp32 step's."""
    torch.manual_seed(0)
    model = engine.load_model("bike-tiny", random_init=True, frames=4)
    text = model.label_features("a,b,c")
    header = new_header(model.embed_dim, int(model.clip.ln_final.weight.shape[0]), 2, 0)
    learner = VideoLearner(model.clip.visual, model.clip.logit_scale, text.cls, text.tokens, header)
    s = model.image_size
    x = normalize(torch.randint(0, 256, (3, 4, s, s, 3), generator=torch.Generator().manual_seed(0),
                                dtype=torch.uint8))
    y = torch.tensor([0, 1, 2])
    ref = learner(x)
    learner.amp = torch.bfloat16
    feats = learner.frame_features(x)
    assert feats.dtype == torch.float32                       # back in fp32 for the header and VCS
    out = learner(x)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)           # the tower really ran in bf16
    assert torch.allclose(out.detach(), ref.detach(), atol=0.05 * float(ref.detach().abs().max()))
    loss = bike_loss(batch_logits(out, y), y)
    loss.backward()
    grads = [p.grad for p in learner.visual.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_train_refuses_fp16_on_cpu_workers_and_has_no_branches_option(data, tmp_path, capsys):
    rc = bike_main(["train", data["list"], "--labels", data["labels"], "--out", str(tmp_path / "r"), *FAST,
                    "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "fp16 trains on GPUs only" in err[-1] and not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        bike_main(["train", data["list"], "--labels", data["labels"], "--out", str(tmp_path / "r"), *FAST,
                   "--branches", "video"])
    assert "unrecognized arguments: --branches" in capsys.readouterr().err
