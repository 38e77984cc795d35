"""Conveyor: background jobs on SQLite, PostgreSQL or Redis."""

from conveyor.app import Conveyor
from conveyor.context import JobContext, Retry, Snooze, current_job
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
    "JobContext",
    "JobNotFound",
    "JobStatus",
    "Retry",
    "Snooze",
    "StoreUnavailable",
    "Task",
    "UnknownTask",
    "current_job",
]
