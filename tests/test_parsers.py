"""Parsers: (body, media type) -> rows, as tables of cases."""

from __future__ import annotations

import gzip

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from co2logserver.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from co2logserver.parsers import (
    coerce_column,
    coerce_number,
    decode_content,
    parse_upload,
)

TWO_ROWS = [{"time_utc": 43, "co2": 1223}, {"time_utc": 23, "co2": 2351}]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("43", 43),
        ("-7", -7),
        ("+7", 7),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("0x10", "0x10"),
        ("12 ", "12 "),
        ("kitchen", "kitchen"),
    ],
)
def test_coerce_number(text, value):
    assert coerce_number(text) == value
    assert type(coerce_number(text)) is type(value)


def cell_by_cell(cells: list[str]) -> list:
    """What a column's cells become one at a time."""
    return [coerce_number(c) if c != "" else None for c in cells]


NUMBERISH = st.text(alphabet="0123456789+-.eE \n_a٣", max_size=8)


@given(st.lists(NUMBERISH, max_size=12))
def test_a_column_is_coerced_as_its_cells_one_by_one(cells):
    """The whole-column fast path never reads a cell otherwise than coerce_number."""
    column = coerce_column(list(cells))
    assert column == cell_by_cell(cells)
    assert list(map(type, column)) == list(map(type, cell_by_cell(cells)))


@pytest.mark.parametrize(
    "cells",
    [["1", "2", "-3"], ["1", "2.5", "+.5", "1e3"], ["1", "", "3"], ["1\n2", "3"]],
)
def test_column_coercion_cases(cells):
    assert coerce_column(list(cells)) == cell_by_cell(cells)


@pytest.mark.parametrize(
    ("mimetype", "body", "rows"),
    [
        ("application/json", b'{"time_utc":[43,23],"co2":[1223,2351]}', TWO_ROWS),
        (
            "application/json",
            b'[{"time_utc":43,"co2":1223},{"time_utc":23,"co2":2351}]',
            TWO_ROWS,
        ),
        ("application/json", b'{"a": 1}', [{"a": 1}]),
        ("application/json", b'{"a": [1, 2], "b": 3}', [{"a": 1, "b": 3}, {"a": 2}]),
        ("application/json", b"{}", []),
        ("text/csv", b"time_utc,co2\n43,1223\n23,2351", TWO_ROWS),
        ("text/csv", b"time_utc,co2\r\n43,1223\r\n23,2351\r\n", TWO_ROWS),
        ("text/csv", b"\xef\xbb\xbfa\n1", [{"a": 1}]),
        ("text/csv", b'a,b\n"x,y",\n', [{"a": "x,y"}]),
        (
            "application/x-www-form-urlencoded",
            b"time_utc=43&co2=1223&time_utc=23&co2=2351",
            TWO_ROWS,
        ),
        ("application/x-www-form-urlencoded", b"a=&b=x", [{"b": "x"}]),
        (
            "application/msgpack",
            bytes.fromhex("82a874696d655f757463922b17a3636f3292cd04c7cd092f"),
            [{"time_utc": 43, "co2": 1223}, {"time_utc": 23, "co2": 2351}],
        ),
        ("application/x-msgpack", msgpack.packb([{"a": 1.5}]), [{"a": 1.5}]),
    ],
)
def test_parse_upload(mimetype, body, rows):
    assert parse_upload(body, mimetype).rows() == rows


@pytest.mark.parametrize(
    ("mimetype", "body", "error"),
    [
        ("application/json", b"{", BadRequest),
        ("application/json", b"[1,2]", BadRequest),
        ("application/json", b'"text"', BadRequest),
        ("application/json", b"\xff\xfe", BadRequest),
        ("text/csv", b"", BadRequest),
        ("text/csv", b"a\n1,2", BadRequest),
        ("text/csv", b"\xff", BadRequest),
        ("application/msgpack", b"\x93\x01", BadRequest),
        ("application/msgpack", msgpack.packb(5), BadRequest),
        ("text/plain", b"a", UnsupportedMediaType),
        (None, b"a", UnsupportedMediaType),
    ],
)
def test_parse_upload_refuses(mimetype, body, error):
    with pytest.raises(error):
        parse_upload(body, mimetype)


def test_decode_content_gzip_and_limit():
    body = b'{"a": 1}'
    assert decode_content(gzip.compress(body), "gzip", 100) == body
    assert decode_content(body, None, 100) == body
    assert decode_content(body, "identity", 100) == body
    with pytest.raises(PayloadTooLarge):
        decode_content(gzip.compress(b"0" * 10_000), "gzip", 100)
    with pytest.raises(UnsupportedMediaType):
        decode_content(body, "br", 100)
    with pytest.raises(BadRequest):
        decode_content(b"not gzip", "gzip", 100)
    with pytest.raises(BadRequest):
        decode_content(gzip.compress(body)[:-12], "gzip", 100)


def test_gzip_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        decode_content(bomb, "gzip", 1024 * 1024)
