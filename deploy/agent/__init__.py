"""The pull agent: what a board that no laptop can dial runs to take its releases from a TUF channel.

It runs on the board (stdlib, python-tuf and its pure-Python dependencies; Python 3.10 or newer), shipped
flat beside `deploy/board/`'s modules, whose ops it calls in-process: a pulled release goes through the same
staging, sha256, trust policy, self-test and atomic switch as a pushed one.
"""
