"""The ``skystack`` command line: a thin layer over :mod:`skystack.pipeline`."""

__all__: list[str] = []
