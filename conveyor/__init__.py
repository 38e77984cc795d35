"""Conveyor: background jobs on SQLite or PostgreSQL."""

from conveyor.app import Conveyor
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    InvalidJob,
    InvalidTransition,
    JobNotFound,
    StoreUnavailable,
    UnknownTask,
)
from conveyor.jobs import Job, JobStatus
from conveyor.tasks import Task

__all__ = [
    "ConfigurationError",
    "Conveyor",
    "ConveyorError",
    "InvalidJob",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobStatus",
    "StoreUnavailable",
    "Task",
    "UnknownTask",
]
