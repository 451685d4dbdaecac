"""A small real store for the ``bike serve`` tests: real mp4 files (ffmpeg testsrc2), tagged rows written with
``Store.write_batch`` from hand-made frame features scored by the real tiny model (tests/searchstore.py).

``make_store(root, model, labels)`` → (store, model_id, {video_id: path}). Videos: ``walk.mp4`` (20 s, two
10-s clips), ``cars.mp4`` (20 s), ``dance.mp4`` (10 s, one clip). ``store``: where the store goes (default
``root/store``; an ``s3://`` URL puts it on object storage, the videos stay local files).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from index.store.ids import video_id as content_id
from index.store import Store
from media import make_video
from searchstore import add_video

VIDEOS = {"walk.mp4": (20.0, (96, 64)), "cars.mp4": (20.0, (112, 64)), "dance.mp4": (10.0, (80, 64))}
T = 8


def make_store(root: Path, model, labels, seed: int = 0, store: "str | None" = None):
    rng = np.random.default_rng(seed)
    media_dir = root / "videos"
    media_dir.mkdir(parents=True)
    store = Store(store or root / "store", create=True)
    paths, mid = {}, None
    with store.lock():                                # object storage: writing needs the writer lease
        for name, (seconds, size) in VIDEOS.items():  # sizes differ: same-content files would share one id
            path = make_video(media_dir / name, seconds=seconds, fps=10, size=size, pattern="testsrc")
            vid = content_id(str(path))
            n = int(seconds // 10)
            clips = [np.asarray(rng.standard_normal((T, model.embed_dim)), np.float32) for _ in range(n)]
            mid = add_video(store, model, labels, vid, clips, path=str(path), duration_s=seconds,
                            size=os.path.getsize(path))
            paths[vid] = Path(path)
    return store, mid, paths
