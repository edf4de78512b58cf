"""TaskError: the base of every failure the tasks expect (a setting, the engine, a build, the
service's lifecycle). The message is what the user reads; the one wrapper every task goes
through (tasks/cli/task_edge.py) prints it as one line and exits with `exit_code`. Anything
else that escapes a task is a bug, and is said to be one."""
from __future__ import annotations


class TaskError(Exception):
    exit_code = 1
