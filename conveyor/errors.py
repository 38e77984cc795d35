"""Exceptions that callers of Conveyor can catch; each carries a one-line message."""


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class InvalidJob(ConveyorError, ValueError):
    """A job's fields break SPEC §1 (ranges, sizes, JSON payload)."""


class UnknownTask(ConveyorError, LookupError):
    """The job type is not a task this app knows."""


class JobNotFound(ConveyorError, LookupError):
    """No job with that id."""


class InvalidTransition(ConveyorError):
    """The job's current status does not allow the requested operation."""


class StoreUnavailable(ConveyorError):
    """The store cannot be reached or answered with an error."""


class ConfigurationError(ConveyorError):
    """A setting is malformed (database URL, app path, option value)."""


class StoreFileReplaced(StoreUnavailable):
    """The SQLite database file was deleted, renamed or replaced while this process used
    it: its writes would go to a file no other process sees. Raised by every call from
    then on; `conveyor serve` and `conveyor worker` stop and exit non-zero."""
