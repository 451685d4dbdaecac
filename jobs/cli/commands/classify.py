"""``bike classify VIDEO...``: top labels, attributes and per-frame saliency of each video."""
from __future__ import annotations

import sys

from jobs import output
from jobs.cli.options import add_model_args, add_top_arg, command_parser, load_model_from_args, positive_int, \
    resolve_labels


def register(sub) -> None:
    p = command_parser(
        sub, "classify", help="classify videos with BIKE (labels, attributes, saliency)",
        description="Classify each video as one clip: top labels with fused, video-branch and attributes-branch "
                    "probabilities, the top-5 attributes, and the top label's saliency over the sampled frames. "
                    "Without weights it says how to get them (`bike weights`). A VIDEO that is missing or cannot "
                    "be decoded gets one error line (and an error record); the others are still classified, and "
                    "the exit status is then 2. Local files only (object storage: `bike tag`).",
        examples=["bike classify clip.mp4                                  # ViT-B-32, OpenAI weights, Kinetics-400",
                  "bike classify clip.mp4 --labels ucf101 --format jsonl",
                  "bike classify clip.mp4 --checkpoint runs/new/adapted.pt  # its own labels",
                  "bike classify a.mp4 b.mp4 --labels \"dog,cat,surfing crowd\" --clips 4 --crops 3",
                  "bike classify clip.mp4 --model bike-tiny --random-init  # offline smoke test"])
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_model_args(p)
    p.add_argument("--clips", type=positive_int, default=1, metavar="N", help="temporal views averaged")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops averaged")
    add_top_arg(p, 5, "labels")
    output.add_format_arg(p, what="jsonl: one line per video, csv: one per video and label",
                          json_alias="jsonl")
    p.set_defaults(func=run)


def print_text(results, out=None) -> None:
    out = out or sys.stdout
    for r in results:
        if "error" in r:
            continue
        warn = "   [RANDOM WEIGHTS: labels are meaningless]" if r["random_init"] else ""
        print(f"{output.safe(r['video'])}{warn}", file=out)
        branches = r.get("branches", "fused")
        print(f"  {'label':<40} {'score':>8} {'video':>8} {'attrib':>8}   (score = {branches} branch"
              f"{'es' if branches == 'fused' else ''}, {r.get('precision', 'fp32')})", file=out)
        for ls in r["labels"]:
            att = "" if ls["attribute_score"] is None else f"{ls['attribute_score']:8.4f}"
            print(f"  {output.safe(ls['label'])[:40]:<40} {ls['score']:8.4f} {ls['video_score']:8.4f} {att:>8}",
                  file=out)
        print("  attributes: " + ", ".join(f"{output.safe(a)} ({s:.3f})" for a, s in _pairs(r["attributes"])),
              file=out)
        print(f"  saliency of '{output.safe(r['labels'][0]['label'])}':", file=out)
        peak = max(r["saliency"])
        for t, s in zip(r["frame_times"], r["saliency"]):
            bar = "#" * int(round(30 * s / peak)) if peak > 0 else ""
            print(f"    {t:8.2f}s  {s:6.3f}  {bar}", file=out)


def _pairs(attributes):
    """Attributes as (phrase, score), whether they are pairs or {attribute, score} objects."""
    for a in attributes:
        yield (a["attribute"], a["score"]) if isinstance(a, dict) else (a[0], a[1])


def csv_rows(results) -> list:
    """One row per video and label rank (errors: one row with the reason)."""
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"video": r["video"], "rank": None, "label": None, "score": None, "video_score": None,
                         "attribute_score": None, "error": r["error"], "random_init": None})
            continue
        for i, ls in enumerate(r["labels"]):
            rows.append({"video": r["video"], "rank": i, "label": ls["label"], "score": ls["score"],
                         "video_score": ls["video_score"], "attribute_score": ls["attribute_score"], "error": None,
                         "random_init": r["random_init"]})
    return rows


#: Why an object-storage URL gets no result (``bike tag`` fetches objects on its decode tasks; classify does not).
REMOTE_REASON = "bike classify reads local files only; tag object storage with `bike tag URL --store DIR`"


def run(args) -> int:
    from engine.model.classify import classify_video
    from engine.video import VideoError

    from engine.sources.remote import is_remote
    model = load_model_from_args(args)          # weights first: a missing one is the first thing said
    labels = resolve_labels(args, model)
    results, failed = [], 0
    stream = args.format == "jsonl"             # one line per video as soon as it is done
    for path in args.videos:
        try:
            if is_remote(path):
                raise VideoError(path, REMOTE_REASON)
            rec = output.plain(classify_video(model, path, labels, clips=args.clips, crops=args.crops,
                                              top_k=args.top))
        except VideoError as e:
            failed += 1
            output.warn(f"bike: error: {output.safe(e.path)}: {e.reason}")
            rec = {"video": path, "error": e.reason}
        if stream:
            output.write_jsonl(rec)
            sys.stdout.flush()
        elif args.format == "table":
            print_text([rec])
        else:
            results.append(rec)
    if args.format == "csv":
        output.write_csv(csv_rows(results))
    elif args.format == "json":
        output.write_json(results)
    return 2 if failed else 0                   # a file that is missing or cannot be decoded: README "Errors"
