"""The temporal header against docs/model.md §3 and the released checkpoint layout."""
import torch

from engine.model.temporal import TemporalTransformer

RELEASED_BLOCK_KEYS = [
    "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    "ln_2.weight", "ln_2.bias",
]


def test_state_dict_keys_are_the_released_ones():
    h = TemporalTransformer(width=32, heads=2)
    expected = {"frame_position_embeddings.weight"} | {
        f"transformer.resblocks.{i}.{k}" for i in range(6) for k in RELEASED_BLOCK_KEYS}
    assert set(h.state_dict()) == expected
    assert h.state_dict()["frame_position_embeddings.weight"].shape == (77, 32)


def test_init_per_bike():
    torch.manual_seed(0)
    h = TemporalTransformer(width=64, heads=1)
    sd = h.state_dict()
    assert abs(sd["frame_position_embeddings.weight"].std().item() - 0.02) < 0.002
    assert abs(sd["transformer.resblocks.0.mlp.c_fc.weight"].std().item() - 0.02) < 0.002
    assert sd["transformer.resblocks.0.mlp.c_fc.bias"].abs().sum() == 0
    assert sd["transformer.resblocks.0.attn.in_proj_bias"].abs().sum() == 0
    assert sd["transformer.resblocks.0.attn.out_proj.bias"].abs().sum() == 0


def _reference(h: TemporalTransformer, x):
    """docs/model.md §3 written out by hand, in sequence-first layout like the released code."""
    sd = h.state_dict()
    def ln(y, p):
        u = y.mean(-1, keepdim=True)
        s = (y - u).pow(2).mean(-1, keepdim=True)
        return sd[p + ".weight"] * (y - u) / torch.sqrt(s + 1e-12) + sd[p + ".bias"]
    B, T, D = x.shape
    y = (x + sd["frame_position_embeddings.weight"][:T]).permute(1, 0, 2)      # (T, B, D)
    for i in range(6):
        p = f"transformer.resblocks.{i}."
        mha = torch.nn.MultiheadAttention(D, h.heads)
        mha.load_state_dict({k[len(p) + 5:]: v for k, v in sd.items() if k.startswith(p + "attn.")})
        z = ln(y, p + "ln_1")
        y = y + mha(z, z, z, need_weights=False)[0]
        z = ln(y, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        z = z * torch.sigmoid(1.702 * z)
        y = y + z @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return y.permute(1, 0, 2) + x                                              # residual of X, not X + P


def test_forward_matches_reference_and_residual_placement():
    torch.manual_seed(1)
    h = TemporalTransformer(width=32, heads=2).eval()
    with torch.no_grad():
        for p in h.parameters():          # non-trivial LayerNorm/bias values so every term matters
            p.add_(torch.randn_like(p) * 0.05)
        x = torch.randn(3, 8, 32)
        torch.testing.assert_close(h(x), _reference(h, x), atol=1e-5, rtol=1e-5)


def test_layernorm_epsilon_is_1e12():
    h = TemporalTransformer(width=16, heads=1)
    assert all(m.eps == 1e-12 for m in h.modules() if isinstance(m, torch.nn.LayerNorm))


def test_loads_released_layout_with_module_prefix_and_reproduces():
    torch.manual_seed(2)
    h = TemporalTransformer(width=32, heads=2).eval()
    released = {"module." + k: v.clone() for k, v in h.state_dict().items()}
    from engine.model.loading import strip_module
    h2 = TemporalTransformer.from_state_dict(strip_module(released), heads=2).eval()
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        torch.testing.assert_close(h2(x), h(x))
