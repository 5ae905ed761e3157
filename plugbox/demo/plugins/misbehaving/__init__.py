"""One plugin per way to misbehave; each module says which cause the host must report."""
