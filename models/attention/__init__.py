"""Attention registry: every mechanism is one module, registered under its file name.

    from models.attention import build_attention, available
    attn = build_attention("vanilla", d_model=256, n_heads=4)
    y = attn(x, mask)   # x: (B, N, D), mask: (B, N) bool, True = real token

Every mechanism in this package is imported below, so adding a file that uses
``@register("<file name>")`` is all it takes to appear in ``available()``.

A mechanism declares what the harness needs to know about it in its own module, as arguments of
``register`` (in the spirit of xformers' ``supports_*`` flags); ``declaration(name)`` returns them
and ``lra.validate`` and ``lra-bench`` read them, so no other file names a mechanism:

    @register("cast", minima={"num_clusters": 1, "cluster_size": 1}, exact_at_length="cluster_size",
              follows_length=("num_clusters", "cluster_size"), warnings=cast_warnings)
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from torch import nn

from models.attention._common import zero_padding  # noqa: F401  (the padding rule; lra-bench's floor row)

_REGISTRY: dict[str, type[nn.Module]] = {}
_DECLARATIONS: dict[str, Declaration] = {}


@dataclass(frozen=True)
class Declaration:
    """What a mechanism tells the harness about itself.

    minima: each integer option and its smallest valid value (``lra.validate`` names the config key).
    exact_at_length: the option that, at or above the sequence length N, makes the mechanism compute
        exact attention (one cluster or segment holds every token); None if there is none.
    follows_length: the options its config sizes from ``task.max_len`` (so ``lra-bench`` resolves
        them at each length).
    causal: whether it has a causal form (an option ``causal``).
    warnings: ``warnings(options, n) -> iter of str``: settings that are legal at length n but rarely
        meant; ``options`` is the attention config without ``name``.
    """

    minima: Mapping[str, int] = field(default_factory=dict)
    exact_at_length: str | None = None
    follows_length: tuple[str, ...] = ()
    causal: bool = False
    warnings: Callable[[Mapping, int], Iterator[str]] | None = None


def register(name: str, **declares):
    """Class decorator that adds an attention module to the registry under ``name``.

    ``declares`` are the fields of ``Declaration``; options they name must be keyword options of
    the constructor.
    """
    declaration = Declaration(**declares)

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention '{name}' is registered twice")
        named = {*declaration.minima, *declaration.follows_length, *filter(None, [declaration.exact_at_length])}
        if declaration.causal:
            named.add("causal")
        unknown = sorted(named - set(_keyword_options(cls)))
        if unknown:
            raise ValueError(f"attention '{name}' declares option(s) {', '.join(unknown)} its constructor lacks")
        _REGISTRY[name] = cls
        _DECLARATIONS[name] = declaration
        cls.registry_name = name
        return cls

    return decorator


def declaration(name: str) -> Declaration:
    """What mechanism ``name`` declares (``Declaration``); unknown names raise KeyError like ``get``."""
    get(name)
    return _DECLARATIONS[name]


def _keyword_options(cls: type[nn.Module]) -> dict[str, object]:
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "d_model", "n_heads", "dropout") and p.kind is p.KEYWORD_ONLY
    }


def available() -> list[str]:
    """Names of all registered attention mechanisms, sorted."""
    return sorted(_REGISTRY)


def options(name: str) -> dict[str, object]:
    """The mechanism's own keyword options and their defaults (beyond d_model, n_heads, dropout)."""
    return _keyword_options(get(name))


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
