"""A whole sample-round world on disk, for the tests of both sides of issue 5.

A plain module (not a conftest) so that the lab-side tests can import it too::

    from tests.agency_runtime.round_fixtures import build_round_world

    def test_something(tmp_path):
        world = build_round_world(tmp_path, n_entities=3000, seed=7)
        request = world.write_request(sample_size=300)
        ...

What :func:`build_round_world` writes under ``tmp_path``::

    keys/<party>.key|.pub|.minisign.pub   nce-root, nce-lab, tax-body, <code>-body..., register
    trust.json (+ .minisig)               signed by nce-root; parties and roles, see below
    economy/sources/<CODE>.parquet        the synthetic economy (keyed by ``bin``)
    economy/truth/truth.parquet
    outcomes.parquet                      ``bin`` + ``outcome_<index>`` (bool), one row per entity
    state/<party>/                        an empty state directory per party
    requests/<request_id>.json (+ .minisig)  written by :meth:`World.write_request`

Parties: ``nce-lab`` (LAB), ``tax-body`` (TAX_BODY, owns TAX), one BODY per other source
(``<code lower-case>-body``, e.g. ``stats-body``, ``legal_entity-body``) and ``register``
(REGISTER). The root key ``nce-root`` signs ``trust.json`` and is not a party.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol.calendar import deadline
from sample_protocol.catalogue import get_source, source_codes
from sample_protocol.keys import PublicKey, SecretKey, generate_keypair, write_keypair
from sample_protocol.records import (
    SampleRequest,
    SourceRequest,
    new_record_id,
    write_record,
)
from sample_protocol.signing import sign_file
from sample_protocol.synthetic import INDEX_IDS, Economy, generate_economy, write_economy
from sample_protocol.trust import Party, Role, TrustRoot, new_trust_root, write_trust_root

__all__ = [
    "DEFAULT_SENT_ON",
    "LAB",
    "REGISTER",
    "ROOT",
    "TAX_BODY",
    "World",
    "body_name",
    "build_round_world",
    "economy_for",
    "outcomes_table",
]

ROOT = "nce-root"
LAB = "nce-lab"
TAX_BODY = "tax-body"
REGISTER = "register"
#: Default ``sent_on`` of a request: a working Monday shortly after the economy's as-of date.
DEFAULT_SENT_ON = dt.date(2025, 3, 3)


def body_name(source: str) -> str:
    """The party owning ``source`` in a test world: ``tax-body``, ``stats-body``..."""
    return TAX_BODY if source == "TAX" else f"{source.lower()}-body"


@functools.lru_cache(maxsize=8)
def economy_for(n_entities: int, seed: int, sources: tuple[str, ...] | None) -> Economy:
    """The synthetic economy, generated once per process for the same arguments."""
    return generate_economy(n_entities, seed, sources)


def outcomes_table(economy: Economy) -> pa.Table:
    """Pivot of the truth table: ``bin`` + ``outcome_<index>`` (bool), one row per entity."""
    truth = economy.truth
    first = economy.truth_for(INDEX_IDS[0])
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"bin": first["bin"]}
    for index in INDEX_IDS:
        part = truth.filter(pc.equal(truth["index"], index))
        if not part["bin"].equals(first["bin"]):  # the truth is written entity-major per index
            raise AssertionError(f"truth rows of {index!r} are not in entity order")
        columns[f"outcome_{index}"] = part["outcome"]
    return pa.table(columns)


@dataclass
class World:
    """Paths and keys of a test world (see the module docstring)."""

    root: Path
    keys_dir: Path
    trust: Path
    root_pub: Path
    economy_dir: Path
    outcomes: Path
    truth: Path
    sources: tuple[str, ...]
    parties: tuple[str, ...]
    body_of: dict[str, str]
    economy: Economy
    trust_root: TrustRoot
    _secrets: dict[str, SecretKey] = field(default_factory=dict, repr=False)

    # -- keys and paths -----------------------------------------------------------------

    def key(self, party: str) -> Path:
        """``keys/<party>.key`` (mode 0600)."""
        return self.keys_dir / f"{party}.key"

    def pub(self, party: str) -> Path:
        """``keys/<party>.pub``."""
        return self.keys_dir / f"{party}.pub"

    def secret(self, party: str) -> SecretKey:
        """The party's secret key object."""
        return self._secrets[party]

    def public(self, party: str) -> PublicKey:
        """The party's public key object."""
        return self._secrets[party].public

    def extract(self, source: str) -> Path:
        """``economy/sources/<CODE>.parquet``: the owner's extract of ``source``."""
        return self.economy_dir / "sources" / f"{source}.parquet"

    def state(self, party: str) -> Path:
        """``state/<party>/`` (created empty)."""
        path = self.root / "state" / party
        path.mkdir(parents=True, exist_ok=True)
        return path

    def recipients_for(self, sources: Iterable[str]) -> tuple[str, ...]:
        """Non-revoked BODY / TAX_BODY parties owning any of ``sources``; tax body first."""
        wanted = set(sources)
        names = [
            p.name
            for p in self.trust_root.parties
            if p.role in (Role.BODY, Role.TAX_BODY)
            and not p.revoked
            and (wanted & set(p.sources) or p.role is Role.TAX_BODY)
        ]
        return tuple(sorted(names, key=lambda n: (n != TAX_BODY, n)))

    # -- requests -------------------------------------------------------------------------

    def make_request(
        self,
        *,
        sample_size: int = 300,
        fields: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
        k: int = 5,
        request_id: str | None = None,
        sent_on: dt.date = DEFAULT_SENT_ON,
        as_of: dt.date | None = None,
        horizon_months: int = 12,
        lab: str = LAB,
    ) -> SampleRequest:
        """A :class:`SampleRequest` (not written).

        ``fields``: source -> field names, or source codes (each gets its model fields,
        i.e. every field that is not a direct identifier); default: every source of the
        world. TAX is always asked for (the tax body draws the list and brings outcomes).
        """
        if fields is None:
            wanted: dict[str, tuple[str, ...]] = {}
        elif isinstance(fields, Mapping):
            wanted = {code: tuple(names) for code, names in fields.items()}
        else:
            wanted = {code: () for code in fields}
        if not wanted:
            wanted = {code: () for code in self.sources}
        wanted.setdefault("TAX", ())
        items = []
        for code in sorted(wanted, key=lambda c: (c != "TAX", c)):
            names = wanted[code] or tuple(f.name for f in get_source(code).model_fields())
            items.append(SourceRequest(code, names))
        request = SampleRequest(
            request_id=request_id or new_record_id("req"),
            lab=lab,
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            sent_on=sent_on,
            due_date=deadline(sent_on, 10),
            sample_size=sample_size,
            as_of=as_of or self.economy.summary.as_of,
            sources=tuple(items),
            recipients=self.recipients_for(wanted),
            horizon_months=horizon_months,
            k_anonymity=k,
        )
        request.validate()
        return request

    def write_request(
        self,
        request: SampleRequest | None = None,
        *,
        out: Path | None = None,
        signer: str = LAB,
        **kwargs: object,
    ) -> Path:
        """Write ``request`` (or :meth:`make_request` with ``kwargs``) and its signature.

        The file is the canonical JSON of the record, ``<file>.minisig`` is signed by
        ``signer`` (the lab by default; pass another party to test refusals). Default
        path: ``requests/<request_id>.json``. Returns the path of the request file.
        """
        if request is None:
            request = self.make_request(**kwargs)  # type: ignore[arg-type]
        path = out or self.root / "requests" / f"{request.request_id}.json"
        write_record(request, path)
        sign_file(path, self.secret(signer))
        return path


def _write_outcomes(economy: Economy, path: Path) -> Path:
    pq.write_table(outcomes_table(economy), path)
    return path


def build_round_world(
    tmp_path: Path,
    n_entities: int = 3000,
    seed: int = 7,
    sources: Iterable[str] | None = None,
) -> World:
    """Keys, a signed trust root, a synthetic economy and an outcomes file under ``tmp_path``.

    ``sources`` limits the economy and the bodies to those source codes (TAX is always
    included); default: every source of the catalogue.
    """
    tmp_path = Path(tmp_path)
    codes = tuple(source_codes()) if sources is None else tuple(dict.fromkeys(sources))
    if "TAX" not in codes:
        codes = ("TAX", *codes)
    codes = tuple(c for c in source_codes() if c in codes)
    keys_dir = tmp_path / "keys"
    body_of = {code: body_name(code) for code in codes}
    names = (ROOT, LAB, *dict.fromkeys(body_of.values()), REGISTER)
    secrets_: dict[str, SecretKey] = {}
    for name in names:
        secret = generate_keypair(name)
        write_keypair(secret, keys_dir)
        secrets_[name] = secret

    parties = [Party(name=LAB, role=Role.LAB, sources=(), key=secrets_[LAB].public)]
    for code, name in body_of.items():
        role = Role.TAX_BODY if code == "TAX" else Role.BODY
        owned = tuple(c for c, n in body_of.items() if n == name)
        if any(p.name == name for p in parties):
            continue
        parties.append(Party(name=name, role=role, sources=owned, key=secrets_[name].public))
    parties.append(
        Party(name=REGISTER, role=Role.REGISTER, sources=(), key=secrets_[REGISTER].public)
    )
    root_record = new_trust_root(secrets_[ROOT], parties)
    trust = write_trust_root(root_record, tmp_path / "trust.json", secrets_[ROOT])

    economy = economy_for(n_entities, seed, codes)
    economy_dir = write_economy(economy, tmp_path / "economy")
    outcomes = _write_outcomes(economy, tmp_path / "outcomes.parquet")
    world = World(
        root=tmp_path,
        keys_dir=keys_dir,
        trust=trust,
        root_pub=keys_dir / f"{ROOT}.pub",
        economy_dir=economy_dir,
        outcomes=outcomes,
        truth=economy_dir / "truth" / "truth.parquet",
        sources=codes,
        parties=tuple(p.name for p in parties),
        body_of=body_of,
        economy=economy,
        trust_root=root_record,
        _secrets=secrets_,
    )
    for party in world.parties:
        world.state(party)
    return world
