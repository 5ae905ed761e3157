"""Plugins for tests/host/test_calling.py, driven by the config handed to initialize.

Every plugin records the calls it receives, and its ``history`` hook returns them, so
a test can ask afterwards which plugins ran and with which arguments.
"""

import asyncio
import copy


class Recorder:
    """Shared by the plugins below: a name from the config, and a call log."""

    name = "recorder"
    version = "1.0.0"

    def initialize(self, config):
        self.config = config
        self.name = config.get("name", self.name)
        self.calls = []

    def history(self):
        return {"name": self.name, "calls": self.calls}


class ScriptedPlugin(Recorder):
    """Sync hooks (but ``notice``, which is async); answers come from the config."""

    name = "scripted"

    def pick(self, query):
        self.calls.append(["pick", query])
        return self.config.get("answers", {}).get(query)

    def transform(self, text):
        self.calls.append(["transform", text])
        suffix = self.config.get("suffix")
        return None if suffix is None else text + suffix

    def gather(self, item):
        self.calls.append(["gather", item])
        if self.config.get("gather") == "raise":
            raise RuntimeError(f"{self.name} refuses to gather {item}")
        if self.config.get("gather") == "none":
            return None
        return f"{self.name}:{item}"

    async def notice(self, event):
        if self.config.get("notice") == "slow":
            await asyncio.sleep(self.config.get("delay", 0.5))
        if self.config.get("notice") == "raise":
            raise ValueError(f"{self.name} cannot stand {event}")
        self.calls.append(["notice", event])

    def edit(self, doc, meta, tags):
        saw = copy.deepcopy({"doc": doc, "meta": meta, "tags": tags})
        self.calls.append(["edit", saw])
        doc.setdefault("seen", []).append(self.name)
        meta["touched_by"] = self.name
        tags.append(self.name)
        return saw


class AsyncScriptedPlugin(ScriptedPlugin):
    """The same answers from async hooks."""

    name = "async-scripted"

    async def pick(self, query):
        await asyncio.sleep(0)
        return ScriptedPlugin.pick(self, query)

    async def transform(self, text):
        await asyncio.sleep(0)
        return ScriptedPlugin.transform(self, text)

    async def gather(self, item):
        await asyncio.sleep(0)
        return ScriptedPlugin.gather(self, item)


class PartialArgs(Recorder):
    """Hooks that name only some of the spec's arguments (opt-in)."""

    name = "partial"

    def transform(self, note):
        self.calls.append(["transform", {"note": note}])

    def edit(self, meta):
        self.calls.append(["edit", {"meta": meta}])

    def gather(self):
        self.calls.append(["gather", {}])
        return "no arguments needed"


class AllArgs(Recorder):
    """Hooks that take every argument through **kwargs."""

    name = "all-args"

    def transform(self, **kwargs):
        self.calls.append(["transform", kwargs])

    def edit(self, **kwargs):
        self.calls.append(["edit", copy.deepcopy(kwargs)])
        kwargs["doc"]["kwargs_was_here"] = True


class BadReturnPlugin(Recorder):
    """Returns a value msgpack packs but cannot be decoded: a dict with a tuple key."""

    name = "bad-return"

    def gather(self, item):
        self.calls.append(["gather", item])
        if item == "tuple-key":
            return {(1, 2): "pair"}
        return item


class StuckPlugin(Recorder):
    """An async ``notice`` that never returns by itself, and says when it is cancelled."""

    name = "stuck"

    async def notice(self, event):
        self.calls.append(["notice", event])
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.calls.append(["notice cancelled", event])
            raise

    async def history(self):
        # async: a call that comes behind a Cancel runs after the cancelled hook has
        # seen its CancelledError (a sync hook would run at once, as it is decoded)
        return super().history()


class GatedPlugin(Recorder):
    """Proves observe hooks run concurrently, without timing.

    With ``hold``, ``notice`` waits until ``pick(query="release")`` opens its gate.
    Without it, ``pick(query="noticed?")`` waits until ``notice`` has been called.
    """

    name = "gated"

    def initialize(self, config):
        super().initialize(config)
        self.gates = {}

    def _gate(self, name):
        return self.gates.setdefault(name, asyncio.Event())

    async def notice(self, event):
        self.calls.append(["notice", event])
        self._gate("noticed").set()
        if self.config.get("hold"):
            await self._gate("release").wait()
        self.calls.append(["notice done", event])

    async def pick(self, query):
        if self.config.get("hold"):
            if query == "release":
                self._gate("release").set()
                return "released"
            return None
        if query == "noticed?":
            await self._gate("noticed").wait()
            return f"{self.name} was noticed"
        return None
