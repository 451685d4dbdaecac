"""The BIKE model object: text features, weight loading paths, attributes branch and fusion."""
import os

import pytest
import torch

import engine
from engine.model.attributes import AttributeHead, attribute_scores, attribute_sentence, fuse, top_attributes
from engine.model.loading import CheckpointError, WeightsUnavailable, load_weights
from engine.model.spotting import concept_spotting
from engine.model.temporal import TemporalTransformer

TINY = "bike-tiny"


def test_text_features_cls_is_open_clip_encode_text_and_tokens_cover_77_positions(tiny_model):
    prompts = ["This is a video about dog", "This is a video about surfing crowd"]
    cls, tokens = tiny_model.encode_text(prompts)
    assert cls.shape == (2, 64) and tokens.shape == (2, 77, 64)
    ids = tiny_model.tokenizer(prompts)
    with torch.no_grad():
        ref = tiny_model.clip.encode_text(ids)
    torch.testing.assert_close(cls, ref)
    eot = ids.argmax(-1)
    torch.testing.assert_close(tokens[torch.arange(2), eot], cls)
    # padding positions after EOT are real features (LN + projection of the padding states), not zeros
    assert tokens[0, eot[0] + 1:].norm(dim=-1).min() > 0


def test_label_prompts_use_the_single_template(tiny_model):
    f = tiny_model.label_features("dog,cat")
    assert f.texts == ("This is a video about dog", "This is a video about cat")


def test_encode_frames_is_per_frame_image_tower(tiny_model):
    x = torch.randn(2, 3, 3, 224, 224)
    feats = tiny_model.encode_frames(x)
    with torch.no_grad():
        ref = tiny_model.clip.encode_image(x[1, 2:3])
    assert feats.shape == (2, 3, 64)
    torch.testing.assert_close(feats[1, 2:3], ref, atol=1e-5, rtol=1e-5)


def _bike_checkpoint(tmp_path, with_header=True):
    """A checkpoint in the released BIKE layout (module. prefixes, OpenAI-layout CLIP weights)."""
    src = load_weights(TINY, random_init=True, seed=7, quick_gelu=True)
    torch.manual_seed(3)
    header = TemporalTransformer(width=64, heads=1)
    with torch.no_grad():
        for p in header.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = {"epoch": 3, "model_state_dict": {"module." + k: v for k, v in src.clip.state_dict().items()},
            "fusion_model_state_dict": ({"module." + k: v for k, v in header.state_dict().items()}
                                        if with_header else {})}
    path = tmp_path / "bike.pt"
    torch.save(ckpt, path)
    return path, src.clip.eval(), header.eval()


def test_released_checkpoint_loads_and_reproduces_logits(tmp_path):
    path, clip, header = _bike_checkpoint(tmp_path)
    model = engine.load_model(TINY, checkpoint=str(path), lexicon="hmdb51")
    assert model.header is not None and model.meta["checkpoint"] == str(path)
    for k, v in clip.state_dict().items():                 # fp32 weights land exactly
        assert torch.equal(model.clip.state_dict()[k], v), k
    frames = torch.randn(2, 8, 3, 224, 224)
    labels = ["dog", "cat", "surfing crowd"]
    with torch.no_grad():
        raw = torch.stack([clip.encode_image(f) for f in frames])            # (B, T, D)
        ids = model.tokenizer([f"This is a video about {n}" for n in labels])
        from engine.model.text import text_features
        cls, tok = text_features(clip, ids)
        expected = concept_spotting(header(raw), tok, cls).logits
    got = model.video_logits(model.encode_frames(frames), *model.encode_text(
        [f"This is a video about {n}" for n in labels]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and the header matters: without it the logits differ
    assert not torch.allclose(concept_spotting(raw, tok, cls).logits, expected, atol=1e-4)


def test_checkpoint_without_header_means_no_header(tmp_path):
    path, _, _ = _bike_checkpoint(tmp_path, with_header=False)
    assert engine.load_model(TINY, checkpoint=str(path)).header is None


def test_local_weights_file(tmp_path):
    src = load_weights(TINY, random_init=True, seed=11)
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in src.clip.state_dict().items()}}, path)
    model = engine.load_model(TINY, pretrained=str(path))
    x = torch.randn(1, 2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_frames(x)[0], src.clip.eval().encode_image(x[0]))
    assert model.meta["weights_sha"] and not model.random_init


def test_bad_weight_files_name_the_file_and_reason(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        engine.load_model(TINY, checkpoint=str(junk))
    with pytest.raises(CheckpointError, match="file not found"):
        engine.load_model(TINY, checkpoint=str(tmp_path / "missing.pt"))
    other = tmp_path / "other.pt"
    torch.save({"model_state_dict": {"visual.proj": torch.zeros(3, 3)}}, other)
    with pytest.raises(CheckpointError, match="do not fit model bike-tiny"):
        engine.load_model(TINY, checkpoint=str(other))
    plain = tmp_path / "plain.pt"
    torch.save({"model_state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        engine.load_model(TINY, pretrained=str(plain))


def test_missing_pretrained_weights_say_how_to_get_them():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(WeightsUnavailable, match="--random-init"):
        engine.load_model("ViT-B-32", pretrained="openai")


def test_random_init_is_seeded_and_named(tiny_model):
    again = engine.load_model(TINY, random_init=True, lexicon="hmdb51")
    for (k, a), b in zip(tiny_model.clip.state_dict().items(), again.clip.state_dict().values()):
        assert torch.equal(a, b), k
    assert "RANDOM WEIGHTS" in tiny_model.describe() and tiny_model.random_init


# ---- attributes branch (docs/model.md §5) ----------------------------------------------------------------------

def test_attribute_sentence_format():
    assert attribute_sentence(["a", "b c", "d"]) == "This is a video about a,b c,d"


def test_top_attributes_uses_mean_raw_frame_feature():
    lex = torch.eye(4)
    frames = torch.tensor([[[1.0, 0, 0, 0], [0, 3.0, 0, 0]]])       # mean = (0.5, 1.5, 0, 0)
    scores, idx = top_attributes(frames, lex, k=2)
    assert idx.tolist() == [[1, 0]]
    torch.testing.assert_close(scores[0], torch.tensor([1.5, 0.5]) / (2.5 ** 0.5))


def test_attribute_head_keys_match_released_code_and_zero_shot_is_cosine():
    head = AttributeHead(8)
    assert set(head.state_dict()) == {f"{n}_fc.{i}.{p}" for n in ("query", "sentence") for i in (0, 2)
                                      for p in ("weight", "bias")}
    a, c = torch.randn(3, 8), torch.randn(5, 8)
    cos = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(c, dim=-1).T
    torch.testing.assert_close(attribute_scores(a, c), cos)
    an, cn = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(c, dim=-1)
    s, q = head.sentence_fc(an), head.query_fc(cn)
    ref = torch.nn.functional.normalize(s, dim=-1) @ torch.nn.functional.normalize(q, dim=-1).T
    torch.testing.assert_close(attribute_scores(a, c, head), ref)


def test_fusion_weights():
    v, a = torch.randn(2, 6), torch.randn(2, 6)
    fused, pv, pa = fuse(v, a)
    torch.testing.assert_close(fused, 0.7 * v.softmax(-1) + 0.3 * a.softmax(-1))
    torch.testing.assert_close(fused.sum(-1), torch.ones(2))


def test_score_features_end_to_end(tiny_model):
    raw = torch.randn(3, 8, 64)
    s = tiny_model.score_features(raw, "dog,cat,bird")
    text = tiny_model.label_features("dog,cat,bird")
    spot = concept_spotting(raw, text.tokens, text.cls)          # no header: H = X
    phrases, _, sentences = tiny_model.attributes(raw)
    attr = attribute_scores(tiny_model.sentence_features(sentences), text.cls)
    torch.testing.assert_close(s.fused, 0.7 * spot.logits.softmax(-1) + 0.3 * attr.softmax(-1))
    torch.testing.assert_close(s.spotting.saliency, spot.saliency)
    assert s.sentences[0] == attribute_sentence(phrases[0]) and len(s.attributes[0]) == 5
    top = s.top(0, 2)
    assert top[0].score >= top[1].score and top[0].label in ("dog", "cat", "bird")


def test_label_text_features_are_cached_on_disk_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("BIKE_CACHE_DIR", str(tmp_path))
    first = engine.load_model(TINY, random_init=True, seed=5, lexicon="hmdb51")
    computed = first.label_features("ucf101")
    files = list((tmp_path / "text").glob("*.pt"))
    assert len(files) == 1                                      # one entry for the 101 prompts
    second = engine.load_model(TINY, random_init=True, seed=5, lexicon="hmdb51")
    second._run_text = None                                     # must not be needed: served from the cache
    cached = second.label_features("ucf101")
    assert torch.equal(cached.cls, computed.cls) and torch.equal(cached.tokens, computed.tokens)
    other = engine.load_model(TINY, random_init=True, seed=6, lexicon="hmdb51")   # other weights: own entry
    assert not torch.equal(other.label_features("ucf101").cls, computed.cls)
    files[0].write_bytes(b"damaged")                            # a damaged entry is recomputed
    third = engine.load_model(TINY, random_init=True, seed=5, lexicon="hmdb51")
    assert torch.equal(third.label_features("ucf101").cls, computed.cls)


# ---- any checkpoint architecture, read from the file (docs/model.md "Checkpoints") ---------------------

#: Two CLIP sizes with no open_clip config: 96-wide ViT with 16-px patches on 64-px images; a 128-wide,
#: one-layer ViT with 8-px patches on 40-px images, a 2-head text tower with a 32-token context and MLP ratio 2.
ODD_SIZES = [
    dict(embed_dim=48, vision_cfg=dict(image_size=64, layers=3, width=96, patch_size=16),
         text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2)),
    dict(embed_dim=32, vision_cfg=dict(image_size=40, layers=1, width=128, patch_size=8, head_width=64),
         text_cfg=dict(context_length=32, vocab_size=49408, width=128, heads=2, layers=1, mlp_ratio=2.0)),
]


def _odd_checkpoint(tmp_path, cfg, seed):
    import open_clip
    torch.manual_seed(seed)
    clip = open_clip.model.CLIP(**cfg, quick_gelu=True).eval()
    header = TemporalTransformer(width=cfg["embed_dim"], heads=max(1, cfg["text_cfg"]["width"] // 64), layers=2)
    path = tmp_path / f"odd{seed}.pt"
    torch.save({"model_state_dict": {"module." + k: v for k, v in clip.state_dict().items()},
                "fusion_model_state_dict": header.state_dict()}, path)
    return path, clip, header.eval()


@pytest.mark.parametrize("which", [0, 1])
def test_checkpoint_of_any_size_loads_without_model_name(tmp_path, which):
    cfg = ODD_SIZES[which]
    path, clip, header = _odd_checkpoint(tmp_path, cfg, seed=20 + which)
    model = engine.load_model(None, checkpoint=str(path), lexicon="hmdb51")
    v = cfg["vision_cfg"]
    assert model.name.startswith("inferred-ViT-") and f"-p{v['patch_size']}-i{v['image_size']}-" in model.name
    assert model.image_size == v["image_size"] and model.crop == v["image_size"]
    for k, t in clip.state_dict().items():                          # every weight, exactly
        assert torch.equal(model.clip.state_dict()[k], t), k
    x = torch.randn(2, 3, 3, v["image_size"], v["image_size"])
    prompts = ["This is a video about dog", "This is a video about cat"]
    with torch.no_grad():
        raw = torch.stack([clip.encode_image(f) for f in x])
        from engine.model.text import text_features
        cls, tok = text_features(clip, model.tokenizer(prompts))
        expected = concept_spotting(header(raw), tok, cls).logits
    assert tok.shape[1] == cfg["text_cfg"]["context_length"]
    torch.testing.assert_close(model.video_logits(model.encode_frames(x), *model.encode_text(prompts)), expected)
    # the name it was given resolves again to the same architecture (a store reloads its model by name)
    again = engine.load_model(model.name, checkpoint=str(path), lexicon="hmdb51")
    assert again.name == model.name and again.meta["weights_sha"] == model.meta["weights_sha"]
    # --model still overrides; a mismatch names the model's shape and the file's architecture
    with pytest.raises(CheckpointError, match=r"do not fit model bike-tiny.*file \(.*vs model \(.*the file holds ViT "
                                              rf"patch {v['patch_size']}, image {v['image_size']}"):
        engine.load_model(TINY, checkpoint=str(path))


def test_architecture_of_a_standard_size_is_its_open_clip_name(tmp_path):
    from engine.model.architecture import infer_config, resolve_name
    src = load_weights(TINY, random_init=True, seed=2, quick_gelu=True)
    assert resolve_name(src.clip.state_dict())[0] == TINY
    path = tmp_path / "named.pt"
    torch.save({"model_state_dict": src.clip.state_dict()}, path)
    assert engine.load_model(None, checkpoint=str(path)).name == TINY
    cfg = infer_config(src.clip.state_dict())
    assert cfg["vision_cfg"]["patch_size"] == 32 and cfg["vision_cfg"]["image_size"] == 224
    assert cfg["text_cfg"]["layers"] == 2 and cfg["embed_dim"] == 64


def test_fingerprint_of_fp32_fused_models_is_unchanged(tiny_model):
    assert set(tiny_model.fingerprint()) == {"name", "weights", "frames", "lexicon", "random_init"}
    assert tiny_model.precision.name == "fp32" and tiny_model.branches == "fused"
