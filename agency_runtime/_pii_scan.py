"""Scan a table's *values* for personal data before a sample leaves its owner.

DESIGN section 5: no column of a depersonalised sample may hold a valid IIN/BIN, a phone
number, an e-mail address, an IBAN, a personal name or a street address, whatever the
column is called. :func:`scan_table` looks at every string column (and every integer
column: a BIN stored as int64 is a leak too) and counts the rows that match each pattern:

================== ==================================================================
pattern            what is flagged
================== ==================================================================
``iin_bin``        a valid IIN or BIN in any 12-digit window of a run of 12 or more
                   digits (glued to other digits it still leaks); an integer is read
                   zero-padded to 12 digits. The protocol's ``identifier_mask`` decides.
``phone``          a Kazakhstan number: ``+7`` or ``8``, then 10 digits starting with 7
                   (mobile 7xx, Astana 7172, Almaty 727...), with spaces, dashes,
                   brackets; not an amount (``87012345678.50``) nor thousands
                   (``87 012 345 678``); integers 7_7xx_xxx_xx_xx and 8_7xx_xxx_xx_xx
``email``          ``local@domain.tld`` (Latin or Cyrillic)
``iban``           ``KZ`` + 2 check digits + 16 letters/digits whose mod-97 check holds
``person_name``    a capitalised word ending in a surname or patronymic suffix (-ov,
                   -ova, -ev, -eva, -in, -ina, -uly, -kyzy, -ovich, -ovna; Latin or
                   Cyrillic; common nouns such as Магазин, Машина, Berlin excepted); a
                   Surname Name Patronymic triple (-ich, -ichna too); a surname with
                   initials (``Ким В.П.``, ``В.П. Ким``)
``street_address`` a street marker with a name or number (``ул. Абая``, ``мкр Самал``,
                   ``Абай көшесі, 10``, ``12 Main St.``), or a house, flat or office
                   number (``д. 5``, ``кв. 12``, ``office 3``; not ``3 кв. 2023``)
================== ==================================================================

Every pattern runs as a few small RE2 expressions over the whole column in Arrow (about
4 million cells a second per expression, measured; long columns are cut into slices
scanned by threads). Only the candidate rows of ``iin_bin`` and ``iban`` are then checked
in numpy or Python. Dates and booleans are not scanned. Float columns (amounts) are
flagged only as a whole, when more than :data:`FLOAT_IDENTIFIER_SHARE` of their values
read as an IIN or BIN (a BIN column loaded as float64): integral amounts between 10**8
and 10**12 read as a valid IIN or BIN 0.4-3% of the time (measured), so flagging single
values would refuse every sample. Integers below 10**8 never do (their month digits are
00), so counts are safe to scan value by value.

Findings name the column, the pattern, the number of rows and the first row, never the
value itself.

Example::

    >>> import pyarrow as pa
    >>> t = pa.table({"note": ["ok", "call +7 701 123 45 67", "ok"]})
    >>> scan_findings(t)
    [ScanFinding(column='note', pattern='phone', rows=1, first_row=1)]
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sample_protocol.identifier_columns import identifier_mask

__all__ = [
    "FLOAT_IDENTIFIER_SHARE",
    "PATTERNS",
    "ScanFinding",
    "iban_checksum_ok",
    "scan_findings",
    "scan_table",
    "scan_values",
    "unscannable_columns",
]

#: A float column is an identifier leak when more than this share of its values read as a
#: valid IIN or BIN (integer part, zero-padded). Amounts do so 0.4-3% of the time.
FLOAT_IDENTIFIER_SHARE = 0.2
#: The patterns the scanner looks for, in the order findings are reported.
PATTERNS: tuple[str, ...] = ("iin_bin", "phone", "email", "iban", "person_name", "street_address")


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """``rows`` rows of ``column`` match ``pattern``; the first is row ``first_row`` (0-based)."""

    column: str
    pattern: str
    rows: int
    first_row: int


# -- the patterns ---------------------------------------------------------------------------

_UP = "A-ZА-ЯЁӘҒҚҢӨҰҮҺІ"
_LO = "a-zа-яёәғқңөұүһі"
_SURNAME_SUFFIXES = (
    "ов|ова|ев|ева|ёв|ёва|ин|ина|ұлы|улы|қызы|кызы|ович|овна|евич|евна|"
    "ov|ova|ev|eva|in|ina|uly|uli|kyzy|qyzy|ovich|ovna|evich|evna"
)
_PATRONYMIC_SUFFIXES = (
    "ович|овна|евич|евна|ич|ична|ұлы|улы|қызы|кызы|"
    "ovich|ovna|evich|evna|ich|ichna|uly|uli|kyzy|qyzy"
)

# Capitalised common nouns and place names that end like a surname (never flagged).
_NOT_NAMES: tuple[str, ...] = tuple(
    """
    магазин машина бензин керосин витамин карантин мандарин маргарин глубина ширина длина
    половина вина витрина малина картина долина вершина пружина резина медицина дисциплина
    кабина турбина корзина причина мужчина старшина година рябина калина лавина равнина
    господин один блин клин камин графин жасмин дельфин кофеин аспирин инсулин берлин пекин
    остров покров улов плов готов здоров таков каков слов домов годов часов товаров расходов
    доходов налогов договоров заводов основа слова корова подкова голова снова сова киев
    посев напев ростов саратов тамбов псков харьков кишинёв
    admin berlin main domain begin origin cabin within margin login plugin bulletin coin join
    twin skin spin basin cousin austin dublin latin penguin protein vitamin insulin aspirin
    raisin satin muffin dolphin pumpkin napkin robin chin thin grin china carolina argentina
    marina regina geneva nova supernova casanova medicina machina kiev prov improv ukraina
    again cumin resin toxin rosin kelvin
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# Patterns in RE2 syntax (pyarrow.compute). RE2's \b is ASCII only, so word boundaries
# are spelt out. iin_bin and iban are prefilters that a Python check confirms; the others
# are exact.
_B = r"(?:^|[^\pL\pN_\-])"  # start of a word
_E = r"(?:$|[^\pL\pN_])"  # end of a word
_W = r"\p{Lu}\p{Ll}+"  # a capitalised word
_PHONE_TEN = (  # the 10 digits after +7 / 8: 7xx..., a first group of 3+ digits or (code)
    r"(?:7\d{2}(?:[\s\-()]{0,3}\d){7}"
    r"|\(\s*7(?:\d{2}\s*\)(?:[\s\-]{0,3}\d){7}|\d{3}\s*\)(?:[\s\-]{0,3}\d){6}))"
)
_POSTFIX = (
    r"(?:(?i:көшесі|даңғылы|шағын\s+ауданы|street|avenue|boulevard|road|lane)"
    r"|(?i:st|str|ave|blvd|rd)\.?)"
)
# Each pattern is a few small expressions run one by one: RE2 runs one small expression as
# a DFA at about 4 million cells a second here, but a big alternation of them exhausts the
# DFA's memory and falls back to a slower engine (a hundred times slower, measured).
_RE2: dict[str, tuple[str, ...]] = {
    "iin_bin": (r"\d{12}",),
    # not glued to other digits, not an amount such as 87012345678.50
    "phone": (rf"(?:^|[^\d+])(?:\+\s*7|8)[\s\-]*{_PHONE_TEN}(?:$|[^\d.,]|[.,](?:$|\D))",),
    "email": (r"[\pL\pN._%+\-]+@[\pL\pN\-]+(?:\.[\pL\pN\-]+)*\.\pL{2,}",),
    "iban": (r"(?:^|[^0-9A-Za-z])(?i:KZ)\s?\d{2}(?:\s?[0-9A-Za-z]){16}(?:$|[^0-9A-Za-z])",),
    "person_name": (
        rf"{_B}\p{{Lu}}\p{{Ll}}+(?:{_SURNAME_SUFFIXES}){_E}",  # Ivanov, Ахметова, Ерланұлы
        rf"{_B}{_W}\s+{_W}\s+\p{{Lu}}\p{{Ll}}+(?:{_PATRONYMIC_SUFFIXES}){_E}",  # triples
        rf"{_B}{_W}\s+\p{{Lu}}\.\s?\p{{Lu}}\.(?:$|[^\pL\pN_.])",  # Ким В.П.
        rf"(?:^|[^\pL\pN_.])\p{{Lu}}\.\s?\p{{Lu}}\.\s?\p{{Lu}}\p{{Ll}}{{2,}}{_E}",  # В.П. Ким
    ),
    "street_address": (
        # prefix markers, then a name or a number: ул. Абая, мкр Самал-2, проспект 1
        r"(?:^|[^\pL\pN_])(?:(?i:ул|мкр|мкрн|мкр-н|пр-т|б-р)[.\s«\"'“]"
        r"|(?i:пр|просп|пер|бул|бульв|пл)\.|(?i:улица|проспект|микрорайон|переулок|бульвар"
        r"|шоссе)[\s«\"'“])\s*[«\"'“]?\s*(?:\p{Lu}|\d)",
        # postfix markers, after a house number and a name (12 Main St., 5th Avenue)...
        rf"(?:^|[^\pL\pN_])\d+[\pL\-]*[\s,]+(?:\p{{Lu}}[\pL\pN\-]*\s+){{0,3}}{_POSTFIX}{_E}",
        # ... or after a name and before a number (Абай көшесі, 10)
        rf"\p{{Lu}}[\pL\pN\-]*(?:\s+[\pL\pN\-]+){{0,2}}\s+{_POSTFIX}[\s,.]*№?\s*\d",
        # house, flat or office numbers (not "3 кв. 2023", a quarter)
        r"(?:^|[^\pL\pN_])(?:(?i:д|кв|оф|apt|of)\.|(?i:дом|кв|квартира|офис|house|apt|flat|office))"
        r"\s*№?\s*(?:\d{1,3}|\d{5,}|[03-9]\d{3}|1[0-8]\d{2}|2[1-9]\d{2})(?:\D|$)",
    ),
}
# Only the capitalised form of a noun can match the surname rule, so only it is listed.
_NOUNS = "|".join(w.capitalize() for w in _NOT_NAMES)
_NOT_NAMES_RE2 = rf"(^|[^\pL\pN_\-])({_NOUNS})($|[^\pL\pN_])"


def _narrow(expression: str) -> str:
    """Spell Unicode letter classes as Latin + Cyrillic (with Kazakh letters) ranges.

    RE2 compiles ``\\pL`` and friends into large automata: about 5 ms an expression, paid
    on every call, so on every column. The data here is Kazakh, Russian and English.
    """
    letters = _UP + _LO
    return (
        expression.replace(r"\pL\pN", f"0-9{letters}")
        .replace(r"[\pL", f"[{letters}")
        .replace(r"\pL", f"[{letters}]")
        .replace(r"\p{Lu}", f"[{_UP}]")
        .replace(r"\p{Ll}", f"[{_LO}]")
    )


_RE2 = {pattern: tuple(_narrow(e) for e in expressions) for pattern, expressions in _RE2.items()}
_NOT_NAMES_RE2 = _narrow(_NOT_NAMES_RE2)
_IBAN_RE = re.compile(r"(?<![0-9A-Za-z])(?i:KZ)\s?\d{2}(?:\s?[0-9A-Za-z]){16}(?![0-9A-Za-z])")


def iban_checksum_ok(iban: str) -> bool:
    """True when ``iban`` (spaces allowed) passes the ISO 13616 mod-97 check.

    >>> iban_checksum_ok("KZ86 125K ZT50 0410 0100"), iban_checksum_ok("KZ87125KZT5004100100")
    (True, False)
    """
    compact = "".join(iban.split()).upper()
    if len(compact) < 5 or not compact.isascii() or not compact.isalnum():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _iban(text: str) -> bool:
    return any(iban_checksum_ok(m.group(0)) for m in _IBAN_RE.finditer(text))


_PARALLEL_FROM = 100_000  # cells per thread, at least


# -- scanning -------------------------------------------------------------------------------


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(arr, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    out: np.ndarray = filled.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return out


def _bool_array(values: object) -> np.ndarray:
    out: np.ndarray = np.asarray(values, dtype=bool)
    return out


def _verify(candidates: pa.Array, check: Callable[[str], bool]) -> np.ndarray:
    """Run ``check`` once per distinct value of ``candidates`` (no nulls); per-row result."""
    enc = pc.dictionary_encode(candidates)
    verdicts = np.fromiter((check(v) for v in enc.dictionary.to_pylist()), dtype=bool)
    indices = enc.indices.to_numpy(zero_copy_only=False)
    out: np.ndarray = verdicts[indices] if len(verdicts) else np.zeros(len(indices), bool)
    return out


def _match(arr: pa.Array, expressions: tuple[str, ...], cleanup: bool) -> np.ndarray:
    """Rows of ``arr`` that any of ``expressions`` matches.

    With ``cleanup``, a row must still match once the common nouns that end like
    surnames (Магазин, Машина...) are blanked: done only on the rows that matched.
    """
    hit = np.zeros(len(arr), dtype=bool)
    for expression in expressions:
        rows = np.flatnonzero(~hit)
        todo = arr if len(rows) == len(arr) else arr.take(pa.array(rows))
        found = np.flatnonzero(_np_bool(pc.match_substring_regex(todo, expression)))
        if cleanup and len(found):
            matched = todo.take(pa.array(found))
            noun = np.flatnonzero(_np_bool(pc.match_substring_regex(matched, _NOT_NAMES_RE2)))
            if len(noun):  # the rows with such a noun must match without it
                cleaned = matched.take(pa.array(noun))
                for _ in range(2):  # twice: adjacent nouns share the space between them
                    cleaned = pc.replace_substring_regex(cleaned, _NOT_NAMES_RE2, r"\1 \3")
                still = _np_bool(pc.match_substring_regex(cleaned, expression))
                keep = np.ones(len(found), dtype=bool)
                keep[noun[~still]] = False
                found = found[keep]
        hit[rows[found]] = True
    return hit


def _scan_strings(arr: pa.Array) -> dict[str, np.ndarray]:
    n = len(arr)
    masks = {p: np.zeros(n, dtype=bool) for p in PATTERNS}
    if n == 0 or arr.null_count == n:
        return masks
    for pattern in PATTERNS:
        hit = _match(arr, _RE2[pattern], cleanup=pattern == "person_name")
        if not hit.any():
            continue
        rows = np.flatnonzero(hit)
        verdict = np.ones(len(rows), dtype=bool)
        if pattern == "iin_bin":
            verdict = _bool_array(identifier_mask(arr.take(pa.array(rows))))
        elif pattern == "iban":
            verdict = _verify(arr.take(pa.array(rows)), _iban)
        masks[pattern][rows[verdict]] = True
    return masks


def _scan_integers(arr: pa.Array) -> dict[str, np.ndarray]:
    n = len(arr)
    masks = {p: np.zeros(n, dtype=bool) for p in PATTERNS}
    if n == 0 or arr.null_count == n:
        return masks
    values = pc.cast(arr, pa.int64()) if not pa.types.is_int64(arr.type) else arr
    valid = ~_np_bool(values.is_null())
    v = pc.fill_null(values, -1).to_numpy(zero_copy_only=False)
    masks["iin_bin"] = _bool_array(identifier_mask(values))
    lead = v // 10**9  # 11-digit numbers: the first two digits
    masks["phone"] = valid & (v >= 10**10) & (v < 10**11) & ((lead == 77) | (lead == 87))
    return masks


def _scan_floats(arr: pa.Array) -> dict[str, np.ndarray]:
    """A float column is flagged only when it looks like a column of identifiers."""
    masks = {p: np.zeros(len(arr), dtype=bool) for p in PATTERNS}
    hits = _bool_array(identifier_mask(arr))
    if hits.any():
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        present = int(np.count_nonzero(np.isfinite(values)))
        if hits.sum() > FLOAT_IDENTIFIER_SHARE * present:
            masks["iin_bin"] = hits
    return masks


def _as_scannable(arr: pa.Array) -> tuple[str, pa.Array] | None:
    """("string" | "integer" | "float", array ready to scan), or None when not scanned."""
    tp = arr.type
    if pa.types.is_dictionary(tp):
        return _as_scannable(arr.cast(tp.value_type))
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        return "string", arr
    if pa.types.is_string_view(tp):
        return "string", arr.cast(pa.string())
    if pa.types.is_integer(tp):
        if pa.types.is_uint64(tp):
            arr = pc.if_else(pc.greater(arr, 2**63 - 1), None, arr)  # beyond 12 digits anyway
        return "integer", arr
    if pa.types.is_decimal(tp) and tp.scale == 0:
        return "integer", pc.cast(arr, pa.int64())
    if pa.types.is_floating(tp) or pa.types.is_decimal(tp):
        return "float", arr
    return None


def unscannable_columns(table: pa.Table, *, skip_columns: Iterable[str] = ()) -> list[str]:
    """Columns whose type could hide text but that the scanner cannot read.

    Binary, nested (list, struct, map, union) and extension columns: a sample that must
    pass the scan should not carry them.
    """
    skip = set(skip_columns)
    out = []
    for field in table.schema:
        tp = field.type
        if field.name in skip:
            continue
        if pa.types.is_dictionary(tp):
            tp = tp.value_type
        opaque = (
            pa.types.is_binary(tp)
            or pa.types.is_large_binary(tp)
            or pa.types.is_fixed_size_binary(tp)
            or pa.types.is_nested(tp)
            or isinstance(tp, pa.ExtensionType)
            or (pa.types.is_decimal(tp) and tp.scale == 0 and tp.precision > 18)
        )
        if opaque:
            out.append(field.name)
    return out


def scan_values(values: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Per pattern, a boolean mask of the values that match (all False for unscanned types).

    >>> m = scan_values(pa.array(["a@b.kz", None, "plain"]))
    >>> m["email"].tolist()
    [True, False, False]
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    ready = _as_scannable(values)
    if ready is None:
        return {p: np.zeros(len(values), dtype=bool) for p in PATTERNS}
    what, arr = ready
    if what == "integer":
        return _scan_integers(arr)
    if what == "float":
        return _scan_floats(arr)
    workers = min(os.cpu_count() or 1, 8, len(arr) // _PARALLEL_FROM + 1)
    if workers <= 1:
        return _scan_strings(arr)
    # Arrow's kernels release the GIL: scan slices of a long column in parallel.
    step = -(-len(arr) // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        slices = [arr.slice(i, step) for i in range(0, len(arr), step)]
        parts = list(pool.map(_scan_strings, slices))
    return {p: np.concatenate([part[p] for part in parts]) for p in PATTERNS}


def _scan_masks(
    table: pa.Table, skip_columns: Iterable[str] = ()
) -> list[tuple[str, str, np.ndarray]]:
    skip = set(skip_columns)
    out = []
    for name in table.column_names:
        if name in skip:
            continue
        masks = scan_values(table.column(name))
        for pattern in PATTERNS:
            if masks[pattern].any():
                out.append((name, pattern, masks[pattern]))
    return out


def scan_findings(table: pa.Table, *, skip_columns: Iterable[str] = ()) -> list[ScanFinding]:
    """Every (column, pattern) with at least one matching row, in column then pattern order."""
    return [
        ScanFinding(column, pattern, int(mask.sum()), int(np.argmax(mask)))
        for column, pattern, mask in _scan_masks(table, skip_columns)
    ]


def scan_table(table: pa.Table, *, skip_columns: Iterable[str] = ()) -> dict[str, int]:
    """Pattern -> number of matching cells (rows, summed over columns); every pattern listed.

    ``skip_columns`` names columns not to scan (the random-ID key column).
    """
    hits = dict.fromkeys(PATTERNS, 0)
    for finding in scan_findings(table, skip_columns=skip_columns):
        hits[finding.pattern] += finding.rows
    return hits
