"""A plugin that writes raw bytes on its worker's channel (fd 3), for the live fuzz
test: ``process(input_data={"send": b"..."})`` writes the bytes, then sleeps until the
host kills the worker. ``{"nest": n}`` returns a list nested ``n`` deep. Any other
input is echoed back."""

import os
import stat
import time

CHANNEL_FD = 3


class WirePlugin:
    name = "wire"
    version = "1.0"

    def process(self, input_data):
        if not isinstance(input_data, dict):
            return input_data
        if "nest" in input_data:
            value = []
            for _ in range(input_data["nest"] - 1):
                value = [value]
            return value
        data = input_data.get("send")
        if data is None:
            return input_data
        if not stat.S_ISSOCK(os.fstat(CHANNEL_FD).st_mode):
            raise RuntimeError("fd 3 is not the channel")
        view = memoryview(data)
        while view:
            view = view[os.write(CHANNEL_FD, view) :]
        time.sleep(3600)
