"""Video Concept Spotting against a direct, loop-based evaluation of docs/model.md §4."""
import math

import pytest
import torch

from engine.model.spotting import concept_spotting


def reference_vcs(H, tokens, cls, tau=0.01):
    """docs/model.md §4 written out with explicit loops (float64)."""
    B, T, D = H.shape
    C, L, _ = tokens.shape
    logits = torch.zeros(B, C, dtype=torch.float64)
    sal = torch.zeros(B, C, T, dtype=torch.float64)
    emb = torch.zeros(B, C, D, dtype=torch.float64)
    for b in range(B):
        hn = [H[b, t].double() / H[b, t].double().norm() for t in range(T)]
        for c in range(C):
            cn = cls[c].double() / cls[c].double().norm()
            s = torch.zeros(T, dtype=torch.float64)
            for w in range(L):
                wn = tokens[c, w].double() / tokens[c, w].double().norm()
                e = torch.tensor([math.exp(float(wn @ hn[t]) / tau) for t in range(T)], dtype=torch.float64)
                s += e / e.sum()
            s /= L
            v = sum(s[t] * hn[t] for t in range(T))
            sal[b, c], emb[b, c], logits[b, c] = s, v, v @ cn
    return logits, sal, emb


def random_inputs(B=3, T=5, C=4, L=77, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, D, generator=g), torch.randn(C, L, D, generator=g), torch.randn(C, D, generator=g))


def test_matches_loop_reference():
    H, tok, cls = random_inputs()
    out = concept_spotting(H, tok, cls)
    logits, sal, emb = reference_vcs(H, tok, cls)
    torch.testing.assert_close(out.logits.double(), logits, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.saliency.double(), sal, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.embeddings.double(), emb, atol=2e-6, rtol=1e-5)
    assert out.logits.shape == (3, 4) and out.saliency.shape == (3, 4, 5) and out.embeddings.shape == (3, 4, 16)


def test_chunking_does_not_change_results():
    H, tok, cls = random_inputs(B=7, T=8, C=11)
    full = concept_spotting(H, tok, cls)
    tiny = concept_spotting(H, tok, cls, chunk_elements=77 * 8)   # one (class, video) pair per chunk
    torch.testing.assert_close(tiny.logits, full.logits)
    torch.testing.assert_close(tiny.saliency, full.saliency)


def test_saliency_sums_to_one_and_embedding_norm_bounded():
    H, tok, cls = random_inputs(B=4, T=8, C=6)
    out = concept_spotting(H, tok, cls)
    torch.testing.assert_close(out.saliency.sum(-1), torch.ones(4, 6))
    assert (out.embeddings.norm(dim=-1) <= 1 + 1e-6).all()


def test_single_frame_and_identical_frames_equal_cosine():
    H, tok, cls = random_inputs(B=2, T=1, C=3)
    cos = torch.nn.functional.normalize(H[:, 0], dim=-1) @ torch.nn.functional.normalize(cls, dim=-1).T
    torch.testing.assert_close(concept_spotting(H, tok, cls).logits, cos)
    same = H.expand(2, 6, H.shape[-1])
    torch.testing.assert_close(concept_spotting(same, tok, cls).logits, cos, atol=1e-6, rtol=1e-5)


def test_padding_positions_are_included():
    """Masking the padding positions (here: all but the first 5) must change the saliency."""
    H, tok, cls = random_inputs(B=2, T=6, C=3)
    full = concept_spotting(H, tok, cls)
    masked = concept_spotting(H, tok[:, :5], cls)
    assert not torch.allclose(full.saliency, masked.saliency, atol=1e-4)


def test_saliency_peaks_on_matching_frame():
    D = 8
    frames = torch.eye(D)[:6].unsqueeze(0) * 3          # frame t is the basis vector e_t
    tokens = torch.eye(D)[3].expand(1, 77, D).clone()   # every token position says "e_3"
    out = concept_spotting(frames, tokens, torch.eye(D)[3:4])
    assert out.saliency[0, 0].argmax() == 3
    assert out.logits[0, 0] > 0.99


def test_embedding_for_one_class_per_video():
    H, tok, cls = random_inputs(B=3, T=4, C=5)
    out = concept_spotting(H, tok, cls)
    c = torch.tensor([4, 0, 2])
    torch.testing.assert_close(out.embedding(c), out.embeddings[torch.arange(3), c])


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="expected frames"):
        concept_spotting(torch.randn(3, 4), torch.randn(2, 77, 4), torch.randn(2, 4))
