"""The HTTP API (SPEC §4): `create_app(conveyor, settings, metrics)` builds it; `conveyor
serve` runs it with uvicorn next to a worker pool."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
