"""The host side: ``PluginHost``, its blocking facade ``SyncPluginHost``, and the
supervision behind them."""

from .host import PluginHost, PluginInfo
from .launchers import Launcher, SubprocessLauncher, ZygoteLauncher
from .sync import SyncPluginHost

__all__ = [
    "Launcher",
    "PluginHost",
    "PluginInfo",
    "SubprocessLauncher",
    "SyncPluginHost",
    "ZygoteLauncher",
]
