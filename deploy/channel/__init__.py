"""The pull channel's host side: a TUF repository in a folder that any static server serves as it is.

`edgerl channel init` makes it, `edgerl publish` adds a release and its rollout, `channel stage|refresh` re-sign
what changes, `channel status` reads the boards' reports, `edgerl enroll` sets a board up to pull from it.
The board's side is `deploy/agent/`.
"""
