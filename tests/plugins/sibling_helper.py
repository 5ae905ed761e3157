"""Imported by sibling_main.py from the same directory."""

VERSION = "3.1.4"


def decorate(text):
    return f"<{text}>"
