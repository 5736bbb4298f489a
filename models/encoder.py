"""The Transformer encoder every attention mechanism is tested in, and the classification heads.

Pre-LayerNorm blocks (attention + MLP with residuals), a final LayerNorm, masked pooling
(``cls`` or ``mean``) and a classifier. ``mask[b, i]`` is True for a real token.

Pooling, with h the final LayerNorm's output (B, N, D) and m the mask:
- ``cls``: h[:, 0], the CLS token prepended at position 0; its mask entry is True.
- ``mean``: sum_i m_i h_i / max(1, sum_i m_i), the mean over real tokens.

``lra_mask=True`` reproduces the LRA code's handling of the mask instead (its ``transformer.py``
gives the CLS token the first input's mask entry, and ``common_layers.classifier_head`` MEAN-pools
``mean_i h_i`` over every position, masked ones included); the harness sets it with
``task.mask_zero_pixels=true``, where the mask is ``pixel > 0`` as in LRA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.attention import build_attention

POSITIONS = ("learned", "sinusoidal", "none")
POOLS = ("cls", "mean")


def sinusoidal_positions(n: int, d: int) -> Tensor:
    """The fixed sin/cos table of Vaswani et al. (2017), (n, d)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return table


class Block(nn.Module):
    """x + LS(attn(LN(x))), then x + LS(mlp(LN(x))); LayerScale only if ``layer_scale_init`` is set."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_mlp: int,
        dropout: float,
        attn_dropout: float,
        attention: str,
        attention_options: dict,
        layer_scale_init: float | None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = build_attention(
            attention, d_model=d_model, n_heads=n_heads, dropout=attn_dropout, **attention_options
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_mlp, d_model))
        self.drop = nn.Dropout(dropout)
        if layer_scale_init is None:
            self.gamma1 = self.gamma2 = None
        else:  # LayerScale (Touvron et al. 2021), as in the ToST blocks
            self.gamma1 = nn.Parameter(torch.full((d_model,), float(layer_scale_init)))
            self.gamma2 = nn.Parameter(torch.full((d_model,), float(layer_scale_init)))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        a = self.drop(self.attn(self.norm1(x), mask))  # (B, N, D)
        x = x + (a if self.gamma1 is None else self.gamma1 * a)
        m = self.drop(self.mlp(self.norm2(x)))
        return x + (m if self.gamma2 is None else self.gamma2 * m)


class Encoder(nn.Module):
    """Token ids (B, N) -> pooled features (B, D).

    ``vocab_size`` counts every id the data uses (padding included); with ``pool='cls'`` one
    more id is added for the CLS token, which is prepended at position 0.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_mlp: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        positions: str = "learned",
        pool: str = "cls",
        attention: str = "vanilla",
        attention_options: dict | None = None,
        layer_scale_init: float | None = None,
        lra_mask: bool = False,
    ):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"model.positions must be one of {POSITIONS}, got '{positions}'")
        if pool not in POOLS:
            raise ValueError(f"model.pool must be one of {POOLS}, got '{pool}'")
        self.pool, self.vocab_size, self.lra_mask = pool, vocab_size, lra_mask
        n_pos = max_len + (pool == "cls")
        self.embed = nn.Embedding(vocab_size + (pool == "cls"), d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(n_pos, d_model) * 0.02)
        elif positions == "sinusoidal":
            self.register_buffer("pos", sinusoidal_positions(n_pos, d_model), persistent=False)
        else:
            self.pos = None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                d_model=d_model,
                n_heads=n_heads,
                d_mlp=d_mlp,
                dropout=dropout,
                attn_dropout=attn_dropout,
                attention=attention,
                attention_options=dict(attention_options or {}),
                layer_scale_init=layer_scale_init,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids: (B, N) long; mask: (B, N) bool, True = real token, or None (no padding)."""
        x, mask = self.tokens(ids, mask)  # (B, N', D)
        if self.pool == "cls":
            return x[:, 0]
        if mask is None or self.lra_mask:  # LRA's MEAN pooling averages every position
            return x.mean(dim=1)
        w = mask[..., None].to(x.dtype)
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

    def tokens(self, ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Per-position features before pooling: (B, N', D) and their mask (B, N') or None, where
        N' = N + 1 with ``pool='cls'`` (the CLS token at position 0), else N."""
        b, n = ids.shape
        if self.pool == "cls":
            cls = torch.full((b, 1), self.vocab_size, dtype=ids.dtype, device=ids.device)
            ids = torch.cat([cls, ids], dim=1)
            if mask is not None:  # LRA: the CLS token takes the first input's mask entry
                first = mask[:, :1] if self.lra_mask else torch.ones(b, 1, dtype=torch.bool, device=ids.device)
                mask = torch.cat([first, mask], dim=1)
            n += 1
        if self.pos is not None and n > self.pos.shape[0]:
            raise ValueError(f"sequence of {n} tokens is longer than the model's max_len ({self.pos.shape[0]})")
        x = self.embed(ids)  # (B, N, D)
        if self.pos is not None:
            x = x + self.pos[:n]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x), mask


class Classifier(nn.Module):
    """One sequence -> class logits: encoder, then an MLP head (B, n_classes)."""

    def __init__(self, encoder: Encoder, *, n_classes: int, d_model: int, d_head: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(d_model, d_head), nn.GELU(), nn.Linear(d_head, n_classes))

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(ids, mask))


class PairClassifier(nn.Module):
    """Two sequences -> class logits with one shared encoder (LRA Retrieval's two towers).

    ids: (B, 2, N). Both towers run as one batch of 2B. ``combine='paper'`` classifies
    ``[u, v, u*v, u-v]`` (LRA paper); ``'concat'`` classifies ``[u, v]`` (LRA code).
    """

    COMBINE = ("paper", "concat")

    def __init__(self, encoder: Encoder, *, n_classes: int, d_model: int, d_head: int, combine: str = "paper"):
        super().__init__()
        if combine not in self.COMBINE:
            raise ValueError(f"combine must be one of {self.COMBINE}, got '{combine}'")
        self.encoder, self.combine = encoder, combine
        width = d_model * (4 if combine == "paper" else 2)
        self.head = nn.Sequential(nn.Linear(width, d_head), nn.GELU(), nn.Linear(d_head, n_classes))

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        b = ids.shape[0]
        pooled = self.encoder(ids.flatten(0, 1), None if mask is None else mask.flatten(0, 1))  # (2B, D)
        u, v = pooled.view(b, 2, -1).unbind(1)  # (B, D) each
        feats = [u, v, u * v, u - v] if self.combine == "paper" else [u, v]
        return self.head(torch.cat(feats, dim=-1))


class TokenPredictor(nn.Module):
    """Sequences -> per-position logits over ``n_out`` ids (self-pretraining's head): encoder features
    (B, N', D) through a linear layer, (B, N', n_out). Position 0 is the CLS token with ``pool='cls'``."""

    def __init__(self, encoder: Encoder, *, n_out: int, d_model: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(d_model, n_out)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder.tokens(ids, mask)[0])
