"""Shared ViT pieces: masked keys never change valid tokens; attention equals the written-out softmax formula."""

import torch

from evar.models.vit import Attention, Block, PatchEmbed


def test_block_output_of_valid_tokens_ignores_padded_tokens():
    torch.manual_seed(0)
    block = Block(32, 4, layer_scale=True).eval()
    x = torch.randn(1, 7, 32)
    padded = torch.cat([x, torch.randn(1, 5, 32) * 100], dim=1)
    mask = torch.arange(12)[None] < 7
    with torch.no_grad():
        alone = block(x)
        together = block(padded, mask)[:, :7]
        leaky = block(padded)[:, :7]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert (leaky - alone).abs().max() > 1e-2  # without the mask the padding would leak


def test_attention_matches_softmax_formula():
    torch.manual_seed(1)
    attn = Attention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_patch_embed_grid_and_token_order():
    embed = PatchEmbed((16, 16), 1, 8)
    x = torch.randn(1, 1, 80, 64)
    tokens = embed(x)
    assert embed.grid(80, 64) == (5, 4) and tokens.shape == (1, 20, 8)
    # Token 1 is the second patch along time in the first frequency row (row-major over (freq, time)).
    torch.testing.assert_close(tokens[0, 1], embed.proj(x[..., :16, 16:32]).flatten())
    assert sorted(embed.state_dict()) == ['proj.bias', 'proj.weight']
