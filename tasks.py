"""Entry point that `inv` loads: the root namespace, assembled from the modules in tasks/."""
import os

# Invoke imports this file as the module `tasks`, which hides the tasks/ package of the same
# name; giving this module the package's __path__ makes `import tasks.<module>` work from here
# too (and plain `import tasks` elsewhere, e.g. in pytest, finds the package itself).
__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")]

from tasks.cli.closed_reader import quiet_closed_reader_outside_tasks  # noqa: E402
from tasks.cli.namespace import build_namespace  # noqa: E402
from tasks.cli.seed_spellings import accept_seed_spellings  # noqa: E402

quiet_closed_reader_outside_tasks()  # `inv --list | head -1`: no traceback
ns = build_namespace()
accept_seed_spellings(ns)  # `inv logs SERVICE`: the words after `logs`, before invoke parses them
