"""An attacker's plugin that goes around plugbox's audit hook (which only words
refusals): libc's connect, fork and open called through ctypes, with no audit event.
The layers below must still refuse each; it reports the bare errno each call got."""

import ctypes
import errno
import os
import socket
import struct

libc = ctypes.CDLL(None, use_errno=True)


def result(rc):
    """What a libc call did: "allowed", or the errno name it failed with."""
    if rc >= 0:
        return "allowed"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def connect(port):
    """socket(AF_INET) and connect() to 127.0.0.1:port, straight through libc."""
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        return "socket: " + result(fd)
    try:
        addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton("127.0.0.1"))
        addr = struct.pack("=H", socket.AF_INET) + addr[2:]  # sa_family in host order
        return "connect: " + result(libc.connect(fd, addr, len(addr)))
    finally:
        os.close(fd)


def fork():
    """fork(2) through libc; a child (if the sandbox let one through) exits at once."""
    pid = libc.fork()
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    return result(pid)


def write(path):
    """open(path, O_WRONLY|O_CREAT) through libc."""
    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if fd >= 0:
        os.close(fd)
        os.unlink(path)
    return result(fd)


class BypassPlugin:
    name = "bypass"
    version = "1.0"

    def process(self, input_data):
        return {
            "connect": connect(input_data["port"]),
            "fork": fork(),
            "write": write(input_data["outside"]),
        }
