"""Loading a plugin by reference, and checking it against the host's hook specs.

References: ``path/to/file.py``, ``path/to/file.py:ClassName``, ``package.module``,
``package.module:ClassName``. Without a class name the module must define exactly one
class whose name ends with ``Plugin`` (a ``typing.Protocol`` or an abstract base class
describing plugins, such as an ``AgentPlugin`` protocol beside them, is not a
candidate).

An inline plugin (a class the host was handed as an object, ``host.add(SomeClass)``)
arrives as ``Start.inline``: the class pickled by value with multiprocess's (dill's)
pickler, imported only then, and only host-to-worker bytes are unpickled.

Loading is two steps around ``initialize(config)``: ``instantiate`` imports the code
and creates the instance; ``check_hooks`` matches its methods to the spec after
``initialize`` has run, so a plugin may install hook methods there from its config
(``plugbox.testing.faults`` does).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ..errors import PluginIntegrityError
from .signatures import POSITIONAL_ONLY as _POSITIONAL_ONLY
from .signatures import VAR_KEYWORD as _VAR_KEYWORD
from .signatures import VAR_POSITIONAL as _VAR_POSITIONAL
from .signatures import is_async, near_hook, parameters


class LoadError(Exception):
    """The reference cannot be turned into a plugin; the message says why."""


@dataclass
class Source:
    """A resolved reference: a module to import, or a file's text read up front."""

    ref: str
    module: str | None = None
    path: str | None = None
    text: bytes | None = None
    class_name: str | None = None
    inline: bytes | None = None
    #: ``text`` compiled ahead of the import (``precompile``)
    code: types.CodeType | None = None


@dataclass
class LoadedPlugin:
    """The plugin instance and what the worker needs to dispatch to it."""

    instance: Any
    name: str
    version: str
    hooks: dict[str, list[str]]
    takes_all: dict[str, bool]
    problems: list[str] = field(default_factory=list)


HOOKLIKE = re.compile(r"^(before|after|on|pre|post)_[a-z0-9_]+$", re.IGNORECASE)
LIFECYCLE = frozenset({"initialize", "close"})
KIND_WORDS = {"sync": "a plain function (def)", "async": "a coroutine function (async def)"}


def parse_ref(ref: str, inline: bytes | None = None) -> Source:
    """Split a reference into module or file, and optional class name.

    A file plugin's text is read here, before confinement drops privileges, so a
    plugin only root can read still loads; it is compiled only after confinement.
    With ``inline`` (a class serialized by the host) ``ref`` only names it.
    """
    if inline is not None:
        return Source(ref=ref, inline=inline)
    target, class_name = ref, None
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isidentifier() and head:
        target, class_name = head, tail
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            raise LoadError(f"no such file: {path}") from None
        except OSError as exc:
            raise LoadError(f"cannot read {path}: {exc.strerror}") from None
        return Source(ref=ref, path=path, text=text, class_name=class_name)
    if not all(part.isidentifier() for part in target.split(".")):
        raise LoadError(f"{target!r} is neither a .py file nor a dotted module name")
    return Source(ref=ref, module=target, class_name=class_name)


def verify_text(source: Source, expected: str) -> None:
    """The file plugin's bytes, as read by ``parse_ref`` (and compiled later), must
    hash to ``expected``; PluginIntegrityError if not."""
    import hashlib  # only when a hash is pinned: a worker does not load OpenSSL otherwise

    assert source.text is not None
    actual = hashlib.sha256(source.text).hexdigest()
    if actual != expected.lower():
        what = f"the bytes of {source.path}"
        raise PluginIntegrityError(source.ref, expected, actual, checked_by="worker", what=what)


def verify_module(source: Source, expected: str, scratch: Any) -> None:
    """The module plugin's code must hash to ``expected`` (``plugbox.trust.integrity``),
    and nothing runs from it later but the bytes hashed (``guard_source_loads``: each
    file checked again as it is read, no bytecode, extensions from a checked copy).

    Bytecode caches are neither read nor written (``sys.pycache_prefix`` points into
    the worker's scratch directory besides).
    """
    from ..trust import integrity  # only when a hash is pinned

    assert source.module is not None
    try:
        located = integrity.locate(source.module)
    except LookupError as exc:
        raise LoadError(str(exc)) from None
    if located.file is not None:
        actual = integrity.file_digest(located.file)
        manifest = {os.path.realpath(located.file): actual}
    else:
        actual, manifest = integrity.tree_manifest(located.dirs)
    if actual != expected.lower():
        what = f"the {located.describe()}"
        raise PluginIntegrityError(source.ref, expected, actual, checked_by="worker", what=what)
    sys.dont_write_bytecode = True
    sys.pycache_prefix = os.path.join(str(scratch or "/nonexistent"), ".plugbox-pycache")
    integrity.guard_source_loads(manifest, located.dirs, ref=source.ref)


def distribution_of(module: str) -> tuple[str, str]:
    """(name, version) of the installed distribution that provides ``module``'s
    top-level package, or ("", "") when none does. Reads metadata only: first the
    distribution named like the package (the usual case, one directory lookup), and
    only when that is not it the metadata of every installed distribution."""
    import importlib.metadata as metadata

    top = module.split(".")[0]
    for guess in dict.fromkeys((top, top.replace("_", "-"))):
        try:
            dist = metadata.distribution(guess)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        if _provides(dist, top):
            return str(dist.metadata["Name"] or guess), str(dist.version or "")
    names = metadata.packages_distributions().get(top, [])
    for name in dict.fromkeys(names):  # several for a namespace package: the first
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        return str(dist.metadata["Name"] or name), str(dist.version or "")
    return "", ""


def _provides(dist: Any, top: str) -> bool:
    """Whether ``dist`` lists ``top`` among its top-level names, as
    ``packages_distributions`` would find it (top_level.txt, else its RECORD)."""
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return top in listed.split()
    for file in dist.files or ():
        parts = file.parts
        name = parts[0] if len(parts) > 1 else file.name.partition(".")[0]
        if name == top:
            return True
    return False


def file_module_name(path: str) -> str:
    """The name a plugin file's module is imported under (``import_source``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return "plugbox_plugin_" + re.sub(r"\W", "_", stem)


def import_source(source: Source) -> types.ModuleType:
    """Import the module or execute the file (plugin code runs from here on)."""
    if source.module is not None:
        try:
            return importlib.import_module(source.module)
        except ModuleNotFoundError as exc:
            if exc.name and source.module.startswith(exc.name):
                raise LoadError(f"no module named {exc.name!r}") from None
            raise
    assert source.path is not None and source.text is not None
    name = file_module_name(source.path)
    module = types.ModuleType(name)
    module.__file__ = source.path
    sys.modules[name] = module
    # the modules beside it are found after every other module (``sandbox.reads``)
    code = source.code or compile(source.text, source.path, "exec")
    exec(code, module.__dict__)
    return module


def precompile(source: Source) -> None:
    """Compile a file plugin's text ahead of ``import_source`` (a standby worker does,
    while it waits: compiling runs none of the plugin's code). A text that does not
    compile is left to fail where it would have, when it is imported."""
    if source.text is None or source.path is None or source.code is not None:
        return
    try:
        source.code = compile(source.text, source.path, "exec")
    except (SyntaxError, ValueError):
        pass


def find_class(module: types.ModuleType, source: Source) -> type:
    """The plugin class: the one named, or the one class whose name ends with Plugin."""
    if source.class_name is not None:
        cls = getattr(module, source.class_name, None)
        if not isinstance(cls, type):
            raise LoadError(f"no class {source.class_name!r} in {source.path or source.module}")
        return cls
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and obj.__name__.endswith("Plugin")
        and not getattr(obj, "_is_protocol", False)
        and not inspect.isabstract(obj)
    ]
    own = [c for c in classes if c.__module__ == module.__name__]
    candidates = own or classes
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise LoadError("no class whose name ends with 'Plugin' (name one with ref:ClassName)")
    names = ", ".join(sorted(c.__name__ for c in candidates))
    raise LoadError(f"several candidate plugin classes ({names}): name one with ref:ClassName")


def check_hooks(instance: Any, spec: dict[str, Any], plugin: str) -> LoadedPlugin:
    """Match the instance's methods to the spec (pluggy-style validation).

    A hook method with an argument the spec does not declare, with positional-only or
    ``*args`` parameters, or that is sync where the spec's ``kind`` says async (or the
    reverse), is a LoadError naming plugin, hook and argument or kind. A public method
    named like a hook that the spec lacks (``before_x``, ``on_x``..., or a near miss of
    a declared hook such as ``BeforeModel`` or ``before_modle``) is recorded as a
    problem, and so is a plugin that implements none of the spec's hooks.
    """
    hooks: dict[str, list[str]] = {}
    takes_all: dict[str, bool] = {}
    problems: list[str] = []
    names = list(spec)
    for attr in dir(instance):
        if attr.startswith("_") or attr in LIFECYCLE:
            continue
        try:
            method = getattr(instance, attr)
        except Exception:  # a property that raises is not a hook
            continue
        if not callable(method):
            continue
        if attr not in spec:
            meant = near_hook(attr, names)
            if meant is not None or HOOKLIKE.match(attr):
                hint = f" (did you mean {meant!r}?)" if meant is not None else ""
                problems.append(
                    f"plugin {plugin!r}: method {attr!r} looks like a hook "
                    f"but the host declares no hook of that name{hint}"
                )
            continue
        kind = spec[attr].get("kind", "either")
        if kind in KIND_WORDS and is_async(method) != (kind == "async"):
            found = "async def" if is_async(method) else "def"
            raise LoadError(
                f"plugin {plugin!r}: hook {attr!r} is defined with {found!r}, "
                f"but the spec requires {KIND_WORDS[kind]}"
            )
        declared = spec[attr]["args"]
        try:
            params = parameters(method)
        except (TypeError, ValueError) as exc:
            raise LoadError(f"plugin {plugin!r}: hook {attr!r} has no signature: {exc}") from None
        accepted: list[str] = []
        all_args = False
        for p_name, p_kind in params:
            if p_kind is _VAR_KEYWORD:
                all_args = True
            elif p_kind is _VAR_POSITIONAL or p_kind is _POSITIONAL_ONLY:
                raise LoadError(
                    f"plugin {plugin!r}: hook {attr!r} parameter {p_name!r} must be "
                    f"passable by keyword (hook arguments are opt-in by name)"
                )
            elif p_name not in declared:
                raise LoadError(
                    f"plugin {plugin!r}: hook {attr!r} takes argument {p_name!r}, "
                    f"which the spec does not have (it has: {', '.join(declared)})"
                )
            else:
                accepted.append(p_name)
        hooks[attr] = list(declared) if all_args else accepted
        takes_all[attr] = all_args
    if not hooks and names:
        problems.append(
            f"plugin {plugin!r} implements none of the host's hooks "
            f"({', '.join(names)}): it will never be called"
        )
    return LoadedPlugin(
        instance=instance,
        name=plugin,
        version="",
        hooks=hooks,
        takes_all=takes_all,
        problems=problems,
    )


def prepare_inline() -> None:
    """Import multiprocess's pickler (a dependency, not plugin code) before the sandbox
    is applied: importing dill under it opens ``/dev/null`` for writing, which Landlock
    denies afterwards."""
    import multiprocess.reduction  # noqa: F401


def load_inline(source: Source) -> type:
    """The class the host pickled by value; plugin code runs from here on."""
    assert source.inline is not None
    # imported by prepare_inline, before the sandbox: only for inline plugins
    from multiprocess.reduction import ForkingPickler

    try:
        cls = ForkingPickler.loads(source.inline)
    except ModuleNotFoundError as exc:
        raise LoadError(
            f"the inline class refers to module {exc.name!r}, which the worker "
            f"cannot import (define the class and what it uses in __main__ or "
            f"inside a function to send them by value)"
        ) from None
    if not isinstance(cls, type):
        raise LoadError(f"the inline plugin is a {type(cls).__name__}, not a class")
    return cls


def instantiate(source: Source) -> Any:
    """Import the plugin's code and instantiate its class (without arguments)."""
    if source.inline is not None:
        cls = load_inline(source)
    else:
        cls = find_class(import_source(source), source)
    try:
        return cls()
    except TypeError as exc:
        raise LoadError(f"cannot instantiate {cls.__name__}() without arguments: {exc}") from None


def plugin_name(instance: Any) -> str:
    """The plugin's ``name`` attribute, else its class name."""
    name = getattr(instance, "name", None)
    return name if isinstance(name, str) and name else type(instance).__name__


def check(instance: Any, spec: dict[str, Any]) -> LoadedPlugin:
    """Validate the (initialized) instance's hooks; name and version as it has them."""
    loaded = check_hooks(instance, spec, plugin_name(instance))
    loaded.version = str(getattr(instance, "version", "") or "")
    return loaded


def load(source: Source, spec: dict[str, Any]) -> LoadedPlugin:
    """Import the plugin, instantiate its class and validate its hooks (no initialize)."""
    return check(instantiate(source), spec)
