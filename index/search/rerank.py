"""Re-ranking candidate clips against a query using their stored per-frame embeddings.

The FAISS index holds one vector per clip (the embedding of the clip's *top label*), which is good for
finding candidates but knows nothing about the query. The re-rank scores every candidate against the query
itself, frame by frame, and finds the moment inside the clip:

* **Text query** (``bike search "a dog jumps"``): BIKE's Video Concept Spotting (docs/model.md §4) with the query
  as the single "class": its 77 token features pick out the frames that match, the saliency-weighted frame
  embedding is compared with the end-of-text feature. Score = the VCS logit (a cosine-like number ≤ 1),
  saliency = the query's weight on each frame (sums to 1), moment = the frame time of the saliency peak.
* **Example clip or video** (``--clip`` / ``--like``): the example's T frames play the part of the tokens.
  Score = for each example frame, the best cosine against the candidate's frames, averaged over the
  example frames ("MaxSim", as in ColBERT): order-free, 1.0 exactly when every example frame occurs in the
  candidate, so the example clip itself always scores the maximum. Saliency = VCS saliency with the example
  frames as tokens (each example frame's softmax over the candidate's frames at tau = 0.01, averaged), so
  the moment is where the candidate looks most like the example.

Inputs are the frame embeddings as stored (after the temporal header, ``clips.frame_embeddings``); they are
L2-normalised here. Work is chunked over candidates so memory stays bounded.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from engine.model import bike
from engine.model.config import DEFAULTS
from engine.model.spotting import l2norm

#: Candidates per chunk of the example re-rank (N·Te·T similarities each).
CHUNK = 4096
#: Below this many candidates the CPU re-rank runs on one thread: for a few hundred clips, thread start-up
#: and OpenMP contention with FAISS cost more than they save (measured: 200 clips × 8 frames × 512-d,
#: 4 ms on 1 thread, 25-60 ms on 2).
ONE_THREAD_BELOW = 4096


@contextmanager
def _threads_for(n: int, device):
    """Run small CPU re-ranks on one torch thread (see ONE_THREAD_BELOW)."""
    small = n < ONE_THREAD_BELOW and torch.device(device).type == "cpu"
    before = torch.get_num_threads()
    if small and before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small and before != 1:
            torch.set_num_threads(before)


@dataclass
class Ranked:
    """Scores (N,), saliency (N, T) and per-frame relevance (N, T) of N candidate clips against one query.
    Relevance: the cosine of each frame with the query (text: its end-of-text feature; an example: the best
    cosine over the example's frames), on one scale across clips (index/search/moments.py reads it)."""
    scores: np.ndarray
    saliency: np.ndarray
    relevance: "np.ndarray | None" = None

    def peaks(self) -> np.ndarray:
        """Index of the saliency peak of every candidate (N,)."""
        return self.saliency.argmax(axis=1)


def _as_frames(frames) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.dim() != 3:
        raise ValueError(f"expected candidate frames (N, T, D), got {tuple(x.shape)}")
    return x.float()


def rerank_text(frames, tokens: torch.Tensor, cls: torch.Tensor, tau: float = DEFAULTS.tau) -> Ranked:
    """VCS of a text query against N candidates: ``frames`` (N, T, D), ``tokens`` (77, D) or (1, 77, D),
    ``cls`` (D,) or (1, D)."""
    h = _as_frames(frames)
    tokens = tokens.reshape(1, -1, tokens.shape[-1]).float().to(h.device)
    cls = cls.reshape(1, -1).float().to(h.device)
    if h.shape[0] == 0:
        empty = np.zeros((0, h.shape[1]), np.float32)
        return Ranked(np.zeros(0, np.float32), empty, empty)
    with _threads_for(h.shape[0], h.device):
        sp = bike.video_branch(h, tokens, cls, tau=tau)                # the model's own VCS step
        relevance = torch.einsum("btd,d->bt", sp.frames, l2norm(cls)[0])  # sp.frames: normalised frames
    return Ranked(sp.logits[:, 0].cpu().numpy(), sp.saliency[:, 0].cpu().numpy(), relevance.cpu().numpy())


def rerank_example(frames, example, tau: float = DEFAULTS.tau) -> Ranked:
    """Example frames (Te, D) against N candidates (N, T, D): MaxSim score, VCS-style saliency (see above)."""
    h = _as_frames(frames)
    e = l2norm(torch.as_tensor(np.asarray(example) if not isinstance(example, torch.Tensor) else example)
               .float().reshape(-1, h.shape[-1]))
    scores, saliency, relevance = [], [], []
    with _threads_for(h.shape[0], h.device):
        for i in range(0, h.shape[0], CHUNK):
            hn = l2norm(h[i:i + CHUNK])                                    # (n, T, D)
            sims = torch.einsum("wd,ntd->nwt", e.to(hn.device), hn)        # (n, Te, T)
            scores.append(sims.max(dim=2).values.mean(dim=1))              # (n,)
            saliency.append(torch.softmax(sims / tau, dim=2).mean(dim=1))  # (n, T)
            relevance.append(sims.max(dim=1).values)                       # (n, T)
    if not scores:
        empty = np.zeros((0, h.shape[1]), np.float32)
        return Ranked(np.zeros(0, np.float32), empty, empty)
    return Ranked(torch.cat(scores).cpu().numpy(), torch.cat(saliency).cpu().numpy(),
                  torch.cat(relevance).cpu().numpy())


def example_vector(example) -> np.ndarray:
    """The FAISS query vector of an example: the mean of its L2-normalised frames (D,), same space as the
    stored clip embeddings (saliency-weighted means of normalised frames)."""
    e = np.asarray(example, dtype=np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return e.mean(axis=0)
