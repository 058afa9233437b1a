"""edgerl.board.canary: runs on the controller and calls edgerl's own board step (deploy/ansible/steps.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from deploy.ansible.plugin import run_step


class ActionModule(ActionBase):
    """The step for this task's host, over edgerl's own checked SSH link (not Ansible's connection)."""

    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):  # noqa: ANN001, ANN201, ARG002 - Ansible's signature
        """Ansible's entry point: the task's result dict."""
        return run_step(self, "canary", task_vars)
