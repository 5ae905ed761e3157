"""Plugins for tests/host/test_agent_hooks.py: every AGENT hook, driven by the config.

``AgentRecorderPlugin`` implements all twelve hooks (sync); ``AsyncAgentRecorderPlugin``
the same as coroutines. Each call is recorded with a copy of the arguments as the
plugin received them, and the ``history`` hook (added to the AGENT set by the tests)
returns the record, so "not called" is asked, not assumed. Per hook, the config says:

- ``mutate``: ``{hook: {arg: {key: value}}}``, changes made in place before returning;
- ``returns``: ``{hook: value}``, the value returned;
- ``raise``: ``[hook, ...]``, raise RuntimeError (after the changes in place);
- ``crash``: ``[hook, ...]``, exit the worker at once (after the changes in place);
- ``hold`` (async only): ``after_run`` waits until an ``on_user_message`` whose content
  is "release" reaches the plugin. An ``on_user_message`` whose content is "started?"
  returns only once the plugin's ``after_run`` has started.
"""

import asyncio
import copy
import logging
import os

from scripted import Recorder  # a sibling module: the name and the call log

log = logging.getLogger("agent-recorder")


class AgentRecorderPlugin(Recorder):
    name = "agent-recorder"
    version = "1.0.0"

    def close(self):
        log.warning("%s closing", self.name)

    def _hook(self, hook, **args):
        self.calls.append([hook, copy.deepcopy(args)])
        for arg, change in self.config.get("mutate", {}).get(hook, {}).items():
            args[arg].update(change)
        if hook in self.config.get("raise", ()):
            raise RuntimeError(f"{self.name} fails in {hook}")
        if hook in self.config.get("crash", ()):
            os._exit(3)
        return self.config.get("returns", {}).get(hook)

    def on_user_message(self, message, context):
        return self._hook("on_user_message", message=message, context=context)

    def before_run(self, message, context):
        return self._hook("before_run", message=message, context=context)

    def before_agent(self, agent, message, context):
        return self._hook("before_agent", agent=agent, message=message, context=context)

    def after_agent(self, agent, message, output, context):
        return self._hook(
            "after_agent", agent=agent, message=message, output=output, context=context
        )

    def before_model(self, request, context):
        return self._hook("before_model", request=request, context=context)

    def after_model(self, request, response, context):
        return self._hook("after_model", request=request, response=response, context=context)

    def on_model_error(self, request, error, context):
        return self._hook("on_model_error", request=request, error=error, context=context)

    def before_tool(self, tool, args, context):
        return self._hook("before_tool", tool=tool, args=args, context=context)

    def after_tool(self, tool, args, result, context):
        return self._hook("after_tool", tool=tool, args=args, result=result, context=context)

    def on_tool_error(self, tool, args, error, context):
        return self._hook("on_tool_error", tool=tool, args=args, error=error, context=context)

    def on_event(self, event, context):
        return self._hook("on_event", event=event, context=context)

    def after_run(self, message, output, context):
        return self._hook("after_run", message=message, output=output, context=context)


class AsyncAgentRecorderPlugin(AgentRecorderPlugin):
    """The same hooks as coroutines (the ones the tests call async)."""

    name = "async-agent-recorder"

    def initialize(self, config):
        super().initialize(config)
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def on_user_message(self, message, context):
        if message.get("content") == "release":
            self.release.set()
        if message.get("content") == "started?":
            await self.started.wait()
        await asyncio.sleep(0)
        return self._hook("on_user_message", message=message, context=context)

    async def before_model(self, request, context):
        await asyncio.sleep(0)
        return self._hook("before_model", request=request, context=context)

    async def on_event(self, event, context):
        await asyncio.sleep(0)
        return self._hook("on_event", event=event, context=context)

    async def after_run(self, message, output, context):
        self.started.set()
        if self.config.get("hold"):
            await self.release.wait()
        return self._hook("after_run", message=message, output=output, context=context)
