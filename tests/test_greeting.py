"""The domain rules, without gRPC."""

from __future__ import annotations

import pickle

import pytest

from greet.errors import InvalidRequest, LimitExceeded, Violation
from greet.greeting import (
    NAME_TOO_LONG,
    TOO_MANY_MESSAGES,
    TOO_MANY_NAMES,
    Limits,
    WorkingGreeter,
    check_name,
    check_names,
    check_stream_length,
    greeting_for,
)

LIMIT_FIELDS = ("max_name_chars", "max_names_per_list", "max_messages_per_stream")


def test_greeting_text_matches_the_original() -> None:
    assert greeting_for("Akhil") == "Hello Akhil"
    assert greeting_for("") == "Hello "
    assert greeting_for("Zoë 世界") == "Hello Zoë 世界"


async def test_working_greeter_greets() -> None:
    assert await WorkingGreeter().greet("Bob") == "Hello Bob"


def test_by_default_nothing_is_limited_as_in_the_original() -> None:
    limits = Limits()
    assert (limits.max_name_chars, limits.max_names_per_list, limits.max_messages_per_stream) == (
        None,
        None,
        None,
    )
    check_names(["x" * 100_000, *(["a"] * 200_000)], limits)
    check_name("y" * 1_000_000, limits)
    check_stream_length(10**9, limits)


def test_name_over_the_limit_is_invalid_and_names_the_flag() -> None:
    limits = Limits(max_name_chars=3)
    check_name("abc", limits)
    with pytest.raises(InvalidRequest) as caught:
        check_name("abcd", limits)
    assert caught.value.message == "name is 4 characters long; the limit (--max-name-chars) is 3"
    assert caught.value.violation == Violation(NAME_TOO_LONG, "name", 3, 4, "--max-name-chars")


def test_long_name_in_a_list_is_named_by_its_index() -> None:
    limits = Limits(max_name_chars=3)
    with pytest.raises(InvalidRequest) as caught:
        check_names(["a", "bb", "ccc", "dddd", "eeeee"], limits)
    assert caught.value.message.startswith("names[3] is 4 characters long;")
    assert caught.value.violation == Violation(NAME_TOO_LONG, "names[3]", 3, 4, "--max-name-chars")


def test_too_many_names_exceed_the_limit() -> None:
    limits = Limits(max_names_per_list=2)
    check_names(["a", "b"], limits)
    with pytest.raises(LimitExceeded) as caught:
        check_names(["a", "b", "c"], limits)
    assert caught.value.message == "3 names in one list; the limit (--max-names) is 2"
    assert caught.value.violation == Violation(TOO_MANY_NAMES, "names", 2, 3, "--max-names")


def test_stream_length_limit() -> None:
    limits = Limits(max_messages_per_stream=5)
    check_stream_length(5, limits)
    with pytest.raises(LimitExceeded) as caught:
        check_stream_length(6, limits)
    assert "the limit (--max-stream-messages) is 5" in caught.value.message
    assert caught.value.violation == Violation(
        TOO_MANY_MESSAGES, "requests", 5, 6, "--max-stream-messages"
    )


def test_each_limit_names_its_flag() -> None:
    assert [Limits.flag(name) for name in LIMIT_FIELDS] == [
        "--max-name-chars",
        "--max-names",
        "--max-stream-messages",
    ]


@pytest.mark.parametrize("name", LIMIT_FIELDS)
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive_and_the_error_names_the_flag(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^{Limits.flag(name)} must be at least 1") as caught:
        Limits(**{name: value})
    assert name not in str(caught.value)


def test_a_limit_error_pickles_with_its_violation() -> None:
    with pytest.raises(LimitExceeded) as caught:
        check_names(["a", "b", "c"], Limits(max_names_per_list=2))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), copy.message, copy.violation) == (
        LimitExceeded,
        caught.value.message,
        Violation(TOO_MANY_NAMES, "names", 2, 3, "--max-names"),
    )
