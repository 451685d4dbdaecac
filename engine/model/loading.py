"""Where the weights come from: an open_clip pretrained tag, a local weights file, or a released BIKE checkpoint.

* ``pretrained="openai"`` (or any open_clip tag): open_clip downloads and caches the weights on first use.
* ``pretrained="/path/weights.pt"``: a local CLIP state dict (OpenAI/open_clip layout, a training checkpoint
  with ``state_dict``, or an OpenAI TorchScript archive).
* Without a model name, the CLIP architecture of a checkpoint or weights file is read from its tensors'
  shapes (:mod:`engine.model.architecture`), whatever its size; a name given overrides it.
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
on a mismatch (``expect_sha``). A TorchScript archive (a zip holding ``constants.pkl``, like OpenAI's own
releases) is code: ``torch.jit.load`` runs the archive's ``__setstate__`` methods, which can write any file
(``torch.from_file(..., shared=True)``). It is refused unless trusted (``--trust-checkpoint``, with a warning).

Bounds. A weights file is opened only when it is a regular file of at most 32 GiB (``engine.model.safefile``; a
FIFO or ``/dev/zero`` is refused without blocking). Before anything is built from a loaded file, every tensor's
shape is checked against the bytes stored for it (``engine.model.weightcheck``: no stride-0 or overlapping tensors),
an architecture read from shapes is capped (``engine.model.architecture.CAPS``), and the model is first built on
PyTorch's ``meta`` device (no memory) and compared key by key and shape by shape with the file, so the
memory that loading takes is bounded by the file's own bytes. Weights holding NaN or inf are refused with the
name of the first such tensor.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import warnings
import zipfile
from dataclasses import dataclass, field

import open_clip
import torch
from torch import nn

from engine import CONFIGS
from .config import DEFAULTS
from .safefile import MAX_WEIGHTS_FILE_BYTES, UnsafeFile, open_regular
from .weightcheck import UnsafeTensors, check_storage, first_nonfinite

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
    """SHA-256 of a regular file of at most :data:`MAX_WEIGHTS_FILE_BYTES` (:class:`CheckpointError` else)."""
    h = hashlib.sha256()
    with _open_weights(path) as f:
        left = MAX_WEIGHTS_FILE_BYTES + 1
        while left > 0 and (block := f.read(min(chunk, left))):
            h.update(block)
            left -= len(block)
    if left <= 0:
        raise CheckpointError(f"{path}: grew past the {MAX_WEIGHTS_FILE_BYTES >> 30} GiB cap while it was read")
    return h.hexdigest()


def _open_weights(path: str):
    """``path`` opened for reading if it is a regular weights file within the size cap (engine.model.safefile)."""
    try:
        return open_regular(path, MAX_WEIGHTS_FILE_BYTES, "weights file")
    except UnsafeFile as e:
        raise CheckpointError(f"{path}: {e}") from None


def strip_module(state: dict) -> dict:
    """Remove a leading ``module.`` (DataParallel / DDP) from every key."""
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def check_sha(path: str, expect_sha: "str | None") -> str:
    """SHA-256 of ``path``; :class:`CheckpointError` when ``expect_sha`` is given and differs. Called before
    the file is loaded, so a swapped file is refused before any of it is unpickled."""
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
    return printable((useful or lines or [type(e).__name__])[0], 300)


def _is_torchscript(f) -> bool:
    """Whether the open file ``f`` is a zip that holds ``constants.pkl`` (what ``torch.load`` itself takes for
    a TorchScript archive and hands to ``torch.jit.load``)."""
    try:
        if not zipfile.is_zipfile(f):
            return False
        f.seek(0)
        with zipfile.ZipFile(f) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except Exception:  # noqa: BLE001 - a damaged zip is not TorchScript; torch.load then says what is wrong
        return False
    finally:
        f.seek(0)


def read_state_file(path: str, trust: bool = False) -> dict:
    """Load a ``.pt``/``.pth`` file as a dict of tensors (or a dict of such dicts): ``weights_only`` loading
    only, unless ``trust`` (see the module docstring). Every tensor's storage is checked before it is
    returned (``engine.model.weightcheck``)."""
    return _read(path, trust)[0]


def _read(path: str, trust: bool) -> "tuple[object, bool]":
    """(what :func:`read_state_file` returns, whether the file was a TorchScript archive)."""
    with _open_weights(path) as f:
        jit = _is_torchscript(f)
        if jit:
            if not trust:
                raise CheckpointError(
                    f"{path}: a TorchScript archive: loading it runs the code stored in it (torch.jit.load), "
                    "which can write files; only if you trust where it came from, pass --trust-checkpoint")
            print(f"bike: warning: {path}: loading a TorchScript archive (--trust-checkpoint): code in this file "
                  "runs with your permissions", file=sys.stderr, flush=True)
            try:
                state = dict(torch.jit.load(f, map_location="cpu").state_dict())
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"{path}: not a TorchScript archive ({_first_line(e)})") from None
        else:
            state = _torch_load(f, path, trust)
    try:
        check_storage(state)
    except UnsafeTensors as e:
        raise CheckpointError(f"{path}: {e}; refusing to load it") from None
    return state, jit


def _torch_load(f, path: str, trust: bool):
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
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
    f.seek(0)
    try:
        return torch.load(f, map_location="cpu", weights_only=False)
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


def printable(text, limit: int = 120) -> str:
    """A key or name from a file, fit for a one-line message (control characters replaced, length capped)."""
    return "".join(c if c.isprintable() else "?" for c in str(text)[:limit])


def _tensor_dict(obj, path: str, what: str, skip=()) -> dict:
    """``obj`` as a state dict (string keys → tensors, a leading ``module.`` stripped, ``skip`` keys left
    out), else :class:`CheckpointError` naming the first thing that is not."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {what} is not a dict of tensors (it is a {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: {what} has a key that is not a string (a {type(k).__name__})")
        k = k[7:] if k.startswith("module.") else k
        if k in skip:
            continue
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: {what}: {printable(k)} is not a tensor (it is a {type(v).__name__})")
        out[k] = v
    return out


def _optional_dict(ckpt: dict, keys, path: str) -> "dict | None":
    """The first of ``keys`` that ``ckpt`` holds, as a state dict; None when absent or empty."""
    for key in keys:
        value = ckpt.get(key)
        if value is not None and not (isinstance(value, dict) and not value):
            return _tensor_dict(value, path, key) or None
    return None


def _finite(state: dict, path: str, what: str) -> None:
    """:class:`CheckpointError` naming the first tensor of ``state`` that holds NaN or inf."""
    bad = first_nonfinite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: {what} tensor {printable(bad)} holds NaN or inf values; these weights "
                              "cannot give meaningful scores")


def _check_fields(ckpt: dict, path: str) -> None:
    """The plain fields a checkpoint may carry have the types bike reads them as."""
    for key, types, what in (("quick_gelu", (bool, int), "a bool"), ("random_init", (bool, int), "a bool"),
                             ("model_name", (str,), "a model name")):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], types):
            raise CheckpointError(f"{path}: {key} is not {what} (it is a {type(ckpt[key]).__name__})")
    labels = ckpt.get("labels")
    if labels is not None and not (isinstance(labels, (list, tuple)) and all(isinstance(n, str) for n in labels)):
        raise CheckpointError(f"{path}: labels is not a list of class names")


def _probe(build, path: str, what: str) -> nn.Module:
    """``build()`` on PyTorch's meta device: shapes and keys without memory, whatever sizes a file declares."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")          # "copying ... to a meta parameter is a no-op": intended
            return build()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build from the file's shapes is the file's
        raise CheckpointError(f"{path}: {what} does not load: {printable(_first_line(e), 300)}") from None


def _build_clip(name: str, quick_gelu: bool, state: dict, path: str, explain=None) -> nn.Module:
    """Model ``name`` with the weights ``state`` (a checked state dict): compared key by key and shape by
    shape with the model built on the meta device first, so a file that does not fit allocates nothing."""
    target = _probe(lambda: _create(name, quick_gelu, device="meta"), path, f"model {name}").state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(s for s in (
            f"missing {len(missing)} keys (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected keys (e.g. {printable(unexpected[0])})" if unexpected else "",
            f"shape mismatch for {wrong[0]}: file {tuple(state[wrong[0]].shape)} vs model "
            f"{tuple(target[wrong[0]].shape)}" if wrong else "") if s)
        raise CheckpointError(f"{path}: weights do not fit model {name}: {detail}"
                              + (explain(state) if explain else ""))
    clip = _create(name, quick_gelu)
    clip.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return clip


def _embed_dim(clip: nn.Module) -> int:
    p = clip.text_projection
    return int(p.shape[-1]) if isinstance(p, torch.Tensor) else int(p.out_features)


def _check_heads(header: "dict | None", attrs: "dict | None", clip: nn.Module, path: str) -> None:
    """The temporal header and the attributes head load into the modules bike builds for them (built on the
    meta device first: their sizes come from the file)."""
    from .attributes import AttributeHead
    from .temporal import TemporalTransformer
    text_width = int(clip.ln_final.weight.shape[0])
    if header:
        _finite(header, path, "fusion_model_state_dict")
        _probe(lambda: TemporalTransformer.from_state_dict(header, heads=max(1, text_width // 64)), path,
               "the temporal header (fusion_model_state_dict)")
    if attrs:
        _finite(attrs, path, "attributes_state_dict")

        def build():
            head = AttributeHead(_embed_dim(clip))
            head.load_state_dict(attrs, strict=True)
            return head
        _probe(build, path, "the attributes head (attributes_state_dict)")


def _class_features(cf, path: str, dim: int) -> "dict | None":
    """Check the stored adapted class features: names (C,), cls (C, D), tokens (C, L, D), D = ``dim``."""
    if cf is None or (isinstance(cf, dict) and not cf):
        return None
    try:
        names, cls, tokens = list(cf["names"]), cf["cls"], cf["tokens"]
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed class_features ({printable(e)})") from None
    if not (isinstance(cls, torch.Tensor) and isinstance(tokens, torch.Tensor)
            and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: malformed class_features (names must be strings, cls and tokens tensors)")
    if cls.dim() != 2 or tokens.dim() != 3 or not (len(names) == cls.shape[0] == tokens.shape[0]) \
            or not (cls.shape[1] == tokens.shape[2] == dim):
        raise CheckpointError(f"{path}: class_features shapes do not agree: {len(names)} names, cls "
                              f"{tuple(cls.shape)}, tokens {tuple(tokens.shape)}, embedding dim {dim}")
    _finite({"cls": cls, "tokens": tokens}, path, "class_features")
    return {"names": names, "cls": cls.float(), "tokens": tokens.float()}


def _architecture(name: "str | None", state, hint: "str | None", path: str) -> str:
    """The model name for the CLIP weights in ``path``: ``name`` when given (``--model`` overrides), else
    read from the tensors' shapes (engine/model/architecture.py)."""
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
        _check_fields(ckpt, checkpoint)
        state = _tensor_dict(ckpt["model_state_dict"], checkpoint, "model_state_dict", skip=_NON_WEIGHT_KEYS)
        _finite(state, checkpoint, "model_state_dict")
        explicit = bool(name) and not name.startswith("inferred-")
        name = _architecture(name, state, ckpt.get("model_name"), checkpoint)
        meta["name"] = name
        # released checkpoints are OpenAI CLIP (QuickGELU); bike's own record what they were trained with
        clip = _build_clip(name, bool(ckpt.get("quick_gelu", True)) if quick_gelu is None else quick_gelu,
                           state, checkpoint, _file_architecture if explicit else None)
        header = _optional_dict(ckpt, ("fusion_model_state_dict",), checkpoint)
        attrs = _optional_dict(ckpt, ("attributes_state_dict", "attributes_model_state_dict"), checkpoint)
        _check_heads(header, attrs, clip, checkpoint)
        meta.update(checkpoint=os.path.abspath(checkpoint), weights_sha=sha,
                    random_init=bool(ckpt.get("random_init")))      # trained/adapted from random weights
        return Weights(clip, header, attrs, ckpt.get("labels"), meta,
                       _class_features(ckpt.get("class_features"), checkpoint, _embed_dim(clip)))
    if weights_file:
        sha = check_sha(pretrained, expect_sha)
        state, jit = _read(pretrained, trust_checkpoint)
        if isinstance(state, dict) and "model_state_dict" in state:
            raise CheckpointError(f"{pretrained}: this is a BIKE checkpoint; pass it with --checkpoint")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = _tensor_dict(state, pretrained, "the weights", skip=_NON_WEIGHT_KEYS)
        _finite(state, pretrained, "weights")
        explicit = bool(name) and not name.startswith("inferred-")
        name = meta["name"] = _architecture(name, state, None, pretrained)
        clip = _build_clip(name, jit if quick_gelu is None else quick_gelu, state, pretrained,
                           _file_architecture if explicit else None)
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
