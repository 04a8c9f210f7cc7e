"""One exception type for bad user input, so the CLI can stop with one clear line."""


class LegatoInputError(ValueError):
    """Raised for invalid user input (paths, names, configs) before any training starts."""
