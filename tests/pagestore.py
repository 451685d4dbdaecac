"""A store for the tests of the page of ``bike serve`` (tests/test_serve_page.py): more clips than one page of
results (120: six 200-s videos of twenty 10-s clips), and video names that differ only at their end, as a
camera's files do. Real mp4 files (ffmpeg testsrc2 at 2 fps, small), rows written with ``Store.write_batch``
from hand-made features scored by the real tiny model (tests/searchstore.py).

``make_page_store(root, model, labels)`` → (store, model_id, {video_id: path}).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from index.store.ids import video_id as content_id
from index.store import Store
from media import make_video
from searchstore import add_video, random_clips

NAMES = [f"camera_front_left_2023-06-01_0800_part-{i:02d}.mp4" for i in range(1, 7)]
SECONDS = 200.0
T = 8


def make_page_store(root: Path, model, labels, seed: int = 1):
    rng = np.random.default_rng(seed)
    media_dir = root / "videos"
    media_dir.mkdir(parents=True)
    store = Store(root / "store", create=True)
    paths, mid = {}, None
    with store.lock():
        for i, name in enumerate(NAMES):
            path = make_video(media_dir / name, seconds=SECONDS, fps=2, size=(64 + 8 * i, 48), pattern="testsrc")
            vid = content_id(str(path))
            clips = random_clips(rng, int(SECONDS // 10), T, model.embed_dim)
            mid = add_video(store, model, labels, vid, clips, path=str(path), duration_s=SECONDS,
                            size=os.path.getsize(path))
            paths[vid] = Path(path)
    return store, mid, paths
