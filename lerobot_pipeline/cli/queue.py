"""Queue commands (publish, monitor)."""


def register(sub) -> None:
    return None
