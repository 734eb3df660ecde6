"""Vision-transformer pieces shared by the ViT audio families (M2D, MSM-MAE, ATST, EAT, CED, Dasheng).

Parameter names follow timm's VisionTransformer (`patch_embed.proj`, `blocks.N.norm1`, `attn.qkv`, `attn.proj`,
`norm2`, `mlp.fc1`, `mlp.fc2`, optional `ls1.gamma` / `ls2.gamma`), which is what those official checkpoints were
saved from, so their state dicts load strictly. Attention takes a key mask so padded patches are never attended to:
together with per-token LayerNorm and MLP, that makes a valid token's output independent of the padding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


class PatchEmbed(nn.Module):
    """Non-overlapping patches of a [B, C, H, W] input (for audio: H = frequency, W = time) -> [B, H'*W', D],
    ordered row-major over (H', W') as timm flattens them."""

    def __init__(self, patch_size: tuple, in_chans: int, embed_dim: int, stride: Optional[tuple] = None):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=tuple(stride or patch_size))

    def grid(self, height: int, width: int) -> tuple:
        """(H', W') patches of an input of `height` x `width` (the conv's output size, no padding)."""
        (ph, pw), (sh, sw) = self.patch_size, self.proj.stride
        return (height - ph) // sh + 1, (width - pw) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> tokens [B, H' * W', D]."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention as timm's (one `qkv` projection to 3 x dim, `proj` back to dim), computed by
    torch's scaled_dot_product_attention with an optional key mask; dim must be a multiple of num_heads."""
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, N, D]; key_mask [B, N], True for tokens that may be attended to."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """timm's transformer MLP: fc1 (dim -> hidden), exact GELU, fc2 (hidden -> dim)."""
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> [..., dim], token by token."""
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Learned per-channel scale `gamma` [dim] (timm's ls1 / ls2, initialised to ones)."""
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim] scaled channel by channel."""
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); layer scale optional."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, eps: float = 1e-6,
                 layer_scale: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tokens [B, N, dim] -> [B, N, dim]; key_mask [B, N] (True: may be attended to) as in `Attention`."""
        x = x + self.ls1(self.attn(self.norm1(x), key_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))
