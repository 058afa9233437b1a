"""The channel folder as a web server's user sees it: every file readable, and nothing outside it touched."""

from __future__ import annotations

import stat

from deploy.channel.publish import PublishConfig, publish
from deploy.channel.repo import Channel


def test_every_file_of_a_channel_is_readable_by_the_server_and_the_folders_above_it_keep_their_modes(bundles,
                                                                                                      tmp_path):
    above = tmp_path / "site"
    above.mkdir()
    above.chmod(0o711)  # the user's own folder: not the channel's to change
    Channel.init(above / "channel", tmp_path / "keys")
    publish(PublishConfig(bundles["dqn"], above / "channel", tmp_path / "keys"))
    assert stat.S_IMODE(above.stat().st_mode) == 0o711
    modes = {p.relative_to(above): stat.S_IMODE(p.stat().st_mode) for p in (above / "channel").rglob("*")}
    assert {p: m for p, m in modes.items() if (above / p).is_file() and m != 0o644} == {}
    assert {p: m for p, m in modes.items() if (above / p).is_dir() and m != 0o755} == {}
    assert stat.S_IMODE((tmp_path / "keys" / "targets.pem").stat().st_mode) == 0o600
