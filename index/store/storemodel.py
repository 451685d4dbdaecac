"""Load the model that tagged a store, so that queries land in the same embedding space as its clips.

A store's ``models`` row says which model produced a model_id's rows: the open_clip name, the weights
(``pretrained`` tag or file, ``checkpoint`` file, or seeded random weights), ``weights_sha``, frames and
lexicon. :func:`load_store_model` loads exactly that model and checks ``weights_sha`` afterwards: searching
with other weights would give meaningless scores, so a mismatch is an error, never a warning.

Random weights are seeded: ``weights_sha`` = ``random-init:<name>:seed<N>`` gives back the same weights.
A row that names a ``checkpoint`` is loaded from that file whatever its lineage: ``random_init`` on such a row
only says the checkpoint was trained or adapted from random weights (``bike train/adapt --random-init``); the
file holds every weight (image and text towers, header, attributes heads, adapted classes), so the seeded
random weights are never a substitute for it. A weights file that moved can be given with ``weights=``
(``bike search --checkpoint FILE``); its SHA-256 is checked against the store. A row of seeded random
weights names no file, and a file given for it is refused.

A store is data, not code: its ``models`` row only *names* a file. That file is hashed and compared with the
row's ``weights_sha`` BEFORE it is loaded, and it is loaded with safe (``weights_only``) loading only, so a
crafted store cannot make search unpickle a file it did not record, nor run code hidden in one it did
(``trust_checkpoint=True`` is the explicit way to load a legacy pickle).
"""
from __future__ import annotations

import os
import re

from engine.model.config import DEFAULTS

from .core import Store, StoreError


class ModelMismatch(StoreError):
    """The store's model cannot be loaded as it was, or different weights were given."""


def model_row(store: Store, model_id: str) -> dict:
    """The ``models`` row of ``model_id`` as a dict."""
    rows = store.read("models", model_id=model_id).to_pylist()
    if not rows:
        raise ModelMismatch(f"{store.root}: no 'models' row for model_id {model_id}; the store is incomplete "
                            f"(re-tag with `bike tag ... --store {store.root}`)")
    return rows[-1]


def _seed(weights_sha: "str | None") -> int:
    m = re.fullmatch(r"random-init:.*:seed(-?\d+)", weights_sha or "")
    return int(m.group(1)) if m else DEFAULTS.seed


def weights_kwargs(store: Store, model_id: str, row: "dict | None" = None, weights: "str | None" = None,
                   trust_checkpoint: bool = False) -> dict:
    """The :func:`engine.model.loading.load_weights` keyword arguments that rebuild ``model_id``'s weights (see the
    module docstring): name, then ``random_init`` + ``seed``, or ``checkpoint``/``pretrained`` with the
    ``expect_sha`` a file must have. ``weights``: a file given in place of the recorded one."""
    row = row or model_row(store, model_id)
    kwargs: dict = {"name": row["name"]}
    if row.get("random_init") and not row.get("checkpoint"):     # seeded random weights, nothing else
        if weights:
            raise ModelMismatch(f"{weights}: model {model_id} of {store.root} was tagged with seeded random weights "
                                f"({row.get('weights_sha')}), not with a weights file; search it without "
                                "--checkpoint/--weights")
        kwargs.update(random_init=True, seed=_seed(row.get("weights_sha")))
        return kwargs
    # a checkpoint (trained from pretrained or from random weights: the file holds them all), or weights
    source_key = "checkpoint" if row.get("checkpoint") else "pretrained"
    source = weights or row.get(source_key)
    if not source:
        raise ModelMismatch(f"{store.root}: model {model_id} names no weights in its 'models' row")
    is_file = bool(weights) or source_key == "checkpoint" or os.path.isabs(source) or os.sep in source
    if is_file and not os.path.exists(source):
        raise ModelMismatch(
            f"{source}: the weights file that tagged model {model_id} of {store.root} is not there; fix: pass "
            f"the same file with --weights PATH (its SHA-256 is checked against {row.get('weights_sha')})")
    kwargs[source_key] = source
    if is_file:                                  # hashed and compared before a byte of it is unpickled
        want = row.get("weights_sha")
        if not want:
            raise ModelMismatch(f"{store.root}: model {model_id} names the weights file {source} without its "
                                "SHA-256; refusing to load an unverified file")
        kwargs.update(expect_sha=want, trust_checkpoint=trust_checkpoint)
    return kwargs


def _verified(load, store: Store, model_id: str, row: dict, given: "str | None"):
    """``load()``'s result (weights or model, with ``.meta``) after checking it is what tagged ``model_id``."""
    import engine
    try:
        loaded = load()
    except engine.CheckpointError as e:
        if "is not the expected" in str(e):
            raise ModelMismatch(f"{e}: these are not the weights that tagged model {model_id} of {store.root}; "
                                "search needs the same weights (--weights PATH)") from None
        raise
    want, got = row.get("weights_sha"), loaded.meta.get("weights_sha")
    if want and got != want:
        raise ModelMismatch(f"{given or row['name']}: these weights ({got}) are not the ones that tagged model "
                            f"{model_id} of {store.root} ({want}); search needs the same weights")
    return loaded


def load_store_weights(store: Store, model_id: str, weights: "str | None" = None, trust_checkpoint: bool = False):
    """The :class:`engine.model.loading.Weights` (float32, CPU) that produced ``model_id``'s rows, checked like
    :func:`load_store_model` (``bike relabel`` compares a new checkpoint's towers with them)."""
    from engine.model.loading import load_weights
    row = model_row(store, model_id)
    kwargs = weights_kwargs(store, model_id, row, weights, trust_checkpoint)
    return _verified(lambda: load_weights(**kwargs), store, model_id, row, weights)


def load_store_model(store: Store, model_id: str, weights: "str | None" = None, device=None,
                     trust_checkpoint: bool = False, precision: "str | None" = None,
                     branches: "str | None" = None):
    """The :class:`engine.BikeModel` that produced ``model_id``'s rows (see the module docstring); its
    precision and branches are the row's (fp32 / the model's default where the row predates them) unless
    given."""
    import engine
    row = model_row(store, model_id)
    kwargs = weights_kwargs(store, model_id, row, weights, trust_checkpoint)
    kwargs.update(frames=int(row.get("frames") or DEFAULTS.frames), device=device,
                  precision=precision or row.get("precision") or "fp32", branches=branches or row.get("branches"))
    lexicon = row.get("lexicon") or DEFAULTS.lexicon
    try:                               # the lexicon only matters for attributes, which search does not compute
        engine.load_labels(lexicon)
    except engine.LabelError:
        lexicon = DEFAULTS.lexicon
    return _verified(lambda: engine.load_model(lexicon=lexicon, **kwargs), store, model_id, row, weights)
