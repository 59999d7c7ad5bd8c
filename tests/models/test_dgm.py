"""DGM-DR encoder (timm/MAE key layout, sin-cos embedding) and the synthesizer against the original's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_domaingen.models.dgm import (
    PRESETS,
    DGMEncoder,
    ViTConfig,
    bf16_cpu_attention,
    config_from_state_dict,
    load_encoder_state_dict,
    sincos_pos_embed,
    split_tokens,
    synthesize,
)
from tests.conftest import shared_file


def _mae_keys(depth: int, e: int, patches: int, c: int = 3, p: int = 16) -> dict[str, tuple[int, ...]]:
    """The encoder keys and shapes of a timm / MAE ViT (facts of those layouts)."""
    keys = {
        "cls_token": (1, 1, e),
        "pos_embed": (1, patches + 1, e),
        "patch_embed.proj.weight": (e, c, p, p),
        "patch_embed.proj.bias": (e,),
        "norm.weight": (e,),
        "norm.bias": (e,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update(
            {
                b + "norm1.weight": (e,),
                b + "norm1.bias": (e,),
                b + "attn.qkv.weight": (3 * e, e),
                b + "attn.qkv.bias": (3 * e,),
                b + "attn.proj.weight": (e, e),
                b + "attn.proj.bias": (e,),
                b + "norm2.weight": (e,),
                b + "norm2.bias": (e,),
                b + "mlp.fc1.weight": (4 * e, e),
                b + "mlp.fc1.bias": (4 * e,),
                b + "mlp.fc2.weight": (e, 4 * e),
                b + "mlp.fc2.bias": (e,),
            }
        )
    return keys


def test_paper_encoder_has_the_mae_timm_key_layout():
    model = DGMEncoder(PRESETS["paper"])
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert state == _mae_keys(12, 768, 196)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 85_647_360  # ViT-B/16 encoder without a head (pos_embed is fixed)
    assert not model.pos_embed.requires_grad


def test_small_preset_is_small_and_full_of_the_right_keys():
    config = PRESETS["small"]
    model = DGMEncoder(config)
    assert set(model.state_dict()) == set(_mae_keys(6, 192, 64, p=8))
    assert sum(p.numel() for p in model.parameters()) * 2 < 20 * 2**20  # float16 file under 20 MB
    assert config.rank == 4 and PRESETS["paper"].rank == 8


def test_sincos_embedding_layout():
    e, g = 32, 4
    emb = sincos_pos_embed(e, g, g).numpy()
    assert emb.shape == (1 + g * g, e)
    assert np.all(emb[0] == 0)  # CLS
    zero = np.concatenate([np.zeros(e // 4), np.ones(e // 4)])
    # patch 1 = row 0, column 1: the first half encodes the column, the second half the row
    assert np.allclose(emb[1 + 1, e // 2 :], zero) and not np.allclose(emb[1 + 1, : e // 2], zero)
    assert np.allclose(emb[1 + g, : e // 2], zero) and not np.allclose(emb[1 + g, e // 2 :], zero)
    omega = 1.0 / 10000 ** (np.arange(e // 4) / (e // 4))
    assert np.allclose(emb[1 + 2, : e // 2], np.concatenate([np.sin(2 * omega), np.cos(2 * omega)]), atol=1e-6)
    model = DGMEncoder(PRESETS["small"])
    assert torch.equal(model.pos_embed[0], sincos_pos_embed(192, 8, 8))


def test_encoder_runs_on_other_grids_and_refuses_bad_sizes():
    torch.manual_seed(0)
    model = DGMEncoder(PRESETS["small"]).eval()
    with torch.no_grad():
        tokens = model(torch.randn(2, 3, 48, 80))
    assert tokens.shape == (2, 1 + 6 * 10, 192)
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        model(torch.randn(1, 3, 50, 64))
    with pytest.raises(ValueError, match="3-channel"):
        model(torch.randn(1, 4, 64, 64))


def test_config_checks_the_synthesizer_rank():
    with pytest.raises(ValueError, match="multiple of in_channels × patch_size"):
        ViTConfig(img_size=64, patch_size=8, embed_dim=200, num_heads=4)


@pytest.mark.parametrize("name", ["vit224_p16_e768", "vit64_p8_e384"])
def test_synthesizer_reproduces_the_original(name):
    reference = torch.load(shared_file("fixtures", "dgm_synthesizer_reference.pt"), weights_only=True)[name]
    anatomy, style = split_tokens(reference["tokens"], has_cls_token=reference["has_cls_token"])
    c, p = reference["in_channel"], reference["patch_size"]
    recon = synthesize(anatomy, style, c, p)
    assert recon.shape == reference["reconstruction"].shape
    assert (recon - reference["reconstruction"]).abs().max() <= 1e-5
    swapped = synthesize(anatomy[:1], style[1:2], c, p)
    assert (swapped - reference["anatomy0_style1"]).abs().max() <= 1e-5


def test_synthesizer_broadcasts_one_style_and_handles_rectangles():
    torch.manual_seed(0)
    anatomy, style = torch.randn(1, 6, 48), torch.randn(1, 6, 48)
    one = synthesize(anatomy, style[:, 2:3], 3, 4, grid=(2, 3))
    assert one.shape == (1, 3, 8, 12)
    assert torch.allclose(one, synthesize(anatomy, style[:, 2:3].expand(1, 6, 48), 3, 4, grid=(2, 3)))
    with pytest.raises(ValueError, match="square grid"):
        synthesize(anatomy, style, 3, 4)
    with pytest.raises(ValueError, match="does not fit"):
        synthesize(anatomy, style[:, :, :24], 3, 4, grid=(2, 3))


def test_loading_an_mae_checkpoint_ignores_the_decoder_and_strips_prefixes():
    torch.manual_seed(0)
    source = DGMEncoder(PRESETS["small"])
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.mask_token"] = torch.zeros(1, 1, 128)
    state["module.decoder_embed.weight"] = torch.zeros(128, 192)
    state["module.pos_embed"] = sincos_pos_embed(192, 14, 14)[None]  # trained at another size: regenerated
    assert config_from_state_dict(state) == ViTConfig(img_size=112, patch_size=8, embed_dim=192, depth=6, num_heads=3)
    target = DGMEncoder(PRESETS["small"])
    ignored = load_encoder_state_dict(target, state)
    assert {"module.mask_token", "module.decoder_embed.weight", "module.pos_embed"} <= set(ignored)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source.eval()(x), target.eval()(x))


def test_loading_weights_of_another_size_fails_clearly():
    small = DGMEncoder(PRESETS["small"]).state_dict()
    target = DGMEncoder(ViTConfig(img_size=64, patch_size=8, embed_dim=384, depth=6, num_heads=6))
    with pytest.raises(ValueError, match="another ViT size"):
        load_encoder_state_dict(target, small)
    partial = {k: v for k, v in small.items() if not k.startswith("blocks.5")}
    with pytest.raises(ValueError, match="lack 12 keys"):
        load_encoder_state_dict(DGMEncoder(PRESETS["small"]), partial)


def test_bf16_cpu_attention_matches_the_fused_kernel_and_serves_only_inference():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 3, 65, 64, generator=generator) * 1.5 for _ in range(3))
    exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ours = bf16_cpu_attention(q, k, v)
    assert ours.dtype == torch.bfloat16 and ours.shape == fused.shape
    # within twice the fused bf16 kernel's own error
    assert (ours.double() - exact).abs().max() <= 2 * (fused.double() - exact).abs().max()
    encoder = DGMEncoder(PRESETS["small"]).eval()
    x = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        reference = encoder(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inference = encoder(x).float()
    assert (inference - reference).abs().max() < 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):  # with gradients: the fused kernel, differentiable as before
        encoder(x).float().sum().backward()
    assert encoder.blocks[0].attn.qkv.weight.grad is not None
