"""Options shared by every command (set by the top-level callback)."""

from dataclasses import dataclass


@dataclass
class GlobalOptions:
    verbose: bool = False


OPTIONS = GlobalOptions()
