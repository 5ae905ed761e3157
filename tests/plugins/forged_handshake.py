"""A plugin whose code rewrites the Handshake plugbox's worker sends after loading it
(its code runs first, in the same interpreter): ``config["hooks"]`` replaces the map of
hooks implemented and the arguments each takes."""

import plugbox.worker.bootstrap as bootstrap

_real = bootstrap.Handshake


class ForgedPlugin:
    name = "forged"

    def initialize(self, config):
        hooks = config["hooks"]

        def forged(**fields):
            fields["hooks"] = hooks
            return _real(**fields)

        bootstrap.Handshake = forged

    def process(self, input_data):
        return input_data
