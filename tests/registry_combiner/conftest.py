"""Fixtures of the register's tests: one world per session, a fresh register per test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_combiner.combine import CombineResult, combine
from registry_combiner.feeds import ingest_feed
from registry_combiner.ingest import BatchIngested, ingest_batch, verify_release
from registry_combiner.store_sqlite import SqliteStore
from sample_protocol.keys import SecretKey, load_public_key, load_secret_key
from sample_protocol.trust import TrustRoot, load_trust_root
from tests.registry_combiner.world import RegisterWorld, build_register_world


@pytest.fixture(scope="session")
def rworld(tmp_path_factory: pytest.TempPathFactory) -> RegisterWorld:
    return build_register_world(tmp_path_factory.mktemp("register-world"))


@dataclasses.dataclass
class Register:
    """A register state directory with its store open, for one test."""

    world: RegisterWorld
    state: Path
    store: SqliteStore
    trust: TrustRoot
    key: SecretKey

    def verify(self) -> None:
        verify_release(
            self.world.register_bundle, store=self.store, trust=self.trust, state_dir=self.state
        )

    def ingest(self, source_or_path: str | Path, **kwargs: object) -> BatchIngested:
        path = (
            self.world.batches[source_or_path]
            if isinstance(source_or_path, str)
            else source_or_path
        )
        return ingest_batch(path, store=self.store, trust=self.trust, recipient=self.key, **kwargs)  # type: ignore[arg-type]

    def feed(self, source: str) -> None:
        ingest_feed(self.store, source, self.world.feeds[source])

    def combine(self, **kwargs: object) -> CombineResult:
        return combine(
            self.store,
            self.world.register_bundle,
            trust=self.trust,
            state_dir=self.state,
            **kwargs,  # type: ignore[arg-type]
        )


def new_register(world: RegisterWorld, state: Path) -> Register:
    w = world.world
    trust = load_trust_root(w.trust, root_public=load_public_key(w.root_pub))
    return Register(
        world=world,
        state=state,
        store=SqliteStore(state / "register.sqlite"),
        trust=trust,
        key=load_secret_key(world.register_key),
    )


@pytest.fixture
def reg(rworld: RegisterWorld, tmp_path: Path) -> Iterator[Register]:
    register = new_register(rworld, tmp_path / "state")
    yield register
    register.store.close()


@pytest.fixture(scope="session")
def combined(rworld: RegisterWorld, tmp_path_factory: pytest.TempPathFactory) -> Register:
    """A register with every batch and feed ingested and one combine run (read only!)."""
    register = new_register(rworld, tmp_path_factory.mktemp("combined") / "state")
    register.verify()
    for source in rworld.batches:
        register.ingest(source)
    for source in rworld.feeds:
        register.feed(source)
    register.combine()
    return register
