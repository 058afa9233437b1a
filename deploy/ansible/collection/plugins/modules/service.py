"""The documentation of edgerl.board.service; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: service
short_description: Run an edgerl bundle as the board's systemd service, committed by the board's own health gate
description:
  - >-
    Runs edgerl's own deploy step with its service (what C(edgerl deploy --service) runs) - the release (the bundle,
    its service settings and your I/O class) checked file by file and self-tested, the user unit written and
    enabled, the switch, then the board's own health gate, which commits the release once it has run healthy for
    I(gate_seconds) or puts the old one back.
  - The host fails when the gate rolled the board back; its verdict, reason and figures are in C(gate).
  - Idempotent, a board whose committed, active release is this one (bundle and settings) is not touched.
  - Check mode reads the board's status and says whether it would switch.
  - The board needs systemd and lingering for its login user (C(loginctl enable-linger USER)); the task says so.
options:
  io: {description: "FILE.py:CLASS on the controller, your plant (a game bundle plays its game without it).",
       type: str}
  hz: {description: Decisions per second (a game plays at its own real time without it)., type: float}
  gate_seconds: {description: How long the new release must run healthy before it is committed., type: float,
                 default: 30}
  max_overrun: {description: The share of the gate's periods that may miss their deadline., type: float,
                default: 0.05}
  record: {description: Record every decision into the board's data/NAME (edgerl.board.data pulls it)., type: str}
extends_documentation_fragment: [edgerl.board.link, edgerl.board.link.release]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.service:
    bundle: build/cart
    io: examples/cart_io.py:Cart
    hz: 10
    gate_seconds: 30
"""

RETURN = r"""
release: {description: The release the board runs now., type: str, returned: success}
gate: {description: "The board's gate, its verdict (committed, rolled_back...), reason and figures.", type: dict,
       returned: always}
"""
