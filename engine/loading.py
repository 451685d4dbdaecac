"""Where the weights come from: an open_clip pretrained tag, a local weights file, or a released BIKE checkpoint.

* ``pretrained="openai"`` (or any open_clip tag): open_clip downloads and caches the weights on first use.
* ``pretrained="/path/weights.pt"``: a local CLIP state dict (OpenAI/open_clip layout, a training checkpoint
  with ``state_dict``, or an OpenAI TorchScript archive).
* Without a model name, the CLIP architecture of a checkpoint or weights file is read from its tensors'
  shapes (:mod:`engine.architecture`), whatever its size; a name given overrides it.
* ``checkpoint="/path/bike.pt"``: a released BIKE checkpoint: ``model_state_dict`` (CLIP, OpenAI layout) and
  ``fusion_model_state_dict`` (the temporal header); bike's own checkpoints add ``attributes_state_dict``
  and ``labels``. A leading ``module.`` (DataParallel) is stripped everywhere.
* ``random_init=True``: seeded random weights, for tests and offline demos; named in every output.

No weights and no ``random_init`` → :class:`WeightsUnavailable` with what to do about it.

Safety. A ``.pt`` file is a pickle, and unpickling can run any code the file's author wrote. Files are
therefore loaded with ``torch.load(weights_only=True)`` only (tensors, numbers, strings, lists, dicts): a
file that needs more is refused with a clear error, never retried with full unpickling. A legacy file you
trust (one you made, or a release you verified) loads with ``trust_checkpoint=True`` (``bike ...
--trust-checkpoint``), which prints a warning. When the expected SHA-256 is known (a store's ``models`` row
names the checkpoint that tagged it), the file is hashed *before* it is opened as a checkpoint and refused
on a mismatch (``expect_sha``). OpenAI's TorchScript archives are read with ``torch.jit.load``, whose
unpickler only rebuilds tensors and TorchScript code objects (no Python code runs while loading).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import zipfile
from dataclasses import dataclass, field

import open_clip
import torch
from torch import nn

from . import CONFIGS
from .config import DEFAULTS

open_clip.add_model_config(CONFIGS)          # the engine's own configs (bike-tiny, ...)

# Keys OpenAI's TorchScript archives carry beside the weights.
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


class WeightsUnavailable(RuntimeError):
    """No usable weights; the message says how to get them."""


class CheckpointError(ValueError):
    """A weights or checkpoint file that cannot be used; the message names the file and the reason."""


@dataclass
class Weights:
    clip: nn.Module
    header_state: "dict | None" = None
    attributes_state: "dict | None" = None
    labels: "list[str] | None" = None
    meta: dict = field(default_factory=dict)   # name, pretrained, checkpoint, weights_sha, random_init
    #: few-shot adapted text side (``bike adapt --mode fast``): {"names": [...], "cls": (C, D), "tokens": (C, 77, D)}
    class_features: "dict | None" = None


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def strip_module(state: dict) -> dict:
    """Remove a leading ``module.`` (DataParallel / DDP) from every key."""
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def check_sha(path: str, expect_sha: "str | None") -> str:
    """SHA-256 of ``path``; :class:`CheckpointError` when ``expect_sha`` is given and differs. Called before
    the file is loaded, so a swapped file is refused before any of it is unpickled."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found" if not os.path.exists(path) else
                              f"{path}: not a regular file")
    try:
        sha = file_sha256(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it: {e.strerror or e}") from None
    if expect_sha and sha != expect_sha:
        raise CheckpointError(f"{path}: SHA-256 {sha[:16]}… is not the expected {expect_sha[:16]}… (the file "
                              "changed since it was recorded); refusing to load it")
    return sha


def _first_line(e: BaseException) -> str:
    """The informative line of a torch.load error (its boilerplate lines skipped)."""
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(boiler) and "WeightsUnpickler error" not in ln]
    return ((useful or lines or [type(e).__name__])[0])[:300]


def read_state_file(path: str, trust: bool = False) -> dict:
    """Load a ``.pt``/``.pth`` file as a dict of tensors (or a dict of such dicts): ``weights_only`` loading
    only, unless ``trust`` (see the module docstring)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found" if not os.path.exists(path) else
                              f"{path}: not a regular file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") for n in z.namelist()):   # TorchScript (OpenAI release)
                return torch.jit.load(path, map_location="cpu").state_dict()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported below; never retried with full unpickling unless trusted
        first = e
    if "Weights only load failed" not in str(first):
        raise CheckpointError(f"{path}: not a PyTorch weights file ({_first_line(first)})") from None
    if not trust:
        raise CheckpointError(
            f"{path}: this file needs full unpickling, which can run code hidden in it ({_first_line(first)}); "
            "only if you trust where it came from, pass --trust-checkpoint") from None
    print(f"bike: warning: {path}: loading with full unpickling (--trust-checkpoint): code in this file runs "
          "with your permissions", file=sys.stderr, flush=True)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a PyTorch weights file ({_first_line(e)})") from None


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs download failures and random inits on the root logger; we report them ourselves."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)


def _create(name: str, quick_gelu: bool, device="cpu") -> nn.Module:
    try:
        with _quiet_open_clip():
            return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu, device=device)
    except RuntimeError as e:
        if "not found" in str(e).lower() or "unknown model" in str(e).lower():
            raise CheckpointError(f"{name}: unknown open_clip model name (see open_clip.list_models())") from None
        raise


def _file_architecture(state: dict) -> str:
    """What a mismatch message says about the file's own architecture."""
    from .architecture import ArchitectureError, describe, infer_config
    try:
        return f"; the file holds {describe(infer_config(state))} (without --model it loads as it is)"
    except ArchitectureError:
        return ""


def _load_clip_state(clip: nn.Module, state: dict, path: str, name: str, explain=None) -> None:
    state = {k: v for k, v in strip_module(state).items() if k not in _NON_WEIGHT_KEYS}
    target = clip.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(s for s in (
            f"missing {len(missing)} keys (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})" if unexpected else "",
            f"shape mismatch for {wrong[0]}: file {tuple(state[wrong[0]].shape)} vs model "
            f"{tuple(target[wrong[0]].shape)}" if wrong else "") if s)
        raise CheckpointError(f"{path}: weights do not fit model {name}: {detail}"
                              + (explain(state) if explain else ""))
    clip.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def _class_features(cf, path: str) -> "dict | None":
    """Check the stored adapted class features: names (C,), cls (C, D), tokens (C, L, D)."""
    if not cf:
        return None
    try:
        names, cls, tokens = list(cf["names"]), cf["cls"].float(), cf["tokens"].float()
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: malformed class_features ({e})") from None
    if cls.dim() != 2 or tokens.dim() != 3 or not (len(names) == cls.shape[0] == tokens.shape[0]):
        raise CheckpointError(f"{path}: class_features shapes do not agree: {len(names)} names, cls "
                              f"{tuple(cls.shape)}, tokens {tuple(tokens.shape)}")
    return {"names": names, "cls": cls, "tokens": tokens}


def _architecture(name: "str | None", state, hint: "str | None", path: str) -> str:
    """The model name for the CLIP weights in ``path``: ``name`` when given (``--model`` overrides), else
    read from the tensors' shapes (engine/architecture.py)."""
    from .architecture import ArchitectureError, describe, is_inferred, resolve_name
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the CLIP weights are not a state dict")
    state = strip_module(state)
    if name and not is_inferred(name):
        return name
    try:
        found, cfg = resolve_name(state, hint)
    except ArchitectureError as e:
        raise CheckpointError(f"{path}: cannot read the CLIP architecture from the file: {e}") from None
    if is_inferred(name) and name != found:
        raise CheckpointError(f"{path}: the file holds {describe(cfg)} ({found}), not {name}")
    return found


def load_weights(name: "str | None", pretrained: "str | None" = None, checkpoint: "str | None" = None,
                 random_init: bool = False, seed: int = 0, quick_gelu: "bool | None" = None,
                 trust_checkpoint: bool = False, expect_sha: "str | None" = None) -> Weights:
    """Resolve the weights per the module docstring. Everything is float32 on the CPU. ``expect_sha``: the
    SHA-256 a weights/checkpoint file must have (checked before loading it); ``trust_checkpoint``: allow full
    unpickling of a legacy file (a warning is printed). ``name`` None with a checkpoint or weights file: the
    architecture is read from the file's shapes."""
    weights_file = bool(pretrained) and os.path.exists(pretrained)
    if not checkpoint and not weights_file:
        name = name or DEFAULTS.model
    meta = {"name": name, "pretrained": None, "checkpoint": None, "weights_sha": None, "random_init": False}
    if checkpoint:
        sha = check_sha(checkpoint, expect_sha)
        ckpt = read_state_file(checkpoint, trust=trust_checkpoint)
        if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt:
            raise CheckpointError(f"{checkpoint}: not a BIKE checkpoint (no 'model_state_dict'); "
                                  "for plain CLIP weights use --pretrained FILE")
        explicit = bool(name) and not name.startswith("inferred-")
        name = _architecture(name, ckpt["model_state_dict"], ckpt.get("model_name"), checkpoint)
        meta["name"] = name
        # released checkpoints are OpenAI CLIP (QuickGELU); bike's own record what they were trained with
        clip = _create(name, bool(ckpt.get("quick_gelu", True)) if quick_gelu is None else quick_gelu)
        _load_clip_state(clip, ckpt["model_state_dict"], checkpoint, name,
                         _file_architecture if explicit else None)
        header = strip_module(ckpt.get("fusion_model_state_dict") or {}) or None
        attrs = ckpt.get("attributes_state_dict") or ckpt.get("attributes_model_state_dict")
        meta.update(checkpoint=os.path.abspath(checkpoint), weights_sha=sha,
                    random_init=bool(ckpt.get("random_init")))      # trained/adapted from random weights
        return Weights(clip, header, strip_module(attrs) if attrs else None, ckpt.get("labels"), meta,
                       _class_features(ckpt.get("class_features"), checkpoint))
    if weights_file:
        sha = check_sha(pretrained, expect_sha)
        state = read_state_file(pretrained, trust=trust_checkpoint)
        if isinstance(state, dict) and "model_state_dict" in state:
            raise CheckpointError(f"{pretrained}: this is a BIKE checkpoint; pass it with --checkpoint")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        explicit = bool(name) and not name.startswith("inferred-")
        name = meta["name"] = _architecture(name, state, None, pretrained)
        jit = zipfile.is_zipfile(pretrained) and any(
            n.endswith("constants.pkl") for n in zipfile.ZipFile(pretrained).namelist())
        clip = _create(name, jit if quick_gelu is None else quick_gelu)
        _load_clip_state(clip, state, pretrained, name, _file_architecture if explicit else None)
        meta.update(pretrained=os.path.abspath(pretrained), weights_sha=sha)
        return Weights(clip, meta=meta)
    if pretrained:
        try:
            with _quiet_open_clip():
                clip = open_clip.create_model(name, pretrained=pretrained, device="cpu", **(
                    {} if quick_gelu is None else {"force_quick_gelu": quick_gelu}))
        except Exception as e:  # noqa: BLE001 - every failure here means "no weights"
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)[:6]) or "none"
            raise WeightsUnavailable(
                f"cannot load open_clip weights {name!r} / {pretrained!r}: {str(e).splitlines()[0][:200]}\n"
                f"  fix: run once with internet access so open_clip caches them (tags for {name}: {tags}),\n"
                f"       or pass --pretrained /path/to/weights.pt or --checkpoint /path/to/bike_checkpoint.pt,\n"
                f"       or pass --random-init to run with random weights (labels are then meaningless)"
            ) from None
        meta.update(pretrained=pretrained, weights_sha=f"open_clip:{name}:{pretrained}")
        return Weights(clip.float(), meta=meta)
    if random_init:
        torch.manual_seed(seed)
        clip = _create(name, bool(quick_gelu))
        meta.update(random_init=True, weights_sha=f"random-init:{name}:seed{seed}")
        return Weights(clip, meta=meta)
    raise WeightsUnavailable("no weights given: pass --pretrained TAG|FILE, --checkpoint FILE, or --random-init")
