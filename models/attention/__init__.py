"""Attention registry: every mechanism is one module, registered under its file name.

    from models.attention import build_attention, available
    attn = build_attention("vanilla", d_model=256, n_heads=4)
    y = attn(x, mask)   # x: (B, N, D), mask: (B, N) bool, True = real token

Every mechanism in this package is imported below, so adding a file that uses
``@register("<file name>")`` is all it takes to appear in ``available()``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator that adds an attention module to the registry under ``name``."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention '{name}' is registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorator


def available() -> list[str]:
    """Names of all registered attention mechanisms, sorted."""
    return sorted(_REGISTRY)


def options(name: str) -> dict[str, object]:
    """The mechanism's own keyword options and their defaults (beyond d_model, n_heads, dropout)."""
    cls = get(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "d_model", "n_heads", "dropout") and p.kind is p.KEYWORD_ONLY
    }


def get(name: str) -> type[nn.Module]:
    """The registered class for ``name``; an unknown name raises KeyError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown attention '{name}'; available: {', '.join(available())}") from None


def build_attention(name: str, *, d_model: int, n_heads: int, dropout: float = 0.0, **opts) -> nn.Module:
    """Build attention ``name``. An option the mechanism does not take raises TypeError naming it."""
    cls = get(name)
    valid = options(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise TypeError(
            f"attention '{name}' got unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(sorted(valid)) or '(none)'}"
        )
    if d_model % n_heads != 0:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pick n_heads dividing d_model")
    return cls(d_model=d_model, n_heads=n_heads, dropout=dropout, **opts)


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
