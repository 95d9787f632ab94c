"""Score a body's whole population with a verified release; write the signed batch.

:func:`score_population` does, in order, and writes nothing unless all of it succeeds:

1. checks the output path is new and, when sealing, that the key is the register's (a
   current, non-revoked REGISTER party of the trust root, with a box key);
2. verifies the release for the body's source (:func:`~agency_runtime.verify.verify_release`:
   signature, hashes, expiry, revocation, rollback, ONNX gate, parity; the body must own
   the source);
3. streams the body's extract (:mod:`agency_runtime.input_reader`, Parquet or CSV, constant
   memory), checking every row against the source's contract;
4. per batch: generalises the quasi-identifiers as the training did, encodes the features
   (:meth:`~sample_protocol.features.FeatureSpec.transform`), runs every gated model, rounds
   each probability to 4 decimals and derives from it, outside the model, the published
   value (the index's signed :class:`~sample_protocol.scores.ScoreScale`) and the category
   (the signed cut-offs), so each row of the batch is consistent with its own probability;
5. streams the rows through :class:`~sample_protocol.batch.BatchWriter`, which admits
   nothing but the batch schema, then signs (and optionally seals) the batch and moves it
   into place.

The run and any refusal are appended to ``STATE/audit.log`` (actions ``release_verified``
and ``batch_scored``).

Example::

    result = score_population("releases/rel3-.../TAX", "TAX.parquet", source="TAX",
                              key=tax_key, out="outbox/batch-TAX", state_dir="state",
                              trust=trust)
    result.manifest.row_count
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sample_protocol.batch import BATCH_SCHEMA, BatchWriter
from sample_protocol.features import FeatureSpec
from sample_protocol.keys import PublicKey, SecretKey
from sample_protocol.records import BatchManifest
from sample_protocol.scores import CATEGORIES, to_values
from sample_protocol.trust import Role, TrustRoot

from .errors import RuntimeInputError, RuntimeRefused
from .input_reader import DEFAULT_BATCH_ROWS, generalise_like_training, open_population
from .sample_round import audit_scope
from .verify import ScoringModel, VerifiedRelease, verify_release

__all__ = [
    "DECIMALS",
    "Matrices",
    "Probabilities",
    "Progress",
    "ScoreResult",
    "batch_records",
    "prepare_batch",
    "run_models",
    "score_batch",
    "score_population",
]

#: Decimals of the published probability.
DECIMALS = 4
#: ``progress(rows_done, rows_total)``; ``rows_total`` is ``None`` for CSV input.
Progress = Callable[[int, int | None], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What :func:`score_population` wrote."""

    out: Path
    manifest: BatchManifest
    release_id: str
    source: str
    entities: int
    indexes: tuple[str, ...]
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.manifest.row_count

    def to_dict(self) -> dict[str, object]:
        m = self.manifest
        return {
            "out": str(self.out),
            "batch_id": m.batch_id,
            "body": m.body,
            "source": self.source,
            "release_id": self.release_id,
            "as_of": m.as_of.isoformat(),
            "entities": self.entities,
            "rows": self.rows,
            "indexes": list(self.indexes),
            "categories": self.categories,
            "sealed": m.sealed,
            "file": m.file,
            "sha256": m.sha256,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.entities / self.seconds) if self.seconds else None,
        }


@functools.cache
def _category_names() -> pa.Array:
    # Built on first use: pyarrow converting Python objects at import time would import
    # pandas where it is installed (the agency's import must stay light).
    return pa.array(CATEGORIES, pa.string())


def _category_codes(p: npt.NDArray[np.float64], model: ScoringModel) -> npt.NDArray[np.int8]:
    """0 low, 1 medium, 2 high: ``categorise``'s rule (``p >= high_from`` is high...)."""
    codes: npt.NDArray[np.int8] = (p >= model.cutoffs.medium_from).astype(np.int8)
    codes += p >= model.cutoffs.high_from
    return codes


Matrices = dict[FeatureSpec, npt.NDArray[np.float32]]


def prepare_batch(table: pa.Table, release: VerifiedRelease) -> Matrices:
    """The model matrix of each distinct feature spec: quasi-identifiers generalised as in
    training, then encoded (:meth:`~sample_protocol.features.FeatureSpec.transform`)."""
    prepared = generalise_like_training(table, release.generalisation)
    matrices: Matrices = {}
    for model in release.models:
        if model.features not in matrices:
            matrices[model.features] = model.features.transform(prepared)
    return matrices


Probabilities = dict[str, npt.NDArray[np.float64]]


def run_models(matrices: Matrices, release: VerifiedRelease) -> Probabilities:
    """Each gated model's probabilities (by model name), rounded to :data:`DECIMALS`."""
    out: Probabilities = {}
    for model in release.models:
        X = matrices[model.features]
        out[model.name] = np.round(model.gated.run(X, batch_size=max(len(X), 1)), DECIMALS)
    return out


def batch_records(
    table: pa.Table, release: VerifiedRelease, probabilities: Probabilities, *, as_of: dt.date
) -> list[tuple[ScoringModel, pa.RecordBatch, npt.NDArray[np.int8]]]:
    """One batch-schema record batch per model from its probabilities: value (the signed
    scale) and category (the signed cut-offs) derived outside the model; also each
    model's category codes (0 low, 1 medium, 2 high), for counting."""
    n = table.num_rows
    keys = table.column("bin").combine_chunks()
    source = pa.repeat(pa.scalar(release.source.code, pa.string()), n)
    release_id = pa.repeat(pa.scalar(release.release_id, pa.string()), n)
    day = pa.repeat(pa.scalar(as_of, pa.date32()), n)
    out = []
    for model in release.models:
        p = probabilities[model.name]
        codes = _category_codes(p, model)
        category = pa.DictionaryArray.from_arrays(pa.array(codes), _category_names())
        arrays = [
            keys,
            source,
            pa.repeat(pa.scalar(model.index, pa.string()), n),
            pa.array(to_values(p, model.scale).astype(np.int8), pa.int8()),
            category.cast(pa.string()),
            pa.array(p, pa.float64()),
            release_id,
            day,
        ]
        out.append((model, pa.RecordBatch.from_arrays(arrays, schema=BATCH_SCHEMA), codes))
    return out


def score_batch(
    table: pa.Table,
    release: VerifiedRelease,
    *,
    as_of: dt.date,
    matrices: Matrices | None = None,
) -> list[tuple[ScoringModel, pa.RecordBatch, npt.NDArray[np.int8]]]:
    """Score one checked batch (``bin`` + the fields): one batch-schema record batch per model.

    ``matrices`` (from :func:`prepare_batch`) may be computed ahead. Also returns each
    model's category codes (0 low, 1 medium, 2 high), for counting.
    """
    if matrices is None:
        matrices = prepare_batch(table, release)
    return batch_records(table, release, run_models(matrices, release), as_of=as_of)


class _Prefetch(Generic[T]):
    """Run ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    Reading, checking and encoding the next batch then overlaps onnxruntime's work on the
    current one (pyarrow, numpy and onnxruntime release the GIL). An exception in the
    thread is raised in the consumer; :meth:`close` stops the thread.
    """

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(items,), name="score-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, message: tuple[str, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("done", None))
        except BaseException as exc:
            self._put(("error", exc))

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            if kind == "done":
                return
            yield value  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class _Behind(Generic[T]):
    """Run ``handle(item)`` for each :meth:`put` item in a background thread, in order,
    up to ``depth`` items behind the producer.

    Deriving and writing the rows of one batch then overlaps onnxruntime's work on the
    next. An exception in the thread is raised by the next :meth:`put` or by
    :meth:`finish`, which waits for every item to be handled.
    """

    def __init__(self, handle: Callable[[T], None], depth: int = 2) -> None:
        self._handle = handle
        self._queue: queue.Queue[tuple[bool, T | None]] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="score-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            more, item = self._queue.get()
            if not more:
                return
            if self._error is None:
                try:
                    self._handle(item)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._raise()
        self._queue.put((True, item))

    def finish(self) -> None:
        """Wait for every item; raise the first error of the thread, if any."""
        if self._thread.is_alive():
            self._queue.put((False, None))
            self._thread.join()
        self._raise()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _parallelism(model_workers: int | None) -> tuple[int, int]:
    """(batches run at once, onnxruntime intra-op threads per run).

    By default two batches at a time, the cores shared between them: measured on 2
    quiet cores (300,000 TAX rows, best of 5), two one-thread runs side by side score at
    0.76x bare onnxruntime's speed where one two-thread run at a time gets 0.69x (a
    two-thread run idles while its threads wait on each other; the reading and writing
    threads fill those gaps better beside two one-thread runs).
    """
    cpus = _cpus()
    workers = model_workers if model_workers is not None else (2 if cpus >= 2 else 1)
    if workers < 1:
        raise ValueError(f"model_workers: expected a positive integer, found {workers}")
    return workers, max(1, cpus // workers)


def _with_threads(release: VerifiedRelease, threads: int) -> VerifiedRelease:
    models = tuple(
        dataclasses.replace(m, gated=m.gated.with_threads(threads)) for m in release.models
    )
    return dataclasses.replace(release, models=models)


def _check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise RuntimeInputError(
            f"--out {out}: expected a new path for the batch, found an existing one (a batch "
            "is never written over anything)",
            code="output_exists",
        )


def _check_seal_to(seal_to: PublicKey, trust: TrustRoot | None) -> None:
    if trust is not None:
        trust.require_signer(seal_to.key_id, roles=Role.REGISTER)
    if not seal_to.can_receive:
        raise RuntimeRefused(
            f"--seal-to: key {seal_to.name!r} ({seal_to.key_id}) is verify-only; expected the "
            "register's NAME.pub with its box key",
            code="seal_to_no_box_key",
        )


def score_population(
    bundle_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    *,
    source: str,
    key: SecretKey,
    out: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    trust: TrustRoot | None = None,
    lab_public: PublicKey | None = None,
    seal_to: PublicKey | None = None,
    as_of: dt.date | None = None,
    now: dt.datetime | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
    model_workers: int | None = None,
) -> ScoreResult:
    """Verify the release, score every entity of ``input_path``, write the batch ``out``.

    Give exactly one of ``trust`` (the usual case: the body, the lab and the register are
    checked against it) and ``lab_public`` (a pinned lab key; the register's key is then
    taken as given). ``as_of`` (default: today, UTC) is the date the data describes.
    Refusals (exit 3) and bad input (:class:`RuntimeInputError`, exit 2) leave nothing at
    ``out``. ``model_workers`` batches run through the models at once (default 2 on a
    machine of 2 or more cores, each run with its share of the cores).
    """
    tell = say or (lambda _m: None)
    code = source.strip().upper()
    started = time.perf_counter()
    when = now if now is not None else dt.datetime.now(dt.UTC)
    day = as_of if as_of is not None else when.astimezone(dt.UTC).date()
    dest = Path(out)
    state = Path(state_dir)
    with audit_scope(state, key.name, "batch_scored", str(input_path), {"source": code}) as scope:
        _check_out(dest)
        if seal_to is not None:
            _check_seal_to(seal_to, trust)
        release = verify_release(
            bundle_dir,
            state_dir=state,
            actor=key.name,
            trust=trust,
            lab_public=lab_public,
            source=code,
            body_key_id=key.key_id,
            now=when,
        )
        scope.details["release_id"] = release.release_id
        tell(
            f"release {release.release_id} (sequence {release.manifest.sequence}) verified: "
            f"{len(release.models)} models, signed by {release.bundle.signer}"
        )
        workers, threads = _parallelism(model_workers)
        release = _with_threads(release, threads)
        population = open_population(
            input_path, release.source, fields=release.fields, batch_size=batch_size, lean=True
        )
        tell(
            f"input {population.path}: key column {population.key!r}, {len(release.fields)} fields"
        )
        counts = {m.index: np.zeros(len(CATEGORIES), dtype=np.int64) for m in release.models}
        entities = 0
        with BatchWriter(
            dest,
            body_key=key,
            source=code,
            release_id=release.release_id,
            as_of=day,
            seal_to=seal_to,
            now=when,
        ) as writer:

            def write(item: tuple[pa.Table, Probabilities]) -> None:
                table, probabilities = item
                for model, batch, codes in batch_records(table, release, probabilities, as_of=day):
                    writer.write(batch)
                    counts[model.index] += np.bincount(codes, minlength=len(CATEGORIES))

            # Three stages, so that the model runs never wait for Python work: read, check
            # and encode ahead (one thread); run the models (``workers`` batches at once, in
            # the pool, one more waiting so that a worker done early takes it at once);
            # derive and write behind (one thread), in input order.
            ahead = _Prefetch(
                (t, prepare_batch(t, release)) for t in population.batches() if t.num_rows
            )
            behind: _Behind[tuple[pa.Table, Probabilities]] = _Behind(write)
            running: collections.deque[tuple[pa.Table, Future[Probabilities]]] = collections.deque()

            def hand_on() -> None:
                nonlocal entities
                table, future = running.popleft()
                behind.put((table, future.result()))
                entities += table.num_rows
                if progress is not None:
                    progress(entities, population.total_rows)

            try:
                with (
                    contextlib.closing(ahead),
                    ThreadPoolExecutor(workers, thread_name_prefix="score-model") as pool,
                ):
                    for table, matrices in ahead:
                        running.append((table, pool.submit(run_models, matrices, release)))
                        if len(running) > workers:
                            hand_on()
                    while running:
                        hand_on()
            except BaseException:
                with contextlib.suppress(BaseException):  # the first error is the one to tell
                    behind.finish()
                raise
            behind.finish()
            if entities == 0:
                raise RuntimeInputError(
                    f"extract {population.path}: no rows; expected the body's population",
                    code="empty_input",
                )
        manifest = writer.manifest
        result = ScoreResult(
            out=dest,
            manifest=manifest,
            release_id=release.release_id,
            source=code,
            entities=entities,
            indexes=tuple(m.index for m in release.models),
            categories={
                index: dict(zip(CATEGORIES, (int(c) for c in row), strict=True))
                for index, row in counts.items()
            },
            seconds=time.perf_counter() - started,
        )
        scope.log.append(
            scope.action,
            manifest.batch_id,
            "ok",
            {
                **scope.details,
                "entities": entities,
                "rows": manifest.row_count,
                "indexes": ",".join(result.indexes),
                "as_of": day.isoformat(),
                "sealed": manifest.sealed,
                "sha256": manifest.sha256,
                "out": str(dest),
            },
        )
    return result
