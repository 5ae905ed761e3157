"""Reports the modules its worker had loaded before this plugin was imported."""

import sys

LOADED = sorted(name for name, module in sys.modules.items() if module is not None)


class ModulesProbePlugin:
    name = "modules-probe"
    version = "1.0"

    def process(self, input_data):
        return LOADED
