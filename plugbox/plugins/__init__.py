"""Built-in plugins for ``plugbox.specs.AGENT``, run sandboxed like any other plugin.

They are plain plugin classes, referenced by dotted module::

    await host.add("plugbox.plugins.logging")
    await host.add("plugbox.plugins.global_instruction",
                   config={"instruction": "You must follow security policies."})
    await host.add("plugbox.plugins.message_logger", config={"path": "/tmp/messages.jsonl"})

- ``logging``: start and end of agent, model and tool calls, with their durations,
  through stdlib logging (the host shows them under ``plugbox.plugin.logging``).
- ``global_instruction``: prepends a system instruction to every model request, or
  merges it into the request's first system message.
- ``message_logger``: a message logger for the agent lifecycle: logs
  every user message, model response and tool result, optionally as JSON lines.

Like every plugin they import nothing from plugbox, so each also works in-process.
This package imports nothing itself: a worker imports only the plugin it loads.
"""
