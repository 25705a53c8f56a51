"""Orchestration: strings the pure steps together, does the file I/O, reports progress."""

__all__: list[str] = []
