"""What a user types after --to / --on: each either names one board exactly, or is refused in one line."""

from __future__ import annotations

import random

import pytest

from deploy.link.targets import DeployError, parse_target


@pytest.mark.parametrize("text, says", [
    ("@host", "bad user"),                            # the user left out
    ("pi@127.0.0.1:22:33", "more than one ':'"),      # a port given twice
    ("pi@host:0", "not a TCP port"),
    ("a@b@c", "bad user"),
    ("pi@", "bad host"),
])
def test_a_mistyped_target_is_refused_in_one_line(text, says):
    with pytest.raises(DeployError, match=says) as err:
        parse_target(text)
    assert "\n" not in str(err.value)


def test_ssh_url_form_names_the_same_board_as_the_plain_one():
    assert parse_target("ssh://pi@127.0.0.1:2222") == parse_target("pi@127.0.0.1:2222") == (
        "ssh", "pi", "127.0.0.1", 2222)
    assert parse_target("ssh://pi@raspberrypi.local/") == ("ssh", "pi", "raspberrypi.local", None)


def _render(user: str | None, host: str, port: int | None) -> str:
    return f"{user + '@' if user else ''}{host}{f':{port}' if port else ''}"


def test_any_drawn_target_either_round_trips_to_one_board_or_is_refused():
    rng = random.Random(37)
    alphabet = "pi@:/.-_0123456789abcxyz ;$'"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        if text.startswith("local:"):
            continue
        try:
            kind, user, host, port = parse_target(text)
        except DeployError as err:
            assert "\n" not in str(err)
            continue
        assert kind == "ssh" and host and ":" not in host and "@" not in host, text
        assert user is None or (user and "@" not in user and ":" not in user), text
        assert port is None or 1 <= port <= 65535, text
        assert parse_target(_render(user, host, port)) == (kind, user, host, port), text
