"""The host side: ``PluginHost`` and the supervision behind it."""

from .host import PluginHost, PluginInfo
from .launchers import Launcher, SubprocessLauncher, ZygoteLauncher

__all__ = ["Launcher", "PluginHost", "PluginInfo", "SubprocessLauncher", "ZygoteLauncher"]
