"""What a worker may read and import from: the interpreter, plugbox, the plugin's own
code and ``Sandbox(read_only=...)``; nothing merely because it is on ``sys.path``.
The rule is stated for users in docs/sandbox.md ("What a worker may read").
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from . import pidns
from .layers import BASE_READ_ONLY

#: the most modules (files and package directories) beside a file plugin that are
#: granted, one Landlock rule each; past it, the rest are refused by name on import
MAX_SIBLINGS = 1024
#: plugbox's own package directory
PLUGBOX_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: (kind, paths) of a top-level module: ("module", (file,)), ("package", (dir, init)),
#: or ("namespace", dirs)
Location = tuple[str, tuple[str, ...]]


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _pth_paths(sitedir: str) -> list[str]:
    """The directories the ``.pth`` files of ``sitedir`` add to the import path (their
    path lines, as ``site`` reads them; ``import`` lines add none)."""
    try:
        names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth") and n[0] != ".")
    except OSError:
        return []
    found = []
    for name in names:
        try:
            with open(os.path.join(sitedir, name), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip() or line.startswith(("#", "import ", "import\t")):
                continue
            path = os.path.join(sitedir, line.rstrip())
            if os.path.exists(path):
                found.append(path)
    return found


def _editable_paths() -> list[str]:
    """The source directories of editable installs, which a ``.pth`` file's import line
    maps by name (setuptools' ``__editable___*_finder`` modules) rather than adds."""
    found = []
    for name, module in list(sys.modules.items()):
        if name.startswith("__editable__") and name.endswith("_finder"):
            mapping = getattr(module, "MAPPING", None)
            if isinstance(mapping, dict):
                found += [p for p in mapping.values() if isinstance(p, str)]
    return found


@functools.cache
def interpreter_paths() -> tuple[str, ...]:
    """What every worker may read of the interpreter: its standard library (with
    lib-dynload and the stdlib zip), its site-packages directories and what their
    ``.pth`` files add, and plugbox's own package. Computed once (in the zygote)."""
    import site

    major, minor = sys.version_info[:2]
    stdlib = getattr(sys, "_stdlib_dir", None) or os.path.dirname(os.__file__)
    found = [stdlib, os.path.join(stdlib, "lib-dynload")]
    for prefix in dict.fromkeys((sys.base_prefix, sys.base_exec_prefix)):
        lib = os.path.join(prefix, sys.platlibdir)
        found += [
            os.path.join(lib, f"python{major}.{minor}", "lib-dynload"),
            os.path.join(lib, f"python{major}{minor}.zip"),
        ]
    sites = list(getattr(site, "getsitepackages", list)())  # (absent from old virtualenvs)
    on_path = {_norm(p) for p in sys.path if p}
    user_site = site.getusersitepackages()
    if _norm(user_site) in on_path:  # the host had its user site enabled
        sites.append(user_site)
    for sitedir in sites:
        found += [sitedir, *_pth_paths(sitedir)]
    found += _editable_paths()
    found.append(PLUGBOX_DIR)
    return tuple(dict.fromkeys(_norm(p) for p in found))


@functools.cache
def interpreter_files() -> tuple[str, ...]:
    """What running the interpreter again needs beyond ``interpreter_paths``: the file
    ``sys.executable`` resolves to, a virtual environment's ``pyvenv.cfg``, and the
    shared libraries the interpreter has mapped from elsewhere than the system's
    directories (``libpython`` of a build with ``--enable-shared``). Computed once."""
    executable = os.path.realpath(sys.executable) if sys.executable else ""
    found = [executable, os.path.join(sys.prefix, "pyvenv.cfg")]
    roots = (*BASE_READ_ONLY, *interpreter_paths())
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            mapped = {line.split(None, 5)[-1].strip() for line in f if " /" in line}
    except OSError:
        mapped = set()
    for path in sorted(mapped):
        name = os.path.basename(path)
        if name.startswith("lib") and ".so" in name and not _under(path, roots):
            found.append(_norm(path))
    return tuple(p for p in dict.fromkeys(found) if os.path.isfile(p))


@functools.cache
def interpreter_trees() -> tuple[str, ...]:
    """The directories that hold the interpreter and what ``interpreter_files`` names
    (its prefixes and a virtual environment's), none inside another."""
    dirs = sorted(
        {_norm(d) for d in (sys.prefix, sys.base_prefix, sys.base_exec_prefix) if d}
        | {os.path.dirname(f) for f in interpreter_files()}
    )
    outer: list[str] = []
    for d in dirs:
        if not _under(d, outer):
            outer.append(d)
    return tuple(outer)


@functools.cache
def _normalized(entry: str) -> str:
    return _norm(entry)


def prepare() -> None:
    """In the zygote, once: what ``plan`` finds the same in every worker (the
    interpreter's paths and files, the import path's entries normalized)."""
    interpreter_paths()
    interpreter_trees()
    for entry in sys.path:
        _normalized(entry)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _module_name(name: str) -> str | None:
    """The module a file of this name beside a plugin is imported as, if any."""
    for suffix in (*importlib.machinery.SOURCE_SUFFIXES, *importlib.machinery.EXTENSION_SUFFIXES):
        if name.endswith(suffix) and name[: -len(suffix)].isidentifier():
            return name[: -len(suffix)]
    return None


def siblings(directory: str) -> tuple[dict[str, Location], dict[str, str]]:
    """The modules beside a file plugin: its directory's Python files and package
    directories (those with ``__init__.py``), nothing else in it, and the names refused
    (a standard library module's name; past ``MAX_SIBLINGS``) with the reason."""
    modules: dict[str, Location] = {}
    refused: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return modules, refused
    real_dir: str | None = None
    for entry in entries:
        try:
            if entry.is_symlink():  # a rule follows it: only to something in the directory
                real_dir = real_dir or os.path.realpath(directory)
                real = os.path.realpath(entry.path)
                if real == real_dir or not _under(real, (real_dir,)):
                    continue
            if entry.is_dir():
                init = os.path.join(entry.path, "__init__.py")
                name = entry.name if entry.name.isidentifier() and os.path.isfile(init) else None
                location: Location = ("package", (entry.path, init))
            else:
                name = _module_name(entry.name) if entry.is_file() else None
                location = ("module", (entry.path,))
        except OSError:
            continue
        if name is None or name in modules or name in refused:
            continue
        if name in sys.stdlib_module_names:
            refused[name] = (
                f"{entry.path} is not imported: {name!r} is the name of a standard library "
                f"module, which a module beside a plugin may not stand in for"
            )
        elif len(modules) >= MAX_SIBLINGS:
            refused[name] = (
                f"{entry.path} is not imported: the plugin's directory holds more than "
                f"{MAX_SIBLINGS} modules, and only the first {MAX_SIBLINGS} by name are "
                f"granted (put the plugin and its modules in a package of their own)"
            )
        else:
            modules[name] = location
    return modules, refused


def locate_top(module: str) -> Location | None:
    """Where the import system finds ``module``'s top-level name, found without running
    any package code (a top-level spec); None if it is loaded already or not found."""
    top = module.split(".")[0]
    if top in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    search = spec.submodule_search_locations
    if search is not None:
        dirs = tuple(_norm(d) for d in search)
        if spec.origin and spec.has_location and os.path.isfile(spec.origin) and len(dirs) == 1:
            return ("package", (dirs[0], _norm(spec.origin)))
        return ("namespace", dirs) if dirs else None
    if spec.origin and spec.has_location and os.path.isfile(spec.origin):
        return ("module", (_norm(spec.origin),))
    return None


class PluginFinder:
    """A meta path finder for a plugin's own top-level modules, at locations found
    before the sandbox was applied: the directories that hold them need not be
    listable under it (they are not: only the modules themselves are granted)."""

    def __init__(
        self, modules: dict[str, Location], refused: Mapping[str, str] | None = None
    ) -> None:
        self.modules = modules
        self.refused = dict(refused or {})

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """The spec of one of the plugin's top-level modules; None for any other name,
        ImportError (with the reason) for a refused one."""
        if path is not None:
            return None
        found = self.modules.get(fullname)
        if found is None:
            if fullname in self.refused:
                raise ImportError(self.refused[fullname], name=fullname)
            return None
        kind, paths = found
        if kind == "module":
            return importlib.util.spec_from_file_location(fullname, paths[0])
        if kind == "package":
            return importlib.util.spec_from_file_location(
                fullname, paths[1], submodule_search_locations=[paths[0]]
            )
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = list(paths)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached: the locations are fixed at the worker's start."""

    def relocate(self, fix: Callable[[str], str]) -> None:
        """Rewrite the locations as ``fix`` maps paths (``ImportPaths.fix``)."""
        self.modules = {
            name: (kind, tuple(fix(p) for p in paths))
            for name, (kind, paths) in self.modules.items()
        }


@dataclass
class ReadPlan:
    """One worker's read grants and how it finds the plugin's own modules."""

    #: directories the import system needs before privileges are dropped (``ImportPaths``)
    open_dirs: list[str] = field(default_factory=list)
    #: paths read-only under Landlock (the interpreter's, plugbox's and the plugin's)
    grants: list[str] = field(default_factory=list)
    #: the modules beside a file plugin: found after every other finder
    siblings: PluginFinder | None = None
    #: a module plugin's top-level name (and those an inline class imports), where the
    #: import path no longer reaches them
    top: PluginFinder | None = None
    #: with processes, as root: copies of the interpreter's directories (``pidns.
    #: clone_trees``) for a worker whose user cannot reach them by their paths
    trees: list[tuple[str, int]] = field(default_factory=list)

    def relocate(self, fix: Callable[[str], str]) -> None:
        """Rewrite every path as ``fix`` maps it (for an unprivileged user)."""
        self.grants = [fix(p) for p in self.grants]
        for finder in (self.siblings, self.top):
            if finder is not None:
                finder.relocate(fix)

    def install(self) -> None:
        """Put the finders in place: the plugin's own top-level name first (it is what
        the import path found), the modules beside a file plugin last, so no module
        beside it stands in for one the interpreter has."""
        if self.top is not None:
            sys.meta_path.insert(0, self.top)
        if self.siblings is not None:
            sys.meta_path.append(self.siblings)


def pickled_modules(data: bytes) -> list[str]:
    """The top-level names of the modules a pickle imports as it loads (its GLOBAL,
    INST and STACK_GLOBAL opcodes), read without loading it: an inline class sent by
    reference, what one sent by value refers to by name, and the modules dill sends by
    name (``_import_module``). Strings are followed through the memo as ``pickle``
    writes a global (module, name, STACK_GLOBAL)."""
    import pickletools  # only for inline plugins, which load dill besides

    found: list[str] = []
    strings: list[str] = []
    memo: dict[int, str | None] = {}
    last: str | None = None
    module_next = False  # the next string is the name of a module dill imports
    try:
        for op, arg, _pos in pickletools.genops(data):
            pushed: str | None = None
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).split(" ")[0])
                module_next = str(arg) == "dill._dill _import_module"
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                pushed = str(arg)
                if module_next:
                    found.append(pushed)
                    module_next = False
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = last
            elif op.name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                pushed = memo.get(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(strings[-2])
                module_next = strings[-2:] == ["dill._dill", "_import_module"]
            if pushed is not None:
                strings.append(pushed)
            if op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"):
                last = pushed
    except (ValueError, EOFError):  # not a pickle this reads: it fails to load later
        pass
    return list(dict.fromkeys(name.split(".")[0] for name in found if name))


def plan(
    path: str | None,
    module: str | None,
    read_only: Iterable[str],
    inline: bytes | None = None,
    processes: bool = False,
) -> ReadPlan:
    """The read grants of a worker whose plugin is the file ``path``, the module
    ``module`` or the ``inline`` class, with ``read_only`` from its Sandbox; takes the
    import path's entries that nothing grants out of ``sys.path``. A module plugin (and
    what an inline class imports) gets its top-level package, wherever it was found;
    with ``processes``, the interpreter may be run (``interpreter_files``, and as root
    ``interpreter_trees`` cloned). Call before privileges are dropped."""
    interpreter = interpreter_paths()
    extra = [_norm(p) for p in read_only]
    roots = (*BASE_READ_ONLY, *interpreter, *extra)
    tops = [module.split(".")[0]] if module is not None and path is None else []
    if inline is not None:
        tops += pickled_modules(inline)
    located = {top: locate_top(top) for top in dict.fromkeys(tops)}
    sys.path[:] = [p for p in sys.path if p and _under(_normalized(p), roots)]
    result = ReadPlan(open_dirs=[PLUGBOX_DIR], grants=list(interpreter))
    if processes:
        result.grants += interpreter_files()
        if os.geteuid() == 0:  # the worker's user may not reach them: see pidns
            result.trees = pidns.clone_trees(interpreter_trees())
    if path is not None:
        directory = os.path.dirname(path)
        modules, refused = siblings(directory)
        result.open_dirs.append(directory)
        result.grants.append(path)
        for _kind, paths in modules.values():
            result.grants.append(paths[0])
        result.siblings = PluginFinder(modules, refused)
    own: dict[str, Location] = {}
    for top, location in located.items():
        if location is None or all(_under(p, roots) for p in location[1]):
            continue  # loaded already, not found, or where the import path still reaches
        kind, paths = location
        own[top] = location
        dirs = paths if kind == "namespace" else paths[:1]
        result.grants += dirs
        result.open_dirs += [os.path.dirname(d) for d in dirs]
    if own:
        result.top = PluginFinder(own)
    return result
