"""A pure producer app (no tasks registered), so `conveyor enqueue --app` accepts any type."""

from conveyor import Conveyor

app = Conveyor()
