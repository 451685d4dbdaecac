"""Listing SOURCE arguments: files, folders, globs, list files; hidden and non-video files skipped."""
from __future__ import annotations

import os

import pytest

from jobs.errors import UsageError
from jobs.tag.sources import list_sources


@pytest.fixture()
def tree(tmp_path):
    for rel in ["a.mp4", "b.MKV", "notes.txt.bak", "sub/c.webm", "sub/deep/d.mov", "sub/readme.md",
                ".hidden.mp4", ".cache/e.mp4", "sub/.f.mp4"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def test_folder_is_walked_recursively_and_skips_hidden_and_non_video(tree):
    s = list_sources([tree])
    assert sorted(os.path.relpath(p, tree) for p in s.videos) == ["a.mp4", "b.MKV", "sub/c.webm", "sub/deep/d.mov"]
    assert s.skipped["hidden"] == 3                         # .hidden.mp4, .cache/, sub/.f.mp4
    assert s.skipped["not video files (by extension)"] == 2  # notes.txt.bak, readme.md


def test_glob_and_explicit_files(tree):
    s = list_sources([str(tree / "**" / "*.m*")])
    assert sorted(os.path.basename(p) for p in s.videos) == ["a.mp4", "d.mov"]       # globs are case-sensitive
    assert s.skipped["not video files (by extension)"] == 1  # readme.md matches the glob
    # a file named explicitly is kept whatever its extension (it becomes an error row if it is no video)
    s = list_sources([tree / "sub" / "readme.md", tree / "a.mp4", tree / "a.mp4"])
    assert [os.path.basename(p) for p in s.videos] == ["readme.md", "a.mp4"]
    assert s.skipped["listed twice"] == 1


def test_list_file_relative_paths_comments_and_missing_entries(tree):
    lst = tree / "sub" / "videos.txt"
    lst.write_text("# my corpus\n\nc.webm\n../a.mp4\nmissing.mp4\ndeep\n")
    s = list_sources([lst])
    assert [os.path.relpath(p, tree) for p in s.videos] == ["sub/c.webm", "a.mp4", "sub/missing.mp4",
                                                             "sub/deep/d.mov"]


def test_command_line_source_that_matches_nothing_is_a_usage_error(tree):
    with pytest.raises(UsageError, match="no such file or folder"):
        list_sources([tree / "nope.mp4"])
    with pytest.raises(UsageError, match="matches no file"):
        list_sources([str(tree / "*.avi")])


# ---- things that used to hang: symbolic-link loops, FIFOs, devices --------------------------------------
def _loopy(tmp_path):
    d = tmp_path / "loop"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "v.mp4").write_bytes(b"x")
    os.symlink(".", d / "self")                     # two links to itself and one to its parent
    os.symlink(".", d / "again")
    os.symlink("..", d / "sub" / "up")
    os.mkfifo(d / "pipe.mp4")
    return d


def test_symlink_loops_and_fifos_end_the_walk(tmp_path):
    import signal
    d = _loopy(tmp_path)
    signal.alarm(20)                                 # a hang fails the test instead of blocking the suite
    try:
        s = list_sources([d])
        g = list_sources([str(d / "**" / "*.mp4")])
    finally:
        signal.alarm(0)
    assert s.videos == [str(d / "sub" / "v.mp4")] and g.videos == s.videos
    assert s.skipped["symbolic link loops"] == 3 and s.skipped["not regular files"] == 1


def test_fifo_and_device_are_error_rows_never_read(tmp_path):
    import signal

    from index.store.ids import identify
    d = _loopy(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{d / 'pipe.mp4'}\n/dev/zero\n")
    s = list_sources([lst])
    assert s.videos == [str(d / "pipe.mp4"), "/dev/zero"]     # named explicitly: kept, become error rows
    signal.alarm(10)
    try:
        fifo, zero = identify(s.videos[0]), identify(s.videos[1])
    finally:
        signal.alarm(0)
    assert fifo[0].startswith("path:") and "FIFO" in fifo[1]
    assert zero[0].startswith("path:") and "device" in zero[1]


def test_paths_are_absolute_and_normalised(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "v.mp4").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "a")
    assert list_sources(["../a/./v.mp4"]).videos == [str(tmp_path / "a" / "v.mp4")]
    assert list_sources(["."]).videos == [str(tmp_path / "a" / "v.mp4")]
    assert list_sources(["**/*.mp4"]).videos == [str(tmp_path / "a" / "v.mp4")]
