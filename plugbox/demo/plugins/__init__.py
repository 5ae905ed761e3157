"""The demo's plugins, each loaded by its file path: two well-behaved ones here, one
per misbehaviour under ``misbehaving/``."""
