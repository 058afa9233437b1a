"""What every action plugin of `edgerl.board` is: validate the task's arguments as Ansible does, run one step.

Each plugin file of the collection holds only `class ActionModule(EdgerlAction): step = "NAME"`.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from deploy.ansible.steps import SPECS, STEPS


class EdgerlAction(ActionBase):
    """One of edgerl's board steps for this task's host.

    Over edgerl's own checked SSH link, not Ansible's connection, which runs one command at a time.
    """

    step = ""
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: ARG002
        """Ansible's entry point: the task's result; bad arguments fail it with Ansible's own one-line error."""
        result = {"changed": False, "edgerl_failed": False}
        try:
            _, args = self.validate_argument_spec(argument_spec=SPECS[self.step])
        except AnsibleActionFail as err:
            return {**result, "failed": True, "edgerl_failed": True, "msg": str(err.message)}
        result.update(STEPS[self.step](task_vars or {}, args, bool(self._task.check_mode)))
        return result
