"""Message types of the plugbox wire protocol.

Each message is a frozen dataclass with keyword-only fields, validated when it is
built: a message that exists is well-formed. On the wire a message is a msgpack array
whose first element is the message's tag and whose other elements are its fields, in
declaration order.

Worker channel (host <-> worker)::

    host -> worker   Start, Resume, Call, Cancel, Shutdown
    worker -> host   Confined, Handshake, Result, Error, Log

Zygote channel (host <-> zygote)::

    host -> zygote   Spawn (the worker's fds travel beside it as SCM_RIGHTS)
    zygote -> host   Spawned, Exited
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ._checks import (
    WORKER_LIMITS,
    check,
    is_int,
    is_number,
    is_sha256,
    is_str_list,
    is_str_map,
    is_worker_limits,
)

PROTOCOL_VERSION = 1

#: the fd a worker's channel sits on, so every worker looks the same inside.
CHANNEL_FD = 3

#: exit status of a worker whose own code ran out of memory (the plugin could not
#: even be told); the host reports it as PluginMemoryExceeded.
EXIT_MEMORY = 86
#: exit status of a worker that failed in plugbox's own code (a bug, or a broken
#: channel before the handshake); its stderr says more.
EXIT_INTERNAL = 70
#: exit status of a worker whose channel closed or broke under it without a Shutdown.
EXIT_CHANNEL_LOST = 71

#: id used by an ``Error`` that answers ``Start`` (the plugin failed to load).
LOAD_CALL_ID = 0


class Message:
    """Base of every message; ``TAG`` is its first element on the wire."""

    TAG: ClassVar[int]
    __slots__ = ()

    def to_wire(self) -> list[Any]:
        """The message as the msgpack array that goes on the wire."""
        return [self.TAG, *(getattr(self, name) for name in FIELD_NAMES[type(self)])]


@dataclass(frozen=True, kw_only=True, slots=True)
class Start(Message):
    """host -> worker: what to load, how to confine it, and what to check.

    ``hooks`` maps each hook of the host's spec to ``{"args": [...], "mutable": [...]}``
    so the worker can validate the plugin and report the arguments each hook takes.
    ``limits`` holds limit values by name (``WORKER_LIMITS``; one not given is
    ``Limits``' default); ``sandbox`` is a plain map (``plugbox.worker.sandbox``).
    ``sha256``: the digest the plugin's code must have, checked on the bytes the worker
    loads; ``distribution``: name the plugin's distribution in the Handshake;
    ``initialize`` False: load and check the plugin without calling ``initialize``;
    ``standby``: confine, send Confined, then wait for Resume before loading;
    ``log_level``: the lowest level of the plugin's log records sent to the host.
    """

    TAG: ClassVar[int] = 0
    ref: str
    config: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    inline: bytes | None = None
    sha256: str | None = None
    distribution: bool = False
    initialize: bool = True
    standby: bool = False
    log_level: int = 20  # logging.INFO

    def __post_init__(self) -> None:
        check(isinstance(self.ref, str) and self.ref != "", "Start.ref must be a non-empty str")
        check(is_str_map(self.config), "Start.config must be a map with str keys")
        check(is_str_map(self.hooks), "Start.hooks must be a map with str keys")
        check(
            is_worker_limits(self.limits),
            f"Start.limits must map names of {', '.join(WORKER_LIMITS)} to positive numbers "
            "(memory_mb and cpu_seconds may be None)",
        )
        check(is_str_map(self.sandbox), "Start.sandbox must be a map with str keys")
        check(self.inline is None or isinstance(self.inline, bytes), "Start.inline must be bytes")
        check(self.sha256 is None or is_sha256(self.sha256), "Start.sha256 must be 64 hex digits")
        check(isinstance(self.distribution, bool), "Start.distribution must be a bool")
        check(isinstance(self.initialize, bool), "Start.initialize must be a bool")
        check(isinstance(self.standby, bool), "Start.standby must be a bool")
        check(is_int(self.log_level), "Start.log_level must be an int")


@dataclass(frozen=True, kw_only=True, slots=True)
class Confined(Message):
    """worker -> host: the confinement layers in force (name -> bool), the worker's
    RSS and the pid of the process that will serve the plugin (as the host sees it),
    sent once the sandbox is applied and before the plugin's code is imported.

    The Handshake comes after the plugin's code ran, which may have rewritten it; this
    message it cannot have touched, so the host takes the layers, the RSS the memory
    cap is measured from and the pid it watches from here, and holds the Handshake to
    them.
    """

    TAG: ClassVar[int] = 8
    layers: dict[str, bool]
    pid: int
    baseline_rss_kb: int = 0

    def __post_init__(self) -> None:
        check(
            is_str_map(self.layers) and all(isinstance(v, bool) for v in self.layers.values()),
            "Confined.layers must map str to bool",
        )
        check(is_int(self.pid) and self.pid > 0, "Confined.pid must be a positive int")
        check(
            is_int(self.baseline_rss_kb) and self.baseline_rss_kb >= 0,
            "Confined.baseline_rss_kb must be an int >= 0",
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Handshake(Message):
    """worker -> host: the plugin is loaded and initialized.

    ``hooks`` maps each hook the plugin implements to the argument names it accepts
    (opt-in arguments); ``problems`` lists what validation found but did not refuse
    (for example a method named like a hook the spec does not have);
    ``baseline_rss_kb`` is the worker's RSS before the plugin was imported;
    ``layers`` says which confinement layers are in force (name -> bool);
    ``dist_name`` and ``dist_version`` name the installed distribution the plugin's
    module comes from (empty for a file plugin, a module not from a distribution, or
    when the host did not ask: ``Start.distribution``).
    """

    TAG: ClassVar[int] = 1
    protocol: int
    plugin: str
    version: str
    hooks: dict[str, list[str]]
    pid: int
    problems: list[str] = field(default_factory=list)
    baseline_rss_kb: int = 0
    layers: dict[str, bool] = field(default_factory=dict)
    dist_name: str = ""
    dist_version: str = ""

    def __post_init__(self) -> None:
        check(is_int(self.protocol), "Handshake.protocol must be an int")
        check(
            is_int(self.baseline_rss_kb) and self.baseline_rss_kb >= 0,
            "Handshake.baseline_rss_kb must be an int >= 0",
        )
        check(
            is_str_map(self.layers) and all(isinstance(v, bool) for v in self.layers.values()),
            "Handshake.layers must map str to bool",
        )
        check(
            isinstance(self.plugin, str) and self.plugin != "",
            "Handshake.plugin must be a non-empty str",
        )
        check(isinstance(self.version, str), "Handshake.version must be a str")
        check(
            is_str_map(self.hooks) and all(is_str_list(v) for v in self.hooks.values()),
            "Handshake.hooks must map str to a list of str",
        )
        check(is_int(self.pid) and self.pid > 0, "Handshake.pid must be a positive int")
        check(is_str_list(self.problems), "Handshake.problems must be a list of str")
        check(isinstance(self.dist_name, str), "Handshake.dist_name must be a str")
        check(isinstance(self.dist_version, str), "Handshake.dist_version must be a str")


@dataclass(frozen=True, kw_only=True, slots=True)
class Call(Message):
    """host -> worker: call ``hook`` with ``args``; answered by Result or Error with ``id``."""

    TAG: ClassVar[int] = 2
    id: int
    hook: str
    args: dict[str, Any]

    def __post_init__(self) -> None:
        check(is_int(self.id) and self.id > 0, "Call.id must be a positive int")
        check(isinstance(self.hook, str) and self.hook != "", "Call.hook must be a non-empty str")
        check(is_str_map(self.args), "Call.args must be a map with str keys")


@dataclass(frozen=True, kw_only=True, slots=True)
class Result(Message):
    """worker -> host: the hook returned ``value``; ``changed`` holds the mutable
    arguments the plugin changed in place (only those)."""

    TAG: ClassVar[int] = 3
    id: int
    value: Any
    changed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(is_int(self.id) and self.id > 0, "Result.id must be a positive int")
        check(is_str_map(self.changed), "Result.changed must be a map with str keys")


@dataclass(frozen=True, kw_only=True, slots=True)
class Error(Message):
    """worker -> host: the hook (or, with id 0, loading the plugin) raised.

    ``chain`` lists the type names of the exceptions in the ``__cause__`` /
    ``__context__`` chain, so the host can see a MemoryError the plugin caught.
    ``details`` carries an error's fields as data where the host acts on them: for
    ``PluginIntegrityError``, ``what`` was hashed, the ``expected`` and ``actual`` digest.
    """

    TAG: ClassVar[int] = 4
    id: int
    exc_type: str
    message: str
    traceback: str = ""
    chain: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(is_int(self.id) and self.id >= 0, "Error.id must be an int >= 0")
        check(isinstance(self.exc_type, str), "Error.exc_type must be a str")
        check(isinstance(self.message, str), "Error.message must be a str")
        check(isinstance(self.traceback, str), "Error.traceback must be a str")
        check(is_str_list(self.chain), "Error.chain must be a list of str")
        check(
            is_str_map(self.details) and is_str_list(list(self.details.values())),
            "Error.details must map str to str",
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Log(Message):
    """worker -> host: a record the plugin logged through stdlib logging."""

    TAG: ClassVar[int] = 5
    level: int
    logger: str
    message: str

    def __post_init__(self) -> None:
        check(is_int(self.level), "Log.level must be an int")
        check(isinstance(self.logger, str), "Log.logger must be a str")
        check(isinstance(self.message, str), "Log.message must be a str")


@dataclass(frozen=True, kw_only=True, slots=True)
class Cancel(Message):
    """host -> worker: the caller gave up on call ``id``; no reply is expected."""

    TAG: ClassVar[int] = 6
    id: int

    def __post_init__(self) -> None:
        check(is_int(self.id) and self.id > 0, "Cancel.id must be a positive int")


@dataclass(frozen=True, kw_only=True, slots=True)
class Shutdown(Message):
    """host -> worker: close the plugin and exit."""

    TAG: ClassVar[int] = 7


@dataclass(frozen=True, kw_only=True, slots=True)
class Resume(Message):
    """host -> worker: load the plugin now. Sent only to a standby worker (its Start
    asked it to hold): one that applied its sandbox, sent Confined, and waits, without
    having run any of the plugin's code, to replace a worker that died. Calls may
    follow right behind it, before the Handshake: the worker reads nothing past Resume
    until the plugin is loaded and its Handshake sent, then answers them."""

    TAG: ClassVar[int] = 9


@dataclass(frozen=True, kw_only=True, slots=True)
class Spawn(Message):
    """host -> zygote: fork a worker on the fds sent beside this message."""

    TAG: ClassVar[int] = 20
    request: int

    def __post_init__(self) -> None:
        check(is_int(self.request) and self.request > 0, "Spawn.request must be a positive int")


@dataclass(frozen=True, kw_only=True, slots=True)
class Spawned(Message):
    """zygote -> host: request ``request`` became worker ``pid`` (0 with ``error`` set
    when the fork failed)."""

    TAG: ClassVar[int] = 21
    request: int
    pid: int
    error: str = ""

    def __post_init__(self) -> None:
        check(is_int(self.request) and self.request > 0, "Spawned.request must be a positive int")
        check(is_int(self.pid) and self.pid >= 0, "Spawned.pid must be an int >= 0")
        check(isinstance(self.error, str), "Spawned.error must be a str")


@dataclass(frozen=True, kw_only=True, slots=True)
class Exited(Message):
    """zygote -> host: worker ``pid`` was reaped.

    ``exit_code`` is set for a normal exit, ``signal`` for death by signal; ``max_rss_kb``,
    ``user_cpu`` and ``system_cpu`` come from wait4's rusage.
    """

    TAG: ClassVar[int] = 22
    pid: int
    exit_code: int | None
    signal: int | None
    max_rss_kb: int = 0
    user_cpu: float = 0.0
    system_cpu: float = 0.0

    def __post_init__(self) -> None:
        check(is_int(self.pid) and self.pid > 0, "Exited.pid must be a positive int")
        check(
            (self.exit_code is None) != (self.signal is None),
            "Exited needs exactly one of exit_code and signal",
        )
        check(self.exit_code is None or is_int(self.exit_code), "Exited.exit_code must be an int")
        check(self.signal is None or is_int(self.signal), "Exited.signal must be an int")
        check(is_int(self.max_rss_kb), "Exited.max_rss_kb must be an int")
        check(is_number(self.user_cpu), "Exited.user_cpu must be a number")
        check(is_number(self.system_cpu), "Exited.system_cpu must be a number")


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TAG: cls
    for cls in (
        Start,
        Confined,
        Handshake,
        Call,
        Result,
        Error,
        Log,
        Cancel,
        Shutdown,
        Resume,
        Spawn,
        Spawned,
        Exited,
    )
}

#: each message type's field names, in wire order.
FIELD_NAMES: dict[type[Message], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    for cls in MESSAGE_TYPES.values()
}

#: the messages each direction may carry; a decoder accepts only its direction's.
HOST_TO_WORKER: frozenset[type[Message]] = frozenset({Start, Call, Cancel, Shutdown, Resume})
WORKER_TO_HOST: frozenset[type[Message]] = frozenset({Confined, Handshake, Result, Error, Log})
HOST_TO_ZYGOTE: frozenset[type[Message]] = frozenset({Spawn})
ZYGOTE_TO_HOST: frozenset[type[Message]] = frozenset({Spawned, Exited})
