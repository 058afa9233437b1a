"""The argument parser both command lines use: a usage error is one line, exit 2, like every other error."""

from __future__ import annotations

import argparse
from typing import NoReturn

from device.manifest import EXIT_BAD_INPUT


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage error said in one line that points at --help instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        """Exit 2 with `PROG: error: MESSAGE (see PROG --help)`."""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
