"""The fast YAML emitter writes what ruamel writes for name-like data, and always reads back."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.record import plainyaml


def _ruamel(data: Any) -> str:
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


def _load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[A-Za-z0-9]{1,4}){0,3}", fullmatch=True)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    NAMES,
    st.sampled_from(["yes", "No", "null", "on", "1.5", "0x1f", "- a", "a: b", "#c", "/p/q"]),
)
LEAVES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(NAMES, SCALARS))
DOCS = st.dictionaries(
    st.one_of(NAMES, st.text(max_size=10)),
    st.one_of(LEAVES, st.dictionaries(NAMES, LEAVES, max_size=4)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=120, deadline=None)
@given(DOCS)
def test_reads_back_as_the_same_data(doc: dict[str, Any]) -> None:
    text = plainyaml.dump(doc)
    assert text is not None
    assert _load(text) == doc


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        NAMES,
        st.one_of(
            st.integers(),
            NAMES,
            st.lists(NAMES, max_size=3),
            st.dictionaries(NAMES, st.one_of(st.integers(), NAMES), max_size=3),
        ),
        min_size=1,
    )
)
def test_name_like_data_is_byte_identical_to_ruamel(doc: dict[str, Any]) -> None:
    assert plainyaml.dump(doc) == _ruamel(doc)


def test_shapes_it_does_not_write_go_to_ruamel() -> None:
    assert plainyaml.dump({"a": [{"b": 1}]}) is None
    assert plainyaml.dump({"a": [[1]]}) is None
    assert plainyaml.dump([1, 2]) is None
