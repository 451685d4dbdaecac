"""The contract every `bike` command keeps: light start, one vocabulary, checked numbers, help with defaults
and examples, one output module (table|json|jsonl|csv), names made safe for the terminal."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

import jobs.cli
from jobs import output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
HEAVY = ("torch", "open_clip", "ray", "faiss", "duckdb", "pyarrow", "pandas", "numpy")

#: commands that print results take --format; all of them
RESULT_COMMANDS = ["classify", "tag", "index", "search", "sql", "train", "adapt", "eval", "relabel", "weights",
                   "compact"]


def _py(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=timeout)


def _subparsers(parser=None) -> "dict[str, argparse.ArgumentParser]":
    parser = parser or jobs.cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ---- start-up ---------------------------------------------------------------------------------------------
def test_building_the_cli_imports_nothing_heavy():
    res = _py("import sys, jobs.cli; jobs.cli.build_parser(); "
              f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"`bike --help` imports {res.stdout.strip()}"


def test_import_bike_and_engine_are_light():
    res = _py("import sys, bike, engine, engine.model.labels, engine.model.config, jobs.output, jobs.cli.options; "
              "print([m for m in ('torch', 'open_clip', 'ray') if m in sys.modules])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_starts_fast():
    """`bike --help` well under a second (0.25 s on an idle 2-core machine; generous for a shared one)."""
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, env=ENV,
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0 and "examples:" in res.stdout
    assert time.monotonic() - t0 < 3.0


def test_bare_bike_prints_help_and_version(capsys):
    assert jobs.cli.main([]) == 0
    out = capsys.readouterr().out
    assert "usage: bike" in out and all(c in out for c in jobs.cli.COMMANDS)
    with pytest.raises(SystemExit) as e:
        jobs.cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("bike ")


# ---- every command's --help ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", jobs.cli.COMMANDS)
def test_help_contract(name, capsys):
    sub = _subparsers()[name]
    with pytest.raises(SystemExit) as e:
        jobs.cli.main([name, "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert f"usage: bike {name}" in help_text
    assert "examples:\n  bike " in help_text or "examples:\n  ray " in help_text, "an example in every --help"
    assert "-q, --quiet" in help_text and "-v, --verbose" in help_text
    # every option with a default says it
    for action in sub._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
            assert "default" in (sub.formatter_class(f"bike {name}")._get_help_string(action) or ""), \
                f"bike {name} {action.option_strings[0]}: default not shown"
    # one vocabulary: the old names are gone from the help
    for old in ("--from ", "--base ", "--weights ", "--json "):
        assert old not in help_text, f"bike {name} --help still shows {old.strip()}"
    if name in RESULT_COMMANDS:
        fmt = sub._option_string_actions["--format"]
        assert tuple(fmt.choices) == output.FORMATS and fmt.default == "table"


def test_one_name_per_idea():
    subs = _subparsers()
    for name in ("classify", "search"):
        assert subs[name]._option_string_actions["-k"] is subs[name]._option_string_actions["--top"]
    for name in ("index", "search", "relabel"):
        assert "--model-id" in subs[name]._option_string_actions
    for name in ("classify", "tag", "eval", "train", "adapt", "relabel", "search"):
        assert "--checkpoint" in subs[name]._option_string_actions
    for name in ("classify", "tag", "eval", "train", "adapt", "relabel"):
        assert "--pretrained" in subs[name]._option_string_actions
    for name in ("tag", "relabel", "train", "adapt"):
        assert "per" in subs[name]._option_string_actions["--batch"].help      # says what a batch is


def test_every_store_command_takes_endpoint_with_one_help():
    """--store is declared in one place (jobs.cli.options.add_store_arg): every command that takes a store also takes
    --endpoint (an s3:// store needs it), and the store and the endpoint read the same in every command."""
    subs = _subparsers()
    with_store = {n: s for n, s in subs.items() if "--store" in s._option_string_actions}
    assert {"tag", "search", "sql", "serve", "index", "check", "repair", "compact", "relabel", "export", "label",
            "dedup", "eval"} <= set(with_store)
    for name, sub in with_store.items():
        assert "--endpoint" in sub._option_string_actions, f"bike {name} takes --store but not --endpoint"
        assert sub._option_string_actions["--store"].help.startswith("the store: a directory, or s3://bucket/prefix/")
    assert len({s._option_string_actions["--endpoint"].help for s in with_store.values()}) == 1


def test_old_names_still_parse():
    parser = jobs.cli.build_parser()
    a = parser.parse_args(["relabel", "--store", "s", "--from", "abc"])
    assert a.model_id == "abc"
    a = parser.parse_args(["adapt", "l.txt", "--shots", "2", "--out", "o", "--base", "c.pt"])
    assert a.checkpoint == "c.pt"
    a = parser.parse_args(["search", "--store", "s", "q", "--weights", "w.pt"])
    assert a.checkpoint == "w.pt"
    a = parser.parse_args(["classify", "v.mp4", "--json"])
    assert a.format == "jsonl"


# ---- numbers checked at parse time ----------------------------------------------------------------------
BAD_NUMBERS = [
    (["classify", "v.mp4", "--frames", "0"], "--frames"),
    (["classify", "v.mp4", "--clips", "0"], "--clips"),
    (["classify", "v.mp4", "--top", "0"], "--top"),
    (["classify", "v.mp4", "-k", "-3"], "-k"),
    (["classify", "v.mp4", "--frames", "eight"], "--frames"),
    (["tag", "v.mp4", "--store", "STORE", "--timeout", "-1"], "--timeout"),
    (["tag", "v.mp4", "--store", "STORE", "--timeout", "nan"], "--timeout"),
    (["tag", "v.mp4", "--store", "STORE", "--batch", "0"], "--batch"),
    (["tag", "v.mp4", "--store", "STORE", "--window", "-5"], "--window"),
    (["search", "--store", "STORE", "q", "-k", "0"], "-k"),
    (["train", "l.txt", "--out", "o", "--epochs", "0"], "--epochs"),
    (["train", "l.txt", "--out", "o", "--val-fraction", "1.5"], "--val-fraction"),
    (["adapt", "l.txt", "--out", "o", "--shots", "0"], "--shots"),
    (["eval", "l.txt", "--splits", "0"], "--splits"),
    (["relabel", "--store", "STORE", "--batch", "-1"], "--batch"),
    (["classify", "v.mp4", "--device", "gpu"], "--device"),
]


@pytest.mark.parametrize("argv,flag", BAD_NUMBERS, ids=[" ".join(a[:1] + [f]) for a, f in BAD_NUMBERS])
def test_numbers_are_checked_when_parsing(argv, flag, tmp_path, capsys):
    store = tmp_path / "store"
    argv = [str(store) if a == "STORE" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        jobs.cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err or flag in err
    assert "Traceback" not in err
    assert not store.exists()                           # refused before anything was created


# ---- the output module ----------------------------------------------------------------------------------------
def test_safe_escapes_control_and_format_characters():
    assert output.safe("plain name.mp4") == "plain name.mp4"
    assert output.safe("a\nb") == "a\\nb"
    assert output.safe("x\x1b[31my") == "x\\x1b[31my"
    assert output.safe("r\u202etxt.mp4") == "r\\u202etxt.mp4"      # right-to-left override
    assert output.safe("tab\there\r") == "tab\\there\\r"
    assert output.safe("back\\slash\n") == "back\\\\slash\\n"        # unambiguous
    assert output.safe("no weights\n  fix: ...", keep_newlines=True) == "no weights\n  fix: ..."   # hint lines
    assert output.safe("a\nbike: fake", keep_newlines=True) == "a\\nbike: fake"          # never a line of its own
    assert output.safe("é ü 日本") == "é ü 日本"                       # printable text stays as it is


def test_formats_render_the_same_records():
    from dataclasses import dataclass

    @dataclass
    class Row:
        name: str
        score: float
        tags: list

    rows = [Row("a\nb", 0.5, ["x", "y"]), Row("c", float("nan"), [])]
    buf = io.StringIO()
    output.emit(rows, "json", out=buf)
    assert json.loads(buf.getvalue()) == [{"name": "a\nb", "score": 0.5, "tags": ["x", "y"]},
                                          {"name": "c", "score": None, "tags": []}]
    buf = io.StringIO()
    output.emit(rows, "jsonl", out=buf)
    assert [json.loads(x)["name"] for x in buf.getvalue().splitlines()] == ["a\nb", "c"]
    buf = io.StringIO()
    output.emit(rows, "csv", out=buf)
    text = buf.getvalue()
    assert "\r" not in text                                          # \n line endings
    assert list(csv.reader(io.StringIO(text))) == [["name", "score", "tags"], ["a\nb", "0.5", '["x", "y"]'],
                                                  ["c", "", "[]"]]
    buf = io.StringIO()
    output.emit(rows, "table", out=buf)
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["name", "score", "tags"]
    assert lines[2].startswith("a\\nb ") and len(lines) == 5         # header, rule, 2 rows, count


def test_csv_on_a_terminal_is_escaped():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    buf = Tty()
    output.write_csv([{"path": "x\x1b[2Jy"}], out=buf)
    assert "\x1b" not in buf.getvalue() and "x\\x1b[2Jy" in buf.getvalue()


def test_closed_pipe_ends_quietly(tmp_path):
    """`bike sql ... | head -1`: the reader stops early; no BrokenPipeError traceback, status 0."""
    from index.store import Store
    Store(tmp_path / "s", create=True)
    res = subprocess.run(f"{sys.executable} -m jobs.cli sql --store {tmp_path / 's'} --format csv "
                         "'SELECT range AS i FROM range(300000)' | head -2; exit ${PIPESTATUS[0]}",
                         shell=True, executable="/bin/bash", capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    assert res.stdout == "i\n0\n"
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.returncode == 0


def test_user_errors_are_one_line_with_the_name_made_safe(capsys):
    from engine.video import VideoError

    def boom(args):
        raise VideoError("/videos/evil\nbike: fake line\x1b[2J.mp4", "not a video")
    parser = jobs.cli.build_parser()
    args = parser.parse_args(["weights"])
    args.func = boom
    code = None
    orig = jobs.cli.entry.build_parser
    try:
        jobs.cli.entry.build_parser = lambda: _Fixed(parser, args)
        code = jobs.cli.main(["weights"])
    finally:
        jobs.cli.entry.build_parser = orig
    err = capsys.readouterr().err
    assert code == 2
    assert err == "bike: error: /videos/evil\\nbike: fake line\\x1b[2J.mp4: not a video\n"


class _Fixed:
    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()


def test_progress_counts_frames_of_unfinished_videos():
    """A single long video moves the frame count while it is still being scored (jobs/progress.py)."""
    from jobs.progress import Progress
    scored = {"frames": 0}
    buf = io.StringIO()
    p = Progress(1, "tag", stream=buf, interval=0.05, bar=False)
    p.follow(lambda: scored["frames"])
    for n in (80, 160, 240):
        scored["frames"] = n
        time.sleep(0.2)
    p.close()
    counts = [int(line.split(" frames,")[0].rsplit(" ", 1)[1]) for line in buf.getvalue().splitlines()]
    assert counts and counts[-1] == 240 and sorted(counts) == counts and counts[0] < 240
    assert all("0/1 videos" in line for line in buf.getvalue().splitlines())       # no video has finished


def test_decoding_options_apply_to_one_command_only(monkeypatch):
    """--decoder/--sampling hold while their command runs and are gone after it (a process that runs several
    commands — a test session, a notebook — must not keep the previous command's choice); the environment is
    never used to carry them."""
    from engine.video import default_decoder, default_sampling
    from jobs.cli.options import command_context
    monkeypatch.setenv("BIKE_DECODER", "ffmpeg")
    monkeypatch.delenv("BIKE_SAMPLING", raising=False)
    args = jobs.cli.build_parser().parse_args(["classify", "v.mp4", "--decoder", "pyav", "--sampling", "keyframes"])
    with command_context(args):
        assert (default_decoder(), default_sampling()) == ("pyav", "keyframes")
        assert os.environ["BIKE_DECODER"] == "ffmpeg" and "BIKE_SAMPLING" not in os.environ
    assert (default_decoder(), default_sampling()) == ("ffmpeg", "exact")
