"""CORTEX_IMAGES=auto: which images this machine can have. `choose_images` is a pure function
of the machine's facts; `machine_facts` gathers those facts (images.py builds the local ones).
"""
from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tasks.stack.engine import Engine, engine_rootless
from tasks.stack.images import (ARCHES, NATS_IMAGE, PYTHON_BASE_IMAGE, UPSTREAM_HINT, engine_arch,
                                find_debootstrap, image_current, image_exists, nats_digest,
                                python_base_digest)

SYSTEM_NAMES = {"Darwin": "macOS", "Windows": "Windows"}
SUDO_SETUP = "sudo .venv/bin/inv setup --no-install"


@dataclass(frozen=True)
class Machine:
    """The facts `choose_images` decides on (machine_facts gathers them)."""

    system: str  # platform.system(): "Linux", "Darwin", "Windows"
    root: bool  # this process runs as root
    sudo: bool  # sudo is installed
    engine: str  # Engine.kind: "docker" or "podman"
    engine_rootless: bool  # the engine runs as the user: images root imports do not reach it
    engine_arch_matches: bool  # the engine runs this machine's architecture
    debootstrap: bool  # debootstrap is installed
    registry: bool | None  # an image registry answers: True, False, None when not checked
    local_images: bool  # the local images are here and current
    upstream_images: bool  # the pinned upstream images are here


@dataclass(frozen=True)
class ImageChoice:
    source: str  # "local", "upstream", or "none" when neither can work now
    build: bool = False  # build the local images
    pull: bool = False  # pull the upstream images that are missing
    message: str = ""  # one line: why upstream, or (for "none") what to do


def local_build_blocker(machine: Machine) -> str | None:
    """What stops the local build from running here, as words after "needs"; None if nothing."""
    if machine.system != "Linux":
        return (f"Linux (debootstrap), and this is "
                f"{SYSTEM_NAMES.get(machine.system, machine.system or 'another system')}")
    if not machine.engine_arch_matches:
        return "an engine of this machine's architecture, and this one runs another"
    if not machine.debootstrap:
        return "debootstrap, which is not installed"
    if machine.root:
        return None
    if machine.engine_rootless:
        return (f"root, and images root builds would not reach this user's rootless "
                f"{machine.engine}")
    if machine.sudo:
        return f"root: run `{SUDO_SETUP}` once to build them"
    return "root, and this user is not root and has no sudo"


def choose_images(machine: Machine) -> ImageChoice:
    """CORTEX_IMAGES=auto: images already here first; else the offline local build where it can
    run; else the pinned upstream images (one line saying why); else a sentence saying what to
    do. A build that only needs a one-time sudo stays the choice unless a registry is known to
    answer: on Linux the offline build is the default."""
    if machine.upstream_images:
        return ImageChoice("upstream")
    if machine.local_images:
        return ImageChoice("local")
    blocker = local_build_blocker(machine)
    if blocker is None:
        return ImageChoice("local", build=True)
    needs_only_sudo = blocker.startswith("root: run")
    if machine.registry is False or (needs_only_sudo and machine.registry is None):
        if needs_only_sudo:
            return ImageChoice("none", message=(
                f"The local images are not built and building them needs {blocker} "
                f"(or set {UPSTREAM_HINT})."))
        return ImageChoice("none", message=(
            f"No images can be had here: the local build needs {blocker}, and no image "
            "registry answers to pull the upstream ones: make a registry reachable (or load "
            "the images with `docker load`)."))
    return ImageChoice("upstream", pull=True, message=(
        f"images: the local build needs {blocker}; using the pinned upstream images "
        "(pulled once)"))


def machine_facts(engine: Engine, env: Mapping[str, str], upstream: Sequence[str],
                  compose_dir: Path, registry: bool | None = None) -> Machine:
    """The facts of this machine and engine for `choose_images` (the registry is not probed:
    pass what is known)."""
    env = dict(env)
    system = platform.system()
    return Machine(
        system=system,
        root=hasattr(os, "geteuid") and os.geteuid() == 0,
        sudo=shutil.which("sudo") is not None,
        engine=engine.kind,
        engine_rootless=engine_rootless(engine.cli, engine.kind, env),
        engine_arch_matches=ARCHES.get(engine_arch(engine, env)) == ARCHES.get(platform.machine()),
        debootstrap=system == "Linux" and find_debootstrap() is not None,
        registry=registry,
        local_images=(image_current(engine, PYTHON_BASE_IMAGE, python_base_digest(), env)
                      and image_current(engine, NATS_IMAGE, nats_digest(compose_dir, env), env)),
        upstream_images=all(image_exists(engine, name, env) for name in upstream),
    )


def auto_choice(engine: Engine, env: Mapping[str, str], upstream: Sequence[str],
                compose_dir: Path, registry: bool | None = None) -> ImageChoice:
    return choose_images(machine_facts(engine, env, upstream, compose_dir, registry))
