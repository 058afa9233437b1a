"""A channel (a TUF repository made by `edgerl channel init`) served by a real nginx, and local boards that pull."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import in_process  # noqa: E402
from channel_server import Nginx, start_nginx  # noqa: E402


@dataclass
class ChannelWorld:
    """The channel folder and its keys, nginx serving it, and the local boards enrolled in it."""

    dir: Path
    keys: Path
    server: Nginx
    venvs: Path
    tmp: Path

    def cli(self, *args: object) -> in_process.Ran:
        return in_process.edgerl(*args, timeout=600)

    def publish(self, bundle: Path, stage: str = "100%", *extra: object) -> dict:
        ran = self.cli("publish", bundle, "--channel", self.dir, "--keys", self.keys, "--stage", stage, *extra)
        assert ran.returncode == 0, ran.stderr
        return self.rollout()

    def rollout(self) -> dict:
        from deploy.channel.publish import rollout
        from deploy.channel.repo import Channel

        return rollout(Channel(self.dir, None))

    def board(self, name: str, url: str | None = None) -> Path:
        """A board folder enrolled in the channel (its venvs/ shared with the run's device venv)."""
        from deploy.channel.enroll import EnrollConfig, enroll
        from deploy.link.targets import LocalTarget

        path = self.tmp / "boards" / name
        path.mkdir(parents=True)
        (path / "venvs").symlink_to(self.venvs)
        enroll(LocalTarget(path), EnrollConfig(url or self.server.url, name, self.server.ca,
                                               htpasswd=self.server.htpasswd), say=lambda _: None)
        return path

    def poll(self, board: Path) -> dict:
        """One poll, run as the board runs it: its python3 on the agent's script, from the board's own folder."""
        agent = board / json.loads((board / "channel" / "agent.json").read_text())["agent"]
        done = subprocess.run(["python3", "-I", agent, str(board)], capture_output=True, text=True, timeout=600)
        reply = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
        assert reply is not None, done.stderr
        reply["exit_code"], reply["journal"] = done.returncode, done.stderr.strip()
        return reply

    def report(self, name: str) -> dict | None:
        path = self.dir / "reports" / name / "report.json"
        return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def channel_world(tmp_path, device_venv) -> ChannelWorld:
    from deploy.channel.repo import Channel

    Channel.init(tmp_path / "channel", tmp_path / "keys")
    server = start_nginx(tmp_path / "channel", tmp_path / "nginx")
    yield ChannelWorld(tmp_path / "channel", tmp_path / "keys", server, device_venv.venvs, tmp_path)
    server.stop()
