"""What this machine has for bike: cached weights, GPU, CPU features, decoders (``bike weights``).

Plain functions returning dataclasses; nothing is downloaded and nothing is written. open_clip keeps the
weights it downloads in the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``; folders ``models--<org>--<repo>``); older open_clip releases and the OpenAI
URLs use ``~/.cache/clip``. bike's text-feature cache is ``$BIKE_CACHE_DIR`` (default ``~/.cache/bike``).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: The open_clip (model, tag) pairs the README recommends; ``bike weights`` says which are cached.
RECOMMENDED = [("ViT-B-32", "openai"), ("ViT-B-16", "openai"), ("ViT-L-14", "openai"),
               ("ViT-L-14-336", "openai")]

#: Where the authors publish the released BIKE checkpoints (model zoo table in its README).
RELEASED = "https://github.com/whwu95/BIKE"


@dataclass
class CachedWeights:
    model: str
    tag: str
    cached: bool
    where: str               # the cache folder holding (or that would hold) the file
    source: str              # Hugging Face repo id or URL it is downloaded from


@dataclass
class Machine:
    python: str
    cpu: str
    cores: int
    bf16_cpu: bool                       # AVX512-BF16 or AMX: bf16 matmuls run fast on this CPU
    amx: bool
    gpus: "list[str]" = field(default_factory=list)
    torch: str = ""
    cuda: "str | None" = None
    ffmpeg: "str | None" = None          # path of the ffmpeg binary bike uses
    ffprobe: "str | None" = None
    pyav: "str | None" = None            # PyAV version
    nvdec: bool = False                  # the nvdec backend can run here (engine.video: GPU, driver, PyAV)
    nvdec_why: str = ""                  # ... else why not
    faiss: "str | None" = None
    faiss_gpus: int = 0


@dataclass
class Report:
    weights: "list[CachedWeights]"
    machine: Machine
    caches: "dict[str, str]"
    uses: "dict[str, str]"              # command family → what it will use here
    released: str = RELEASED


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def _text_cache() -> str:
    from engine.model.textcache import cache_dir
    d = cache_dir()
    return str(d) if d is not None else "disabled (BIKE_CACHE_DIR is empty)"


def cached_weights(pairs=None) -> "list[CachedWeights]":
    """Which open_clip weights are in the local caches (nothing is downloaded)."""
    import open_clip
    out = []
    for model, tag in pairs or RECOMMENDED:
        cfg = open_clip.get_pretrained_cfg(model, tag) or {}
        repo = (cfg.get("hf_hub") or "").strip("/")
        if repo:
            folder = hub_cache() / ("models--" + repo.replace("/", "--"))
            snaps = folder / "snapshots"
            cached = snaps.is_dir() and any(f.is_file() and f.stat().st_size > 1 << 20
                                            for f in snaps.rglob("*"))
            out.append(CachedWeights(model, tag, cached, str(folder), repo))
        elif cfg.get("url"):
            folder = Path(os.path.expanduser("~/.cache/clip"))
            name = cfg["url"].rsplit("/", 1)[-1]
            out.append(CachedWeights(model, tag, (folder / name).is_file(), str(folder), cfg["url"]))
    return out


def _cpu() -> "tuple[str, set]":
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if flags and name:
                    break
    except OSError:
        pass
    return name, flags


def machine() -> Machine:
    import torch
    name, flags = _cpu()
    m = Machine(python=platform.python_version(), cpu=name, cores=os.cpu_count() or 1,
                bf16_cpu=bool({"avx512_bf16", "amx_bf16"} & flags), amx="amx_bf16" in flags,
                torch=torch.__version__, cuda=torch.version.cuda)
    if torch.cuda.is_available():
        m.gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        from engine.video.ffmpeg_cli import ffmpeg_exe     # the binary the ffmpeg backend runs
        m.ffmpeg = ffmpeg_exe()
    except Exception:  # noqa: BLE001 - no ffmpeg at all: reported as missing
        m.ffmpeg = None
    m.ffprobe = shutil.which("ffprobe")
    try:
        import av
        m.pyav = av.__version__
    except Exception:  # noqa: BLE001 - PyAV missing or broken: reported as absent
        pass
    from engine.video.base import available
    why = available().get("nvdec", "not a backend of this install")
    m.nvdec, m.nvdec_why = why is None, why or ""
    try:
        import faiss
        m.faiss = getattr(faiss, "__version__", "?")
        m.faiss_gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:  # noqa: BLE001
        pass
    return m


def ffmpeg_version(path: "str | None") -> str:
    if not path:
        return "missing"
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=5).stdout
        return out.split("\n", 1)[0].replace("ffmpeg version ", "").split(" Copyright")[0][:40]
    except (OSError, subprocess.SubprocessError):
        return "not runnable"


def uses(m: Machine) -> "dict[str, str]":
    """What the commands will pick here by default, asked of the functions the runs call to decide it: the
    device (``engine.model.device.resolve_device``), the precision (``engine.model.precision.resolve``), the decoder
    (``engine.video.get_decoder``; ``$BIKE_DECODER`` counts) and, for ``bike tag``, its decode slots
    (``jobs.tag.slots.slot_decoder`` for the CPU pool, ``jobs.tag.stages.local_nvdec_engines`` for NVDEC)."""
    return {
        "classify / tag / eval / search (model)": _model_use(),
        "classify / eval / train (decoding)": _decoder_use(None),
        "tag (decoding)": _tag_decoding_use(),
        "index / search (FAISS)": "GPU" if m.faiss_gpus else "CPU",
        "tag / train (Ray)": f"a local Ray sized to this machine ({m.cores} CPUs; --address auto joins a cluster)",
        "sql / index / check": "no model, no Ray",
    }


def _model_use() -> str:
    from engine.model.device import resolve_device
    from engine.model.precision import resolve
    try:
        device = resolve_device(None)
        return f"{device.type}, {resolve(None, device.type)} (--device, --precision)"
    except Exception as e:  # noqa: BLE001 - say what is wrong instead of failing the report
        return f"? ({e})"


def _decoder_use(name) -> str:
    from engine.video import get_decoder
    try:
        return get_decoder(name).name
    except (ValueError, RuntimeError) as e:
        return f"none ({e})"


def _tag_decoding_use() -> str:
    """As ``bike tag`` sizes its local Ray: a CPU pool of its resolved backend, plus one slot per NVDEC engine."""
    from .slots import cpu_pool, slot_decoder
    from .stages import local_nvdec_engines
    cpu = f"{_decoder_use(slot_decoder(cpu_pool(), 0, None))} on the CPUs"
    try:
        engines = local_nvdec_engines()
    except Exception as e:  # noqa: BLE001 - a bad $BIKE_NVDEC_ENGINES: bike tag refuses it; say why
        return f"{cpu}; NVDEC: ? ({e})"
    return f"{cpu} + {engines} NVDEC decodes at once" if engines else f"{cpu} (no NVDEC here)"


def report() -> Report:
    m = machine()
    caches = {"open_clip weights (Hugging Face hub)": str(hub_cache()), "OpenAI URLs (older open_clip)":
              os.path.expanduser("~/.cache/clip"), "bike text features": str(_text_cache())}
    return Report(cached_weights(), m, caches, uses(m))
