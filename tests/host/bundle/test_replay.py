"""A user replays the board's game on the host and gets a GIF and matching scores."""

import json

import in_process
from PIL import Image

from device.play import PlayConfig, play


def edgerl(*args):
    return in_process.edgerl(*args, timeout=600)


def test_replay_rebuilds_the_boards_game_as_a_gif(bundles, tmp_path):
    report = tmp_path / "report.json"
    play(PlayConfig(bundles["stacked"], episodes=2, seed=4, max_steps=120, report=report))
    run = edgerl("replay", report, bundles["stacked"], "--out", tmp_path / "game.gif")
    assert run.returncode == 0, run.stderr
    assert "replay ok" in run.stdout
    gif = Image.open(tmp_path / "game.gif")
    assert "wrote 120 frames" in run.stdout  # 2 episodes x 120 steps / stride 2
    # Pillow merges identical consecutive frames, so the file may hold fewer.
    assert gif.size == (160, 210) and 20 <= gif.n_frames <= 120


def test_replay_of_a_doctored_report_is_refused(bundles, tmp_path):
    report = tmp_path / "report.json"
    play(PlayConfig(bundles["dqn"], episodes=1, seed=4, report=report))
    data = json.loads(report.read_text())
    data["episodes"][0]["score"] = 21.0
    report.write_text(json.dumps(data))
    run = edgerl("replay", report, bundles["dqn"])
    assert run.returncode == 1
    assert "differ from reported" in run.stderr.strip().splitlines()[-1]


def test_replay_checks_every_screen_and_names_where_two_games_part(bundles, tmp_path):
    report = tmp_path / "report.json"
    play(PlayConfig(bundles["dqn"], episodes=1, seed=2, max_steps=350, report=report))
    data = json.loads(report.read_text())
    episode = data["episodes"][0]
    assert len(episode["screens_crc32_marks"]) == 3 and episode["screens_crc32_every"] == 100
    # The same actions and score, but the board claims other screens from step 200 on.
    episode["screens_crc32_marks"][2] = "00000000"
    episode["screens_crc32"] = "00000000"
    report.write_text(json.dumps(data))
    run = edgerl("replay", report, bundles["dqn"])
    assert run.returncode == 1, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "screens differ from agent step 200" in errors[0], run.stderr
