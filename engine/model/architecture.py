"""The CLIP architecture of a state dict, read from its shapes (docs/model.md, "Checkpoints").

A BIKE checkpoint stores CLIP in the OpenAI key layout and does not name its architecture; the authors'
loader reads it from the tensors. So does :func:`infer_config`, for Vision-Transformer towers:

    visual.conv1.weight                (width_v, 3, patch, patch)   → vision width, patch size
    visual.positional_embedding        (grid² + 1, width_v)         → image size = patch · grid
    visual.transformer.resblocks.{i}.  count                        → vision layers
    …resblocks.0.mlp.c_fc.weight       (ratio · width, width)       → MLP ratio
    text_projection                    (width_t, embed_dim)         → embedding dim D
    positional_embedding               (context, width_t)           → context length
    token_embedding.weight             (vocab, width_t)             → vocabulary size
    ln_final.weight                    (width_t,)                   → text width; heads = width / 64
    transformer.resblocks.{i}.         count                        → text layers

Heads are not visible in the shapes; like the authors' loader we take width / 64 (at least 1).

Every size read this way is capped (:data:`CAPS`) before anything is built: a file's shapes decide how much
memory the model takes, so a crafted file must not declare an 8192-wide, 48-layer CLIP. The caps admit every
open_clip ViT up to ViT-bigG-14 (ViT-L/14-336: width 1024, 24 layers, image 336; ViT-H/14: width 1280, 32
layers; bigG: width 1664, 48 layers, MLP ratio 4.92); ``--model NAME`` skips inference for anything else.
:func:`resolve_name` returns the open_clip config name that has exactly this architecture (the
checkpoint's own ``model_name`` first), or registers the inferred config under a descriptive name
(``inferred-ViT-p16-i64-v96x3-t64x2-e64``) that the same file resolves to again later.
"""
from __future__ import annotations

import re

import open_clip

#: Prefix of the names given to architectures that have no open_clip config.
INFERRED_PREFIX = "inferred-"
HEAD_WIDTH = 64


#: Largest sizes an architecture read from a file may have (docs/model.md, "Checkpoints"); the vocabulary must
#: also cover the CLIP tokenizer's 49408 tokens, which every inferred architecture uses.
CAPS = {"width": 2048, "layers": 64, "heads": 32, "embed_dim": 2048, "mlp_ratio": 8, "vocab_size": 131072,
        "context_length": 512, "patch_size": 64, "image_size": 1024}
TOKENIZER_VOCAB = 49408


class ArchitectureError(ValueError):
    """The state dict's architecture cannot be read from its shapes."""


def _layers(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def _shape(state: dict, key: str, ndim: "int | None" = None) -> tuple:
    if key not in state:
        raise ArchitectureError(f"no {key!r} in the CLIP weights")
    shape = tuple(getattr(state[key], "shape", ()))
    if ndim is not None and len(shape) != ndim:
        raise ArchitectureError(f"{key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _cap(what: str, value, cap_key: str, low: int = 1) -> None:
    """:class:`ArchitectureError` unless ``low <= value <= CAPS[cap_key]``."""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if value > CAPS[cap_key]:
        raise ArchitectureError(f"{what} {shown} is over the cap of {CAPS[cap_key]} on sizes read from a file "
                                "(--model NAME builds a named architecture instead)")
    if value < low:
        raise ArchitectureError(f"{what} {shown} is below {low}")


def _check_caps(cfg: dict) -> None:
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    _cap("embedding dim", cfg["embed_dim"], "embed_dim")
    _cap("vision width", v["width"], "width")
    _cap("vision layers", v["layers"], "layers")
    _cap("patch size", v["patch_size"], "patch_size")
    _cap("image size", v["image_size"], "image_size")
    _cap("text width", t["width"], "width")
    _cap("text layers", t["layers"], "layers")
    _cap("text heads", t["heads"], "heads")
    _cap("context length", t["context_length"], "context_length")
    _cap("vocabulary size", t["vocab_size"], "vocab_size", low=TOKENIZER_VOCAB)
    heads_v = max(1, v["width"] // v["head_width"])
    _cap("vision heads", heads_v, "heads")
    for name, c, heads in (("vision", v, heads_v), ("text", t, t["heads"])):
        if c["width"] % heads:
            raise ArchitectureError(f"{name} width {c['width']} is not a multiple of its {heads} heads")
        _cap(f"{name} MLP ratio", c.get("mlp_ratio", 4.0), "mlp_ratio", low=0)
        if c.get("mlp_ratio", 4.0) * c["width"] < 1:
            raise ArchitectureError(f"{name} MLP is empty")


def infer_config(state: dict) -> dict:
    """An open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) from an OpenAI-layout CLIP
    state dict (a leading ``module.`` already stripped)."""
    if any(k.startswith("visual.layer1.") for k in state):
        raise ArchitectureError("a ResNet image tower: its architecture is not read from the file; pass --model")
    width_v, _, patch, _ = _shape(state, "visual.conv1.weight", 4)
    tokens = _shape(state, "visual.positional_embedding", 2)[0]
    grid = round((tokens - 1) ** 0.5) if tokens > 1 else 0
    if grid < 1 or grid * grid != tokens - 1:
        raise ArchitectureError(f"visual.positional_embedding has {tokens} rows, not a square grid + 1")
    layers_v = _layers(state, "visual.transformer.resblocks.")
    embed_dim = _shape(state, "text_projection", 2)[-1]
    context, width_t = _shape(state, "positional_embedding", 2)
    vocab = _shape(state, "token_embedding.weight", 2)[0]
    layers_t = _layers(state, "transformer.resblocks.")
    if not layers_v or not layers_t:
        raise ArchitectureError("no transformer blocks found "
                                "(visual.transformer.resblocks.* / transformer.resblocks.*)")
    vision = {"image_size": patch * grid, "layers": layers_v, "width": width_v, "patch_size": patch,
              "head_width": min(HEAD_WIDTH, width_v)}
    text = {"context_length": context, "vocab_size": vocab, "width": width_t,
            "heads": max(1, width_t // HEAD_WIDTH), "layers": layers_t}
    for cfg, prefix, width in ((vision, "visual.transformer", width_v), (text, "transformer", width_t)):
        hidden = _shape(state, f"{prefix}.resblocks.0.mlp.c_fc.weight", 2)[0]
        if hidden != 4 * width and width:
            cfg["mlp_ratio"] = hidden / width
    cfg = {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text}
    _check_caps(cfg)
    return cfg


def describe(cfg: dict) -> str:
    """A short human description of a config, for messages."""
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    return (f"ViT patch {v['patch_size']}, image {v['image_size']}, vision {v['width']} wide × {v['layers']} "
            f"layers, text {t['width']} wide × {t['layers']} layers, context {t['context_length']}, "
            f"embedding {cfg['embed_dim']}")


def inferred_name(cfg: dict) -> str:
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    name = (f"{INFERRED_PREFIX}ViT-p{v['patch_size']}-i{v['image_size']}-v{v['width']}x{v['layers']}"
            f"-t{t['width']}x{t['layers']}-e{cfg['embed_dim']}")
    if t["context_length"] != 77 or t["vocab_size"] != 49408:
        name += f"-c{t['context_length']}-n{t['vocab_size']}"
    for tag, c in (("mv", v), ("mt", t)):
        if "mlp_ratio" in c:
            name += f"-{tag}{c['mlp_ratio']:g}"
    return name


def _same(cfg: dict, known: "dict | None") -> bool:
    """Whether an open_clip config ``known`` builds exactly the architecture ``cfg`` (plain ViT + text)."""
    if not known or known.get("embed_dim") != cfg["embed_dim"]:
        return False
    kv, kt = known.get("vision_cfg", {}), known.get("text_cfg", {})
    if kv.get("timm_model_name") or kt.get("hf_model_name") or not isinstance(kv.get("layers"), int):
        return False
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    kv_heads = max(1, kv.get("width", 768) // kv.get("head_width", HEAD_WIDTH))
    return (kv.get("image_size") == v["image_size"] and kv.get("patch_size") == v["patch_size"]
            and kv.get("width") == v["width"] and kv.get("layers") == v["layers"]
            and kv_heads == max(1, v["width"] // v["head_width"])
            and kv.get("mlp_ratio", 4.0) == v.get("mlp_ratio", 4.0)
            and kt.get("context_length", 77) == t["context_length"] and kt.get("vocab_size", 49408) == t["vocab_size"]
            and kt.get("width") == t["width"] and kt.get("layers") == t["layers"]
            and kt.get("heads", 8) == t["heads"] and kt.get("mlp_ratio", 4.0) == t.get("mlp_ratio", 4.0)
            and not any(kt.get(k) for k in ("no_causal_mask", "pad_id")) and kt.get("pool_type", "argmax") == "argmax"
            and not any(kv.get(k) for k in ("attentional_pool", "no_ln_pre", "final_ln_after_pool"))
            and kv.get("pool_type", "tok") == "tok")


def register(name: str, cfg: dict) -> None:
    """Make ``name`` an open_clip model config (``open_clip.create_model`` / ``get_tokenizer`` find it)."""
    from open_clip import factory
    factory._MODEL_CONFIGS[name] = cfg      # what open_clip.add_model_config fills from JSON files


def is_inferred(name: "str | None") -> bool:
    return bool(name) and name.startswith(INFERRED_PREFIX)


def resolve_name(state: dict, hint: "str | None" = None) -> "tuple[str, dict]":
    """The open_clip name for the CLIP weights ``state`` and the inferred config: ``hint`` (the checkpoint's
    own ``model_name``) when it fits, else the first open_clip config that fits, else the inferred config,
    registered under :func:`inferred_name`."""
    cfg = infer_config(state)
    if hint and not is_inferred(hint) and _same(cfg, open_clip.get_model_config(hint)):
        return hint, cfg
    for name in open_clip.list_models():
        if not is_inferred(name) and _same(cfg, open_clip.get_model_config(name)):
            return name, cfg
    name = inferred_name(cfg)
    register(name, cfg)
    return name, cfg
