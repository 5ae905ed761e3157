"""A package importable by dotted name once tests/plugins/importable is on sys.path."""
