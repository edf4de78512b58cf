"""Every setting a task would refuse, found at once for `inv verify`.

Each task refuses the first bad setting it reads with one line naming it; verify asks the
same readers, so a value it passes is one no task will refuse, and it lists them all. Every
reader raises SettingsError (or a subclass of it): a setting a task cannot use exits 2.
"""
from __future__ import annotations

from typing import Callable

from tasks.core.settings import Settings, SettingsError, positive_seconds
from tasks.host.service_lock import lock_timeout
from tasks.host.service_settings import service_files_problem, service_setting_problem
from tasks.stack.engine import chosen_engine_kind
from tasks.stack.project import extra_compose_files, image_mode
from tasks.stack.start import DEFAULT_READY_TIMEOUT


def _ready_timeout(settings: Settings) -> None:
    positive_seconds("CORTEX_READY_TIMEOUT",
                     settings.get("CORTEX_READY_TIMEOUT", str(DEFAULT_READY_TIMEOUT)))


# Readers that raise with one sentence; each is what a task calls before it starts anything.
READERS: list[Callable[[Settings], object]] = [
    lambda s: s.ports(),
    lambda s: s.compose_project,
    _ready_timeout,
    lock_timeout,
    image_mode,
    extra_compose_files,
    lambda s: chosen_engine_kind(s.env),
]


def setting_problems(settings: Settings) -> list[str]:
    """One sentence per setting (or file) a task would refuse; [] when every one is usable."""
    problems = []
    for read in READERS:
        try:
            read(settings)
        except SettingsError as exc:
            problems.append(str(exc))
    for found in (service_setting_problem(settings), service_files_problem(settings)):
        if found and found not in problems:
            problems.append(found)
    return problems
