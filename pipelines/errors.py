"""Domain errors raised by the engine. They carry no HTTP status: the server maps them."""


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class InvalidInput(EngineError):
    """The request cannot be run as given (e.g. a size the model cannot produce)."""


class Cancelled(EngineError):
    """The job was cancelled (client went away, shutdown, time limit) before it finished."""


class EngineFailure(EngineError):
    """The pipeline raised while running a job; the engine is still usable."""


class OutOfMemory(EngineFailure):
    """The device ran out of memory for this job; memory was released afterwards."""


class WeightsError(EngineError):
    """Weights are missing, incomplete or unreadable; the message says what and where."""


class DeviceLost(EngineFailure):
    """The process running the engine died (or its device faulted) while running a job.

    Only that job fails; the engine is restarted before it takes another one.
    """
