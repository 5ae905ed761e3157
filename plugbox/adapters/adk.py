"""plugbox inside Google ADK: sandboxed plugins on a real ADK ``Runner``.

Install with ``pip install 'plugbox[adk]'``. Open a ``PluginHost`` on
``plugbox.specs.AGENT``, add plugins, and give the runner one ``PlugboxPlugin``::

    from google.adk.apps import App
    from google.adk.runners import Runner
    from plugbox import PluginHost, specs
    from plugbox.adapters.adk import PlugboxPlugin, run_async

    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": "..."})
        app = App(name="app", root_agent=agent, plugins=[PlugboxPlugin(host)])
        runner = Runner(app=app, session_service=session_service)
        async for event in run_async(runner, user_id=..., session_id=..., new_message=...):
            ...

``PlugboxPlugin`` is an ADK ``BasePlugin``: ADK calls it like any other plugin, in the
order plugins were given, and it forwards each callback to the host's AGENT hook of the
same meaning, with ADK's objects converted to the hooks' plain data
(``plugbox.adapters._adk_convert``, ``_adk_request``) and what the sandboxed plugins
changed applied back:

- ``on_user_message`` -> ``on_user_message``: a return, or a change in place, is the
  user message ADK stores and runs with;
- ``before_run`` -> ``before_run``: a return ends the run with that output;
- ``before_agent`` -> ``before_agent``: a return is the agent's answer, the agent is
  skipped;
- ``after_agent`` -> ``after_agent`` (``output``: the agent's last answer): a return, or
  a change to ``output``, is a new answer;
- ``before_model`` -> ``before_model``: changes to ``request`` (system instruction,
  messages, model; tools removed) reach the model; a return is the response and the
  model is not called;
- ``after_model`` -> ``after_model`` (``request``: as the model got it): a return
  replaces the response; a change in place is applied to its text and tool calls;
- ``on_model_error`` -> ``on_model_error``: a return is the response instead of the error;
- ``before_tool`` -> ``before_tool``: changes to ``args`` reach the tool; a return is the
  result and the tool is not called;
- ``after_tool`` -> ``after_tool``: a return, or a change to ``result``, is the result;
- ``on_tool_error`` -> ``on_tool_error``: a return is the result instead of the error;
- ``on_event`` -> ``on_event``: tags go to ``event.custom_metadata["tags"]``, a changed
  text or author onto the event (before ADK 2.x stores and yields it; ADK 1.x stores
  it first);
- ``after_run`` -> ``after_run`` (observe; ``output``: the run's last answer).

Changes to ``context["state"]`` are written to ADK's session state (through ADK's state
delta, so they persist; removing a key is not carried over). A hook no added plugin
implements costs nothing: its arguments are not even converted. Not applied, because
ADK has used them by then: a change to ``message`` in ``before_run`` and
``before_agent`` (the session holds it already: change it in ``on_user_message``; a
warning is logged), to an event's tool calls or results, and tools a plugin adds to a
request. ADK's notification-only ``on_agent_error`` and ``on_run_error`` callbacks
(2.x) have no AGENT hook and are not forwarded.

Failures follow the hook's policy (``specs.AGENT``: ``on_event`` and ``after_run`` skip,
the others raise). A skipped failure is logged by the host, in ``host.reports``, and the
run goes on. A raised one fails the run: ADK wraps any exception a plugin raises in a
``RuntimeError`` ("Error in plugin 'plugbox' during ..."), with the plugbox
``PluginFailure`` as its ``__cause__``; iterate with ``run_async`` here, or wrap the
iteration in ``with unwrap_plugin_failures():``, and the ``PluginFailure`` itself
(``PluginCrashed``, ``PluginTimeout``...) is what is raised. Either way the worker that
failed was killed or restarted by the host; the framework's process goes on.

The plugin does not own the host: ADK's ``Runner.close()`` leaves it open; close it
yourself (``async with``). ADK runs on asyncio, so open the host on asyncio, on the
loop that runs the agent. For ADK's blocking ``Runner.run`` (which runs the agent on a
loop of its own, in another thread), pass a ``plugbox.SyncPluginHost`` instead (ADK
1.x's ``Runner.run`` drops an error raised in the run, a plugin failure included; 2.x
re-raises it).

Tested with google-adk 1.14.0 and 2.13.0 (``tests/adapters/test_adk.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any

from google.adk.events.event import Event

from ..errors import PluginFailure
from ._adk_convert import TAGS_KEY
from ._adk_plugin import PlugboxPlugin

if TYPE_CHECKING:
    from google.adk.runners import Runner

__all__ = ["TAGS_KEY", "PlugboxPlugin", "plugin_failure_in", "run_async", "unwrap_plugin_failures"]


# ---------------------------------------------------------------------- failures
def plugin_failure_in(exc: BaseException) -> PluginFailure | None:
    """The ``PluginFailure`` that caused ``exc`` (``exc`` itself, its ``__cause__`` or
    ``__context__`` chain, or within an exception group), or None."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PluginFailure):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None


@contextmanager
def unwrap_plugin_failures() -> Iterator[None]:
    """Raise the plugbox ``PluginFailure`` behind an exception ADK wrapped it in.

    ADK turns any exception a plugin raises into a ``RuntimeError``; around an ADK
    run (``async for ... in runner.run_async(...)`` or ``runner.run(...)``) this
    re-raises the ``PluginFailure`` (with its ``report``) instead. Other exceptions
    pass unchanged.
    """
    try:
        yield
    except Exception as exc:
        failure = plugin_failure_in(exc)
        if failure is None or failure is exc:
            raise
        raise failure from None


async def run_async(runner: Runner, /, **kwargs: Any) -> AsyncIterator[Event]:
    """``runner.run_async(**kwargs)``'s events; a plugin failure that failed the run
    is raised as the plugbox ``PluginFailure`` (see ``unwrap_plugin_failures``)."""
    with unwrap_plugin_failures():
        async with aclosing(runner.run_async(**kwargs)) as events:
            async for event in events:
                yield event
