"""Benchmark of the model at each precision (engine/model/precision.py), all in ONE run, with agreement vs fp32.

    .venv/bin/python bench/model.py                                  # ViT-B-32, fp32 vs bf16 on this CPU
    .venv/bin/python bench/model.py --device cuda                   # fp32, bf16 and fp16 on a GPU
    .venv/bin/python bench/model.py --model bike-tiny --videos 4    # a quick run

1. Speed, on random frames / features (the numbers do not depend on the pixels); the precisions take turns
   call by call and keep their fastest call, so the ratios hold under a shared machine's changing load:
   * image tower: frames/s at ``--batch`` frames per call;
   * text tower: prompts/s (a search encodes one query per request; label sets are cached);
   * temporal header + VCS: clips/s of ``--batch`` clips × T frames against the 400 Kinetics prompts.
2. Agreement with fp32 over the bench corpus (bench/tag.py's generated videos, 10 s windows, 8 frames):
   cosine of every frame feature to its fp32 twin (mean and min), top-1 label agreement (fused and video
   branch, Kinetics-400 labels) and agreement of the saliency peak of the fp32 top label.

The model is a random-init open_clip with a random temporal header (no weights can be downloaded here):
speed is the real architecture's; agreement is measured on random weights, whose labels are near ties (a
harder test than trained weights with clear winners). Writes ``bench/results/model.json`` with the machine.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_tag():
    spec = importlib.util.spec_from_file_location("bench_tag", ROOT / "bench" / "tag.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def load(name: str, precision: str, device: str, header_state: dict):
    import engine
    from engine.model.temporal import TemporalTransformer
    m = engine.load_model(name, random_init=True, precision=precision, device=device)
    width = int(m.clip.ln_final.weight.shape[0])
    header = TemporalTransformer.from_state_dict(header_state, heads=max(1, width // 64))
    m.net.header = header.float().eval().to(m.device)      # as BikeModel stores a loaded header
    return m


def speed(models: dict, batch: int, repeat: int) -> dict:
    """Per precision: image frames/s, text prompts/s, header+VCS clips/s. The precisions take turns, call by
    call, and each keeps its fastest of ``repeat`` calls (after a warm-up), so a change in the machine's load
    does not favour one of them."""
    import torch

    from engine.model import bike

    def ops(m):
        s = m.image_size
        frames = torch.randn(1, batch, 3, s, s, device=m.device)
        prompts = [f"This is a video about query number {i}" for i in range(batch)]
        text = m.label_features("kinetics400")
        x = torch.randn(batch, m.frames, m.embed_dim, device=m.device)

        def head():
            with torch.no_grad():
                bike.video_branch(m.temporal(x), text.tokens, text.cls)
            if m.device.type == "cuda":
                torch.cuda.synchronize()

        def image():
            m.encode_frames(frames)
            if m.device.type == "cuda":
                torch.cuda.synchronize()
        return {"image_frames_per_s": image, "text_prompts_per_s": lambda: m._run_text(prompts),
                "header_vcs_clips_per_s": head}
    calls = {p: ops(m) for p, m in models.items()}
    best = {p: {k: float("inf") for k in c} for p, c in calls.items()}
    for r in range(repeat + 1):                                      # round 0 warms up (oneDNN kernel choice)
        for k in next(iter(calls.values())):
            for p, c in calls.items():
                dt = _once(c[k])
                if r:
                    best[p][k] = min(best[p][k], dt)
    return {p: {k: batch / dt for k, dt in b.items()} for p, b in best.items()}


def corpus_clips(paths, frames: int, size: int, resize: int):
    import numpy as np

    from engine.video import iter_clips
    clips = [c.frames[0] for p in paths for c in iter_clips(str(p), frames=frames, window_s=10.0, size=size,
                                                             resize=resize)]
    return np.stack(clips)                                           # (N, T, S, S, 3)


def outputs(m, clips, batch: int) -> dict:
    import torch
    xs, fused, video, sal = [], [], [], []
    for i in range(0, len(clips), batch):
        x = m.encode_frames(m.preprocess(clips[i:i + batch]))
        s = m.score_features(x, "kinetics400")
        xs.append(x.cpu())
        fused.append(s.fused)
        video.append(s.video)
        sal.append(s.spotting.saliency)
    return {"x": torch.cat(xs), "fused": torch.cat(fused), "video": torch.cat(video), "saliency": torch.cat(sal)}


def agreement(ref: dict, got: dict) -> dict:
    """Agreement with the fp32 reference. For the clips whose top-1 label differs, the fp32 margin between
    its own first and second label says whether they were near ties (random weights make many)."""
    import torch
    cos = torch.nn.functional.cosine_similarity(ref["x"].flatten(0, 1), got["x"].flatten(0, 1), dim=-1)
    top_ref = ref["fused"].argmax(1)
    rows = torch.arange(len(top_ref))
    peak_ref = ref["saliency"][rows, top_ref].argmax(-1)
    peak_got = got["saliency"][rows, top_ref].argmax(-1)
    two = ref["fused"].topk(2, dim=1).values
    margin = two[:, 0] - two[:, 1]                                   # fp32 top-1 minus top-2 probability
    differ = got["fused"].argmax(1) != top_ref
    sal = ref["saliency"][rows, top_ref].sort(dim=-1, descending=True).values
    sal_margin = sal[:, 0] - sal[:, 1]
    return {"frames": int(cos.numel()), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "top1_fused": float((~differ).float().mean()),
            "top1_video": float((got["video"].argmax(1) == ref["video"].argmax(1)).float().mean()),
            "saliency_peak": float((peak_got == peak_ref).float().mean()),
            "fused_prob_max_abs_diff": float((got["fused"] - ref["fused"]).abs().max()),
            "fp32_top1_margin_median": float(margin.median()),
            "fp32_top1_margin_where_top1_differs": [float(x) for x in margin[differ]],
            "fp32_saliency_peak_margin_median": float(sal_margin.median()),
            "fp32_saliency_peak_margin_where_peak_differs": [float(x) for x in sal_margin[peak_got != peak_ref]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model, random init (default ViT-B-32)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", default=None,
                    help="default: fp32 bf16 on a CPU, fp32 bf16 fp16 on CUDA (fp32 first: the reference)")
    ap.add_argument("--batch", type=int, default=64, help="frames (tower), prompts, clips (header) per call")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per precision (fastest kept)")
    ap.add_argument("--videos", type=int, default=12, help="bench corpus videos for the agreement")
    ap.add_argument("--work", default=None, help="folder of the generated corpus (shared with bench/tag.py)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "model.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.model.precision import cpu_has_bf16
    from engine.model.temporal import TemporalTransformer
    tag = _bench_tag()
    cuda = args.device.startswith("cuda")
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"])
    if precisions[0] != "fp32":
        precisions = ["fp32", *[p for p in precisions if p != "fp32"]]
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.work or Path(tempfile.gettempdir()) / "bike-bench-tag")
    paths = tag.make_corpus(work / "corpus", args.videos)

    import engine
    probe = engine.load_model(args.model, random_init=True)
    width, embed = int(probe.clip.ln_final.weight.shape[0]), probe.embed_dim
    torch.manual_seed(1)
    header_state = copy.deepcopy(TemporalTransformer(embed, heads=max(1, width // 64)).state_dict())
    clips = corpus_clips(paths, probe.frames, probe.crop, probe.resize)
    del probe
    print(f"corpus: {len(paths)} videos → {len(clips)} clips of {clips.shape[1]} frames", file=sys.stderr)

    models = {p: load(args.model, p, args.device, header_state) for p in precisions}
    for m in models.values():                                        # label set + lexicon, cached on disk
        m.label_features("kinetics400")
        m.lexicon_features()
    speeds = speed(models, args.batch, args.repeat)
    rows, ref = [], None
    for p, m in models.items():
        t = time.perf_counter()
        out = outputs(m, clips, args.batch)
        r = {"precision": m.precision.name, **speeds[p], "corpus_seconds": time.perf_counter() - t}
        ref = ref or out
        r["agreement_vs_fp32"] = agreement(ref, out)
        rows.append(r)
        print(f"{p}: {r['image_frames_per_s']:.1f} frames/s, header+VCS {r['header_vcs_clips_per_s']:.0f} clips/s, "
              f"text {r['text_prompts_per_s']:.1f} prompts/s", file=sys.stderr)
    base = rows[0]
    for r in rows:
        for k in ("image_frames_per_s", "text_prompts_per_s", "header_vcs_clips_per_s"):
            r[k.replace("_per_s", "_speedup")] = r[k] / base[k]
    result = {"machine": {**tag.machine(), "cpu_bf16": cpu_has_bf16(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()},
              "shared_load": "other jobs may share the CPU: compare precisions within this run",
              "model": f"{args.model} (random init) + random temporal header", "device": args.device,
              "batch": args.batch, "corpus": {"videos": len(paths), "clips": int(len(clips)),
                                              "frames_per_clip": int(clips.shape[1])},
              "results": rows, "command": " ".join([".venv/bin/python", "bench/model.py", *sys.argv[1:]])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    head = ("precision", "image frames/s", "text prompts/s", "header+VCS clips/s", "cos mean/min",
            "top-1 fused", "top-1 video", "saliency peak")
    table = [head]
    for r in rows:
        a = r["agreement_vs_fp32"]
        table.append((r["precision"], f"{r['image_frames_per_s']:.1f} ({r['image_frames_speedup']:.2f}x)",
                      f"{r['text_prompts_per_s']:.1f} ({r['text_prompts_speedup']:.2f}x)",
                      f"{r['header_vcs_clips_per_s']:.0f} ({r['header_vcs_clips_speedup']:.2f}x)",
                      f"{a['cosine_mean']:.5f}/{a['cosine_min']:.5f}", f"{a['top1_fused']:.1%}",
                      f"{a['top1_video']:.1%}", f"{a['saliency_peak']:.1%}"))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    m = result["machine"]
    print(f"\nmodel benchmark — {m['cpu']}, {m['cores']} cores, GPU {m['gpu']}, bf16 hardware {m['cpu_bf16']}; "
          f"{result['model']}, batch {args.batch}; agreement over {len(clips)} corpus clips vs fp32")
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
