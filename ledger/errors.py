"""What the ledger refuses, by kind, so a caller (the CLI, the nightly flow) can answer each one differently."""


class LedgerError(RuntimeError):
    """A state change the ledger refuses (e.g. finishing a batch that failed); nothing was written."""


class RequestError(LedgerError, ValueError):
    """Bad input from a person (unknown or forgotten ids, an empty reason, a bad tier); nothing was written."""


class LockHeld(LedgerError):
    """Another live process holds the lock; the message names its pid, host and since when."""


class LedgerUrlError(RequestError):
    """A ledger URL that names no usable database (not a URL, another dialect, a folder that does not exist)."""
