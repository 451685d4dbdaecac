"""Precision (engine/model/precision.py): what `auto` picks, that reduced precision really stores the weights in it,
stays close to fp32, and is recorded everywhere; fp32 stays exact."""
import json

import pytest
import torch

import engine
from engine.model import precision as P
from engine.model.textcache import cache_key

TINY = "bike-tiny"


def test_auto_picks_by_device_and_cpu_flags(monkeypatch):
    assert P.resolve("auto", "cuda") == "fp16"
    assert P.resolve(None, "cuda:0") == "fp16"
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert P.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert P.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert P.resolve("auto", "cpu") == "fp32"
    for p in ("fp32", "bf16", "fp16"):
        assert P.resolve(p, "cpu") == p == P.resolve(p.upper(), "cuda")
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        P.resolve("int8", "cpu")


def test_cpu_casts_weights_cuda_uses_autocast():
    cpu = P.Precision.of("bf16", "cpu")
    assert cpu.weight_dtype == torch.bfloat16 and not cpu.autocast
    gpu = P.Precision.of("fp16", "cuda")
    assert gpu.weight_dtype == torch.float32 and gpu.autocast and gpu.dtype == torch.float16
    assert P.Precision.of("fp32", "cuda").weight_dtype == torch.float32


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """One BIKE checkpoint (tiny CLIP + a random temporal header) loaded at fp32 and at bf16."""
    from engine.model.loading import load_weights
    from engine.model.temporal import TemporalTransformer
    torch.manual_seed(4)
    src = load_weights(TINY, random_init=True, seed=3, quick_gelu=True)
    path = tmp_path_factory.mktemp("prec") / "bike.pt"
    torch.save({"model_state_dict": src.clip.state_dict(),
                "fusion_model_state_dict": TemporalTransformer(64, heads=1).state_dict()}, path)
    return [engine.load_model(None, checkpoint=str(path), lexicon="hmdb51", precision=p) for p in ("fp32", "bf16")]


def test_bf16_stores_towers_and_header_in_bf16_and_returns_fp32(pair):
    fp32, bf16 = pair
    assert {p.dtype for p in fp32.clip.parameters()} == {torch.float32}
    assert bf16.clip.visual.conv1.weight.dtype == torch.bfloat16
    assert bf16.clip.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert bf16.header.frame_position_embeddings.weight.dtype == torch.float32     # fp32 on the CPU (cheap)
    x = torch.randn(2, 8, 3, 224, 224)
    a, b = fp32.encode_frames(x), bf16.encode_frames(x)
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert not torch.equal(a, b)                                   # it really ran in bf16
    cos = torch.nn.functional.cosine_similarity(a.flatten(0, 1), b.flatten(0, 1), dim=-1)
    assert cos.min() > 0.999
    ha, hb = fp32.temporal(a), bf16.temporal(b)
    assert hb.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(ha.flatten(0, 1), hb.flatten(0, 1), dim=-1).min() > 0.99
    ca, cb = fp32.label_features("dog,cat,bird").cls, bf16.label_features("dog,cat,bird").cls
    assert cb.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(ca, cb, dim=-1).min() > 0.999


def test_fp32_is_exactly_open_clip(pair):
    fp32 = pair[0]
    x = torch.randn(1, 2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(fp32.encode_frames(x)[0], fp32.clip.encode_image(x[0]))


def test_precision_is_named_in_identity_and_text_cache():
    assert cache_key("w", "m", ["a"]) == cache_key("w", "m", ["a"], "fp32")
    assert cache_key("w", "m", ["a"], "bf16") != cache_key("w", "m", ["a"])


def test_classify_cli_says_which_precision_ran(tmp_path, capsys):
    from jobs.cli import main
    from tests.media import make_video
    video = tmp_path / "v.mp4"
    make_video(video, seconds=1, fps=8, size=(64, 48), pattern="testsrc")
    args = ["classify", str(video), "--model", TINY, "--random-init", "--lexicon", "hmdb51", "--labels", "a,b,c",
            "--json"]
    got = {}
    for p in ("fp32", "bf16"):
        assert main([*args, "--precision", p]) == 0
        got[p] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert got[p]["precision"] == p and f"precision {p}" in got[p]["model"]
        assert got[p]["branches"] == "fused"                       # plain (random) CLIP weights: both branches
    a = {r["label"]: r["video_score"] for r in got["fp32"]["labels"]}
    b = {r["label"]: r["video_score"] for r in got["bf16"]["labels"]}
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) < 0.01
