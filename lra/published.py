"""Published numbers (results/published.yaml): each with its paper and table, and LRA Table 1's order.

The file has ``sources`` (papers by id: title, authors, table, arXiv id, where the text was read) and
two lists that name a source per entry: ``accuracy`` (test accuracy per LRA task and the two
averages, or a ``status`` of "not reported" / "not found") and ``efficiency`` (steps per second and
peak memory against sequence length). The ``accuracy`` list is in
the row order of LRA Table 1 (Tay et al., arXiv 2011.04006), then later mechanisms: ``lra-table``
orders its rows by it (``published_order``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lra.results import REPO

PUBLISHED = REPO / "results" / "published.yaml"


def load_published(path: str | Path = PUBLISHED) -> dict[str, dict[str, dict]]:
    """results/published.yaml as {"accuracy": {attention: entry}, "efficiency": {...}}, with each
    entry's ``source`` (and ``avg6_source``) replaced by the source it names."""
    data = yaml.safe_load(Path(path).read_text())
    sources = data["sources"]

    def resolve(entry: dict) -> dict:
        out = dict(entry)
        for key in ("source", "avg6_source"):
            if key in entry:
                if entry[key] not in sources:
                    raise KeyError(f"{path}: {entry['attention']} names unknown source '{entry[key]}'")
                out[key] = {"id": entry[key], **sources[entry[key]]}
        return out

    return {kind: {e["attention"]: resolve(e) for e in data[kind]} for kind in ("accuracy", "efficiency")}


def published_order(path: str | Path = PUBLISHED) -> tuple[str, ...]:
    """The attentions of the ``accuracy`` list, in its order."""
    return tuple(e["attention"] for e in yaml.safe_load(Path(path).read_text())["accuracy"])
