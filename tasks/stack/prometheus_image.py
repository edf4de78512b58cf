"""The offline Prometheus image (`cortex-dev/prometheus:local`), for machines where no image
registry can be reached.

Debian ships Prometheus (bookworm 2.42): `apt-get download prometheus/bookworm` fetches the
package through this machine's APT, `dpkg-deb -x` unpacks it, and its `/usr/bin/prometheus`
goes onto the local Python base image (the same bookworm: the binary links glibc), with
busybox's applets for the compose entrypoint (sh, sed) and health check (wget), as in the
upstream `prom/prometheus` image. Cached like the other local images: a label holds a digest
of what it is built from, and an image whose label differs is built again.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from tasks.core import runner
from tasks.core.say import Say
from tasks.stack.engine import Engine
from tasks.stack.images import (INPUTS_LABEL, PYTHON_BASE_IMAGE, ImageError, build_python_base,
                                image_current, image_inputs, inputs_digest, say_images)

PROMETHEUS_IMAGE = "cortex-dev/prometheus:local"
PROMETHEUS_PACKAGE = "prometheus/bookworm"


def prometheus_digest(compose_dir: Path) -> str:
    dockerfile = (compose_dir / "prometheus" / "Dockerfile").read_text()
    return inputs_digest("prometheus", dockerfile, PROMETHEUS_PACKAGE)


def download_prometheus_binary(dest: Path, say: Say) -> Path:
    """The prometheus binary of Debian's package, unpacked under `dest`."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise ImageError("Building the Prometheus image needs Debian's apt-get and dpkg-deb "
                         "(it unpacks Debian's prometheus package): set CORTEX_IMAGES=upstream "
                         "to pull prom/prometheus instead (needs a registry).")
    say(f"downloading Debian's {PROMETHEUS_PACKAGE} package")
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o777)  # APT downloads as its own _apt user where it can
    # apt-get download writes into the current folder.
    fetched = runner.run(["sh", "-c", 'cd "$1" && exec apt-get download "$2"', "sh", str(dest),
                          PROMETHEUS_PACKAGE], env=os.environ, merge_stderr=True)
    debs = sorted(dest.glob("prometheus_*.deb"))
    if fetched.exit_code != 0 or not debs:
        tail = "\n".join(fetched.stdout.strip().splitlines()[-4:])
        raise ImageError(f"apt-get could not download {PROMETHEUS_PACKAGE} (run `apt-get "
                         f"update` first if its lists are missing):\n{tail}")
    unpacked = dest / "root"
    done = runner.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], env=os.environ,
                      merge_stderr=True)
    binary = unpacked / "usr" / "bin" / "prometheus"
    if done.exit_code != 0 or not binary.is_file():
        raise ImageError(f"{debs[-1].name} could not be unpacked or holds no usr/bin/prometheus: "
                         f"{done.stdout.strip()[-300:]}")
    return binary


def build_prometheus(engine: Engine, compose_dir: Path, env: Mapping[str, str] | None = None,
                     say: Say = say_images, force: bool = False, image: str = PROMETHEUS_IMAGE,
                     base_image: str = PYTHON_BASE_IMAGE) -> bool:
    """Build the image. Returns True when it built, False when the one here is current."""
    env = dict(os.environ if env is None else env)
    digest = prometheus_digest(compose_dir)
    if not force and image_current(engine, image, digest, env):
        return False
    if not force and image_inputs(engine, image, env) is not None:
        say(f"{image} is out of date (what it is built from changed): building it again")
    build_python_base(engine, env, say=say, image=base_image)
    context = Path(tempfile.mkdtemp(prefix="cortex-prometheus-"))
    try:
        binary = download_prometheus_binary(context / "deb", say)
        shutil.copy(binary, context / "prometheus")
        shutil.copy(compose_dir / "prometheus" / "Dockerfile", context / "Dockerfile")
        shutil.rmtree(context / "deb")
        say(f"building {image} (Debian's Prometheus on {base_image})")
        engine.run("build", "--pull=false", "--build-arg", f"BASE_IMAGE={base_image}",
                   "--label", f"{INPUTS_LABEL}={digest}", "-t", image, str(context),
                   env=env).check(ImageError, f"docker build of {image}")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return True
