"""Find business entities on the grounds of para 32.

* ``id``: a BIN or IIN, validated first (a bad check digit is an
  :class:`~sample_protocol.errors.IdentifierError`, exit 2 / HTTP 422, with the reason);
* ``name``: the name and legal form of a legal entity (``TOO "Temir Group"``, ``LLP``);
* ``person``: the surname, name and patronymic of a head or an individual entrepreneur;
* ``auto`` (default): an all-digit query is an identifier, anything else is looked up in
  every profile field.

The words are matched as prefixes by the store's SQLite full-text index
(:meth:`~registry_combiner.store.Store.search_entities`, FTS5 with diacritics removed, its
query syntax neutralised), best match first; ``name`` and ``person`` then keep only the
entities where every word starts a word **of those fields** (so ``Kim`` as a person does
not find ``Kimel Trade``). A search is not a check: it is not written to the check log.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from sample_protocol.identifiers import validate_identifier
from sample_protocol.serde import encode_value

from .errors import RegistryInputError
from .store import EntityRecord, Store

__all__ = ["MAX_QUERY_CHARS", "SEARCH_MODES", "search", "search_hit"]

#: How a query is read.
SEARCH_MODES = ("auto", "id", "name", "person")
#: Longest query accepted.
MAX_QUERY_CHARS = 200
#: Most results one search returns.
MAX_LIMIT = 100
_FIELDS = {
    "name": ("name", "legal_form"),
    "person": ("head_surname", "head_first_name", "head_patronymic"),
}
#: Candidates taken from the full-text index before ``name``/``person`` filter them.
_CANDIDATES = 1000
_WORD = re.compile(r"\w+", re.UNICODE)


def _fold(text: str) -> list[str]:
    """Lower-case words without diacritics (at least as lenient as the FTS tokenizer)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(plain.casefold())


def _matches(words: list[str], entity: EntityRecord, fields: Iterable[str]) -> bool:
    have = [w for f in fields for w in _fold(getattr(entity, f) or "")]
    return all(any(h.startswith(w) for h in have) for w in words)


def search(
    store: Store,
    query: str,
    *,
    by: str = "auto",
    legal_form: str | None = None,
    limit: int = 20,
) -> list[EntityRecord]:
    """Entities matching ``query`` read as ``by`` (module notes), best first."""
    if by not in SEARCH_MODES:
        raise RegistryInputError(
            f"search --by: expected one of {', '.join(SEARCH_MODES)}, found {str(by)[:40]!r}",
            code="search_bad_mode",
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise RegistryInputError(
            f"search limit: expected 1 to {MAX_LIMIT}, found {limit}", code="search_bad_limit"
        )
    text = query.strip()
    if len(text) > MAX_QUERY_CHARS:
        raise RegistryInputError(
            f"search query: expected at most {MAX_QUERY_CHARS} characters, found {len(text)}",
            code="search_query_too_long",
        )
    if by == "id" or (by == "auto" and text.isascii() and text.isdigit()):
        value = validate_identifier(text, where="search query")
        found = store.entity(value)
        return [] if found is None else [found]
    words = _fold(text)
    if not words:
        raise RegistryInputError(
            "search query: expected at least one letter or digit, found none",
            code="search_empty",
        )
    if by == "auto":
        return store.search_entities(text, legal_form=legal_form, limit=limit)
    candidates = store.search_entities(text, legal_form=legal_form, limit=_CANDIDATES)
    fields = _FIELDS[by]
    return [e for e in candidates if _matches(words, e, fields)][:limit]


def search_hit(entity: EntityRecord) -> dict[str, Any]:
    """What a search shows of an entity (JSON-ready)."""
    head = " ".join(
        p for p in (entity.head_surname, entity.head_first_name, entity.head_patronymic) if p
    )
    hit = {
        "bin": entity.bin,
        "kind": entity.kind,
        "name": entity.name,
        "legal_form": entity.legal_form,
        "status": entity.status,
        "head": head or None,
        "registration_date": entity.registration_date,
        "region": entity.region,
    }
    out: dict[str, Any] = encode_value(hit)
    return out
