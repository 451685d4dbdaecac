"""The store's content-id cache (index/store/idcache.py): unchanged files are not read again, changed ones are."""
from __future__ import annotations

import os

import pytest

from index.store import idcache, ids
from index.store.idcache import IdCache


@pytest.fixture
def counted(monkeypatch):
    """Count how often a file's bytes are hashed."""
    calls = []
    real = ids.video_id

    def video_id(path, *a, **kw):
        calls.append(os.path.basename(path))
        return real(path, *a, **kw)
    monkeypatch.setattr(ids, "video_id", video_id)
    return calls


def test_unchanged_files_are_not_hashed_again(tmp_path, counted):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"A" * 1000)
    b.write_bytes(b"B" * 1000)
    cache = IdCache(tmp_path / "store")
    first = [cache.identify(str(p)) for p in (a, b)]
    assert first == [(ids.video_id(str(a)), None), (ids.video_id(str(b)), None)]
    assert cache.save() and not cache.save()               # nothing new the second time
    counted.clear()

    again = IdCache(tmp_path / "store")                    # a later run reads it back
    assert len(again) == 2
    assert [again.identify(str(p)) for p in (a, b)] == first
    assert counted == [] and (again.hits, again.hashed) == (2, 0)


def test_changed_files_are_hashed_again(tmp_path, counted):
    a = tmp_path / "a.mp4"
    a.write_bytes(b"A" * 1000)
    cache = IdCache(tmp_path / "store")
    old, _ = cache.identify(str(a))

    a.write_bytes(b"C" * 1000)                             # same size, rewritten: the mtime moves
    st = os.stat(a)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    new, _ = cache.identify(str(a))
    assert new == ids.video_id(str(a)) != old

    other = tmp_path / "other.mp4"                         # replaced by another file with the old mtime
    other.write_bytes(b"D" * 1000)
    st = os.stat(a)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, a)                                   # new inode
    assert cache.identify(str(a))[0] == ids.video_id(str(a)) != new


def test_rewrite_that_keeps_size_mtime_and_inode_needs_rehash(tmp_path):
    """The documented limit of the rule, and the way out (``bike tag --rehash``)."""
    a = tmp_path / "a.mp4"
    a.write_bytes(b"A" * 1000)
    cache = IdCache(tmp_path / "store")
    old, _ = cache.identify(str(a))
    st = os.stat(a)
    with open(a, "r+b") as f:                              # same inode, same size
        f.write(b"Z")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))       # mtime put back
    assert cache.identify(str(a))[0] == old                # trusted: stale
    cache.save()
    rehash = IdCache(tmp_path / "store", trust=False)      # bike tag --rehash
    assert rehash.identify(str(a))[0] == ids.video_id(str(a)) != old
    assert rehash.save() and IdCache(tmp_path / "store").identify(str(a))[0] == ids.video_id(str(a))


def test_unreadable_files_are_not_remembered_and_a_broken_cache_is_rebuilt(tmp_path):
    cache = IdCache(tmp_path / "store")
    vid, reason = cache.identify(str(tmp_path / "missing.mp4"))
    assert vid.startswith("path:") and reason == "file not found"
    assert len(cache) == 0 and not cache.save()

    broken = tmp_path / "store" / idcache.FOLDER / idcache.FILE
    broken.parent.mkdir(parents=True)
    broken.write_text("not parquet")
    a = tmp_path / "a.mp4"
    a.write_bytes(b"A")
    fresh = IdCache(tmp_path / "store")
    assert len(fresh) == 0 and fresh.identify(str(a)) == (ids.video_id(str(a)), None)
    assert fresh.save() and len(IdCache(tmp_path / "store")) == 1
