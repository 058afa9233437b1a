"""edgerl's board steps as Ansible tasks: what the collection `edgerl.board`'s plugins run, per host.

Each plugin of the collection (deploy/ansible/collection/) is an action plugin: it runs on the controller, in the
Python that runs Ansible (which holds edgerl, as AWX's execution environment would), and calls one function here
with the task's host variables and arguments. Each function reaches the board as `edgerl deploy --inventory` does
(the host's connection variables read by deploy/fleet/inventory.py's `board_from_vars`, edgerl's own checked SSH
link) and calls the very function the CLI calls: `deploy`, `rollback`, `status`, the service's status, the canary's
games. One implementation of each board step; Ansible adds the engine (serial, forks, max_fail_percentage).

A step returns Ansible's result dict: `changed`, `failed` with `msg` (one line, as the CLI says it), and its figures.
Check mode changes nothing on a board: it reads the board's status and says what would change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy import release as board_release
from deploy.fleet.canary import CanaryConfig
from deploy.fleet.canary import bar as canary_bar
from deploy.fleet.canary import judge as judge_canary
from deploy.fleet.inventory import board_from_vars
from deploy.install import InstallConfig
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError, Target
from deploy.pull import PullConfig, pull
from deploy.release import DeployConfig, release_files, release_id, sums_text
from deploy.remote_run import open_target
from deploy.service import GateFailed, ServiceConfig, release_extras
from deploy.service import status as service_status
from device.manifest import EdgerlError, load_bundle
from device.trust import check_verified

LINK = {
    "known_hosts": {"type": "path", "default": "~/.ssh/known_hosts"},
    "ssh_config": {"type": "path", "default": "~/.ssh/config"},
    "silence_timeout": {"type": "float", "default": 60.0},
}
"""How every step reaches its board (the host's own connection variables say where)."""
SPECS: dict[str, dict[str, Any]] = {
    "release": {"bundle": {"type": "path", "required": True}, "keep": {"type": "int", "default": 3},
                "wheelhouse": {"type": "bool", "default": False}, **LINK},
    "service": {"bundle": {"type": "path", "required": True}, "io": {"type": "str"}, "hz": {"type": "float"},
                "gate_seconds": {"type": "float", "default": 30.0}, "max_overrun": {"type": "float", "default": 0.05},
                "record": {"type": "str"}, "keep": {"type": "int", "default": 3},
                "wheelhouse": {"type": "bool", "default": False}, **LINK},
    "rollback": dict(LINK),
    "facts": dict(LINK),
    "data": {"out": {"type": "path"}, "prune": {"type": "bool", "default": False}, **LINK},
    "canary": {"bundle": {"type": "path", "required": True}, "games": {"type": "int", "default": 3},
               "seed": {"type": "int", "default": 0}, "score_margin": {"type": "float", "default": 2.0},
               "against": {"type": "path"}, "reports": {"type": "path", "default": "reports"}, **LINK},
}
"""Each step's arguments, in Ansible's argument_spec form: the plugins validate the task's arguments with it."""


@contextmanager
def board_target(task_vars: dict[str, Any], args: dict[str, Any]) -> Iterator[Target]:
    """The task's host as a connected Target, by its inventory variables (`edgerl_board_dir` included)."""
    board = board_from_vars(str(task_vars["inventory_hostname"]), task_vars)
    opts = SshOptions(known_hosts=Path(args["known_hosts"]).expanduser(),
                      ssh_config=Path(args["ssh_config"]).expanduser(), silence_timeout=float(args["silence_timeout"]),
                      connect_timeout=min(15.0, float(args["silence_timeout"])))
    with open_target(board.target, board.options(opts), create=True) as target:
        yield target


def _failed(err: Exception) -> dict[str, Any]:
    # `edgerl_failed` outlives a play's `failed_when: false` (the rollout judges a whole wave before failing hosts).
    return {"failed": True, "edgerl_failed": True, "changed": False, "msg": str(err)}


def bundle_release(bundle: Path) -> str:
    """The release id a deploy of the bundle makes (what the board's current names once it runs it)."""
    return release_id(bundle, sums_text(release_files(bundle)))


def release(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The bundle as the board's current release: checked, self-tested, switched, keep N (`edgerl deploy`).

    Idempotent: a board already running this release, whole, is not touched (`changed: false`).
    """
    bundle = Path(args["bundle"])
    try:
        check_verified(bundle, load_bundle(bundle))
        rid = bundle_release(bundle)
        with board_target(task_vars, args) as target:
            before = board_release.status(target)
            if before["current"] == rid and not before.get("damaged"):
                return {"changed": False, "release": rid, "previous": before["previous"], "msg": f"{rid} is current"}
            if check_mode:
                return {"changed": True, "release": rid, "before": before["current"],
                        "msg": f"would switch {before['current'] or 'a new board'} to {rid}"}
            cfg = DeployConfig(bundle, keep=int(args["keep"]),
                               install=InstallConfig(wheelhouse=bool(args["wheelhouse"])))
            done = board_release.deploy(target, cfg, say=lambda _: None)
    except EdgerlError as err:
        return _failed(err)
    return {"changed": True, **asdict(done), "msg": f"switched {done.before or 'a new board'} to {done.release}"}


def service(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The bundle as a systemd service, committed by the board's own health gate (`edgerl deploy --service`).

    Fails the host when the gate rolled the board back, with the gate's verdict and figures. Idempotent: a board
    whose current release is this one (bundle and service settings), committed, its unit active, is not touched.
    """
    bundle = Path(args["bundle"])
    try:
        cfg = ServiceConfig(args["io"], args["hz"], float(args["gate_seconds"]), float(args["max_overrun"]),
                            record=args["record"]).checked("io", "hz")
        check_verified(bundle, load_bundle(bundle))
        rid = release_id(bundle, sums_text(release_files(bundle, release_extras(cfg))))
        with board_target(task_vars, args) as target:
            before = board_release.status(target)
            running = service_status(target) if before["current"] == rid and not before.get("damaged") else {}
            if running.get("committed") == rid and (running.get("unit") or {}).get("ActiveState") == "active":
                return {"changed": False, "release": rid, "msg": f"{rid} is current, committed and active"}
            if check_mode:
                return {"changed": True, "release": rid, "before": before["current"],
                        "msg": f"would switch {before['current'] or 'a new board'} to {rid} and judge it"}
            cfg_deploy = DeployConfig(bundle, keep=int(args["keep"]), service=cfg,
                                      install=InstallConfig(wheelhouse=bool(args["wheelhouse"])))
            done = board_release.deploy(target, cfg_deploy, say=lambda _: None)
    except GateFailed as err:
        return {**_failed(err), "gate": err.gate}
    except EdgerlError as err:
        return _failed(err)
    return {"changed": True, **asdict(done), "msg": f"committed {done.release}: {done.gate['verdict']}"}


def rollback(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """current back to previous, if previous is whole and passed its self-test (`edgerl rollback`)."""
    try:
        with board_target(task_vars, args) as target:
            before = board_release.status(target)
            if before["previous"] is None:
                raise DeployError(f"{target.name}: there is no previous release to roll back to")
            if check_mode:
                return {"changed": True, "current": before["previous"], "before": before["current"],
                        "msg": f"would roll back to {before['previous']}"}
            now = board_release.rollback(target, say=lambda _: None)
    except EdgerlError as err:
        return _failed(err)
    return {"changed": True, "current": now, "before": before["current"], "msg": f"rolled back to {now}"}


def facts(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """What `edgerl status --on` shows, as the host's fact `edgerl`: releases, venvs, lock, damage, model, channel."""
    try:
        with board_target(task_vars, args) as target:
            shown = board_release.status(target)
    except EdgerlError as err:
        return _failed(err)
    return {"changed": False, "ansible_facts": {"edgerl": shown}}


def data(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The board's recordings: listed, or (with `out`) pulled here as `edgerl data pull --on` pulls them.

    Shard by shard, each checked against its sha256, then pruned on the board if asked; a rerun fetches nothing new.
    """
    name = str(task_vars["inventory_hostname"])
    try:
        with board_target(task_vars, args) as target:
            listing = board_client.expect(target, "data-list", target.root, what="listing its recordings")
            recordings = {k: {"shards": len(v["shards"]), "decisions": sum(s["decisions"] for s in v["shards"])}
                          for k, v in listing["recordings"].items()}
            if args["out"] is None or check_mode:
                return {"changed": False, "recordings": recordings}
            done = pull(target, name, PullConfig(Path(args["out"]), bool(args["prune"])), say=lambda _: None)
    except EdgerlError as err:
        return _failed(err)
    return {"changed": bool(done.fetched or done.pruned), "recordings": recordings, "fetched": done.fetched,
            "already": done.already, "bytes": done.bytes, "pruned": done.pruned,
            "folders": [str(f) for f in done.folders]}


def canary(task_vars: dict[str, Any], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Games on the board's current release judged by an evaluated mean: `deploy --canary-games`'s own gate.

    The manifest's mean (or `against`'s), the report replayed on the controller (deploy/fleet/canary.py); a canary
    below the floor fails the host.
    """
    cfg = CanaryConfig(Path(args["bundle"]), int(args["games"]), int(args["seed"]), Path(args["reports"]),
                       float(args["score_margin"]), Path(args["against"]) if args["against"] else None)
    try:
        held = canary_bar(cfg)
        if check_mode:
            return {"changed": False, "floor": held.floor,
                    "msg": f"would play {cfg.games} games, floor {held.floor:+.1f}"}
        with board_target(task_vars, args) as target:
            mean, refused = judge_canary(target, cfg, held, say=lambda _: None,
                                         name=str(task_vars["inventory_hostname"]), replay_here=False)
    except EdgerlError as err:
        return _failed(err)
    figures = {"changed": False, "mean": mean, "evaluated": held.mean, "floor": held.floor}
    if refused:
        return {**figures, "failed": True, "edgerl_failed": True, "msg": f"canary refused: {refused}"}
    return {**figures, "msg": f"canary mean {mean:+.1f}, floor {held.floor:+.1f}"}


STEPS = {"release": release, "service": service, "rollback": rollback, "facts": facts, "data": data, "canary": canary}
