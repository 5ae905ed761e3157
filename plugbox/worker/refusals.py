"""Refusals that name their setting: an audit hook refuses, before the kernel would,
what the worker's sandbox refuses anyway, with a message naming the Sandbox or Limits
setting that allows it. It words the refusal; the layers below it are the sandbox."""

from __future__ import annotations

import _posixsubprocess  # loaded once in the zygote: its fork_exec is wrapped below
import _thread
import errno
import os
import resource
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from . import writable
from .sandbox import layers as sandbox
from .sandbox.process import DEFAULT_LIMITS
from .writable import WritablePaths

#: the settings a refusal names (``FailureReport.refused`` takes these values)
NETWORK = "Sandbox.network"
PROCESSES = "Sandbox.processes"
SCRATCH = "Sandbox.scratch"
OPEN_FILES = "Limits.open_files"
FILE_SIZE = "Limits.file_size_mb"
SETTINGS = (NETWORK, PROCESSES, SCRATCH, OPEN_FILES, FILE_SIZE)

#: the attribute a refusal raised here carries: the setting it names
TAG = "_plugbox_refused"

_INET = (socket.AF_INET, socket.AF_INET6)
_UNIX_CONNECTED = (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
_WRITE = os.O_ACCMODE | os.O_CREAT  # O_WRONLY, O_RDWR or O_CREAT
#: the events about processes, and how each names what it would start
_PROCESS_EVENTS: dict[str, Callable[[tuple[Any, ...]], str]] = {
    "os.system": lambda a: f"os.system({os.fsdecode(a[0])!r})",
    "subprocess.Popen": lambda a: f"subprocess {a[1]!r}",
    "os.fork": lambda a: "os.fork()",
    "os.forkpty": lambda a: "os.forkpty()",
    "os.posix_spawn": lambda a: f"os.posix_spawn({a[0]!r})",
    "os.exec": lambda a: f"os.exec*({a[0]!r})",
}

Handler = Callable[[tuple[Any, ...]], None]


class Refusals:
    """What the worker refuses and how it words it: the plugin's name, the limit
    values, the writable paths, and which kinds of refusal the layers in force make."""

    def __init__(self, limits: Mapping[str, Any], writable: list[str] | None) -> None:
        self.who = "this plugin"
        self.open_files = int(limits.get("open_files", DEFAULT_LIMITS.open_files))
        self.file_size_mb = int(limits.get("file_size_mb", DEFAULT_LIMITS.file_size_mb))
        #: writes are refused outside these (None: not by Landlock, nor here)
        self.paths = None if writable is None else WritablePaths(writable)
        self.network_layers: dict[str, bool] = {}
        self.probing: set[int] = set()  # threads inside a name lookup of ours

    # ------------------------------------------------------------ wording
    def refuse(
        self, setting: str, what: object, path: str | None = None, code: int = errno.EPERM
    ) -> None:
        """Raise the refusal of ``what`` by ``setting``, as the OSError the layer below
        would give (``code``: EPERM from seccomp, EACCES from Landlock, ENETUNREACH
        from the network namespace), with ``path`` as its filename."""
        message = f"{self.text(setting)} (refused: {what})"
        exc = OSError(code, message) if path is None else OSError(code, message, path)
        raise tagged(exc, setting)  # (OSError() makes the errno's subclass)

    def text(self, setting: str) -> str:
        """The sentence that names ``setting`` as what would allow the refused thing."""
        who = self.who
        if setting == NETWORK:
            return f"network is off for {who}: Sandbox(network=True) allows it"
        if setting == PROCESSES:
            return f"new processes are off for {who}: Sandbox(processes=True) allows them"
        if setting == SCRATCH:
            # the scratch directory first: where the plugin is meant to write (a private
            # /dev/shm holding it is writable too, for semaphores and shared memory)
            where = (self.paths.named if self.paths else None) or "no directory"
            return (
                f"writes outside its scratch directory are off for {who}: it may write "
                f"in {where}, which Sandbox(scratch=...) sets"
            )
        if setting == OPEN_FILES:
            n = self.open_files
            return f"too many open files: Limits(open_files={n}) allows {n} for {who}"
        n = self.file_size_mb
        return f"file too large: Limits(file_size_mb={n}) allows files up to {n} MB for {who}"

    # ------------------------------------------------------------ network
    def socket_new(self, args: tuple[Any, ...]) -> None:
        """socket.socket(family, type, proto): seccomp lets only AF_UNIX stream sockets
        be made. A type of -1 wraps an existing fd (``fileno=``): nothing is made."""
        family, kind = args[1], args[2]
        if kind < 0:
            return
        if family in _INET or (family == socket.AF_UNIX and kind & 0xF not in _UNIX_CONNECTED):
            self.refuse(NETWORK, f"a socket of {socket.AddressFamily(family).name}")

    def connect(self, args: tuple[Any, ...]) -> None:
        """connect() and connect_ex(), refused by the first layer that would refuse it:
        seccomp (every connect), Landlock (TCP), the network namespace (no route)."""
        sock, address = args[0], args[1]
        layers = self.network_layers
        if sock.family in _INET:
            if layers["landlock_tcp"] and sock.type & 0xF == socket.SOCK_STREAM:
                self.refuse(NETWORK, f"connect to {address!r}", code=errno.EACCES)
            if layers["network_namespace"]:
                self.refuse(NETWORK, f"connect to {address!r}", code=errno.ENETUNREACH)
            if layers["seccomp"]:
                self.refuse(NETWORK, f"connect to {address!r}")
        elif sock.family == socket.AF_UNIX and layers["seccomp"]:
            if isinstance(address, (str, bytes)) and address[:1] in ("\0", b"\0"):
                return  # abstract: Landlock may scope it whatever the network setting
            self.refuse(NETWORK, f"connect to the unix socket {address!r}")

    def bind(self, args: tuple[Any, ...]) -> None:
        sock = args[0]
        if sock.family in _INET:
            if self.network_layers["landlock_tcp"] and sock.type & 0xF == socket.SOCK_STREAM:
                self.refuse(NETWORK, f"bind to {args[1]!r}", code=errno.EACCES)
            if self.network_layers["seccomp"]:
                self.refuse(NETWORK, f"bind to {args[1]!r}")

    def sendto(self, args: tuple[Any, ...]) -> None:
        if args[0].family in _INET:
            unreachable = self.network_layers["network_namespace"]
            code = errno.ENETUNREACH if unreachable else errno.EPERM
            self.refuse(NETWORK, f"send to {args[1]!r}", code=code)

    def lookup(self, args: tuple[Any, ...]) -> None:
        """A name lookup: tried here first (the hosts file answers some names without
        the network); if it fails, it failed for want of the network, which is said."""
        host = args[0]
        me = _thread.get_ident()
        if not host or me in self.probing or _numeric(host):
            return
        self.probing.add(me)
        try:
            if len(args) == 1:
                socket.gethostbyname(host)
            else:
                socket.getaddrinfo(host, args[1], args[2], args[3], args[4])
        except socket.gaierror as exc:
            name = host.decode(errors="replace") if isinstance(host, bytes) else host
            raise tagged(
                socket.gaierror(
                    exc.errno,
                    f"{exc.strerror}: {self.text(NETWORK)} (refused: looking up {name!r})",
                ),
                NETWORK,
            ) from None
        except (OSError, UnicodeError, ValueError, TypeError):
            return  # the call itself will say what is wrong with it
        finally:
            self.probing.discard(me)

    # ------------------------------------------------------------ processes
    def process(self, what: Callable[[tuple[Any, ...]], str]) -> Handler:
        def refuse_process(args: tuple[Any, ...]) -> None:
            self.refuse(PROCESSES, what(args))

        return refuse_process

    def fork_exec(self, *args: Any, **kwargs: Any) -> Any:
        """``_posixsubprocess.fork_exec``, refused: multiprocessing's spawn and
        forkserver start their processes through it without an audit event."""
        argv = args[0] if args else ()
        self.refuse(PROCESSES, f"a process {list(argv) if isinstance(argv, tuple) else argv!r}")

    # ------------------------------------------------------------ writes
    def open(self, args: tuple[Any, ...]) -> None:
        """open() and os.open() (path, mode, flags): a write outside the writable
        paths, and an open that would find no free fd (EMFILE at the rlimit)."""
        try:
            os.close(os.dup(0))  # the lowest free fd, which the open would take
        except OSError as exc:
            if exc.errno == errno.EMFILE:
                self.too_many_files(args[0])
        flags = args[2]
        if flags & _WRITE and self.paths is not None:  # reads end here
            path = self.paths.outside(args[0], None)
            if path is not None and writable.open_would_reach(path, flags):
                self.refuse(SCRATCH, "opening for writing", path, errno.EACCES)

    def too_many_files(self, path: object) -> None:
        """Raise EMFILE (as the open would) naming ``Limits.open_files``, if that is the
        limit in force (the plugin may have lowered its own)."""
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] == self.open_files:
            message = self.text(OPEN_FILES)
            raise tagged(OSError(errno.EMFILE, message, path), OPEN_FILES)

    def remove(self, args: tuple[Any, ...]) -> None:
        """os.remove and os.unlink (path, dir_fd), os.rmdir (path, dir_fd)."""
        path = self.judge(args[0], args[-1])
        if path is not None and os.path.lexists(path):
            self.refuse(SCRATCH, "removing", path, errno.EACCES)

    def make(self, args: tuple[Any, ...]) -> None:
        """os.mkdir (path, mode, dir_fd), os.symlink (src, dst, dir_fd), os.link (src,
        dst, src_dir_fd, dst_dir_fd): what is made is the path before the last dir_fd."""
        made = args[0] if isinstance(args[1], int) else args[1]
        path = self.judge(made, args[-1])
        if path is not None and writable.would_make(path):
            self.refuse(SCRATCH, "making", path, errno.EACCES)

    def rename(self, args: tuple[Any, ...]) -> None:
        """os.rename and os.replace (src, dst, src_dir_fd, dst_dir_fd): both places
        are written to."""
        src, dst = self.judge(args[0], args[2]), self.judge(args[1], args[3])
        if src is None and dst is None:
            return
        source = src or writable.absolute(args[0], args[2])
        if source is None or not os.path.lexists(source):
            return  # no such file: the kernel says so first
        if src is None and dst is not None and not os.path.isdir(os.path.dirname(dst)):
            return
        self.refuse(SCRATCH, f"renaming to {args[1]!r}", src or dst, errno.EACCES)

    def judge(self, path: object, dir_fd: int) -> str | None:
        """``path`` made absolute if a write to it is refused (``WritablePaths``)."""
        return None if self.paths is None else self.paths.outside(path, dir_fd)


def tagged(exc: OSError, setting: str) -> OSError:
    """``exc``, marked as a refusal by ``setting`` (``refusal_of`` finds it)."""
    setattr(exc, TAG, setting)
    return exc


def _numeric(host: str | bytes) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address, which needs no lookup."""
    text = host.decode(errors="replace") if isinstance(host, bytes) else str(host)
    for family in _INET:
        try:
            socket.inet_pton(family, text.split("%", 1)[0])
        except (OSError, ValueError):
            continue
        return True
    return False


#: the one instance, made by ``install``
_refusals: Refusals | None = None


def install(
    policy: dict[str, Any], limits: Mapping[str, Any], layers: Mapping[str, bool]
) -> Refusals:
    """Install, before the plugin is imported, the audit hook that words what the
    sandbox (``policy``, with ``layers`` in force) refuses, and keep ``limits`` for
    ``refusal_of``. A kind of refusal is made only where a layer in force makes it,
    from the values that layer was built from; with none, no hook at all."""
    global _refusals
    landlock = bool(layers.get("landlock_filesystem"))
    refusals = Refusals(limits, sandbox.writable_paths(policy, layers) if landlock else None)
    handlers: dict[str, Handler] = {}
    seccomp = bool(layers.get("seccomp"))
    if not policy.get("network"):
        net = {
            "seccomp": seccomp,
            "network_namespace": bool(layers.get("network_namespace")),
            "landlock_tcp": bool(layers.get("landlock_tcp")),
        }
        refusals.network_layers = net
        if any(net.values()):
            handlers["socket.connect"] = refusals.connect
        if seccomp:
            handlers["socket.__new__"] = refusals.socket_new
        if seccomp or net["landlock_tcp"]:
            handlers["socket.bind"] = refusals.bind
        if seccomp or net["network_namespace"]:
            handlers["socket.sendto"] = refusals.sendto
            for event in ("socket.getaddrinfo", "socket.gethostbyname"):
                handlers[event] = refusals.lookup
    if not policy.get("processes") and seccomp:
        for event, what in _PROCESS_EVENTS.items():
            handlers[event] = refusals.process(what)
        _posixsubprocess.fork_exec = refusals.fork_exec
    handlers["open"] = refusals.open  # open_files, and writes with Landlock
    if landlock:
        handlers["os.remove"] = handlers["os.rmdir"] = refusals.remove
        handlers["os.mkdir"] = handlers["os.symlink"] = handlers["os.link"] = refusals.make
        handlers["os.rename"] = refusals.rename
    if handlers:
        sys.addaudithook(_make_hook(handlers))
    _refusals = refusals
    return refusals


def _make_hook(handlers: dict[str, Handler]) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: one dict lookup for the events it ignores (they fire often)."""
    get = handlers.get

    def audit(event: str, args: tuple[Any, ...]) -> None:
        handler = get(event)
        if handler is not None:
            handler(args)

    return audit


def name_plugin(name: object) -> None:
    """Name the plugin in refusals from now on (before, they say "this plugin")."""
    if _refusals is not None and isinstance(name, str) and name:
        _refusals.who = f"plugin {name!r}"


def refusal_of(exc: BaseException) -> tuple[str, str] | None:
    """The setting whose refusal made ``exc`` (or an exception in its cause or context
    chain), and the sentence naming it: a refusal of the audit hook, EMFILE at
    ``Limits.open_files``, EFBIG at ``Limits.file_size_mb``, or EACCES on making a file
    outside the writable paths that the hook could not foresee. None otherwise."""
    refusals = _refusals
    if refusals is None:
        return None
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 16:
        seen.add(id(cur))
        setting = getattr(cur, TAG, None)
        if setting in SETTINGS:
            return setting, refusals.text(setting)
        if isinstance(cur, OSError):
            setting = _after_the_fact(refusals, cur)
            if setting is not None:
                return setting, refusals.text(setting)
        cur = cur.__cause__ or cur.__context__
    return None


def _after_the_fact(refusals: Refusals, exc: OSError) -> str | None:
    """The setting an OSError's errno names, where only that setting can have made it."""
    if exc.errno == errno.EMFILE and refusals.open_files:
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] == refusals.open_files:
            return OPEN_FILES
    elif exc.errno == errno.EFBIG and refusals.file_size_mb:
        if resource.getrlimit(resource.RLIMIT_FSIZE)[0] == refusals.file_size_mb << 20:
            return FILE_SIZE
    elif exc.errno == errno.EACCES and refusals.paths is not None:
        path = refusals.paths.outside(exc.filename, -1)
        if path is not None and writable.creation_refused(path):
            return SCRATCH
    return None
