"""Answers each call, then exits with status 0 (its reply is sent before the exit)."""

import asyncio
import os
import sys


class ReplyThenExitPlugin:
    name = "reply-then-exit"
    version = "1.0"

    async def process(self, input_data):
        # the answer goes out as this returns (the hook ends in its first step); the exit
        # comes at the loop's next turn, so the host sees the reply, the channel's EOF and
        # the exit status close together, in whichever order it happens to read them
        print(f"answered {input_data}", file=sys.stderr, flush=True)  # (in its report)
        asyncio.get_running_loop().call_soon(os._exit, 0)
        return {"answered": input_data}
