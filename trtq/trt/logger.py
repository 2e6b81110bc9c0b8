"""TensorRT's log, routed to stderr with a prefix, warnings and above by default."""

from __future__ import annotations

import sys

import tensorrt as trt


class TrtLogger(trt.ILogger):
    def __init__(self, verbose: bool = False) -> None:
        trt.ILogger.__init__(self)
        self.minimum = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING
        self.errors: list[str] = []

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        # Lower values are more severe: INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4.
        if int(severity) <= int(trt.ILogger.Severity.ERROR):
            self.errors.append(msg)
        if int(severity) <= int(self.minimum):
            print(f"[TensorRT {severity.name}] {msg}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """trtq's own warning from the TensorRT path, on stderr like the CLI's (which trtq.trt cannot import)."""
    print(f"trtq: warning: {message}", file=sys.stderr, flush=True)
