"""``bike tag --runner local``: the same decode and score functions in this process, no Ray, and the same rows
as a Ray run of the same videos; ``--runner auto`` picks it for a handful of local files."""
import math

import pytest

from index.store import Store
from jobs.cli import main as bike
from jobs.errors import UsageError
from jobs.tag.runner import LOCAL_MAX_FILES, choose_runner
from tests.media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing"]
#: Columns that say when or how fast, not what was tagged.
VOLATILE = {"tagged_at", "created_at", "committed_at", "decode_s", "batch", "shard", "written_at"}


def _rows(store) -> dict:
    s = Store(store)
    out = {}
    for table in ("videos", "clips", "labels", "attributes", "embeddings", "frames"):
        try:
            t = s.read(table)
        except Exception:  # noqa: BLE001 - a table this store has not written
            continue
        cols = [c for c in t.column_names if c not in VOLATILE]
        out[table] = sorted((tuple(_norm(r[c]) for c in cols) for r in t.select(cols).to_pylist()), key=repr)
    return out


def _norm(v):
    if isinstance(v, float):
        return round(v, 3) if math.isfinite(v) else repr(v)
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


@pytest.fixture
def three(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    make_video(src / "a.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
    make_video(src / "b.mp4", seconds=3, fps=10, size=(64, 48))
    (src / "c.mp4").write_bytes(b"not a video")                     # an error row too
    return src


def test_local_and_ray_runs_commit_the_same_rows(three, tmp_path, capsys, ray_cluster):
    common = [str(three), *TINY, "--window", "1", "--no-progress", "--text", "none", "--no-index"]
    assert bike(["tag", *common, "--store", str(tmp_path / "local")]) == 0        # auto: 3 local files
    out = capsys.readouterr().out
    assert "runner: local (in this process, no Ray; --runner auto: 3 local file(s) <= 4)" in out
    assert bike(["tag", *common, "--store", str(tmp_path / "ray"), "--runner", "ray"]) == 0
    assert "runner: ray (--runner ray)" in capsys.readouterr().out
    local, ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert len(local["videos"]) == 3 and local["clips"], local.keys()
    assert local == ray


def test_choose_runner_rule():
    assert choose_runner("auto", None, LOCAL_MAX_FILES, 0)[0] == "local"
    assert choose_runner("auto", None, LOCAL_MAX_FILES + 1, 0)[0] == "ray"
    assert choose_runner("auto", None, 1, 1)[0] == "ray"                   # object storage
    assert choose_runner("auto", "auto", 1, 0)[0] == "ray"                 # a cluster was asked for
    assert choose_runner("local", None, 100, 0)[0] == "local"
    with pytest.raises(UsageError, match="--runner local"):
        choose_runner("local", "auto", 1, 0)
