"""bike's host settings: every ``BIKE_*`` environment variable, read in one place into one typed object.

Options of a command are arguments (``--decoder``, ``--endpoint``, ...) and travel as typed fields of the job
(e.g. ``jobs.tag.tag.TagOptions``), never through the environment. What is left for environment variables are
facts about the host (where ffmpeg is, how many NVDEC engines a GPU has, where caches go) and a few defaults a
user may want for every command. :class:`Settings` holds them, one field per variable; ``Settings.from_env()``
reads them all at once (the code asks it where it needs a value; nothing else in bike reads ``BIKE_*``).

docs/cli.md's table of variables is :func:`env_table`'s output (tests/test_settings.py checks both that the
table is current and that every ``BIKE_*`` name in engine/, index/ and jobs/ is a field here). Variables that
configure other programs (``AWS_*``, ``HF_*``, ``RAY_*``, ``CUDA_VISIBLE_DEVICES``) keep their own meanings
and are not here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields


def _setting(env: str, default, doc: str, shown: str, parse=str):
    return field(default=default, metadata={"env": env, "doc": doc, "shown": shown, "parse": parse})


def _number(kind):
    def parse(raw: str, env: str):
        try:
            return kind(float(raw)) if kind is int and "." in raw else kind(raw)
        except ValueError:
            raise ValueError(f"${env}={raw!r}: not a number") from None
    return parse


def _text(raw: str, env: str) -> "str | None":
    return raw.strip() or None


def _keep(raw: str, env: str) -> str:
    return raw                                      # BIKE_CACHE_DIR: "" means "no cache", kept as ""


@dataclass(frozen=True)
class Settings:
    """The ``BIKE_*`` environment variables, one typed field each (None: unset). ``from_env()`` reads them."""

    cache_dir: "str | None" = _setting(
        "BIKE_CACHE_DIR", None, "bike's caches: text features of label sets (`text/`), serve's thumbnails, local "
        "copies of an `s3://` store's index (`index/`); empty: no caches", "`~/.cache/bike`", _keep)
    decoder: "str | None" = _setting(
        "BIKE_DECODER", None, "the video decoder when `--decoder` is not given (`auto`, `pyav`, `ffmpeg`, `nvdec`; "
        "docs/decoding.md); `bike tag` resolves it once and passes it to every decode task", "`auto`", _text)
    sampling: "str | None" = _setting(
        "BIKE_SAMPLING", None, "the frame sampling when `--sampling` is not given (`exact`, `keyframes`; "
        "docs/decoding.md); `bike tag` resolves it once and passes it to every decode task", "`exact`", _text)
    ffmpeg: "str | None" = _setting(
        "BIKE_FFMPEG", None, "the ffmpeg binary of the `ffmpeg` decoder (`bike weights` shows which one); "
        "forwarded to Ray workers", "`ffmpeg` on PATH, else imageio-ffmpeg's build", _text)
    nvdec_engines: "str | None" = _setting(
        "BIKE_NVDEC_ENGINES", None, "NVDEC engines per GPU that the local Ray declares (`0`: none; "
        "docs/decoding.md)", "from a table by GPU name", _text)
    decode_nice: int = _setting(
        "BIKE_DECODE_NICE", 10, "niceness of `bike tag`'s Ray decode workers (the model keeps the CPU it needs)",
        "`10`", _number(int))
    remote_read: str = _setting(
        "BIKE_REMOTE_READ", "stream", "`spool`: copy each object to a local file before decoding it "
        "(docs/storage.md); `stream`: ranged reads", "`stream`", lambda raw, env: raw.strip().lower() or "stream")
    stream_cache_mb: float = _setting(
        "BIKE_STREAM_CACHE_MB", 256.0, "block cache per object being decoded from object storage "
        "(docs/storage.md)", "`256`", _number(float))
    stream_stall_s: float = _setting(
        "BIKE_STREAM_STALL_S", 120.0, "seconds a ranged read of an object may get no answer before it is an "
        "error", "`120`", _number(float))
    spool_dir: "str | None" = _setting(
        "BIKE_SPOOL_DIR", None, "where spooled objects are written", "the temp folder", _text)
    spool_max_gb: float = _setting(
        "BIKE_SPOOL_MAX_GB", 50.0, "larger objects are error rows instead of being spooled", "`50`", _number(float))
    lease_s: float = _setting(
        "BIKE_LEASE_S", 60.0, "length of the writer lease of an `s3://` store (docs/storage.md; at least 3)",
        "`60`", _number(float))

    @classmethod
    def from_env(cls, env: "dict | None" = None) -> "Settings":
        """The settings ``env`` (default ``os.environ``) gives; unset or empty variables keep the defaults
        (``BIKE_CACHE_DIR=""`` is kept: no caches). A malformed number is a ``ValueError`` naming the variable."""
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or (raw.strip() == "" and f.metadata["parse"] is not _keep):
                continue
            values[f.name] = f.metadata["parse"](raw, f.metadata["env"])
        return cls(**values)


#: ``BIKE_*`` names that are not settings: a marker bike sets on its own Ray decode workers, and test knobs.
NOT_SETTINGS = {
    "BIKE_DECODE_WORKER": ("unset", "set by `bike tag` on its own decode tasks (internal; not for users)"),
    "BIKE_FUZZ_S": ("`6`", "tests only: length of the decoder fuzz test (tests/test_decoders.py)"),
    "BIKE_FUZZ_SEED": ("`1234`", "tests only: seed of the decoder fuzz test"),
    "BIKE_CHROMIUM": ("PATH", "tests only: the browser of tests/test_serve_browser.py"),
    "BIKE_SERVE_SCREENSHOT": ("unset", "tests only: where tests/test_serve_browser.py saves a screenshot"),
}


def env_names() -> "set[str]":
    """Every ``BIKE_*`` name bike knows: the settings' and :data:`NOT_SETTINGS`."""
    return {f.metadata["env"] for f in fields(Settings)} | set(NOT_SETTINGS)


def env_table() -> str:
    """The markdown table of docs/cli.md "Environment variables" (settings first, then the others)."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    rows += [f"| `{f.metadata['env']}` | {f.metadata['shown']} | {f.metadata['doc']} |" for f in fields(Settings)]
    rows += [f"| `{name}` | {shown} | {doc} |" for name, (shown, doc) in NOT_SETTINGS.items()]
    return "\n".join(rows)
