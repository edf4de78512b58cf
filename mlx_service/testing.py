"""Moved to tests/service_support.py (test support is not part of the product package)."""
# tasks/cli/stress_tasks.py still imports start_service from here.
from tests.service_support import spawn_service as start_service  # noqa: F401  TODO(lead): remove
