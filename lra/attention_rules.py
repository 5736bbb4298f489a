"""The attention contract: the rules every mechanism obeys, each a function over a layer factory.

``tests/test_attention_rules.py`` runs them on every registered mechanism and ``lra-attention check``
(lra/attention_check.py) on any class, registered or not. A rule takes

    make(dropout=0.0, dtype=torch.float32) -> nn.Module   # the same weights at every call (seeded)
    x: (B, N, D) float inputs, mask: (B, N) bool, True = real token, with padding in row 0

and returns a short detail of what it measured, or raises ``RuleFailed`` saying what broke. With
``y = f(x, mask)`` the layer's output and ``R`` the real positions (mask True):

- shape: ``y`` is (B, N, D), with the mask and with ``mask=None``.
- finite: no NaN or inf in ``y``, with the mask and without.
- zero at padding: ``y[~mask] == 0`` (the encoder's residual stream never carries padding values).
- padding content: ``f(x', mask)[R] == f(x, mask)[R]`` for ``x'`` = ``x`` with garbage (100x larger
  noise) at the padded positions.
- padding amount: row 0's real outputs do not change when half its padding is cut off (N shorter; a
  batch of one), nor when it runs alone without its padding and without a mask. (Shorter, not longer:
  a mechanism sized for at most N tokens, like Linformer, is not at fault.)
- fully padded: a sequence with no real token gives a finite output and finite gradients (a softmax
  over only -inf keys gives NaN that zeroing the rows hides in the output but not in the backward).
- gradients: in training mode (dropout 0.1) every parameter gets a finite, not all-zero gradient from
  a loss on the real outputs.
- float64: the layer in float64 returns float64 and agrees with the layer in float32 to 1e-4.
- eval deterministic: in eval mode a layer built with dropout 0.5 gives the output of the same
  weights built without dropout, whatever the global RNG state (no dropout and no fresh randomness
  at inference).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Factory = Callable[..., nn.Module]


class RuleFailed(AssertionError):
    """A rule that does not hold; the message says what was measured."""


def _close(a: Tensor, b: Tensor, what: str, tol: float) -> str:
    if a.shape != b.shape:
        raise RuleFailed(f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}")
    diff = (a.double() - b.double()).abs()
    bound = tol + tol * b.double().abs()
    if not torch.isfinite(diff).all() or (diff > bound).any():
        raise RuleFailed(f"{what}: max |diff| {diff.max().item():.3g} > {tol:g} (rtol and atol)")
    return f"max |diff| {diff.max().item():.1e}" if diff.numel() else "nothing to compare"


def make_inputs(batch: int, length: int, d_model: int, n_pad: int, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Seeded x (B, N, D) and mask (B, N) with the last ``n_pad`` positions of row 0 padded."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, length, d_model, generator=g, dtype=dtype)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, length - n_pad :] = False
    return x, mask


def _garbage(shape: tuple[int, ...], dtype, seed: int = 2) -> Tensor:
    return 100 * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def shape(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make().eval()
    for given in (mask, None):
        y = m(x, given)
        if tuple(y.shape) != tuple(x.shape):
            given_as = "None" if given is None else "given"
            raise RuleFailed(f"output {tuple(y.shape)} for input {tuple(x.shape)} (mask={given_as})")
    return f"{tuple(x.shape)} -> {tuple(x.shape)}"


def finite(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make().eval()
    for given in (mask, None):
        bad = int((~torch.isfinite(m(x, given))).sum())
        if bad:
            raise RuleFailed(f"{bad} non-finite output values (mask={'None' if given is None else 'given'})")
    return "with and without a mask"


def zero_at_padding(make: Factory, x: Tensor, mask: Tensor) -> str:
    y = make().eval()(x, mask)
    largest = y[~mask].abs().max().item() if (~mask).any() else 0.0
    if largest != 0:
        raise RuleFailed(f"output at padded positions is not zero (max |y| {largest:.3g})")
    return f"{int((~mask).sum())} padded positions"


def padding_content(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make().eval()
    garbage = x.clone()
    garbage[~mask] = _garbage((int((~mask).sum()), x.shape[-1]), x.dtype)
    return _close(m(garbage, mask)[mask], m(x, mask)[mask], "real outputs change with the padded tokens", 1e-5)


def padding_amount(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make().eval()
    y = m(x, mask)
    real = int(mask[0].sum())
    trim = (x.shape[1] - real) // 2
    if trim == 0:
        raise RuleFailed("row 0 of the inputs has no padding to trim")
    less = m(x[:1, :-trim], mask[:1, :-trim])[0, :real]
    detail = _close(less, y[0, :real], f"row 0 with {trim} fewer padded positions differs from row 0 padded", 1e-5)
    alone = m(x[:1, :real], None)[0]
    _close(alone, y[0, :real], "row 0 without its padding (mask=None) differs from row 0 padded", 1e-5)
    return detail


def fully_padded(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make().eval()
    mask = mask.clone()
    mask[-1] = False
    x = x.clone().requires_grad_(True)
    y = m(x, mask)
    if not torch.isfinite(y).all():
        raise RuleFailed("non-finite output for a sequence without real tokens")
    (y.square().sum() + y.sum()).backward()
    for name, p in m.named_parameters():  # a parameter without gradient is the gradients rule's failure
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise RuleFailed(f"{name} has a non-finite gradient when a sequence has no real token")
    if not torch.isfinite(x.grad).all():
        raise RuleFailed("the input has a non-finite gradient when a sequence has no real token")
    return "finite output and gradients"


def gradients(make: Factory, x: Tensor, mask: Tensor) -> str:
    m = make(dropout=0.1).train()
    x = x.clone().requires_grad_(True)
    (m(x, mask)[mask] ** 2).mean().backward()
    named = list(m.named_parameters())
    for name, p in named:
        if p.grad is None:
            raise RuleFailed(f"{name} got no gradient")
        if not torch.isfinite(p.grad).all():
            raise RuleFailed(f"{name} has a non-finite gradient")
        if p.grad.abs().sum() == 0:
            raise RuleFailed(f"{name} has an all-zero gradient")
    if not torch.isfinite(x.grad).all():
        raise RuleFailed("the input has a non-finite gradient")
    return f"all {len(named)} parameters"


def float64(make: Factory, x: Tensor, mask: Tensor) -> str:
    y32 = make().eval()(x.float(), mask)
    y64 = make(dtype=torch.float64).eval()(x.double(), mask)
    if y64.dtype != torch.float64:
        raise RuleFailed(f"float64 inputs and weights give a {y64.dtype} output")
    return _close(y32.double(), y64, "float32 output differs from float64", 1e-4)


def eval_deterministic(make: Factory, x: Tensor, mask: Tensor) -> str:
    expected = make().eval()(x, mask)
    m = make(dropout=0.5).eval()
    detail = ""
    for seed in (1, 2):
        torch.manual_seed(seed)
        y = m(x, mask)
        if not torch.allclose(y, expected, rtol=1e-6, atol=1e-7):
            diff = (y - expected).abs().max().item()
            raise RuleFailed(f"eval output with dropout 0.5 under seed {seed} differs from dropout 0 (max {diff:.3g})")
        detail = "same output under two global seeds"
    return detail


RULES: dict[str, Callable[[Factory, Tensor, Tensor], str]] = {
    "shape": shape,
    "finite": finite,
    "zero at padding": zero_at_padding,
    "padding content": padding_content,
    "padding amount": padding_amount,
    "fully padded": fully_padded,
    "gradients": gradients,
    "float64": float64,
    "eval deterministic": eval_deterministic,
}


def factory(cls: type[nn.Module], *, d_model: int, n_heads: int, options: dict, seed: int = 0) -> Factory:
    """``make(dropout, dtype)``: ``cls`` built with these options from the same seed each call."""

    def make(dropout: float = 0.0, dtype=torch.float32) -> nn.Module:
        torch.manual_seed(seed)
        return cls(d_model=d_model, n_heads=n_heads, dropout=dropout, **options).to(dtype)

    return make


def check(make: Factory, x: Tensor, mask: Tensor) -> list[tuple[str, bool, str]]:
    """Every rule as (rule, passed, detail); an exception inside a rule is that rule's failure."""
    rows = []
    for name, rule in RULES.items():
        try:
            rows.append((name, True, rule(make, x, mask)))
        except RuleFailed as e:
            rows.append((name, False, str(e)))
        except Exception as e:  # noqa: BLE001 - a crash in a rule fails that rule and the others still run
            rows.append((name, False, f"raised {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"))
    return rows
