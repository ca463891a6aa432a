"""A stand-in for python-sounddevice in tests: ``RawOutputStream`` "plays" into memory, no device.

Like PortAudio, it pulls audio from the stream's callback in a thread of its own, a block at a
time, faster than real time here (a tenth of each block's duration); what the callback wrote
is kept in ``played``. ``streams`` holds every stream opened, for the test to inspect.
"""

from __future__ import annotations

import threading
import time
from typing import Any

streams: list[RawOutputStream] = []


class RawOutputStream:
    def __init__(self, *, samplerate: int, channels: int, dtype: str, callback: Any, blocksize: int = 480) -> None:
        assert (channels, dtype) == (1, "int16")
        self.samplerate = samplerate
        self.blocksize = blocksize
        self.callback = callback
        self.played = bytearray()
        self.started = self.stopped = self.closed = False
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._pull, daemon=True)
        streams.append(self)

    def start(self) -> None:
        self.started = True
        self._thread.start()

    def _pull(self) -> None:
        while not self._halt.is_set():
            block = bytearray(self.blocksize * 2)
            self.callback(memoryview(block), self.blocksize, None, None)
            self.played += block
            time.sleep(self.blocksize / self.samplerate / 10)

    def stop(self) -> None:
        self._halt.set()
        if self.started:
            self._thread.join()
        self.stopped = True

    def close(self) -> None:
        self.closed = True
