"""KeyboardInterrupt and SIGINT from a plugin's code, as native code raises them
(OpenBLAS raises SIGINT when it cannot start a thread). ``ask(request)`` (async) and
``ask_sync(request)`` (sync):

- ``"raise"``: raise KeyboardInterrupt in the hook;
- ``"signal"``: ``signal.raise_signal(SIGINT)`` in the hook;
- ``"thread"``: a thread raises SIGINT, the hook joins it;
- ``"wake"`` (async): once the hook waits on the worker's loop, a thread raises SIGINT
  and then wakes the hook: the signal lands outside the hook;
- ``"after"`` (async): SIGINT raised by a callback of the loop once the hook returned;
- anything else: echoed back with the worker's token.

``initialize({"initialize": "interrupt"})`` raises KeyboardInterrupt and
``{"initialize": "exit"}`` calls ``sys.exit(5)``.
"""

import asyncio
import os
import signal
import sys
import threading

BOOT = os.urandom(8).hex()


def _in_thread():
    thread = threading.Thread(target=signal.raise_signal, args=(signal.SIGINT,))
    thread.start()
    thread.join()


class InterruptPlugin:
    name = "real-interrupt"
    version = "1.0"

    def initialize(self, config):
        if config.get("initialize") == "interrupt":
            raise KeyboardInterrupt("interrupted while initializing")
        if config.get("initialize") == "exit":
            sys.exit(5)

    def ask_sync(self, request):
        if request == "raise":
            raise KeyboardInterrupt("interrupted in a sync hook")
        if request == "signal":
            signal.raise_signal(signal.SIGINT)
        if request == "thread":
            _in_thread()
        return {"echo": request, "boot": BOOT}

    async def ask(self, request):
        if request == "raise":
            raise KeyboardInterrupt("interrupted in an async hook")
        if request == "signal":
            signal.raise_signal(signal.SIGINT)
        if request == "thread":
            _in_thread()
        if request == "after":
            asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
        if request == "wake":
            loop = asyncio.get_running_loop()
            woken = loop.create_future()
            waiting = threading.Event()

            def interrupt():
                waiting.wait()
                signal.raise_signal(signal.SIGINT)
                loop.call_soon_threadsafe(woken.set_result, "woken")

            threading.Thread(target=interrupt, daemon=True).start()
            loop.call_soon(waiting.set)  # run by the loop once this hook waits
            return await woken
        return {"echo": request, "boot": BOOT}
