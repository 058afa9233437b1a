"""The documentation of edgerl.board.canary; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: canary
short_description: Play canary games on a board and judge them by the bundle's evaluated score
description:
  - >-
    Plays I(games) games on the board's current release (the board's own loop, as C(edgerl run)), brings their
    report back, judges their mean against the evaluated mean in the bundle's manifest (or I(against)'s, for a
    distilled student judged by its teacher) minus I(score_margin), and replays the report on the controller,
    as C(edgerl deploy --waves ... --canary-games N) judges its first wave. Fails the host below the floor.
  - Changes nothing on the board (C(changed=false)); check mode says the floor without playing.
options:
  bundle: {description: The bundle that was deployed (its manifest holds the evaluation)., type: path, required: true}
  games: {description: Games to play., type: int, default: 3}
  seed: {description: Emulator seed of the games., type: int, default: 0}
  score_margin: {description: Points below the evaluated mean the canary may score., type: float, default: 2.0}
  against: {description: Judge by this bundle's evaluated mean instead., type: path}
  reports: {description: The controller's folder for the games' reports., type: path, default: reports}
extends_documentation_fragment: [edgerl.board.link]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.canary:
    bundle: build/bundle
    games: 3
"""

RETURN = r"""
mean: {description: The canary games' mean score., type: float, returned: success}
floor: {description: The lowest mean that passes., type: float, returned: always}
"""
