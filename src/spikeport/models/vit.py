"""A small Vision Transformer (Dosovitskiy et al. 2021) in timm's pre-norm layout, written in plain torch.

The module and parameter names follow timm's ``VisionTransformer`` (``patch_embed``, ``cls_token``,
``pos_embed``, ``blocks.i.attn.qkv``, ``head`` ...) so the graph looks like the ViTs users bring, and the
forward has no data-dependent control flow, so ``torch.fx.symbolic_trace`` sees every op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLS = ("cls", "mean")
ATTENTIONS = ("explicit", "sdpa")
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}
NORMS: dict[str, type[nn.Module]] = {"layer": nn.LayerNorm, "rms": nn.RMSNorm}


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, as timm writes it.

    ``attention="explicit"`` spells out softmax(q k^T / sqrt(d)) v so a tracer sees the matmuls and the
    softmax; ``"sdpa"`` is the same maths through ``F.scaled_dot_product_attention``, as recent timm does.
    """

    def __init__(self, width: int, heads: int, attention: str = "explicit"):
        super().__init__()
        self.width, self.heads, self.head_dim = width, heads, width // heads
        self.scale = self.head_dim**-0.5
        self.fused = attention == "sdpa"
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        B, N = x.shape[0], x.shape[1]
        # [B, N, 3D] -> [3, B, heads, N, head_dim]: timm's layout, the one place the batch leaves dim 0.
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, self.width))


class Mlp(nn.Module):
    """The token-wise two-layer MLP of a transformer block."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: the residual stream is only ever added to, never normalised."""

    def __init__(self, width: int, heads: int, hidden: int, *, attention: str, activation: str, norm: str):
        super().__init__()
        self.norm1 = NORMS[norm](width)
        self.attn = Attention(width, heads, attention)
        self.norm2 = NORMS[norm](width)
        self.mlp = Mlp(width, hidden, activation)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding, optional class token, learned positions, ``depth`` blocks, final norm and head."""

    def __init__(
        self,
        tokens: int,
        patch_size: int,
        in_channels: int,
        num_classes: int,
        width: int,
        blocks: nn.Sequential,
        *,
        pool: str,
        norm: str,
    ):
        super().__init__()
        self.pool = pool
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        # The class token exists only where it is read out; mean pooling has no use for it.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + (pool == "cls"), width))
        self.blocks = blocks
        self.norm = NORMS[norm](width)
        self.head = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, D, H', W'] -> [B, N, D]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        x = self.norm(self.blocks(x))
        x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        return self.head(x)


def vit(
    image_size: int | tuple[int, int] = 28,
    patch_size: int = 4,
    in_channels: int = 1,
    num_classes: int = 10,
    width: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    pool: str = "cls",
    attention: str = "explicit",
    activation: str = "gelu",
    norm: str = "layer",
) -> VisionTransformer:
    """A small ViT for ``image_size`` inputs (MNIST-sized by default), cut into ``patch_size`` patches.

    The position embedding is learned for one resolution, so ``image_size`` is fixed at build time.
    ``pool``: read out the class token (``"cls"``) or the mean of the tokens (``"mean"``);
    ``attention``: ``"explicit"`` matmul-softmax-matmul or fused ``"sdpa"``; ``activation`` of the MLP
    (``"gelu"``, ``"silu"``, ``"relu"``); ``norm``: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm).
    """
    rows, cols = (image_size, image_size) if isinstance(image_size, int) else image_size
    if patch_size < 1:
        raise ValueError(f"patch_size is a positive integer, got {patch_size}")
    if rows % patch_size or cols % patch_size:
        raise ValueError(
            f"image_size {(rows, cols)} must be divisible by patch_size {patch_size} in both dimensions"
        )
    if heads < 1 or width % heads:
        raise ValueError(f"width {width} must be divisible by heads {heads} (a positive integer)")
    if pool not in POOLS:
        raise ValueError(f"pool is one of {POOLS}, got {pool!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention is one of {ATTENTIONS}, got {attention!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation is one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm is one of {tuple(NORMS)}, got {norm!r}")
    hidden = int(width * mlp_ratio)
    blocks = nn.Sequential(
        *(
            Block(width, heads, hidden, attention=attention, activation=activation, norm=norm)
            for _ in range(depth)
        )
    )
    tokens = (rows // patch_size) * (cols // patch_size)
    return VisionTransformer(
        tokens, patch_size, in_channels, num_classes, width, blocks, pool=pool, norm=norm
    )
