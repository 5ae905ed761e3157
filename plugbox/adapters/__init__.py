"""Adapters that put plugbox's sandboxed plugins inside real agent frameworks.

Each adapter is a module of its own, imported on demand, since each needs its framework
installed (an extra: ``pip install 'plugbox[adk]'`` / ``'plugbox[openai-agents]'``):

- ``plugbox.adapters.adk``: a Google ADK ``BasePlugin`` forwarding every ADK plugin
  callback to a ``PluginHost`` running ``specs.AGENT``;
- ``plugbox.adapters.openai_agents``: OpenAI Agents SDK run hooks, guardrails and filters
  forwarding to the same hooks.
"""
