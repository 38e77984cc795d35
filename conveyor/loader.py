"""Load the user's app from `module:attribute` (the CLI's --app / CONVEYOR_APP)."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError

_IMPORTLIB = os.path.dirname(importlib.__file__) + os.sep


def load_app(spec: str) -> Conveyor:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"--app must look like module:attribute, got {spec!r}")
    # console scripts do not put the working directory on sys.path; users expect it there
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an error in the module's code, or in what it imports
        raise ConfigurationError(import_failure(module_name, exc)) from None
    app = getattr(module, attr, None)
    if not isinstance(app, Conveyor):
        raise ConfigurationError(f"{spec} is not a Conveyor app (got {type(app).__name__})")
    return app


def import_failure(module_name: str, exc: BaseException) -> str:
    """One line: `cannot import myapp.jobs: ModuleNotFoundError: No module named 'requests'
    (myapp/jobs.py, line 3)`, naming the line that failed, not a traceback."""
    message = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    if isinstance(exc, SyntaxError):  # the failing file is not on the traceback
        where = _where(exc.filename, exc.lineno)
        what = f"{type(exc).__name__}: {exc.msg}"
    else:
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if not f.filename.startswith(("<frozen ", _IMPORTLIB)) and f.filename != __file__
        ]
        where = _where(frames[-1].filename, frames[-1].lineno) if frames else ""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if not where and missing and f"{module_name}.".startswith(f"{missing}."):
        where = " (looked in the working directory and on sys.path)"
    return f"cannot import {module_name}: {what}{where}"


def _where(filename: str | None, lineno: int | None) -> str:
    if not filename:
        return ""
    try:
        shown = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        shown = filename
    if shown.startswith(".." + os.sep):
        shown = filename
    return f" ({shown}, line {lineno})" if lineno else f" ({shown})"
