"""Star detection, background and noise statistics, frame quality."""

__all__: list[str] = []
