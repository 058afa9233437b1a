"""A board nobody reaches by SSH: enrolled by writing its image, it installs its venv from the channel's wheels."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from deploy.board.units import AGENT_TIMER, AGENT_UNIT


def board_image(folder: Path, uid: int) -> tuple[Path, str]:
    """The parts of a Debian root filesystem enroll reads: passwd, python3, the multiarch folder, pi's home."""
    version = subprocess.run(["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    machine = os.uname().machine
    (folder / "etc").mkdir(parents=True)
    (folder / "etc" / "passwd").write_text(f"root:x:0:0:root:/root:/bin/bash\npi:x:{uid}:{uid}::/home/pi:/bin/bash\n")
    (folder / "usr" / "bin").mkdir(parents=True)
    (folder / "usr" / "bin" / "python3").symlink_to(f"python{version}")
    (folder / "usr" / "lib" / f"{machine}-linux-gnu").mkdir(parents=True)
    (folder / "home" / "pi").mkdir(parents=True)
    return folder, f"{machine}:{version}"


def test_a_board_written_from_an_image_pulls_its_first_release_and_its_venv_from_the_channels_wheels(
        channel_world, bundles, tmp_path):
    world = channel_world
    uid = 4242 if os.geteuid() == 0 else os.geteuid()  # root writes the image for its user, as after a mount
    image, kind = board_image(tmp_path / "image", uid)
    enrolled = world.cli("enroll", "--image", image, "--board-id", "field-7", "--channel", world.server.url,
                         "--ca", world.server.ca, "--htpasswd", world.server.htpasswd, "--every", "15min")
    assert enrolled.returncode == 0, enrolled.stderr
    assert f"--wheels-for {kind}" in enrolled.stdout

    # What systemd on the board will find at boot: the timer enabled for pi, pi's manager started by lingering.
    units = image / "home/pi/.config/systemd/user"
    assert os.readlink(units / "timers.target.wants" / AGENT_TIMER) == f"/home/pi/.config/systemd/user/{AGENT_TIMER}"
    assert (image / "var/lib/systemd/linger/pi").is_file()
    board = image / "home/pi/edgerl"
    settings = json.loads((board / "channel/agent.json").read_text())
    assert settings["board"] == "field-7" and not settings["agent"].startswith("/")
    assert f'ExecStart="/usr/bin/python3" "-I" "/home/pi/edgerl/{settings["agent"]}" "/home/pi/edgerl"' in (
        units / AGENT_UNIT).read_text()
    assert "OnUnitInactiveSec=15min" in (units / AGENT_TIMER).read_text()
    written = [board, *board.rglob("*"), *(image / "home/pi/.config").rglob("*")]
    assert {p.lstat().st_uid for p in written} == {uid}
    assert (board / "channel/credentials").stat().st_mode & 0o777 == 0o600

    # A channel that carries no wheels for it: the board says which to publish, and switches nothing.
    world.publish(bundles["dqn"])
    first = world.poll(board)
    assert first["exit_code"] == 1 and f"publish with `--wheels-for {kind}`" in first["detail"], first
    assert not (board / "current").exists()

    # Published with them: the board fetches the wheels it lacks (TUF-checked), installs its venv, takes it.
    record = world.publish(bundles["stacked"], "100%", "--wheels-for", kind)
    (key, names), = record["wheels"].items()
    held = next(n for n in names if n.startswith("numpy-"))  # a wheel a push once left on the board
    (board / "wheelhouse" / key).mkdir(parents=True)
    signed = world.dir / "targets" / "wheels" / key
    (board / "wheelhouse" / key / held).write_bytes(next(signed.glob(f"*.{held}")).read_bytes())
    size = {n: next(signed.glob(f"*.{n}")).stat().st_size for n in names}
    second = world.poll(board)
    assert second["outcome"] == "installed", second
    assert f"venv installed from {sum(size.values()) - size[held]} bytes of the channel's wheels" in second["detail"]
    assert (board / "venvs" / key / ".complete").is_file()
    print(f"\nfigure: a board with no venv took the release with {len(names) - 1} of its {len(names)} wheels fetched "
          f"({sum(size.values()) - size[held]:,} of {sum(size.values()):,} B; {held} held) and pip with no index, "
          f"in {second['seconds']} s")
    assert os.readlink(board / "current") == f"releases/{record['release']}"
    assert world.report("field-7")["release"] == record["release"]

    # The kinds stay with the channel: the next release needs no flag, and the board fetches no wheel again.
    third = world.publish(bundles["dqn"])
    assert third["wheels"] == record["wheels"]
    again = world.poll(board)
    assert again["outcome"] == "installed" and "venv installed" not in again["detail"], again


def test_what_enroll_image_and_wheels_for_are_given_wrong_is_one_line_and_exit_2(channel_world, bundles, tmp_path):
    world = channel_world
    image, _ = board_image(tmp_path / "image", os.geteuid())
    (tmp_path / "empty").mkdir()
    channel = ["--channel", world.server.url, "--root", world.dir / "metadata" / "root.json"]
    cases = {
        ("--image", tmp_path / "empty", "--board-id", "b1", *channel): "has no etc/passwd",
        ("--image", tmp_path / "nowhere", "--board-id", "b1", *channel): "is not a folder",
        ("--image", image, *channel): "--image needs --board-id",
        ("--image", image, "--board-id", "b1", "--image-user", "ubuntu", *channel): "has no user 'ubuntu'",
        ("--image", image, "--on", "local:x", "--board-id", "b1", *channel): "not allowed with argument",
    }
    for argv, said in cases.items():
        done = world.cli("enroll", *argv)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and said in lines[0], (argv, done.stderr)
    assert not (image / "home/pi/edgerl").exists()  # refused before anything was written
    for kinds in ("arm", "aarch64:py3", ","):
        done = world.cli("publish", bundles["dqn"], "--channel", world.dir, "--keys", world.keys, "--wheels-for", kinds)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "--wheels-for" in lines[0], (kinds, done.stderr)
    assert world.rollout() is None  # nothing was published
