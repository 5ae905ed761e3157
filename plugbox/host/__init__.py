"""The host side: ``PluginHost``, its blocking facade ``SyncPluginHost``, and the
supervision behind them."""

from .host import PluginHost
from .launchers import Launcher, SubprocessLauncher, ZygoteLauncher
from .registration import PluginInfo
from .sync import SyncPluginHost

__all__ = [
    "Launcher",
    "PluginHost",
    "PluginInfo",
    "SubprocessLauncher",
    "SyncPluginHost",
    "ZygoteLauncher",
]
