"""``combine``: the four scoring indexes of every entity, from one verified release.

:func:`combine` verifies the register's ``REGISTER`` bundle with the same
:func:`~sample_protocol.bundle_verify.verify_bundle` the bodies use (the release is then
known to the store), rebuilds each combiner's input layout from its manifest entry and
``models/combiner.<index>.features.json`` (re-hashed against the manifest as read), and
scores every entity of the store in blocks (:mod:`.scoring`). The run and its results are
written in one transaction (:meth:`~registry_combiner.store.Store.write_run`): a combine
that fails or is killed leaves the previous results current.

Each direct feed's columns are encoded once
(:class:`~sample_protocol.combiner_inputs.EncodedSource`) and gathered per block. The
indexes of a block are scored in parallel threads (one per core, at most one per index):
onnxruntime releases the GIL and one model alone rarely keeps every core busy (measured:
18% less time for the four combiners of the bench release on 2 cores).

Inputs, per index:

* preliminary: per source its combiner expects, the batches of **this release** with the
  latest ``as_of`` (several batches of that date are merged, the later-ingested winning
  for an entity); batches of other releases are not mixed in (the combiner was trained
  with this release's preliminary models). A source without such a batch is missing for
  every entity (so every entity is partial);
* direct: the current feed of each source (:meth:`~registry_combiner.store.Store.current_feeds`);
* overrides: the current ``TAX_LISTS`` feed.

The run's ``meta`` records the release, the batches and feeds used, the bit order of the
coverage masks, the layouts, the reason mode and counts per index and category.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sample_protocol.bundle_verify import VerifiedBundle
from sample_protocol.catalogue import Catalogue
from sample_protocol.combiner_inputs import CombinerLayout, EncodedSource
from sample_protocol.errors import ValidationError
from sample_protocol.features import FeatureSpec
from sample_protocol.records_base import safe_join, sha256_bytes
from sample_protocol.scores import ScoreScale
from sample_protocol.trust import TrustRoot

from .errors import RegistryRefused
from .ingest import verify_release
from .scoring import OVERRIDE_RULES, REASON_MODES, Block, IndexModel, IndexScores, score_index
from .store import (
    CATEGORIES,
    FLAG_OVERRIDDEN,
    FLAG_PARTIAL,
    LISTS_SOURCE,
    OVERRIDE_LISTS,
    RESULT_SCHEMA,
    ReasonCode,
    RunRecord,
    Store,
)

__all__ = ["BLOCK_ENTITIES", "CombineResult", "combine", "load_models"]

#: Entities scored together (one input matrix per index).
BLOCK_ENTITIES = 65_536
_MAX_SPEC_BYTES = 4 << 20

Floats = npt.NDArray[np.float64]


def _refuse(code: str, message: str) -> RegistryRefused:
    return RegistryRefused(message, code=code)


def _reason_code(source: str, preliminary: bool) -> ReasonCode:
    if preliminary:
        return ReasonCode(f"{source}.preliminary_index", source, "preliminary_index", "preliminary")
    return ReasonCode(f"{source}.record", source, "record", "direct")


def _override_code(name: str) -> ReasonCode:
    return ReasonCode(f"{LISTS_SOURCE}.{name}", LISTS_SOURCE, name, "override")


def load_models(
    bundle: VerifiedBundle, store: Store, catalogue: Catalogue | None = None
) -> dict[str, IndexModel]:
    """The combiner of each index the bundle ships, in catalogue index order."""
    m = bundle.manifest
    where = f"release bundle {bundle.directory} (release {m.release_id})"
    order = (catalogue or Catalogue.default()).index_ids()
    entries = {e.index: e for e in m.models if e.source is None}
    if not entries:
        raise _refuse("combine_no_combiner", f"{where}: expected combiner models, found none")
    layouts: dict[str, CombinerLayout] = {}
    scales: dict[str, ScoreScale] = {}
    for index, entry in entries.items():
        spec_name = entry.file.removesuffix(".onnx") + ".features.json"
        digest = m.files.get(spec_name)
        if digest is None:
            raise _refuse(
                "combine_no_features", f"{where}: expected {spec_name} in the manifest, found none"
            )
        data = safe_join(bundle.directory, spec_name).read_bytes()[:_MAX_SPEC_BYTES]
        if sha256_bytes(data) != digest:
            raise _refuse(
                "combine_features_changed",
                f"{where}: {spec_name}: sha256 differs from the manifest (changed since verified)",
            )
        try:
            spec = FeatureSpec.from_json(data, where=f"{where}: {spec_name}")
            layouts[index] = CombinerLayout.from_model(index, entry.input_names, spec)
            scales[index] = ScoreScale.from_json(
                m.training[f"scale:{index}"], where=f"{where}: training scale:{index}"
            )
        except KeyError:
            raise _refuse(
                "combine_no_scale", f"{where}: expected training 'scale:{index}', found none"
            ) from None
        except ValidationError as exc:
            raise _refuse("combine_bad_model", f"{exc} [{exc.code}]") from None
    codes: list[ReasonCode] = [_override_code(n) for n in OVERRIDE_LISTS]
    for layout in layouts.values():
        codes += [_reason_code(g.source, g.preliminary) for g in layout.groups()]
    ids = store.reason_code_ids(codes)
    models: dict[str, IndexModel] = {}
    for index in sorted(entries, key=lambda i: (order.index(i) if i in order else 99, i)):
        layout = layouts[index]
        models[index] = IndexModel(
            index=index,
            layout=layout,
            model=bundle.models[entries[index].name],
            cutoffs=m.cutoffs_for(index),
            scale=scales[index],
            group_codes=tuple(
                ids[_reason_code(g.source, g.preliminary).code] for g in layout.groups()
            ),
            override_codes=tuple(
                ids[_override_code(n).code] if index in OVERRIDE_RULES.get(n, ()) else 0
                for n in OVERRIDE_LISTS
            ),
        )
    return models


@dataclass
class _Inputs:
    """Everything a block is cut from, indexed by entity id."""

    n: int
    preliminary: dict[tuple[str, str], Floats] = field(default_factory=dict)
    #: Per direct source: its feed's used columns encoded once, and the feed row of each
    #: entity id (-1: none).
    feeds: dict[str, tuple[EncodedSource, npt.NDArray[np.int64]]] = field(default_factory=dict)
    lists: npt.NDArray[np.int8] | None = None
    used: dict[str, Any] = field(default_factory=dict)

    def block(self, ids: npt.NDArray[np.int64]) -> Block:
        direct = {source: feed.gather(pos[ids]) for source, (feed, pos) in self.feeds.items()}
        lists = self.lists[ids] if self.lists is not None else np.zeros(len(ids), np.int8)
        return Block(
            ids=ids,
            preliminary={k: v[ids] for k, v in self.preliminary.items()},
            direct=direct,
            lists=lists,
        )


def _load_inputs(store: Store, release_id: str, models: dict[str, IndexModel]) -> _Inputs:
    n = store.max_entity_id()
    inputs = _Inputs(n=n)
    wanted: dict[str, set[str]] = {}
    for model in models.values():
        for s in model.layout.preliminary_sources:
            wanted.setdefault(s, set()).add(model.index)
    batches_used: dict[str, list[str]] = {}
    for source, indexes in sorted(wanted.items()):
        batches = store.batches(source=source, release_id=release_id)
        if not batches:
            continue
        latest = max(b.as_of for b in batches)
        for index in indexes:
            inputs.preliminary[(source, index)] = np.full(n + 1, np.nan)
        for b in (b for b in batches if b.as_of == latest):
            rows = store.batch_rows(b.seq)
            for index in indexes:
                part = rows.filter(pc.equal(rows["index"], index))
                entity = part["entity"].to_numpy()
                inputs.preliminary[(source, index)][entity] = part["probability"].to_numpy()
            batches_used.setdefault(source, []).append(b.batch_id)
    feeds = store.current_feeds()
    direct = sorted({s for m in models.values() for s in m.layout.direct_sources})
    feeds_used: dict[str, int] = {}
    for source in direct:
        feed = feeds.get(source)
        if feed is None:
            continue
        table = store.feed_rows(feed.feed_id)
        pos = np.full(n + 1, -1, dtype=np.int64)
        pos[table["entity"].to_numpy()] = np.arange(table.num_rows)
        used = {c for m in models.values() for c in m.layout.direct_spec.columns}
        mine = sorted((c for c in used if c.source == source), key=lambda c: c.name)
        inputs.feeds[source] = (EncodedSource.encode(table, mine), pos)
        feeds_used[source] = feed.feed_id
    lists_feed = feeds.get(LISTS_SOURCE)
    if lists_feed is not None:
        table = store.feed_rows(lists_feed.feed_id)
        bits = np.zeros(n + 1, dtype=np.int8)
        entity = table["entity"].to_numpy()
        for i, name in enumerate(OVERRIDE_LISTS):
            on = np.asarray(pc.fill_null(table[name], False).to_numpy(zero_copy_only=False))
            bits[entity[on]] |= np.int8(1 << i)
        inputs.lists = bits
    inputs.used = {
        "batches": batches_used,
        "feeds": feeds_used,
        "feeds_missing": sorted(set(direct) - set(feeds_used)),
        "preliminary_missing": sorted(set(wanted) - set(batches_used)),
        "lists_feed": None if lists_feed is None else lists_feed.feed_id,
    }
    return inputs


def _source_bits(models: dict[str, IndexModel], catalogue: Catalogue) -> dict[str, int]:
    names = {g.source for m in models.values() for g in m.layout.groups()}
    order = [c for c in catalogue.source_codes() if c in names] + sorted(
        names - set(catalogue.source_codes())
    )
    if len(order) > 31:
        raise _refuse(
            "combine_too_many_sources", f"expected at most 31 sources, found {len(order)}"
        )
    return {s: i for i, s in enumerate(order)}


def _block_table(ids: npt.NDArray[np.int64], scores: list[IndexScores]) -> pa.Table:
    k = len(scores)

    def stack(name: str, dtype: Any) -> npt.NDArray[Any]:
        return np.stack([getattr(s, name) for s in scores], axis=1).astype(dtype).ravel()

    reasons = np.stack([s.reasons for s in scores], axis=1)  # [n, k, 4]
    columns = {
        "entity": np.repeat(ids, k),
        "index": np.tile(np.arange(k, dtype=np.int8), len(ids)),
        "probability": stack("probability", np.float64),
        "value": stack("value", np.int8),
        "category": stack("category", np.int8),
        "flags": stack("flags", np.int8),
        "overrides": stack("overrides", np.int8),
        "present": stack("present", np.int32),
        "missing": stack("missing", np.int32),
    }
    for r in range(4):
        columns[f"reason{r + 1}"] = reasons[:, :, r].astype(np.int16).ravel()
    return pa.Table.from_arrays(
        [pa.array(columns[f.name], type=f.type) for f in RESULT_SCHEMA], schema=RESULT_SCHEMA
    )


@dataclass(frozen=True, slots=True)
class CombineResult:
    """What :func:`combine` wrote."""

    run: RunRecord
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "release_id": self.run.release_id,
            "entities": self.run.entities,
            "started_at": self.run.started_at.isoformat(),
            "finished_at": self.run.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "counts": self.run.meta.get("counts", {}),
            "batches": self.run.meta.get("batches", {}),
            "feeds": self.run.meta.get("feeds", {}),
            "feeds_missing": self.run.meta.get("feeds_missing", []),
            "preliminary_missing": self.run.meta.get("preliminary_missing", []),
        }


def combine(
    store: Store,
    bundle_dir: str | os.PathLike[str],
    *,
    trust: TrustRoot,
    state_dir: str | os.PathLike[str],
    now: dt.datetime | None = None,
    reasons: str = "elevated",
    catalogue: Catalogue | None = None,
    block_entities: int = BLOCK_ENTITIES,
    progress: Callable[[str], None] | None = None,
) -> CombineResult:
    """Verify the release and compute every entity's indexes (module notes)."""
    if reasons not in REASON_MODES:
        raise ValidationError(
            f"reasons: expected one of {', '.join(REASON_MODES)}, found {reasons!r}",
            code="bad_option",
        )
    clock = time.perf_counter()
    started = now or dt.datetime.now(dt.UTC)
    cat = catalogue or Catalogue.default()
    bundle, release = verify_release(
        bundle_dir, store=store, trust=trust, state_dir=state_dir, now=started
    )
    models = load_models(bundle, store, cat)
    inputs = _load_inputs(store, release.release_id, models)
    bits = _source_bits(models, cat)
    feeds_missing = frozenset(inputs.used["feeds_missing"])
    indexes = tuple(models)
    counts: dict[str, dict[str, int]] = {
        i: {**dict.fromkeys(CATEGORIES, 0), "partial": 0, "overridden": 0} for i in indexes
    }
    meta: dict[str, Any] = {
        "indexes": list(indexes),
        "sources": sorted(bits, key=bits.__getitem__),
        "layouts": {
            i: {
                "preliminary": list(m.layout.preliminary_sources),
                "direct": list(m.layout.direct_sources),
            }
            for i, m in models.items()
        },
        "reasons": reasons,
        "counts": counts,
        **inputs.used,
    }
    say = progress or (lambda _msg: None)

    def chunks(pool: ThreadPoolExecutor) -> Iterator[pa.Table]:
        for lo in range(1, inputs.n + 1, block_entities):
            ids = np.arange(lo, min(lo + block_entities, inputs.n + 1), dtype=np.int64)
            block = inputs.block(ids)
            scores = list(
                pool.map(
                    lambda i, b=block: score_index(
                        models[i], b, bits=bits, feeds_missing=feeds_missing, reasons=reasons
                    ),
                    indexes,
                )
            )
            for i, s in zip(indexes, scores, strict=True):
                c = counts[i]
                for code, name in enumerate(CATEGORIES):
                    c[name] += int((s.category == code).sum())
                c["partial"] += int(((s.flags & FLAG_PARTIAL) != 0).sum())
                c["overridden"] += int(((s.flags & FLAG_OVERRIDDEN) != 0).sum())
            yield _block_table(ids, scores)
            say(f"scored {int(ids[-1]):,} of {inputs.n:,} entities")

    # The indexes of a block are scored side by side (module notes).
    workers = max(1, min(len(indexes), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="combine") as pool:
        run = store.write_run(
            RunRecord(
                release_id=release.release_id,
                started_at=started,
                finished_at=started,
                entities=inputs.n,
                meta=meta,
            ),
            chunks(pool),
        )
    return CombineResult(run=run, seconds=time.perf_counter() - clock)
