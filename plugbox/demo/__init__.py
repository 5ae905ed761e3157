"""plugbox's demo, shipped in the package so that ``plugbox demo`` runs from any install:
a message-logging plugin beside eight misbehaving ones (``plugins/``), each contained.
``containment.main`` is the demo; this package imports nothing, so a worker can load
one of its plugins by module name without the host's imports."""
