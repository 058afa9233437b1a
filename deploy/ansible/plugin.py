"""What every action plugin of `edgerl.board` does: validate the task's arguments as Ansible does, run one step."""

from __future__ import annotations

from typing import Any

from deploy.ansible.steps import SPECS, STEPS


def run_step(action: Any, name: str, task_vars: dict[str, Any] | None) -> dict[str, Any]:
    """The step `name` for the task's host; bad arguments fail the task with Ansible's own one-line error."""
    from ansible.errors import AnsibleActionFail

    result = {"changed": False, "edgerl_failed": False}
    try:
        _, args = action.validate_argument_spec(argument_spec=SPECS[name])
    except AnsibleActionFail as err:
        return {**result, "failed": True, "edgerl_failed": True, "msg": str(err.message)}
    result.update(STEPS[name](task_vars or {}, args, bool(action._task.check_mode)))
    return result
