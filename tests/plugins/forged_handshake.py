"""A plugin whose code rewrites the Handshake plugbox's worker sends after loading it
(its code runs first, in the same interpreter). Each of ``config``'s keys ``hooks`` (the
map of hooks implemented and the arguments each takes), ``layers`` (merged into the
sandbox layers claimed), ``baseline_rss_kb``, ``pid`` and ``protocol`` (the protocol
version) replaces what the worker would say."""

import plugbox.worker.bootstrap as bootstrap

_real = bootstrap.Handshake


class ForgedPlugin:
    name = "forged"

    def initialize(self, config):
        def forged(**fields):
            if "hooks" in config:
                fields["hooks"] = config["hooks"]
            if "layers" in config:
                fields["layers"] = {**fields["layers"], **config["layers"]}
            if "baseline_rss_kb" in config:
                fields["baseline_rss_kb"] = config["baseline_rss_kb"]
            if "pid" in config:
                fields["pid"] = config["pid"]
            if "protocol" in config:
                fields["protocol"] = config["protocol"]
            return _real(**fields)

        bootstrap.Handshake = forged

    def process(self, input_data):
        return input_data
