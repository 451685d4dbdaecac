"""Checkpoints are data, not code: safe loading only, --trust-checkpoint for legacy pickles, hashes before load."""
from __future__ import annotations

import pickle
import re

import pytest
import torch

import engine
from engine.model.loading import CheckpointError, file_sha256, load_weights
from index.store import Store
from index.store.storemodel import ModelMismatch, load_store_model
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


# ------------------------------------------------------------------------- helpers for crafted files

def _cli_one_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("bike: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def _row_naming(store, model_id: str, **fields) -> None:
    """Commit a ``models`` row (a copy of the store's first, with ``fields`` changed) as a crafted store would."""
    import pyarrow as pa
    row = store.read("models").to_pylist()[0]
    row.update(model_id=model_id, **fields)
    store.write_batch({"models": pa.Table.from_pylist([row], schema=store.read("models").schema)}, model_id, {})


def _random_store(tmp_path):
    """A store tagged (hand-made features) by the seeded random bike-tiny model → (store, model_id)."""
    model = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    labels = engine.load_labels("a dog,a cat,surfing")
    store = Store(tmp_path / "st", create=True)
    rng = __import__("numpy").random.default_rng(0)
    mid = add_video(store, model, labels, "v1", random_clips(rng, 2, model.frames, model.embed_dim))
    return store, mid


# ------------------------------------------------------------------------- 1. TorchScript archives are code

def _torchscript(path, state: dict, marker) -> None:
    """A real TorchScript archive holding ``state`` (as buffers of nested modules, so its ``state_dict()`` is
    ``state``) and a submodule whose ``__setstate__`` — run by ``torch.jit.load`` — writes ``marker`` with
    ``torch.from_file(..., shared=True)``: the file write the issue describes."""
    from typing import Tuple

    from torch import nn

    class Payload(nn.Module):
        def __init__(self):
            super().__init__()
            self.marker = ""
            self.buf = torch.zeros(1, dtype=torch.uint8)

        def forward(self, x):
            return x

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool]:
            return (self.marker, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool]) -> None:
            self.marker = state[0]
            self.training = state[1]
            if self.marker != "":
                self.buf = torch.from_file(self.marker, True, 16, dtype=torch.uint8).fill_(65)

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.payload = Payload()

        def forward(self, x):
            return self.payload(x)

    root = Root()
    for key, t in state.items():
        *parts, leaf = key.split(".")
        mod = root
        for p in parts:
            if not isinstance(getattr(mod, p, None), nn.Module):
                mod.add_module(p, nn.Module())
            mod = getattr(mod, p)
        mod.register_buffer(leaf, t.clone())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(root)
    scripted.payload.marker = str(marker)
    scripted.save(str(path))


@pytest.fixture
def scripted(tmp_path):
    """(a TorchScript archive of the seeded bike-tiny CLIP weights that writes a file when loaded, marker)."""
    src = load_weights(TINY, random_init=True, seed=5, quick_gelu=True)
    path, marker = tmp_path / "clip_ts.pt", tmp_path / "ts.PWNED"
    _torchscript(path, src.clip.state_dict(), marker)
    assert not marker.exists()
    return path, marker, src


def test_torchscript_is_refused_through_pretrained_and_checkpoint(scripted, tmp_path, capsys):
    import jobs.cli
    path, marker, _ = scripted
    for kwargs in ({"pretrained": str(path)}, {"checkpoint": str(path)}):
        with pytest.raises(CheckpointError, match=r"TorchScript archive.*--trust-checkpoint") as e:
            engine.load_model(None, **kwargs)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
        assert not marker.exists()
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    for flag in ("--pretrained", "--checkpoint"):
        assert jobs.cli.main(["classify", str(video), flag, str(path), "--labels", "a,b"]) == 2
        err = _cli_one_line(capsys)
        assert err.startswith(f"bike: error: {path}: ") and "TorchScript" in err and "--trust-checkpoint" in err
        assert not marker.exists()


def test_torchscript_named_by_a_store_is_refused(scripted, tmp_path, capsys):
    import jobs.cli
    path, marker, _ = scripted
    store, mid = _random_store(tmp_path)          # its row now names the archive, with the archive's own hash
    _row_naming(store, mid, name=TINY, random_init=False, pretrained=str(path), checkpoint=None,
                weights_sha=file_sha256(str(path)))
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_store_model(store, mid)
    assert not marker.exists()
    assert jobs.cli.main(["search", "--store", str(store.root), "a dog"]) == 2
    assert "TorchScript" in _cli_one_line(capsys) and not marker.exists()


def test_torchscript_loads_only_when_trusted_and_says_so(scripted, capsys):
    path, marker, src = scripted
    w = load_weights(None, pretrained=str(path), trust_checkpoint=True)
    assert marker.exists()                                   # trusting it means letting its code run
    assert "--trust-checkpoint" in capsys.readouterr().err
    assert w.meta["name"] == TINY
    for k, v in src.clip.state_dict().items():
        assert torch.equal(w.clip.state_dict()[k], v), k


# ------------------------------------------------------------------------- 2. shapes are checked against storage

def _crafted_huge(path, width: int = 8192, layers: int = 48) -> None:
    """The issue's file: every tensor of an ``width``-wide, ``layers``-layer CLIP as a stride-0 view of one
    2-byte storage (``torch.zeros(()).expand(shape)``): a few tens of KB that declare billions of values."""
    from open_clip import factory
    name = f"crafted-{width}x{layers}"
    factory._MODEL_CONFIGS[name] = {
        "embed_dim": width, "vision_cfg": {"image_size": 224, "layers": layers, "width": width, "patch_size": 14},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": width // 64,
                     "layers": layers}}
    try:
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in open_clip_create(name).state_dict().items()}
    finally:
        del factory._MODEL_CONFIGS[name]
    z = torch.zeros((), dtype=torch.float16)
    torch.save({"model_state_dict": {k: z.expand(s) for k, s in shapes.items()}}, path)


def open_clip_create(name):
    import open_clip
    return open_clip.create_model(name, pretrained=None, device="meta")


def _run_bounded(argv, max_rss: float, timeout: float = 240.0):
    """``python -m jobs.cli argv`` under tests/bounded.py → (exit status, stderr, peak RSS in bytes, seconds)."""
    import sys

    from bounded import run_bounded
    rc, _, err, peak, secs = run_bounded([sys.executable, "-m", "jobs.cli", *map(str, argv)], max_rss, timeout)
    return rc, err, peak, secs


#: Peak RSS allowed to a `bike classify` that refuses a file (torch + open_clip + bike-tiny need ~0.9 GB here;
#: building what the crafted file declares, 8192 wide and 48 layers, would take ~150 GB).
REFUSE_RSS = 1.5e9


@pytest.mark.timeout(300)
def test_stride0_file_declaring_a_huge_clip_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.pt"
    _crafted_huge(path)
    assert path.stat().st_size < 256 << 10                 # ~130 KB on disk (pickle metadata only)
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    rc, err, peak, secs = _run_bounded(["classify", video, "--checkpoint", path, "--labels", "a,b"], REFUSE_RSS)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, (rc, err[-2000:], peak)
    assert lines[0].startswith(f"bike: error: {path}: ") and "stride-0" in lines[0]
    assert peak < REFUSE_RSS, peak
    for kwargs in ({"checkpoint": str(path)}, {"pretrained": str(path)}):   # in this process too, both ways
        with pytest.raises(CheckpointError, match="stride-0"):
            load_weights(None, **kwargs)


def test_tensors_claiming_more_than_their_storage_are_refused(tmp_path):
    sd = load_weights(TINY, random_init=True, seed=1, quick_gelu=True).clip.state_dict()
    shared = torch.zeros(4000)
    cases = {   # visual.proj is (64, 64): here 4096 values over 127 stored ones (overlapping strides)
        "overlap": ({**sd, "visual.proj": torch.zeros(127).as_strided((64, 64), (1, 1))}, "but its storage holds"),
        # 3000 views of one 16 KB storage: 48 MB claimed (a model of such views would be built full size)
        "views": ({**sd, **{f"junk.{i}": shared.view(40, 100) for i in range(3000)}}, "tensors claim .* stores"),
    }
    for case, (state, says) in cases.items():
        path = tmp_path / f"{case}.pt"
        torch.save({"model_state_dict": state}, path)
        with pytest.raises(CheckpointError) as e:
            load_weights(None, checkpoint=str(path))
        reason = str(e.value)[len(str(path)):]
        assert re.search(says, reason) and "\n" not in reason, (case, reason)


def test_inferred_sizes_are_capped_and_admit_vit_l_336_and_vit_h():
    from engine.model.architecture import CAPS, ArchitectureError, infer_config, resolve_name
    for name in ("ViT-L-14-336", "ViT-H-14", "ViT-bigG-14", "ViT-B-32"):
        with torch.device("meta"):
            state = open_clip_create(name).state_dict()
        cfg = infer_config(state)
        assert cfg["vision_cfg"]["width"] <= CAPS["width"], name
    with torch.device("meta"):
        state = open_clip_create("ViT-L-14-336").state_dict()
    assert resolve_name(state)[0] == "ViT-L-14-336"
    too = [("visual.conv1.weight", (4096, 3, 14, 14), "vision width 4096"),
           ("visual.conv1.weight", (1024, 3, 128, 128), "patch size 128"),
           ("positional_embedding", (77, 4096), "text width 4096"),
           ("positional_embedding", (4096, 768), "context length 4096"),
           ("token_embedding.weight", (1 << 20, 768), "vocabulary size 1048576"),
           ("token_embedding.weight", (1000, 768), "vocabulary size 1000 is below 49408"),
           ("transformer.resblocks.0.mlp.c_fc.weight", (768 * 9, 768), "text MLP ratio 9")]
    for key, shape, says in too:
        bad = dict(state)
        bad[key] = torch.empty(shape, device="meta")
        with pytest.raises(ArchitectureError, match=says):
            infer_config(bad)
    deep = dict(state)
    deep.update({f"visual.transformer.resblocks.{i}.ln_1.weight": torch.empty(1024, device="meta")
                 for i in range(24, 100)})
    with pytest.raises(ArchitectureError, match="vision layers 100 is over the cap of 64"):
        infer_config(deep)


# ------------------------------------------------------------------------- 3. files a store names: regular, capped

@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_store_naming_dev_zero_or_a_fifo_never_hangs(tmp_path, capsys, kind):
    import os

    import jobs.cli
    if kind == "fifo":
        special = tmp_path / "lexicon.csv"
        os.mkfifo(special)
    else:
        special = "/dev/zero"
    store, mid = _random_store(tmp_path)
    _row_naming(store, mid, lexicon=str(special))                 # models.lexicon
    assert load_store_model(store, mid).lexicon.name == engine.DEFAULTS.lexicon     # ignored, not read
    with pytest.raises(engine.LabelError, match="not a regular file"):
        engine.load_labels(str(special))
    assert jobs.cli.main(["search", "--store", str(store.root), "a dog", "--format", "json"]) == 0
    capsys.readouterr()
    # the weights file a row names (checkpoint or pretrained): refused on sight, one line
    for field in ("checkpoint", "pretrained"):
        _row_naming(store, mid, **{"random_init": False, "checkpoint": None, "pretrained": None,
                                   field: str(special), "weights_sha": "0" * 64})
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_store_model(store, mid)
        assert jobs.cli.main(["search", "--store", str(store.root), "a dog"]) == 2
        err = _cli_one_line(capsys)
        assert err.startswith(f"bike: error: {special}: ") and "not a regular file" in err


def test_oversized_label_file_is_refused(tmp_path):
    from engine.model.safefile import MAX_LABEL_FILE_BYTES
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(MAX_LABEL_FILE_BYTES + 1)                       # sparse: no disk used
    with pytest.raises(engine.LabelError, match="cap"):
        engine.load_labels(str(big))


# ------------------------------------------------------------------------- 4. non-finite weights and outputs

def _variant(tmp_path, name: str, change) -> "tuple":
    """A bike-tiny checkpoint whose ``visual.proj`` is changed by ``change`` (in place) → path."""
    sd = dict(load_weights(TINY, random_init=True, seed=7, quick_gelu=True).clip.state_dict())
    sd["visual.proj"] = sd["visual.proj"].clone()
    change(sd["visual.proj"])
    path = tmp_path / f"{name}.pt"
    torch.save({"model_state_dict": sd}, path)
    return path


def test_nan_weights_are_refused_at_load_naming_the_tensor(tmp_path, capsys):
    import jobs.cli
    path = _variant(tmp_path, "nan", lambda t: t.__setitem__((0, 0), float("nan")))
    with pytest.raises(CheckpointError, match="visual.proj holds NaN or inf"):
        load_weights(None, checkpoint=str(path))
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    assert jobs.cli.main(["classify", str(video), "--checkpoint", str(path), "--labels", "a,b"]) == 2
    err = _cli_one_line(capsys)
    assert err.startswith(f"bike: error: {path}: ") and "visual.proj" in err


def test_classify_gives_an_error_for_non_finite_scores(tmp_path, capsys):
    import json

    import jobs.cli
    path = _variant(tmp_path, "huge", lambda t: t.mul_(1e38))     # finite weights that overflow on any input
    load_weights(None, checkpoint=str(path))                      # loads: every weight is finite
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    assert jobs.cli.main(["classify", str(video), "--checkpoint", str(path), "--labels", "a,b",
                          "--format", "jsonl", "--precision", "fp32"]) == 2     # a video that failed: exit 2
    out = capsys.readouterr()
    (rec,) = [json.loads(ln) for ln in out.out.splitlines() if ln.strip()]
    assert "NaN or inf" in rec["error"] and "Traceback" not in out.err


@pytest.mark.slow                       # two real `bike tag` runs on Ray: ~55 s on this machine
def test_tag_refuses_nan_weights_and_stores_non_finite_scores_as_error_rows(ray_cluster, tmp_path, capsys):
    import jobs.cli
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    nan = _variant(tmp_path, "nan", lambda t: t.__setitem__((0, 0), float("inf")))
    store = tmp_path / "s"
    common = ["--labels", "a,b", "--no-index", "--no-progress", "--precision", "fp32"]
    assert jobs.cli.main(["tag", str(video), "--store", str(store), "--checkpoint", str(nan), *common]) == 2
    err = _cli_one_line(capsys)
    assert err.startswith(f"bike: error: {nan}: ") and "visual.proj holds NaN or inf" in err
    huge = _variant(tmp_path, "huge", lambda t: t.mul_(1e38))
    assert jobs.cli.main(["tag", str(video), "--store", str(store), "--checkpoint", str(huge), *common]) == 0
    con = Store(store).connect()
    try:
        rows = con.execute("SELECT status, error FROM videos").fetchall()
        labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
    finally:
        con.close()
    assert len(rows) == 1 and rows[0][0] == "error" and "NaN or inf" in rows[0][1], rows
    assert labels == 0
