"""The stack's old one-file home, split by job (services, project, image_resolution,
port_conflicts, setup, start, stop, logs, health, table, watch). Only names that files outside
tasks/stack still import from here remain, each until its importer moves."""
from tasks.stack.project import compose_env, make_stack  # noqa: F401  TODO(lead): remove (tests/unit/core/test_settings.py, tests/e2e/conftest.py)
