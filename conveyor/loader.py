"""Load the user's app from `module:attribute` (the CLI's --app / CONVEYOR_APP)."""

from __future__ import annotations

import importlib
import os
import sys

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError


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
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, Conveyor):
        raise ConfigurationError(f"{spec} is not a Conveyor app (got {type(app).__name__})")
    return app
