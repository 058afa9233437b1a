"""edgerl.board.service: runs on the controller and calls edgerl's own board step (deploy/ansible/steps.py)."""

from deploy.ansible.plugin import EdgerlAction


class ActionModule(EdgerlAction):
    """The `service` step for this task's host."""

    step = "service"
