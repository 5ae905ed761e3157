"""plugbox inside the OpenAI Agents SDK: sandboxed plugins on a real ``Runner.run``.

Install with ``pip install 'plugbox[openai-agents]'``. Open a ``PluginHost`` on
``plugbox.specs.AGENT``, add plugins, then wire each run::

    from agents import Runner
    from plugbox.adapters.openai_agents import wire

    wired = wire(host, agent, run_config=config)          # one per run
    result = await Runner.run(wired.agent, "hi", hooks=wired.hooks,
                              run_config=wired.run_config)

or, the same in one line: ``await run(host, agent, "hi", run_config=config)``.

``wire`` leaves ``agent`` and ``run_config`` as they are and returns copies: the agent
(and every ``Agent`` in its ``handoffs``, recursively) with its function tools wrapped
and a ``Model`` instance wrapped; the run config with a wrapped model provider and an
input guardrail in front of yours; and run hooks that also call ``hooks``. Where the
SDK lets work be changed or blocked, the AGENT hooks keep their semantics
(``first_result``, changes in place, fail closed); where it only observes, what
happens is delivered as ``on_event`` events:

=========================  ====================  ==========================================
SDK point                  AGENT hook            what a plugin can do there
=========================  ====================  ==========================================
input guardrail            ``on_user_message``   replace or change the user message (the
(before the first agent)                         model sees the new text)
input guardrail            ``before_run``        non-None: the run stops,
                                                 ``InputGuardrailTripwireTriggered``
``on_agent_start``         ``before_agent``      non-None: the run stops, the same tripwire
model (wrapped)            ``before_model``      change the request in place; non-None is
                                                 the response: the model is not called
model (wrapped)            ``after_model``       non-None (or a change) replaces the response
model raised               ``on_model_error``    non-None is the response; None: it raises
function tool (wrapped)    ``before_tool``       change ``args`` in place; non-None is the
                                                 result: the tool is not called
function tool (wrapped)    ``after_tool``        non-None (or a change) replaces the result
function tool raised       ``on_tool_error``     non-None is the result; None: it raises
``on_agent_end`` (final)   ``after_agent``       non-None or a change: the run stops,
                                                 ``OutputGuardrailTripwireTriggered``
``on_agent_end`` (final)   ``after_run``         observe (the final output)
every run hook callback    ``on_event``          observe / tag: ``agent_start``,
                                                 ``llm_start``, ``llm_end``, ``tool_start``,
                                                 ``tool_end``, ``handoff``, ``agent_end``
=========================  ====================  ==========================================

A plugin failure whose policy is ``"raise"`` (the spec's default but for ``on_event``
and ``after_run``) fails the run: ``Runner.run`` raises the plugbox ``PluginFailure``
(``PluginCrashed``, ``PluginTimeout``...) with its ``report``. The exception is of a
subclass that is also the SDK's ``AgentsException`` (``AgentsPluginFailure``), so the
SDK lets it through as it is instead of wrapping it (it wraps other exceptions raised
in tools in a ``UserError``). Failures whose policy is ``"skip"`` are collected in
``WiredRun.failures`` and logged (by the host); the run goes on.

``Runner.run_streamed`` is refused (an ``AgentsException``) rather than run without its
plugins: a model stream cannot be replaced or changed by ``before_model`` /
``after_model``. The SDK runs on asyncio only, and so does this adapter: open the host
on asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents import Agent, RunConfig, Runner, RunResult
from agents.items import TResponseInputItem
from agents.lifecycle import RunHooksBase

from ._openai_failures import AgentsPluginFailure, agents_failure
from ._openai_run import WiredRun

if TYPE_CHECKING:
    from ..host import PluginHost

__all__ = ["AgentsPluginFailure", "WiredRun", "agents_failure", "run", "wire"]


# ---------------------------------------------------------------------- entry points
def wire(
    host: PluginHost,
    agent: Agent[Any],
    *,
    run_config: RunConfig | None = None,
    hooks: RunHooksBase[Any, Any] | None = None,
) -> WiredRun:
    """Wire one run of ``agent`` to ``host``'s plugins (a ``PluginHost`` on
    ``specs.AGENT``, open on asyncio).

    Returns a ``WiredRun``: pass its ``agent``, ``hooks`` and ``run_config`` to
    ``Runner.run``. ``agent``, ``run_config`` and ``hooks`` (your own run hooks, called
    after the adapter's) are not changed. Use one ``WiredRun`` per run: it holds the
    run's context, events and failures (a second run through it is refused). Without
    a ``run_config``, ``await wired.aclose()`` after the run closes the model provider
    made for it. Raises ValueError when the host lacks an AGENT hook.
    """
    return WiredRun(host, agent, run_config, hooks)


async def run(
    host: PluginHost,
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    *,
    run_config: RunConfig | None = None,
    hooks: RunHooksBase[Any, Any] | None = None,
    **kwargs: Any,
) -> RunResult:
    """``Runner.run(agent, input, ...)`` with ``host``'s plugins wired in (``wire``);
    other keyword arguments (``context``, ``max_turns``...) go to ``Runner.run``."""
    wired = wire(host, agent, run_config=run_config, hooks=hooks)
    try:
        return await Runner.run(
            wired.agent, input, hooks=wired.hooks, run_config=wired.run_config, **kwargs
        )
    finally:
        await wired.aclose()
