"""The domain rules, without gRPC."""

from __future__ import annotations

import pytest

from greet.errors import InvalidRequest, LimitExceeded
from greet.greeting import (
    Limits,
    WorkingGreeter,
    check_name,
    check_names,
    check_stream_length,
    greeting_for,
)


def test_greeting_text_matches_the_original() -> None:
    assert greeting_for("Akhil") == "Hello Akhil"
    assert greeting_for("") == "Hello "
    assert greeting_for("Zoë 世界") == "Hello Zoë 世界"


async def test_working_greeter_greets() -> None:
    assert await WorkingGreeter().greet("Bob") == "Hello Bob"


def test_name_over_the_limit_is_invalid_and_names_the_limit() -> None:
    limits = Limits(max_name_chars=3)
    check_name("abc", limits)
    with pytest.raises(InvalidRequest, match="max_name_chars"):
        check_name("abcd", limits)


def test_too_many_names_exceed_the_limit() -> None:
    limits = Limits(max_names_per_list=2)
    check_names(["a", "b"], limits)
    with pytest.raises(LimitExceeded, match="max_names_per_list"):
        check_names(["a", "b", "c"], limits)


def test_stream_length_limit() -> None:
    limits = Limits(max_messages_per_stream=5)
    check_stream_length(5, limits)
    with pytest.raises(LimitExceeded, match="max_messages_per_stream"):
        check_stream_length(6, limits)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_name_chars"):
        Limits(max_name_chars=0)
