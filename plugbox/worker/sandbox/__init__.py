"""The sandbox a worker puts itself in before the plugin is imported: process-level
confinement (``process``: session, fds, environment, user, rlimits), namespaces
(``layers``, ``pidns``), Landlock and seccomp."""
