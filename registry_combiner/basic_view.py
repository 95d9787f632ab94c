"""The free basic view of para 37: what an entrepreneur may see of a counterparty.

:func:`basic_view` shows, as far as the register holds it: registration (from the
LEGAL_ENTITY feed), activities (OKED; the STATS feed's sections and size class when it is
ingested), presence on the state lists (TAX_LISTS), permits (the PERMITS feed) and the
conscientiousness index. Taxes paid and tax debt belong to the secret TAX source, which
reaches the register only as preliminary indexes: they are shown only when some direct
feed carries ``taxes_paid_kzt`` / ``tax_debt_kzt``; otherwise ``missing`` says why (the
``tax_debtor`` list is under ``lists``). Every part the register lacks is named in
``missing`` with the reason, never silently left out.
"""

from __future__ import annotations

from typing import Any

from sample_protocol.serde import encode_value

from .query import entity_view
from .store import Store

__all__ = ["basic_view"]

_TAX_FIELDS = ("taxes_paid_kzt", "tax_debt_kzt")
_REGISTRATION = ("bin", "kind", "name", "legal_form", "status", "registration_date", "region")


def basic_view(store: Store, identifier: str) -> dict[str, Any]:
    """The free basic view of para 37, as far as the register holds it (module notes)."""
    view = entity_view(store, identifier, history=1)
    entity = store.entity(view["entity"]["bin"])
    assert entity is not None
    e = view["entity"]
    missing: dict[str, str] = {}
    feeds = store.current_feeds()
    stats = store.feed_values("STATS", entity.id)
    activities: dict[str, Any] = {"oked": e["oked"]}
    if stats is not None:
        for name in ("oked", "oked_section", "secondary_oked", "size_class"):
            if stats.get(name) is not None:
                activities[name] = stats[name]
    elif "STATS" not in feeds:
        missing["activities.secondary"] = "the STATS feed is not ingested"
    taxes: dict[str, Any] = {}
    for source, feed in feeds.items():
        if any(f in feed.columns for f in _TAX_FIELDS):
            values = store.feed_values(source, entity.id) or {}
            taxes.update({f: values.get(f) for f in _TAX_FIELDS if f in feed.columns})
    if not taxes:
        missing["taxes"] = (
            "taxes paid and tax debt are tax secret (the TAX source sends only preliminary "
            "indexes); the tax_debtor list is shown under lists"
        )
    permits = store.feed_values("PERMITS", entity.id)
    if permits is None:
        missing["permits"] = (
            "the PERMITS feed is not ingested"
            if "PERMITS" not in feeds
            else "no permit record for this entity"
        )
    conscientiousness = None
    for ix in view["indexes"]:
        if ix["index"] == "conscientiousness":
            conscientiousness = {
                k: ix[k] for k in ("value", "category", "probability", "partial", "overridden")
            }
            conscientiousness.update(
                release_id=view["run"]["release_id"], computed_at=view["run"]["computed_at"]
            )
    if conscientiousness is None:
        missing["conscientiousness"] = "not computed yet for this entity"
    out = {
        "run_id": None if view["run"] is None else view["run"]["run_id"],
        "registration": {k: e[k] for k in _REGISTRATION},
        "activities": activities,
        "lists": view["lists"],
        "taxes": taxes or None,
        "permits": permits,
        "conscientiousness": conscientiousness,
        "missing": missing,
    }
    result: dict[str, Any] = encode_value(out)
    return result
