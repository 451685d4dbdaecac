"""Checks ``bike tag`` makes before it starts Ray: are the weights there, and is there anything to do?

* :func:`check_weights` fails within a few seconds, before a store is created or Ray started, when the
  weights the options name cannot be had: a missing file; an open_clip tag that is not cached while
  ``HF_HUB_OFFLINE=1``, or while the host it would be downloaded from does not answer a connection attempt
  (:func:`unreachable`, at most :data:`PROBE_S` seconds; without it the Hugging Face client retries for over a
  minute before it gives up). The advice is the engine's: ``bike weights`` lists what is cached.
* :func:`known_model_id` finds the store's ``models`` row of the requested model without loading it: the
  row's fingerprint must name the same model, weights (file hash, open_clip tag or random-init seed),
  frames and lexicon, and hash to its model_id with the requested label set, window and frame sampling. A
  fingerprint with fields this module does not know (a newer bike) is never matched, so the answer is either
  exact or None (then ``bike tag`` takes the normal path and loads the model).
* With that model_id, a rerun whose every listed file is already in the store (content ids from the
  store's id cache: unchanged files are not read again) has nothing to do and says so without Ray.
"""
from __future__ import annotations

import hashlib
import json
import os

from engine.model.config import DEFAULTS
from engine.sources.remote import url_scheme
from index.store import ids

from jobs.errors import UsageError

#: Fingerprint fields this module can predict (engine.model.model.BikeModel.fingerprint); others → no match.
KNOWN_FIELDS = {"name", "weights", "frames", "lexicon", "random_init"}
#: Fields present only when not fp32 / not fused (engine.model.model.BikeModel.fingerprint).
OPTIONAL_FIELDS = {"precision", "branches"}


def _same_precision_and_branches(fp: dict, kw: dict, kind: str) -> bool:
    """Whether the row was scored at the precision the options resolve to here and with the branches they
    ask for (the default branches of a checkpoint depend on the file: the row of the same file holds them)."""
    from engine.model.precision import resolve
    try:
        want = resolve(kw.get("precision"), kw.get("device"))
    except ValueError:
        return False
    if fp.get("precision", "fp32") != want:
        return False
    if kw.get("branches"):
        return fp.get("branches", "fused") == kw["branches"]
    return kind == "checkpoint" or "branches" not in fp


def _weights_choice(kw: dict) -> "tuple[str, str | None]":
    """('checkpoint' | 'file' | 'tag' | 'random', value) as engine.load_model resolves the options."""
    if kw.get("checkpoint"):
        return "checkpoint", kw["checkpoint"]
    pretrained = kw.get("pretrained")
    if not pretrained and not kw.get("random_init"):
        pretrained = DEFAULTS.pretrained
    if pretrained:
        return ("file", pretrained) if os.path.exists(pretrained) else ("tag", pretrained)
    return "random", None


def _looks_like_file(text: str) -> bool:
    return os.sep in text or text.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


#: Longest wait for the weights' host to answer (a host without network usually fails at once).
PROBE_S = 3.0


class HubUnreachable(UsageError):
    """The weights are not cached and the host that serves them cannot be reached: say so in one line."""


def hub_url(source: str) -> str:
    """Where the weights named by ``source`` (a Hugging Face repo id, or a URL) are downloaded from: the
    URL's host, else the Hugging Face endpoint (``$HF_ENDPOINT``, which the hub client honours too)."""
    if url_scheme(source) is not None:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}/"
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/") + "/"


def unreachable(url: str, timeout_s: float = PROBE_S) -> "str | None":
    """None when ``url``'s host answers an HTTP request (any HTTP status counts; proxies from the environment
    are used), else why not. Bounded by ``timeout_s`` including the name lookup (run in a daemon thread)."""
    import threading
    import urllib.error
    import urllib.request
    answer: list = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
            answer.append(None)
        except urllib.error.HTTPError:
            answer.append(None)                          # the host answered: it is reachable
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            answer.append(str(getattr(reason, "strerror", None) or reason))

    t = threading.Thread(target=probe, name="bike-hub-probe", daemon=True)
    t.start()
    t.join(timeout_s)
    return answer[0] if answer else f"no answer in {timeout_s:g} s"


def check_weights(kw: dict) -> None:
    """Raise :class:`engine.model.loading.WeightsUnavailable` / ``CheckpointError`` when the weights cannot be had."""
    from engine.model.loading import CheckpointError, WeightsUnavailable
    kind, value = _weights_choice(kw)
    if kind == "checkpoint" and not os.path.isfile(value):
        raise CheckpointError(f"{value}: file not found (--checkpoint)")
    if kind == "tag" and _looks_like_file(value):
        raise CheckpointError(f"{value}: file not found (--pretrained)")
    check_hub(kw)


def check_hub(kw: dict) -> None:
    """When the options name an open_clip tag that is not cached: raise at once if it cannot be downloaded
    (``HF_HUB_OFFLINE`` set, or its host unreachable); nothing is checked for files and cached tags."""
    from engine.model.loading import WeightsUnavailable
    kind, value = _weights_choice(kw)
    if kind != "tag" or _looks_like_file(value):
        return
    from .doctor import cached_weights
    name = kw.get("name") or DEFAULTS.model
    try:
        found = cached_weights([(name, value)])
    except Exception:  # noqa: BLE001 - unknown model/tag: the engine says so with its own message
        return
    if not found or found[0].cached:
        return
    if os.environ.get("HF_HUB_OFFLINE", "") in ("", "0"):
        url = hub_url(found[0].source)
        why = unreachable(url)
        if why is not None:
            raise HubUnreachable(
                f"open_clip weights {name} / {value} are not cached here and {url} cannot be reached ({why}): "
                "`bike weights` says how to get weights; or pass --checkpoint FILE, --pretrained FILE, "
                "or --random-init")
    else:
        raise WeightsUnavailable(
                f"open_clip weights {name!r} / {value!r} are not cached and HF_HUB_OFFLINE is set\n"
                f"  fix: run once with internet access (they are cached in {found[0].where}),\n"
                "       or pass --pretrained /path/to/weights.pt or --checkpoint /path/to/bike_checkpoint.pt,\n"
                "       or pass --random-init to run with random weights (labels are then meaningless);\n"
                "       `bike weights` lists what is cached")


def _sha256(path: str) -> "str | None":
    """SHA-256 (hex) of a weights file, as engine.model.loading records it, without importing torch; None when it
    cannot be read here. Should the engine record another digest, nothing matches and the normal path runs."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def known_model_id(store, kw: dict, labels, window_s: float, seed: int = DEFAULTS.seed,
                   sampling: str = ids.DEFAULT_SAMPLING, windows: "str | None" = None) -> "tuple[str, dict] | None":
    """``(model_id, models row)`` of the requested model if the store holds it, else None (see module doc).
    ``sampling``, ``windows``: the run's frame sampling and window plan (both part of the model_id)."""
    from engine.model.labels import load_labels
    try:
        rows = store.read("models").to_pylist()
    except Exception:  # noqa: BLE001 - an unreadable store: the normal path reports it
        return None
    if not rows:
        return None
    kind, value = _weights_choice(kw)
    name = kw.get("name")
    lexicon = load_labels(kw.get("lexicon") or DEFAULTS.lexicon).digest
    frames = int(kw.get("frames") or DEFAULTS.frames)
    sha = None
    for row in rows:
        try:
            fp = json.loads(row.get("fingerprint") or "")
        except ValueError:
            continue
        if not isinstance(fp, dict) or not KNOWN_FIELDS <= set(fp) <= KNOWN_FIELDS | OPTIONAL_FIELDS:
            continue
        if not _same_precision_and_branches(fp, kw, kind):
            continue
        if fp["frames"] != frames or fp["lexicon"] != lexicon or (name and fp["name"] != name):
            continue
        if kind == "checkpoint":
            if row.get("checkpoint") != os.path.abspath(value):
                continue
            sha = sha or _sha256(value)
            if sha is None or fp["weights"] != sha:
                continue
        elif kind == "file":
            if row.get("pretrained") != os.path.abspath(value):
                continue
            sha = sha or _sha256(value)
            if sha is None or fp["weights"] != sha:
                continue
        elif kind == "tag":
            if fp["weights"] != f"open_clip:{name or DEFAULTS.model}:{value}" or fp["random_init"]:
                continue
        elif fp["weights"] != f"random-init:{name or DEFAULTS.model}:seed{seed}" or not fp["random_init"]:
            continue
        mid = ids.model_id(fp, labels.digest, window_s or 0.0, sampling, windows=windows)
        if mid == row["model_id"]:
            return mid, row
    return None


def describe_row(row: dict) -> str:
    """One line naming a stored model (as BikeModel.describe() would, without loading it)."""
    src = (f"checkpoint {row['checkpoint']}" if row.get("checkpoint") else
           f"weights {row['pretrained']}" if row.get("pretrained") else "RANDOM WEIGHTS (--random-init)")
    return f"{row['name']}, {src}, {row['frames']} frames"
