"""The line-protocol parser, by a table of cases from InfluxDB's documentation.

The cases come from the 1.x "Line protocol reference" and "tutorial" pages (syntax,
data types, quoting, special characters). The same rules are checked line by line
against a real ``influxd`` in :mod:`tests.test_influx_differential`.
"""

from __future__ import annotations

import pytest

from co2logserver.errors import BadRequest
from co2logserver.protocols.lineprotocol import parse, seconds, series_key

# (line, measurement, tags, fields, timestamp)
VALID = [
    # The syntax section's example, and its optional parts left out.
    (
        "weather,location=us-midwest temperature=82 1465839830100400200",
        "weather",
        {"location": "us-midwest"},
        {"temperature": 82.0},
        1465839830100400200,
    ),
    (
        "weather,location=us-midwest temperature=82",
        "weather",
        {"location": "us-midwest"},
        {"temperature": 82.0},
        None,
    ),
    (
        "weather temperature=82 1465839830100400200",
        "weather",
        {},
        {"temperature": 82.0},
        1465839830100400200,
    ),
    (
        "weather,location=us-midwest,season=summer temperature=82",
        "weather",
        {"location": "us-midwest", "season": "summer"},
        {"temperature": 82.0},
        None,
    ),
    (
        "weather,location=us-midwest temperature=82,bug_concentration=98",
        "weather",
        {"location": "us-midwest"},
        {"temperature": 82.0, "bug_concentration": 98.0},
        None,
    ),
    # Data types.
    (
        "weather,location=us-midwest temperature=82i",
        "weather",
        {"location": "us-midwest"},
        {"temperature": 82},
        None,
    ),
    (
        "m f=-1.5e3,g=1E-3,h=.5,i=1.,j=-0.25,k=01",
        "m",
        {},
        {"f": -1500.0, "g": 0.001, "h": 0.5, "i": 1.0, "j": -0.25, "k": 1.0},
        None,
    ),
    (
        "m n=-9223372036854775808i,x=9223372036854775807i",
        "m",
        {},
        {"n": -(2**63), "x": 2**63 - 1},
        None,
    ),
    ("m u=18446744073709551615u", "m", {}, {"u": 2**64 - 1}, None),
    (
        'weather,location=us-midwest temperature="too warm"',
        "weather",
        {"location": "us-midwest"},
        {"temperature": "too warm"},
        None,
    ),
    (
        "weather,location=us-midwest too_hot=true,a=t,b=T,c=True,d=TRUE,"
        "e=f,g=F,h=false,i=False,j=FALSE",
        "weather",
        {"location": "us-midwest"},
        {
            "too_hot": True,
            "a": True,
            "b": True,
            "c": True,
            "d": True,
            "e": False,
            "g": False,
            "h": False,
            "i": False,
            "j": False,
        },
        None,
    ),
    # Quoting and special characters.
    (
        'weather,location=us-midwest temperature_str="too hot/cold"',
        "weather",
        {"location": "us-midwest"},
        {"temperature_str": "too hot/cold"},
        None,
    ),
    (
        'weather,location=us-midwest temperature="too\\"hot\\""',
        "weather",
        {"location": "us-midwest"},
        {"temperature": 'too"hot"'},
        None,
    ),
    (
        'weather,location=us-midwest temperature_str="too hot\\\\cold"',
        "weather",
        {"location": "us-midwest"},
        {"temperature_str": "too hot\\cold"},
        None,
    ),
    (
        'weather,location=us-midwest temperature_str="too hot\\cold"',
        "weather",
        {"location": "us-midwest"},
        {"temperature_str": "too hot\\cold"},
        None,
    ),
    (
        "weather,location=us\\,midwest temperature=82",
        "weather",
        {"location": "us,midwest"},
        {"temperature": 82.0},
        None,
    ),
    (
        "weather,location=us-midwest temp\\=rature=82",
        "weather",
        {"location": "us-midwest"},
        {"temp=rature": 82.0},
        None,
    ),
    (
        "weather,location\\ place=us-midwest temperature=82",
        "weather",
        {"location place": "us-midwest"},
        {"temperature": 82.0},
        None,
    ),
    (
        "wea\\,ther,location=us-midwest temperature=82",
        "wea,ther",
        {"location": "us-midwest"},
        {"temperature": 82.0},
        None,
    ),
    (
        "wea\\ ther,location=us-midwest temperature=82",
        "wea ther",
        {"location": "us-midwest"},
        {"temperature": 82.0},
        None,
    ),
    (
        '"weather",location="us-midwest" temperature=82',
        '"weather"',
        {"location": '"us-midwest"'},
        {"temperature": 82.0},
        None,
    ),
    ("wea\\=ther f=1", "wea=ther", {}, {"f": 1.0}, None),
    ("wea\\\\ther f=1", "wea\\\\ther", {}, {"f": 1.0}, None),
    ("m,t=a\\=b f=1", "m", {"t": "a=b"}, {"f": 1.0}, None),
    ('m f\\"k=1', "m", {}, {'f"k': 1.0}, None),
    # A field given twice keeps its last value, as influxd does.
    ("m f=1,g=2,f=3", "m", {}, {"f": 3.0, "g": 2.0}, None),
    # Tags in any order are one series; unicode anywhere but as syntax.
    ("m,b=2,a=1 f=1", "m", {"a": "1", "b": "2"}, {"f": 1.0}, None),
    ("温度,地点=東京 値=21.5", "温度", {"地点": "東京"}, {"値": 21.5}, None),
    ('m s="caf\u00e9 \u2603"', "m", {}, {"s": "caf\u00e9 \u2603"}, None),
    # Whitespace around the parts, and a negative timestamp.
    ("  m  f=1   5  ", "m", {}, {"f": 1.0}, 5),
    ("m f=1 -5", "m", {}, {"f": 1.0}, -5),
    ("m\tx f=1", "m\tx", {}, {"f": 1.0}, None),
]

# (line, what the message says)
INVALID = [
    # Digits are ASCII 0-9 only, as in InfluxDB's scanner (Python's \d and float()
    # would take Arabic-Indic digits).
    ("m v=\u0663", "invalid field value of 'v'"),
    ("m v=\u0663i", "invalid field value of 'v'"),
    ("m v=1.\u0663", "invalid number in field 'v'"),
    ("m v=1 \u0663\u0663", "bad timestamp"),
    ("weather", "missing fields"),
    ("weather,location=us-midwest", "missing fields"),
    ("weather ", "missing fields"),
    ("weather temperature=", "missing field value"),
    ("weather temperature", "a field without '=value'"),
    ("weather =82", "missing field key"),
    ("weather,location= temperature=82", "missing tag value"),
    ("weather,location temperature=82", "missing tag value"),
    ("weather,=us temperature=82", "missing tag key"),
    ("weather,location=a=b temperature=82", "invalid tag format"),
    ("weather,a=1,a=2 f=1", "duplicate tag 'a'"),
    (",a=1 f=1", "missing measurement"),
    ("weather f=1 1.5", "point is invalid"),
    ("weather f=1 x", "bad timestamp"),
    ("weather f=1 1 1", "point is invalid"),
    ("weather f=1 99999999999999999999", "timestamp 99999999999999999999"),
    ('weather f="unterminated', "unbalanced quotes in field 'f'"),
    ("weather f=tru", "invalid boolean in field 'f'"),
    ("weather f=+5", "invalid field value of 'f'"),
    ("weather f=inf", "invalid field value of 'f'"),
    ("weather f=NaN", "invalid field value of 'f'"),
    ("weather f=1e", "invalid number in field 'f'"),
    ("weather f=1e400", "invalid float 1e400 of 'f'"),
    ("weather f=1.5i", "invalid number in field 'f'"),
    ("weather f=-1u", "invalid number in field 'f'"),
    ("weather f=9223372036854775808i", "integer 9223372036854775808i of 'f'"),
    ("weather f=18446744073709551616u", "unsigned 18446744073709551616u of 'f'"),
    ("weather f=1,", "missing fields"),
    ("weather f=1,,g=2", "missing field key"),
    ("weather f=1\r", "invalid number in field 'f'"),
    ("weather f=1.1.1", "invalid number in field 'f'"),
    ('weather f="a"x', "invalid field value of 'f'"),
]


@pytest.mark.parametrize(("line", "measurement", "tags", "fields", "timestamp"), VALID)
def test_documented_lines_parse(line, measurement, tags, fields, timestamp):
    [point] = parse(line)
    assert point.measurement == measurement
    assert dict(point.tags) == tags
    assert list(point.tags) == sorted(point.tags)
    assert dict(point.fields) == fields
    for key, value in point.fields:
        assert type(value) is type(fields[key]), key
    assert point.timestamp == timestamp
    assert point.line == 1


@pytest.mark.parametrize(("line", "message"), INVALID)
def test_malformed_lines_are_refused_by_line_number(line, message):
    body = f"# a comment\nm f=1\n\n{line}\nm g=2\n"
    with pytest.raises(BadRequest) as refused:
        parse(body)
    assert "line 4: " in refused.value.message
    assert message in refused.value.message


def test_comments_blank_lines_and_line_numbers():
    body = "# header\n\n   # indented comment\nm f=1\n\t\nm g=2i\nm h=3"
    points = parse(body)
    assert [(p.line, p.fields) for p in points] == [
        (4, (("f", 1.0),)),
        (6, (("g", 2),)),
        (7, (("h", 3.0),)),
    ]


def test_newline_in_string_counts_physical_lines():
    with pytest.raises(BadRequest) as refused:
        parse('m s="two\nlines",f=1 7\nm f=2 8\nbad')
    assert "line 4: missing fields in 'bad'" in refused.value.message
    points = parse('m s="two\nlines",f=1 7\nm f=2 8\n')
    assert [(p.line, dict(p.fields)) for p in points] == [
        (1, {"s": "two\nlines", "f": 1.0}),
        (3, {"f": 2.0}),
    ]


def test_every_bad_line_is_named_up_to_a_few():
    body = "\n".join(["m f=1"] + ["bad"] * 8)
    with pytest.raises(BadRequest) as refused:
        parse(body)
    message = refused.value.message
    assert [f"line {n}:" in message for n in range(2, 7)] == [True] * 5
    assert "line 7:" not in message
    assert "and 3 more bad lines" in message


def test_an_empty_body_has_no_points():
    assert parse("") == []
    assert parse("\n\n# only comments\n") == []


def test_a_long_bad_line_is_clipped_in_the_message():
    with pytest.raises(BadRequest) as refused:
        parse("m " + "x" * 500)
    assert len(refused.value.message) < 200


@pytest.mark.parametrize(
    ("timestamp", "precision", "expected"),
    [
        (1465839830100400200, "n", 1465839830),
        (1465839830100400200, "ns", 1465839830),
        (1465839830100400, "u", 1465839830),
        (1465839830100400, "us", 1465839830),
        (1465839830100, "ms", 1465839830),
        (1465839830, "s", 1465839830),
        (24430663, "m", 1465839780),
        (407177, "h", 1465837200),
        (-1, "s", -1),
        (-1, "ms", -1),  # rounded down, as a time within that second
    ],
)
def test_timestamps_become_whole_seconds(timestamp, precision, expected):
    assert seconds(timestamp, precision) == expected


def test_unknown_precision_is_refused():
    with pytest.raises(BadRequest, match="precision 'x'"):
        parse("m f=1", "x")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("m,b=2,a=1 f=1", "m,a=1,b=2"),
        ("m\\ x,t=a\\,b,k\\=1=v\\ w f=1", "m\\ x,k\\=1=v\\ w,t=a\\,b"),
        ("m f=1", "m"),
    ],
)
def test_series_key_is_what_influxdb_prints(line, key):
    [point] = parse(line)
    assert series_key(point) == key


# The plain-line fast path must say exactly what the full parser says.
_TOKEN = "abcXYZ019_.-:/é温"


def _plain_lines():
    from hypothesis import strategies as st

    token = st.text(alphabet=_TOKEN + ',= \\"\t#', min_size=0, max_size=6)
    value = st.sampled_from(
        ["1", "-1.5", ".5", "1e3", "1E-3", "12i", "-3i", "7u", "-7u", "t", "FALSE",
         "True", "1.", "nan", "inf", "1e999", "", "x", "9223372036854775808i"]
    )  # fmt: skip
    stamps = ["", " 1700000000", " -5", " 1.5", " ", " 99999999999999999999"]
    stamp = st.sampled_from(stamps)
    field = st.tuples(token, value).map(lambda kv: f"{kv[0]}={kv[1]}")
    tag = st.tuples(token, token).map(lambda kv: f",{kv[0]}={kv[1]}")
    return st.tuples(
        token, st.lists(tag, max_size=3), st.lists(field, min_size=1, max_size=3), stamp
    ).map(lambda p: p[0] + "".join(p[1]) + " " + ",".join(p[2]) + p[3])


def test_plain_fast_path_agrees_with_the_full_parser():
    from hypothesis import given, settings

    from co2logserver.errors import BadRequest
    from co2logserver.protocols import lineprotocol

    def outcome(parse, body):
        try:
            return parse(body, "s")
        except BadRequest as error:
            return ("error", error.message)

    @settings(max_examples=400, derandomize=True, deadline=None)
    @given(st_lines=_plain_lines())
    def check(st_lines):
        body = st_lines + "\n" + st_lines
        assert outcome(lineprotocol.parse, body) == outcome(
            lineprotocol.parse_any, body
        )

    check()
