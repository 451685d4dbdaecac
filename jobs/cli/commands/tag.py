"""``bike tag SOURCE... --store DIR``: tag a corpus (labels, attributes, saliency, embeddings) into a store."""
from __future__ import annotations

from engine.model.config import DEFAULTS

from jobs import output
from jobs.cli.options import (add_model_args, add_store_arg, command_parser, model_kwargs, nonneg_float,
                       nonneg_int, positive_float, positive_int)


def register(sub) -> None:
    p = command_parser(
        sub, "tag", help="tag videos into a store (Ray; exactly once per model and label set)",
        description="Tag every video of SOURCE... into the store: per clip (a --window of the video) the top-5 "
                    "labels with fused / video / attributes scores and saliency, the top-5 attributes, the "
                    "per-frame embeddings and the saliency-weighted clip embedding. Videos the store already "
                    "holds for this model + label set + window are skipped (a rerun with nothing new answers "
                    "in about a second, without starting Ray); files that cannot be decoded become rows with "
                    "status 'error'. SOURCE may also be object storage (s3://, gs://, http(s)://): objects are "
                    "fetched on the decoding node. A few local files run in this process (--runner); otherwise "
                    "on a local Ray sized to the machine (its logs stay out of the terminal; -v shows them), or "
                    "on a cluster with --address auto. When the store "
                    "passes --compact-at batches, its small shards are merged at the end (`bike compact`).",
        examples=["bike tag ~/videos --store tags/ --model bike-tiny --random-init",
                  "bike tag s3://bucket/videos/ https://host/clip.mp4 --store tags/ --endpoint http://minio:9000",
                  "bike tag 'archive/**/*.mp4' list.txt --store tags/ --labels ucf101",
                  "bike tag ~/videos --store tags/ --format json      # the summary as one JSON object",
                  "ray job submit -- bike tag /data/videos --store /data/tags --address auto"])
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="video files, folders (recursive), globs (quoted), or .txt/.list files of paths")
    add_store_arg(p, note='created when missing')
    add_model_args(p)
    p.add_argument("--window", type=nonneg_float, default=DEFAULTS.window_s, metavar="SECONDS",
                   help=f"clip length: one clip per window of the video (default {DEFAULTS.window_s:g}; "
                        "0: each video is one clip)")
    p.add_argument("--windows", choices=("fixed", "shots"), default="fixed",
                   help="fixed: consecutive --window seconds (default); shots: windows inside the video's shots "
                        "(TransNetV2), so no clip spans a cut; a shot longer than --window is split, the shots "
                        "go to the shots table (docs/tagging.md)")
    p.add_argument("--min-shot", type=nonneg_float, default=1.0, metavar="SECONDS",
                   help="--windows shots: a shot shorter than this joins a neighbour (default 1)")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="join a Ray cluster (default: a local Ray sized to this machine)")
    p.add_argument("--runner", choices=("auto", "local", "ray"), default="auto",
                   help="local: decode and score in this process, one video after another (no Ray start-up: "
                        "for tests and a few files); ray: a local Ray sized to the machine, or the cluster of "
                        "--address; auto (default): local for at most 4 local files without --address, else ray")
    p.add_argument("--batch", type=positive_int, default=16, metavar="N",
                   help="videos per store batch: the unit of commit, and what a crash can lose (default 16)")
    p.add_argument("--model-batch", type=positive_int, default=32, metavar="CLIPS",
                   help="clips per model call, across videos (default 32)")
    p.add_argument("--decoders", type=positive_int, default=None, metavar="N",
                   help="videos decoded at once on CPUs (default: sized to the cluster); NVDEC decodes run "
                        "beside them, one per NVDEC engine of the cluster (docs/decoding.md)")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="decode time limit per video (default 30 s + 2 s per second of video)")
    p.add_argument("--force", action="store_true", help="tag again videos already in the store (replaces them)")
    p.add_argument("--retry-errors", action="store_true", help="tag again videos recorded as errors")
    p.add_argument("--rehash", action="store_true",
                   help="hash every file again instead of trusting the ids the store remembers for files whose "
                        "path, size, modification time and inode are unchanged (and remember the new ones); "
                        "objects (s3://...) are then hashed on this machine before decoding, instead of by their "
                        "decode tasks")
    p.add_argument("--compact-at", type=nonneg_int, default=256, metavar="N",
                   help="merge small shards (`bike compact`) when the store holds more than N batches "
                        "(default 256; 0: never)")
    p.add_argument("--text", default="subtitles", metavar="CHANNELS",
                   help="text channels read into the transcripts table, comma-separated: subtitles (embedded "
                        "streams and .srt/.vtt beside the video; no model), ocr (on-screen text, rapidocr), asr "
                        "(speech; see --asr), or none (default: subtitles). Each channel reads a video once; "
                        "adding one to a tagged store later runs only that channel (docs/text.md)")
    p.add_argument("--asr", default="pocketsphinx", choices=["pocketsphinx", "whisper"],
                   help="speech backend of --text asr (default pocketsphinx: offline, weak; whisper: "
                        "faster-whisper, its weights fetched once: `bike weights --asr`)")
    p.add_argument("--whisper-model", default="base.en", metavar="NAME|DIR",
                   help="faster-whisper model name or local folder (default base.en)")
    p.add_argument("--no-index", action="store_true", help="do not update the vector index at the end")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    output.add_format_arg(p, what="prints the job summary")
    p.set_defaults(func=run)


def summary_table(summary, out) -> None:
    for line in summary.lines():
        print(output.safe(line), file=out)


def run(args) -> int:
    from jobs.cli.options import resolve_labels
    from jobs.tag.tag import TagOptions, run_tag
    labels = resolve_labels(args)
    from jobs.tag.textstage import TextOptions, parse_channels
    text = TextOptions(channels=parse_channels(args.text), asr=args.asr, whisper_model=args.whisper_model,
                       force=args.force, retry_errors=args.retry_errors)
    opts = TagOptions(sources=args.sources, text=text, store=args.store, labels=labels,
                      model_kwargs=model_kwargs(args), window_s=args.window or None, address=args.address,
                      endpoint=args.endpoint, runner=args.runner,
                      windows=args.windows, min_shot=args.min_shot,
                      batch=args.batch, model_batch=args.model_batch, force=args.force,
                      retry_errors=args.retry_errors, rehash=args.rehash, index=not args.no_index,
                      timeout_s=args.timeout, decoders=args.decoders, decoder=args.decoder, sampling=args.sampling,
                      compact_at=args.compact_at,
                      progress=False if args.no_progress or output.verbosity() < output.NORMAL else None)
    summary = run_tag(opts, log=output.info)
    output.emit(summary, args.format, table_fn=summary_table)
    return 1 if summary.index_failed else 0
