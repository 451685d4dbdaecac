"""``bike weights``: which weights are cached, how to get the others, what this machine has and will use."""
from __future__ import annotations

import sys

from jobs import output
from jobs.cli.options import command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "weights", help="list cached weights, how to get weights, and what this machine will use",
        description="Lists the open_clip weights found in the local caches (nothing is downloaded), where "
                    "downloads go, where the released BIKE checkpoints are published, and what this machine "
                    "has (GPU, bf16 on the CPU, NVDEC, ffmpeg, PyAV, FAISS) with what each command will use.",
        examples=["bike weights", "bike weights --format json"])
    output.add_format_arg(p)
    p.set_defaults(func=run)


def print_report(r, out=None) -> None:
    out = out or sys.stdout
    print("open_clip weights (downloaded and cached on first use with internet; `--pretrained TAG`):", file=out)
    for w in r.weights:
        print(f"  {'cached ' if w.cached else 'missing'}  {w.model:<14} --pretrained {w.tag:<8} {w.source}", file=out)
    print("  any other tag: python -c \"import open_clip; print(open_clip.list_pretrained())\"", file=out)
    print(f"released BIKE checkpoints: the model zoo of {r.released} (one .pt per dataset, backbone and "
          "frame count);", file=out)
    print("  download one and pass it: bike classify clip.mp4 --checkpoint k400-vitb-32-f8.pt", file=out)
    print("caches:", file=out)
    for what, where in r.caches.items():
        print(f"  {what:<38} {output.safe(where)}", file=out)
    m = r.machine
    print("this machine:", file=out)
    print(f"  CPU     {output.safe(m.cpu)}, {m.cores} cores, bf16 {'yes' if m.bf16_cpu else 'no'}"
          f"{' (AMX)' if m.amx else ''}", file=out)
    print(f"  GPU     {', '.join(m.gpus) or 'none'} (torch {m.torch}, CUDA build {m.cuda or 'none'})", file=out)
    from jobs.tag.doctor import ffmpeg_version
    print(f"  ffmpeg  {output.safe(m.ffmpeg or 'missing')} ({ffmpeg_version(m.ffmpeg)}); ffprobe "
          f"{output.safe(m.ffprobe or 'not on PATH')}", file=out)
    print(f"  PyAV    {m.pyav or 'not installed'}; NVDEC {'yes' if m.nvdec else 'no (' + m.nvdec_why + ')'}",
          file=out)
    print(f"  FAISS   {m.faiss or 'not installed'}; GPUs for FAISS {m.faiss_gpus}", file=out)
    print("what the commands will use here:", file=out)
    for what, choice in r.uses.items():
        print(f"  {what:<40} {choice}", file=out)
    if not any(w.cached for w in r.weights):
        print("no pretrained weights are cached: run once with internet (e.g. `bike classify clip.mp4`), or pass "
              "--checkpoint FILE / --pretrained FILE; --random-init runs offline with meaningless labels.",
              file=out)


def run(args) -> int:
    from jobs.tag.doctor import report
    output.emit(report(), args.format, table_fn=print_report)
    return 0
