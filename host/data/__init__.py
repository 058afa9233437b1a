"""A board's recordings as TorchRL data: `load_episodes(DIR, env)` and a replay buffer over them."""

from host.data.episodes import DataError, load_episodes, replay_buffer

__all__ = ["DataError", "load_episodes", "replay_buffer"]
