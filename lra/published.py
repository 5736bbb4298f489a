"""Published numbers (results/published.yaml): each with its paper and table, and LRA Table 1's order.

The file has ``sources`` (papers by id: title, authors, table, arXiv id, where the text was read) and
two lists that name a source per entry: ``accuracy`` (test accuracy per LRA task and the two
averages, or a ``status`` of "not reported" / "not found") and ``efficiency`` (steps per second and
peak memory against sequence length), and ``spt``: accuracy after self-pretraining (``objective``
masked or causal), shown under our SPT rows. The ``accuracy`` list is in
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

    out = {kind: {e["attention"]: resolve(e) for e in data[kind]} for kind in ("accuracy", "efficiency")}
    out["spt"] = {f"{e['attention']} (SPT {e['objective']})": resolve(e) for e in data.get("spt", [])}
    return out


def published_entry(published: dict | None, row: str, attention: str) -> dict | None:
    """The published accuracy entry shown under our row ``row`` (of mechanism ``attention``): a
    self-pretrained row (``cast (SPT masked)``, lra.table_select.row_name) gets the same protocol's
    entry of the ``spt`` list or none, never a from-scratch one."""
    for name, entry in (published or {}).get("spt", {}).items():
        if row == name or row.startswith(name + " ("):
            return entry
    if row.startswith(f"{attention} (SPT "):
        return None
    return (published or {}).get("accuracy", {}).get(attention)


def published_order(path: str | Path = PUBLISHED) -> tuple[str, ...]:
    """The attentions of the ``accuracy`` list, in its order."""
    return tuple(e["attention"] for e in yaml.safe_load(Path(path).read_text())["accuracy"])
