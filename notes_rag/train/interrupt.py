"""Ctrl-C during training: the first asks the loop to stop at the next step boundary, where the
training state is consistent and is saved; a second aborts at once."""

from __future__ import annotations

import signal
import threading


class GracefulStop(KeyboardInterrupt):
    """Raised at a step boundary after Ctrl-C, when the training state is consistent."""


class StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second aborts at once."""

    def __init__(self):
        self.flag = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def restore(self) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
