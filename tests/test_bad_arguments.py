"""Every command, given what a user mistypes, says so in one line and exits 2 before doing any work.

The commands and their numbers come from the two parsers themselves, so a new subcommand or option is walked
too; only how to call each one correctly is written here (`CALLS`), and a command missing from it fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import in_process
import pytest

from device.args import OneLineParser
from device.cli import build_parser as device_parser
from device.manifest import EXIT_BAD_INPUT
from host.cli import build_parser as host_parser

REPO = Path(__file__).resolve().parents[1]
CALLS = {
    # (command line, subcommand): a correct call; {bundle}, {report}, {run}, {key} and {board} are read,
    # {out_file}, {out_folder} and {new_board} (a board folder a deploy makes) written.
    ("edgerl", "export"): "--untrained --out {out_folder}",
    ("edgerl", "verify"): "{bundle}",
    ("edgerl", "replay"): "{report} {bundle} --out {out_file}",
    ("edgerl", "train"): "--out {out_folder} --frames 10",
    ("edgerl", "plot"): "{run} --out {out_file}",
    ("edgerl", "promote"): "{bundle} --to {bundle}",
    ("edgerl", "evaluate"): "{bundle}",
    ("edgerl", "quantize"): "{bundle}",
    ("edgerl", "deploy"): "{bundle} --to local:{new_board} --reports {out_folder}",
    ("edgerl", "run"): "--on local:{board} --reports {out_folder}",
    ("edgerl", "status"): "--on local:{board}",
    ("edgerl", "rollback"): "--on local:{board}",
    ("edgerl", "service"): "status --on local:{board}",
    ("edgerl", "sign"): "{bundle} --key {key}",
    ("edgerl", "trust"): "--on local:{board}",
    ("edgerl", "data"): "pull --on local:{board} --out {out_folder}",
    ("edgerl", "channel"): "status {run}",
    ("edgerl", "publish"): "{bundle} --channel {run} --keys {run}",
    ("edgerl", "enroll"): "--on local:{new_board} --channel https://127.0.0.1:9",
    ("device", "play"): "{bundle} --report {out_file}",
    ("device", "selftest"): "{bundle}",
    ("device", "serve"): "{bundle} --status {out_file}",
    ("device", "bench"): "{bundle}",
}
READ = ("bundle", "report", "run", "key", "board")
WRITTEN = ("out_file", "out_folder", "new_board")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


PARSERS = {"edgerl": host_parser(), "device": device_parser()}
COMMANDS = {(side, name): sub for side, parser in PARSERS.items() for name, sub in _subcommands(parser).items()}


def _numbers(sub: argparse.ArgumentParser) -> list[str]:
    """The options of a subcommand that take a positive number (or a number of seconds)."""
    return [a.option_strings[-1] for a in sub._actions if a.option_strings and getattr(a.type, "__name__", "") in
            ("positive", "positive_number", "seconds")]


def _mistakes() -> list[tuple[str, str, str, str]]:
    """(side, subcommand, which placeholder or option, the mistake) for every command and every kind."""
    cases = []
    for (side, name), sub in COMMANDS.items():
        call = CALLS.get((side, name), "")
        cases += [(side, name, slot, kind) for slot in READ if f"{{{slot}}}" in call for kind in ("missing", "file")]
        cases += [(side, name, slot, "unwritable") for slot in WRITTEN if f"{{{slot}}}" in call]
        cases += [(side, name, option, "zero") for option in _numbers(sub)]
    return cases


@pytest.fixture(scope="module")
def world(tmp_path_factory, bundles):
    """What a correct call reads: a bundle, a board's report of it, a run folder, a signing key."""
    root = tmp_path_factory.mktemp("world")
    (root / "a_file").write_text("not what was asked for\n")
    played = subprocess.run([sys.executable, "-m", "device", "play", bundles["dqn"], "--max-steps", "5", "--report",
                             root / "report.json"], capture_output=True, text=True, timeout=120)
    assert played.returncode == 0, played.stderr
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", root / "key"], check=True)
    return {"bundle": bundles["dqn"], "report": root / "report.json", "run": root, "key": root / "key",
            "board": root / "board", "new_board": root / "new_board", "out_file": root / "out.json",
            "out_folder": root / "out", "root": root}


def _argv(side: str, name: str, world: dict, slot: str, kind: str) -> tuple[list[str], str]:
    """The mistyped command line, and what its one line must name (the bad path, or the option)."""
    values = {k: str(v) for k, v in world.items()}
    if kind == "missing":
        values[slot] = str(world["root"] / "no" / "such" / slot)
    elif kind == "file":
        values[slot] = str(world["root"] / "a_file") if slot != "key" else str(world["root"])
    elif kind == "unwritable":
        values[slot] = f"/proc/edgerl-{slot}"
    argv = [name, *CALLS[(side, name)].format(**values).split()]
    return ([*argv, slot, "0"], slot) if kind == "zero" else (argv, values[slot])


def test_every_subcommand_has_a_correct_call_to_mistype():
    assert set(COMMANDS) == set(CALLS), set(COMMANDS) ^ set(CALLS)
    assert all(isinstance(p, OneLineParser) for p in PARSERS.values())


@pytest.mark.parametrize(("side", "name", "slot", "kind"), _mistakes(), ids=["-".join(c) for c in _mistakes()])
def test_a_mistyped_argument_is_one_line_and_exit_2(side, name, slot, kind, world):
    argv, named = _argv(side, name, world, slot, kind)
    if side == "edgerl":
        done = in_process.edgerl(*argv, timeout=120)
    else:
        done = subprocess.run([sys.executable, "-m", "device", *argv], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == EXIT_BAD_INPUT and len(lines) == 1, f"{side} {' '.join(argv)}: {done.stderr}"
    assert named in lines[0], f"{side} {' '.join(argv)}: the line does not name {named}: {lines[0]}"


def _every_parser(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, (*path, name))


def test_every_argument_of_every_command_says_what_it_is_in_its_help():
    bare = [f"{' '.join(path)} {a.option_strings[-1] if a.option_strings else a.dest}"
            for side, parser in PARSERS.items() for path, sub in _every_parser(parser, (side,))
            for a in sub._actions if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not bare, "arguments without help text: " + ", ".join(bare)


def test_the_help_of_a_subcommands_action_is_its_own():
    done = in_process.edgerl("data", "pull", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: edgerl data pull "), done.stdout[:200]


@pytest.mark.parametrize("call", ["deploy {bundle} --to local:{new_board} --service",
                                  "publish {bundle} --channel {run} --keys {run} --service"])
def test_a_plant_without_its_rate_is_one_line_naming_both_options(call, world):
    argv = [*call.format(**{k: str(v) for k, v in world.items()}).split(), "--io", f"{REPO}/examples/cart_io.py:Cart"]
    done = in_process.edgerl(*argv, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == EXIT_BAD_INPUT and len(lines) == 1, done.stderr
    assert lines[0].endswith("--io needs --hz: how many decisions per second your plant wants"), lines[0]
    assert not world["new_board"].exists()
