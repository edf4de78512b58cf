"""Entry point that `inv` loads: the root namespace, assembled from the modules in tasks/."""
import os

# Invoke imports this file as the module `tasks`, which hides the tasks/ package of the same
# name; giving this module the package's __path__ makes `import tasks.<module>` work from here
# too (and plain `import tasks` elsewhere, e.g. in pytest, finds the package itself).
__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")]

from tasks.namespace import build_namespace  # noqa: E402

ns = build_namespace()
