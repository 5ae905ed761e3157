"""What a plugin is trusted as: the digest of its code (``integrity``), version pins
(``pins``) and the lock file's data (``lock``). Nothing here imports host code, so the
worker checks a pinned digest with the same code as the host."""
