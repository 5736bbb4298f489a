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

Mechanisms from other packages: an installed package names its class in the entry point group
``lra.attention`` (``[project.entry-points."lra.attention"] myattn = "mypkg.attn:MyAttention"`` in its
pyproject.toml) and ``load_plugins`` registers it under the entry point's name once the built-ins are
in. The class declares itself with a class attribute ``declares = dict(...)`` holding the fields of
``Declaration`` (it does not call ``register``); its constructor takes ``d_model``, ``n_heads``,
``dropout`` and keyword-only options, like a built-in. An entry point that cannot be used (its import
fails, its name is a built-in's or another plugin's, it is not an ``nn.Module`` class, its options are
not keyword-only) is skipped with one warning naming the entry point and its package; the built-ins and
the other plugins are unaffected, and ``get`` of the skipped name says why it is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from torch import nn

from models.attention._common import zero_padding  # noqa: F401  (the padding rule; lra-bench's floor row)

ENTRY_POINT_GROUP = "lra.attention"
log = logging.getLogger(__name__)
_REGISTRY: dict[str, type[nn.Module]] = {}
_DECLARATIONS: dict[str, Declaration] = {}
_PLUGINS: dict[str, str] = {}  # plugin name -> "package (module:Class)"
_SKIPPED: dict[str, str] = {}  # entry point name -> why it was not registered


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
        unknown = sorted(named - set(keyword_options(cls)))
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


def keyword_options(cls: type[nn.Module]) -> dict[str, object]:
    """A class's own keyword-only constructor options and their defaults (beyond d_model, n_heads, dropout)."""
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
    return keyword_options(get(name))


def get(name: str) -> type[nn.Module]:
    """The registered class for ``name``; an unknown name raises KeyError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        why = f" ({_SKIPPED[name]})" if name in _SKIPPED else ""
        raise KeyError(f"unknown attention '{name}'; available: {', '.join(available())}{why}") from None


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


def plugins() -> dict[str, str]:
    """The registered mechanisms that come from other packages: name -> "package (module:Class)"."""
    return dict(_PLUGINS)


def _plugin_problem(name: str, cls: object) -> str | None:
    """Why ``cls`` cannot be the mechanism ``name``, or None."""
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        return "the name is not an identifier (letters, digits, _), which configs and run folders need"
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return f"it names {cls!r}, not an nn.Module class"
    params = inspect.signature(cls.__init__).parameters
    missing = [k for k in ("d_model", "n_heads", "dropout") if k not in params]
    if missing:
        return f"its constructor lacks {', '.join(missing)} (it must take d_model, n_heads, dropout)"
    loose = [k for k, p in params.items() if k != "self" and p.kind is not p.KEYWORD_ONLY]
    loose = [k for k in loose if k not in ("d_model", "n_heads", "dropout")]
    if loose:
        return f"constructor argument(s) {', '.join(loose)} are not keyword-only (put them after *)"
    if not isinstance(getattr(cls, "declares", {}), Mapping):
        return "its class attribute declares is not a dict of Declaration fields"
    return None


def load_plugins(entry_points=None) -> list[str]:
    """Register the mechanisms of the ``lra.attention`` entry points (installed packages by default).

    Returns one line per entry point that was skipped (each is also logged as a warning); a skipped
    entry point changes nothing in the registry.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    problems = []
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        package = f"package {dist.name}" if dist is not None else f"module {ep.module}"
        where = f"attention plugin '{ep.name}' = '{ep.value}' ({package})"
        if ep.name in _PLUGINS and _PLUGINS[ep.name].endswith(f"({ep.value})"):
            continue  # the same entry point seen twice (a package on two sys.path entries)
        if ep.name in _REGISTRY:
            owner = _PLUGINS.get(ep.name, "a built-in mechanism")
            problem = f"the name is taken by {owner}; rename the entry point"
        else:
            try:
                cls = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin must never break the registry
                problem = f"importing it failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
            else:
                problem = _plugin_problem(ep.name, cls)
                if problem is None:
                    try:
                        register(ep.name, **getattr(cls, "declares", {}))(cls)
                    except (TypeError, ValueError) as e:
                        problem = f"its declares are invalid ({e})"
        if problem is None:
            _PLUGINS[ep.name] = f"{package.removeprefix('package ')} ({ep.value})"
            continue
        line = f"{where} skipped: {problem}"
        _SKIPPED.setdefault(ep.name, line)
        log.warning(line)
        problems.append(line)
    return problems


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
load_plugins()
