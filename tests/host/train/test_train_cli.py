"""A user trains with `edgerl train`: one algorithm, runs that are never overwritten, logs that resume cleanly."""


import in_process

from host.train.pqn import PQNConfig
from host.train.training_log import TrainingLog, plot_run, read_episodes


def edgerl(*args):
    return in_process.edgerl(*args, timeout=300)


def test_train_help_lists_only_what_exists():
    run = edgerl("train", "--help")
    assert run.returncode == 0
    assert "{pqn}" in run.stdout and "ppo" not in run.stdout and "dqn" not in run.stdout
    assert f"{PQNConfig.frames:,}" in run.stdout and f"default {PQNConfig.envs})" in run.stdout


def test_plot_writes_the_learning_curve(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "episodes.csv").write_text("frames,wall_s,return,length\n" +
                                      "".join(f"{i * 1000},{i * 2.0},{-21 + i},{800}\n" for i in range(30)))
    png = plot_run(run)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(read_episodes(run)) == 30


def test_train_cli_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    run = edgerl("train", "--frames", 100, "--out", tmp_path / "none", "--resume")
    assert run.returncode == 2 and "nothing to resume" in run.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")
    run = edgerl("train", "--frames", 100, "--out", tmp_path / "run")
    assert run.returncode == 2 and "--resume" in run.stderr


def test_a_resumed_run_forgets_what_its_killed_process_logged_after_the_checkpoint(tmp_path):
    # A process logs iterations 2 and 3, then dies before it can checkpoint them: the run resumes at 1.
    log = TrainingLog(tmp_path, total_frames=768, progress=False)
    for frames in (256, 512, 768):
        log.step(frames, [(-21.0, 800)], loss=frames / 1000)
    log.close()
    resumed = TrainingLog(tmp_path, total_frames=768, start_frames=256, progress=False)
    resumed.close()
    assert read_episodes(tmp_path)[:, 0].tolist() == [256]
    loss = (tmp_path / "logs" / "train" / "scalars" / "loss.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in loss if line] == [256]
