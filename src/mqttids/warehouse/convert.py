"""Column conversion and row checks on Arrow data: pure, vectorised, no I/O.

Every source (MQTTset CSV, capture rows, Parquet) ends here: text or foreign
types become the schema's types, every value is checked against
:mod:`mqttids.warehouse.constraints`, and each row that breaks a rule is
marked with the first reason found (columns in schema order). The whole
column is handled by Arrow and NumPy at once; only rows that turn out to be
bad are touched one by one, to write their reasons.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mqttids import schema
from mqttids.warehouse.constraints import ALLOWED_TEXT, BOUNDS, float_must_be_finite

_INT_RE = r"^-?[0-9]{1,18}$"
_FLOAT_RE = (r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
             r"|^(?i:[+-]?(?:nan|inf|infinity))$")
_HEX_BYTES_RE = r"^(?:[0-9a-f]{2})*$"
_SHOWN = 60  # characters of a bad value quoted in a reason

_HEX_NIBBLE = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_NIBBLE[_c] = 10 + _i
_DEC_DIGIT = np.full(256, 255, np.uint8)
_DEC_DIGIT[48:58] = np.arange(10)


def shown(value: object) -> str:
    """A value as quoted in a reason, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "...'"


class RowFaults:
    """The first reason each row is refused, filled column by column."""

    def __init__(self, rows: int):
        self.rows = rows
        self._bad = np.zeros(rows, dtype=bool)
        self._reasons: dict[int, str] = {}

    def add(self, mask: np.ndarray | None, describe: Callable[[int], str]) -> None:
        """Mark the rows in ``mask`` that have no reason yet with ``describe(row)``."""
        if mask is None:
            return
        fresh = mask & ~self._bad
        if not fresh.any():
            return
        for row in np.flatnonzero(fresh):
            self._reasons[int(row)] = describe(int(row))
        self._bad |= fresh

    @property
    def count(self) -> int:
        return len(self._reasons)

    @property
    def bad(self) -> np.ndarray:
        return self._bad

    def reason(self, row: int) -> str:
        return self._reasons[row]


def _bits(buf: pa.Buffer, offset: int, length: int) -> np.ndarray:
    raw = np.frombuffer(buf, dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[offset:offset + length].astype(bool)


def _valid(arr: pa.Array) -> np.ndarray:
    """Which entries are not NULL, as a NumPy mask."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    if arr.null_count == len(arr) or arr.buffers()[0] is None:
        return np.zeros(len(arr), dtype=bool)
    return _bits(arr.buffers()[0], arr.offset, len(arr))


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as a NumPy mask, NULL counting as False."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count == len(arr):
        return np.zeros(len(arr), dtype=bool)
    values = _bits(arr.buffers()[1], arr.offset, len(arr))
    return values & _valid(arr) if arr.null_count else values


def _py(arr: pa.Array, row: int) -> object:
    return arr[row].as_py()


def as_strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Binary, large or chunked text as one plain string array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _cast_where(strings: pa.Array, ok: np.ndarray, target: pa.DataType) -> pa.Array:
    """Cast the rows in ``ok`` to ``target``; all others become NULL."""
    keep = pc.if_else(pa.array(ok), strings, pa.scalar(None, strings.type))
    return pc.cast(keep, target)


def _failing_rows(strings: pa.Array, target: pa.DataType) -> np.ndarray:
    """Rows whose cast fails, found by halving: a few casts for a few bad rows."""
    bad = np.zeros(len(strings), dtype=bool)
    stack = [(0, len(strings))]
    while stack:
        lo, hi = stack.pop()
        try:
            pc.cast(strings.slice(lo, hi - lo), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                bad[lo] = True
            else:
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid, hi)]
    return bad


def _parse_by_pattern(strings: pa.Array, pattern: str, target: pa.DataType,
                      name: str, what: str, faults: RowFaults) -> pa.Array:
    """Cast text; when some values do not parse, refuse exactly those rows."""
    try:
        return pc.cast(strings, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    trimmed = pc.utf8_trim_whitespace(strings)
    blank = _mask(pc.equal(trimmed, ""))
    ok = _mask(pc.match_substring_regex(trimmed, pattern)) if pattern else ~blank
    present = _valid(trimmed) & ~blank
    if not pattern:
        ok &= ~_failing_rows(pc.if_else(pa.array(ok), trimmed, None), target)
    try:
        values = _cast_where(trimmed, ok, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok &= ~_failing_rows(pc.if_else(pa.array(ok), trimmed, None), target)
        values = _cast_where(trimmed, ok, target)
    faults.add(present & ~ok, lambda r: f"{name}: not {what}: {shown(_py(strings, r))}")
    return values


def _string_buffers(strings: pa.Array, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end offsets of each value, and the bytes shifted right by ``pad``."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32,
                            count=len(strings) + 1, offset=strings.offset * 4).astype(np.int64)
    data_buf = strings.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None \
        else np.empty(0, np.uint8)
    data = np.concatenate([np.zeros(pad, np.uint8), data, np.zeros(2, np.uint8)])
    return offsets[:-1] + pad, offsets[1:] + pad, data


def _digits(data: np.ndarray, first: np.ndarray, end: np.ndarray, width: int,
            table: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of the digit runs ``data[first:end]`` read right-aligned in ``width``
    places, and whether each run is 1..width valid digits."""
    pos = end[:, None] - width + np.arange(width)[None, :]
    inside = pos >= first[:, None]
    digit = table[data[pos]]
    ok = ~((digit == 255) & inside).any(axis=1) & (end > first) & (end - first <= width)
    digit = np.where(inside & (digit != 255), digit, 0).astype(np.int64)
    weights = np.power(np.int64(base), np.arange(width - 1, -1, -1, dtype=np.int64))
    return digit @ weights, ok


def parse_hex(strings: pa.Array, field: schema.Field, faults: RowFaults) -> pa.Array:
    """Wireshark hex (``0x0018`` or ``0x00000018``) or a plain decimal (MQTTset's ``0``).

    Flag columns hold few distinct values, so each distinct spelling is decoded
    once (with NumPy) and the column takes its values by index.
    """
    encoded = pc.dictionary_encode(strings)
    distinct = encoded.dictionary
    local = RowFaults(len(distinct))
    values = _parse_hex_values(distinct, field, local)
    indices = encoded.indices
    if local.count:
        bad = np.zeros(len(strings), dtype=bool)
        bad_index = np.flatnonzero(local.bad)
        bad[_valid(indices)] = np.isin(pc.drop_null(indices).to_numpy(), bad_index)
        faults.add(bad, lambda r: local.reason(int(indices[r].as_py())))
    return pc.take(values, indices)


def _parse_hex_values(strings: pa.Array, field: schema.Field, faults: RowFaults) -> pa.Array:
    n = len(strings)
    valid = _valid(strings)
    width = 15 if field.wide else 8
    start, end, data = _string_buffers(strings, width)
    prefixed = valid & (end - start >= 2) & (data[start] == 48) & ((data[start + 1] | 32) == 120)
    hexed, hex_ok = _digits(data, start + 2, end, width, _HEX_NIBBLE, 16)
    plain, plain_ok = _digits(data, start, end, 9, _DEC_DIGIT, 10)
    hex_ok &= prefixed
    plain_ok &= valid & ~prefixed
    values = np.where(hex_ok, hexed, plain)
    ok = hex_ok | plain_ok
    rest = valid & ~ok & ~prefixed
    if rest.any():
        others = pc.if_else(pa.array(rest), strings, pa.scalar(None, pa.string()))
        local = RowFaults(n)
        decimal = _parse_by_pattern(others, _INT_RE, pa.int64(), field.name, "", local)
        parsed = _valid(decimal)
        values = np.where(parsed, pc.fill_null(decimal, 0).to_numpy(), values)
        ok |= parsed
        # A cell that is blank once trimmed is absent, not bad.
        valid &= ~(rest & ~parsed & ~local.bad)
    faults.add(valid & ~ok, lambda r: f"{field.name}: not a hex (0x...) or decimal integer: "
                                      f"{shown(_py(strings, r))}")
    return _int_array(values, valid & ok, field, faults)


def _int_array(values: np.ndarray, present: np.ndarray, field: schema.Field,
               faults: RowFaults) -> pa.Array:
    """Int64 values to the field's integer type; out-of-range values are refused."""
    if field.arrow_type == pa.int32():
        out_of_range = present & ((values < -2**31) | (values > 2**31 - 1))
        faults.add(out_of_range, lambda r: f"{field.name}: {values[r]} is out of range")
        present = present & ~out_of_range
        values = np.where(present, values, 0).astype(np.int32)
    if present.all():
        return pa.array(values)
    return pa.array(values, mask=~present)


def parse_text_column(strings: pa.Array, field: schema.Field, faults: RowFaults,
                      zero_is_null: bool = False) -> pa.Array:
    """One column of text (as read from a CSV) to its schema type."""
    strings = as_strings(strings)
    kind = field.kind
    if kind == schema.HEX:
        return parse_hex(strings, field, faults)
    if kind == schema.INT:
        ints = _parse_by_pattern(strings, _INT_RE, pa.int64(), field.name, "an integer", faults)
        present = _valid(ints)
        return _int_array(pc.fill_null(ints, 0).to_numpy(), present, field, faults)
    if kind == schema.FLOAT:
        return _parse_by_pattern(strings, _FLOAT_RE, pa.float64(), field.name, "a number", faults)
    if kind in (schema.BOOL, schema.TIMESTAMP):
        target = field.arrow_type
        what = "true or false" if kind == schema.BOOL else "a time"
        return _parse_by_pattern(strings, "", target, field.name, what, faults)
    if zero_is_null:
        strings = pc.if_else(pc.equal(strings, "0"), pa.scalar(None, pa.string()), strings)
    if kind == schema.BYTES_HEX:
        return normalise_hex_bytes(strings, field.name, faults)
    return strings


def normalise_hex_bytes(strings: pa.Array, name: str, faults: RowFaults) -> pa.Array:
    """Hex bytes in one spelling: lower case, no colons; anything else is refused."""
    if pc.any(pc.match_substring(strings, ":")).as_py():
        strings = pc.replace_substring(strings, ":", "")
    if pc.any(pc.match_substring_regex(strings, "[A-F]")).as_py():
        strings = pc.utf8_lower(strings)
    bad = ~_mask(pc.match_substring_regex(strings, _HEX_BYTES_RE)) & _valid(strings)
    faults.add(bad, lambda r: f"{name}: not hex bytes: {shown(_py(strings, r))}")
    return strings


def coerce_column(arr: pa.Array | pa.ChunkedArray, field: schema.Field,
                  faults: RowFaults) -> pa.Array:
    """A column of any Arrow type (Parquet, capture rows) to its schema type."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    target = field.arrow_type
    if arr.type == target:
        return arr
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) \
            or pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        return parse_text_column(arr, field, faults)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _failing_rows(arr, target)
    faults.add(bad, lambda r: f"{field.name}: {shown(_py(arr, r))} cannot be stored as "
                              f"{target}")
    return pc.cast(pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr), target)


def check_values(arr: pa.Array, field: schema.Field, faults: RowFaults,
                 nul_checked: bool = False) -> None:
    """Refuse rows whose value breaks a constraint of ``field``."""
    name = field.name
    bounds = BOUNDS.get(name)
    if bounds is not None and arr.null_count < len(arr):
        extremes = pc.min_max(arr)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is not None and (low < bounds.low or (bounds.high is not None
                                                     and high > bounds.high)):
            below = _mask(pc.less(arr, bounds.low))
            above = _mask(pc.greater(arr, bounds.high)) if bounds.high is not None \
                else np.zeros(len(arr), bool)
            faults.add(below | above, lambda r: f"{name}: {_py(arr, r)} is outside "
                                                f"{bounds.describe()} ({bounds.why})")
    if float_must_be_finite(name):
        faults.add(_mask(pc.invert(pc.is_finite(arr))) & _valid(arr),
                   lambda r: f"{name}: {_py(arr, r)} is not a finite number")
    if not nul_checked and pa.types.is_string(arr.type):
        faults.add(_mask(pc.match_substring(arr, "\x00")),
                   lambda r: f"{name}: holds a NUL character, which text columns cannot store")


def labels(given: pa.Array | None, rows: int, fixed: str | None, name: str,
           faults: RowFaults) -> pa.Array:
    """``target`` or ``split``: the file's values, checked, with the value given for the source.

    A row without a value takes ``fixed``; a row whose own value differs from
    ``fixed`` is refused rather than silently relabelled.
    """
    allowed = ALLOWED_TEXT[name]
    if given is None:
        return pa.repeat(pa.scalar(fixed, pa.string()), rows)
    given = as_strings(given)
    values = given
    if not pc.all(pc.or_kleene(pc.is_in(values, pa.array(allowed)), pc.is_null(values))).as_py():
        values = pc.utf8_lower(pc.utf8_trim_whitespace(given))
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    present = _valid(values)
    unknown = present & ~_mask(pc.is_in(values, pa.array(allowed)))
    faults.add(unknown, lambda r: f"{name}: unknown value {shown(_py(given, r))} "
                                  f"(expected one of {', '.join(allowed)})")
    if fixed is None:
        return values
    other = present & ~unknown & ~_mask(pc.equal(values, fixed))
    faults.add(other, lambda r: f"{name}: {shown(_py(given, r))} contradicts the "
                                f"{name} given for this source ({fixed!r})")
    return pc.fill_null(values, fixed)
