"""``bike relabel``: score every stored clip against a new label set, from stored frame embeddings only.

No video is decoded. For each clip of a *source* model_id (one that was tagged with the same model):

    H      = the stored per-frame features after the temporal header          (T, D)  float16 → float32
    scores = BikeModel.score(H, new labels, sentences of the stored top-K attribute phrases)
             (video branch, attributes branch, fusion per the model's branches: docs/model.md §4, §5)

and the rows are written with the same code as ``bike tag`` (``jobs.tag.records``) under the model_id that
``bike tag --labels NEW`` would use (model fingerprint + new label set + the source's window): the two
commands give the same rows up to float16 rounding of the stored features, and a later ``bike tag`` with
the new labels skips what ``relabel`` already did. Source videos recorded as errors are carried over as
errors. Exactly once like ``bike tag``: the same runner and write stage (``jobs.tag.runner.LocalRunner`` over a
``jobs.tag.stages.StoredScoreStage``, no decode stage; ``jobs.tag.stages.WriteStage`` commits batches of videos
with ``Store.write_batch``).

The model is the one that tagged the source: with no model options it is loaded from the store's ``models``
row (``index.store.storemodel.load_store_model``: same weights, frames and lexicon, weights hash checked); model
options name it explicitly (e.g. a weights file that moved). They may also name another model whose image
tower, temporal header and text tower are identical to the source's (``engine.model.towers``: tensors hashed), e.g. a
``bike adapt --mode fast`` checkpoint of it: its stored frame features and attribute phrases are then exactly
what that model would compute, and its own text side (adapted classes, attributes heads) scores them. Any
other model is refused in one line: the clips must be tagged again. Frames and lexicon not given are the
source's.
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import torch

from engine.model.attributes import attribute_sentence
from engine.model.config import DEFAULTS
from engine.model.labels import load_labels
from index.store import ids
from index.store.schema import TABLES
from index.store import Store

from jobs.errors import UsageError
from jobs.progress import Progress
from .records import ClipSpan, VideoResult, clip_results, model_facts, model_row
from .runner import LocalRunner, commit
from .stages import StoredScoreStage, WriteStage
from .tasks import StoredVideo

#: Clips scored per model call.
SCORE_CLIPS = 256


@dataclass
class RelabelOptions:
    store: str
    labels: str
    model_kwargs: dict = field(default_factory=dict)
    source: "str | None" = None          # source model_id (default: the one tagged with this model)
    # model_kwargs naming no weights (no name/pretrained/checkpoint/random_init): the store's model is used;
    # frames / lexicon missing or None: the source's
    batch: int = 64                      # videos per committed batch
    force: bool = False
    index: bool = True
    progress: "bool | None" = None


@dataclass
class RelabelSummary:
    store: str
    source: str = ""
    model_id: str = ""
    videos: int = 0
    errors: int = 0
    skipped: int = 0
    clips: int = 0
    score_s: float = 0.0
    seconds: float = 0.0
    index: str = ""
    index_failed: bool = False

    def lines(self) -> "list[str]":
        cps = self.clips / self.score_s if self.score_s > 0 else 0.0
        out = [f"bike relabel: {self.videos} videos ({self.errors} carried over as errors, {self.skipped} "
               f"skipped: already done), {self.clips} clips scored at {cps:.0f} clips/s; "
               f"{self.seconds:.1f} s in all; no video decoded",
               f"bike relabel: model_id {self.source} → {self.model_id} in {self.store}"]
        if self.index:
            out.append(f"bike relabel: {self.index}")
        return out


def _listing(models: list) -> str:
    """The model_ids of ``models`` rows for an error message."""
    return "; ".join(f"{m['model_id']} ({m['name']}, {m['weights_sha']}, labels {m['label_set']}, window "
                     f"{m['window_s']:g})" for m in models) or "none"


def same_weights(fingerprint: dict) -> str:
    """A fingerprint without precision and branches: what the stored header outputs depend on (relabel
    recomputes the branches and their fusion; the source may have been tagged at another precision)."""
    return json.dumps({k: v for k, v in fingerprint.items() if k not in ("precision", "branches")},
                      sort_keys=True)


def choose_source(store: Store, fingerprint: dict, source: "str | None", towers: "dict | None" = None,
                  named: str = "") -> dict:
    """The ``models`` row of the source model_id: tagged with the same model (fingerprint, whatever the
    precision and branches), or, when ``towers`` (``engine.model.towers.towers`` of the given model's weights) are
    known, with a model whose towers are identical (:func:`same_towers_source`). ``named``: how the given model
    is named in an error (its checkpoint)."""
    models = store.read("models").to_pylist()
    committed = store.model_ids()
    fp = same_weights(fingerprint)
    listing = _listing(models)
    if source:
        rows = [m for m in models if m["model_id"] == source]
        if not rows:
            raise UsageError(f"--model-id {source}: no such model_id in {store.root} (model_ids: {listing})")
        if same_weights(json.loads(rows[0]["fingerprint"])) != fp:
            if towers is not None:
                return same_towers_source(store, rows[:1], fingerprint, towers, named)[0]
            raise UsageError(f"--model-id {source} was tagged with another model ({rows[0]['name']}, "
                             f"{rows[0]['weights_sha']}); give the model options it was tagged with")
        return rows[0]
    rows = [m for m in models
            if same_weights(json.loads(m["fingerprint"])) == fp and m["model_id"] in committed]
    if not rows and towers is not None:
        rows = same_towers_source(store, [m for m in models if m["model_id"] in committed], fingerprint, towers,
                                  named)
    if not rows:
        raise UsageError(f"{store.root} holds no clips tagged with this model ({fingerprint['name']}, "
                         f"{fingerprint['weights']}); relabelling needs the model that tagged them: give its "
                         f"--model/--pretrained/--checkpoint/--random-init options (model_ids in the store: "
                         f"{listing})")
    if len({m["window_s"] for m in rows}) > 1:
        raise UsageError("several model_ids of this model use different --window lengths; choose one with "
                         "--model-id: " + ", ".join(f"{m['model_id']} (window {m['window_s']:g})" for m in rows))
    if len({source_sampling(m) for m in rows}) > 1:
        raise UsageError("several model_ids of this model use different --sampling modes; choose one with "
                         "--model-id: " + ", ".join(f"{m['model_id']} (sampling {source_sampling(m)})" for m in rows))
    counts = _videos_per_model(store)
    return max(rows, key=lambda m: counts[m["model_id"]])


def _videos_per_model(store: Store) -> dict:
    counts = defaultdict(int)
    for c in store.commits():
        counts[c["model_id"]] += len(c["videos"])
    return counts


def same_towers_source(store: Store, rows: list, fingerprint: dict, towers: dict, named: str) -> list:
    """Of the ``models`` ``rows`` (committed sources) tagged with other weights, those whose model has the
    given model's image tower + temporal header and text tower (``engine.model.towers``): their stored frame
    features and attribute phrases are then the given model's own. The sources' weights are loaded as the
    store records them (hash checked first), once per weights. Refused in one line when none has them."""
    from engine.model.towers import towers as towers_of
    from index.store import StoreError
    from index.store.storemodel import load_store_weights
    named = named or f"{fingerprint['name']} ({fingerprint['weights']})"
    fits = [m for m in rows if int(m["frames"]) == int(fingerprint["frames"])]
    if not fits:
        raise UsageError(f"{named}: {store.root} holds no clips of {fingerprint['frames']} frames (model_ids: "
                         f"{_listing(rows)}); relabel with the frames they were tagged with (leave --frames out)")
    lex = [m for m in fits if json.loads(m["fingerprint"]).get("lexicon") == fingerprint["lexicon"]]
    if not lex:
        raise UsageError(f"{named}: the stored attribute phrases of {store.root} come from the lexicon "
                         f"{fits[0]['lexicon']}, not this one; leave --lexicon out (the source's is used)")
    reason, missing, seen, same = "", "", {}, []
    for m in lex:
        if m["weights_sha"] not in seen:
            try:
                seen[m["weights_sha"]] = towers_of(load_store_weights(store, m["model_id"]))
            except StoreError as e:             # its weights cannot be had here: say so if nothing else fits
                seen[m["weights_sha"]] = str(e)
        theirs = seen[m["weights_sha"]]
        if isinstance(theirs, str):
            missing = missing or theirs
            continue
        if theirs == towers:
            same.append(m)
            continue
        which = ("image tower / temporal header" if theirs["image_side"] != towers["image_side"] else
                 "text tower (which chose the stored attribute phrases)")
        reason = reason or (f"its {which} differs from that of model {m['model_id']} ({m['name']}, "
                            f"{m['weights_sha']}), which tagged the clips of {store.root}")
    if same:
        return same
    if not reason:
        raise UsageError(f"{named}: relabel compares its towers with those of the weights that tagged the clips, "
                         f"and cannot load them: {missing}")
    raise UsageError(f"{named}: {reason}: the stored frame embeddings are not this model's; relabel only takes a "
                     "model with the same towers (e.g. a `bike adapt --mode fast` checkpoint of it): tag the videos "
                     "again with this model (`bike tag ... --checkpoint FILE`)")


def source_defaults(store: Store, model_kwargs: dict, source: "str | None") -> dict:
    """``model_kwargs`` with ``frames`` and ``lexicon`` filled in from the source's ``models`` row where not
    given (the source given, else the value every committed source shares, else the engine's default)."""
    missing = [k for k in ("frames", "lexicon") if model_kwargs.get(k) is None]
    if not missing:
        return model_kwargs
    committed = store.model_ids()
    rows = [m for m in store.read("models").to_pylist()
            if (m["model_id"] == source if source else m["model_id"] in committed)]
    out = dict(model_kwargs)
    for k in missing:
        values = {m[k] for m in rows if m.get(k) is not None}
        out[k] = values.pop() if len(values) == 1 else getattr(DEFAULTS, k)
    out["frames"] = int(out["frames"])
    return out


def load_given_model(model_kwargs: dict):
    """The model the options name, and the digests of its towers (taken from its float32 weights, before any
    precision cast): ``(BikeModel, towers)``."""
    from engine.model.loading import load_weights
    from engine.model.model import BikeModel
    from engine.model.towers import towers
    kw = dict(model_kwargs)
    if not (kw.get("pretrained") or kw.get("checkpoint") or kw.get("random_init")):
        kw["pretrained"] = DEFAULTS.pretrained                    # as engine.load_model does
    weights = load_weights(kw.get("name"), pretrained=kw.get("pretrained"), checkpoint=kw.get("checkpoint"),
                           random_init=bool(kw.get("random_init")), seed=kw.get("seed", DEFAULTS.seed),
                           trust_checkpoint=bool(kw.get("trust_checkpoint")))
    digests = towers(weights)
    model = BikeModel(weights, frames=kw["frames"], device=kw.get("device"), lexicon=kw["lexicon"],
                      precision=kw.get("precision") or "fp32", branches=kw.get("branches"))
    return model, digests


def names_a_model(model_kwargs: dict) -> bool:
    """Whether the options choose a model (else relabel takes the one that tagged the store)."""
    return any(model_kwargs.get(k) for k in ("name", "pretrained", "checkpoint", "random_init"))


def store_model(store: Store, source: "str | None", device=None, precision=None, branches=None):
    """The model that tagged ``source`` (default: the store's only tagging model), loaded as it was."""
    from index.store.storemodel import load_store_model
    committed = store.model_ids()
    models = [m for m in store.read("models").to_pylist() if m["model_id"] in committed]
    if source is None:
        by_model = {same_weights(json.loads(m["fingerprint"])): m for m in models}
        if len(by_model) != 1:
            raise UsageError(f"{store.root} holds clips of {len(by_model)} models; choose the source with "
                             f"--model-id MODEL_ID or give its model options (model_ids: {_listing(models)})")
        source = next(iter(by_model.values()))["model_id"]
    elif source not in committed:
        raise UsageError(f"--model-id {source}: no such model_id with committed clips in {store.root}")
    return load_store_model(store, source, device=device, precision=precision, branches=branches)


def _read_shard(store: Store, table: str, rec: dict, model_id: str, columns=None):
    t = store.read_shard(table, rec, columns=columns)          # through the store's filesystem (index/store/storefs.py)
    if t is None:
        return TABLES[table].empty_table() if columns is None else TABLES[table].empty_table().select(columns)
    return t.filter(pc.equal(t["model_id"], model_id))


def _frame_matrix(column) -> np.ndarray:
    """list<list<float16>> column of n clips with T×D each → float32 (n, T, D)."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0, 0), np.float32)
    t = len(arr[0])
    vals = arr.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return vals.reshape(n, t, -1)


def source_videos(store: Store, model_id: str, skip: set):
    """Yield one ``StoredVideo`` per stored video of ``model_id`` (videos row, its clips and attribute phrases), shard by
    shard so memory holds one shard at a time."""
    for c in list(store.commits()):
        if c["model_id"] != model_id or not c["videos"]:
            continue
        vids = _read_shard(store, "videos", c, model_id).to_pylist()
        vids = [v for v in vids if v["video_id"] not in skip]
        if not vids:
            continue
        clips = _read_shard(store, "clips", c, model_id,
                            ["video_id", "model_id", "clip_index", "start_s", "end_s", "frame_times",
                             "frame_embeddings"])
        atts = _read_shard(store, "attributes", c, model_id,
                           ["clip_id", "video_id", "model_id", "rank", "attribute", "score"]).to_pylist()
        phrases = defaultdict(list)
        for a in sorted(atts, key=lambda a: (a["clip_id"], a["rank"])):
            phrases[a["clip_id"]].append((a["attribute"], float(a["score"])))
        by_video = defaultdict(list)
        cols = {n: clips[n].to_pylist() for n in ("video_id", "clip_index", "start_s", "end_s", "frame_times")}
        emb = _frame_matrix(clips["frame_embeddings"])                                   # (n, T, D)
        for i, vid in enumerate(cols["video_id"]):
            by_video[vid].append(i)
        for v in vids:
            rows = sorted(by_video.get(v["video_id"], []), key=lambda i: cols["clip_index"][i])
            yield StoredVideo(video=v,
                              spans=[ClipSpan(cols["clip_index"][i], cols["start_s"][i], cols["end_s"][i],
                                              cols["frame_times"][i]) for i in rows],
                              features=[emb[i] for i in rows],
                              attributes=[phrases.get(f"{v['video_id']}/{cols['clip_index'][i]}", []) for i in rows])


@torch.no_grad()
def score_stored(model, labels, features, attributes, spans, top_k: int = DEFAULTS.top_k) -> list:
    """Scores of stored clips: ``features`` [(T, D)] after the header, ``attributes`` [[(phrase, cos)]]
    in rank order → [ClipResult] (``BikeModel.score``, the same step ``bike tag`` runs after the header)."""
    if not spans:
        return []
    H = torch.as_tensor(np.stack(features), dtype=torch.float32)                               # (B, T, D)
    sentences = [attribute_sentence([p for p, _ in a]) for a in attributes]
    return clip_results(model.score(H, labels, sentences, [list(a) for a in attributes]), spans, top_k)


def source_sampling(row: dict) -> str:
    """The frame sampling the source's clips were tagged with (read back from its model_id, which includes
    it): the relabelled rows describe the same frames, so their model_id carries the same sampling."""
    from engine.video.plan import SAMPLINGS
    return ids.sampling_of(row, SAMPLINGS) or ids.DEFAULT_SAMPLING


def run_relabel(opts: RelabelOptions, log=None) -> RelabelSummary:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    labels = load_labels(opts.labels)
    store = Store(opts.store)
    with store.lock():
        return _run_locked(opts, store, labels, log, t0)


def _run_locked(opts: RelabelOptions, store: Store, labels, log, t0: float) -> RelabelSummary:
    store.recover()
    towers = None
    if names_a_model(opts.model_kwargs):
        model, towers = load_given_model(source_defaults(store, opts.model_kwargs, opts.source))
    else:
        model = store_model(store, opts.source, device=opts.model_kwargs.get("device"),
                            precision=opts.model_kwargs.get("precision"),
                            branches=opts.model_kwargs.get("branches"))
    facts = model_facts(model)
    src = choose_source(store, facts.fingerprint, opts.source, towers,
                        named=opts.model_kwargs.get("checkpoint") or opts.model_kwargs.get("pretrained") or "")
    window = float(src["window_s"])
    target = ids.model_id(facts.fingerprint, labels.digest, window, source_sampling(src))
    summary = RelabelSummary(store=str(store.root), source=src["model_id"], model_id=target)
    if target == src["model_id"] and not opts.force:
        log(f"bike relabel: {src['model_id']} already uses label set {labels.name}: nothing to do")
        summary.seconds = time.monotonic() - t0
        return summary
    log(f"bike relabel: model {facts.describe}; {src['model_id']} (labels {src['label_set']}) → "
        f"labels {labels.name} ({len(labels)}), model_id {target}")
    done = set() if opts.force else set(store.done_videos(target))
    total = len(store.done_videos(src["model_id"]))
    summary.skipped = len(done & set(store.done_videos(src["model_id"])))
    need_models_row = target not in set(store.read("models", ["model_id"])["model_id"].to_pylist())
    # the stages: stored features → scores (no decode stage), then the commit shared with bike tag
    score = StoredScoreStage(model, labels, clips_per_call=SCORE_CLIPS)
    write = WriteStage(store, target, model_row(target, facts, labels, window) if need_models_row else None,
                       batch=opts.batch, replace_all=opts.force)
    runner = LocalRunner(score, model_batch=SCORE_CLIPS, batch_items=opts.batch)
    runner.start()                                        # encodes the new prompts once, before timing
    progress = Progress(total, "relabel", bar=opts.progress)
    progress.skip(summary.skipped)

    def count(v: VideoResult) -> VideoResult:
        progress.update(v.status == "ok", len(v.clips) * model.frames)
        summary.videos += 1
        summary.errors += v.status != "ok"
        return v

    try:
        commit(runner.run(source_videos(store, src["model_id"], done)), write, count)
    finally:
        progress.close()
        summary.score_s, summary.clips = score.busy(), score.clips
    summary.seconds = time.monotonic() - t0
    if opts.index and summary.videos:
        from .tag import update_vector_index
        summary.index, summary.index_failed = update_vector_index(store, target)
    return summary
