"""Make the images of the services to start available: pull, or build locally (the rules are
CORTEX_IMAGES's, in tasks.stack.project's docstring). `resolve_images` runs the steps in order:

1. which images are absent (a built service needs its base image, the others their image);
2. pull them, where pulling is allowed (CORTEX_IMAGES=upstream, or auto chose upstream);
3. NATS or the Python base still absent: switch to the offline override (local builds), or
   stop with a sentence when upstream was asked for;
4. offline: build the local images the services need;
5. services whose image is still not here are skipped, each with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from tasks.core.say import Say
from tasks.stack.engine import Engine
from tasks.stack.errors import StackError
from tasks.stack.images import ImageError, ensure_local_images, image_exists
from tasks.stack.project import ServiceImage, Stack, image_mode, service_images
from tasks.stack.prometheus_image import build_prometheus
from tasks.stack.services import BUILT_SERVICES

PULL_TIMEOUT = 600
PULL_HINT = "CORTEX_IMAGES=upstream inv setup pulls missing images where a registry is reachable"


def pull_image(engine: Engine, image: str, env: Mapping[str, str], say: Say) -> bool:
    """`<engine> pull --quiet image`; a failure is said in one line, not raised."""
    say(f"pulling {image}")
    done = engine.run("pull", "--quiet", image, env=env, timeout=PULL_TIMEOUT)
    if done.timed_out:
        say(f"could not pull {image}: no answer within {PULL_TIMEOUT}s")
        return False
    if done.exit_code != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        say(f"could not pull {image}: {reason[:200]}")
    return done.exit_code == 0


@dataclass
class Puller:
    """Pulls each image at most once per resolution: a second try of one that failed is not
    made (and counts as failed)."""

    stack: Stack
    say: Say
    tried: set[str] = field(default_factory=set)

    def pull(self, image: str) -> bool:
        if image in self.tried:
            return False
        self.tried.add(image)
        return pull_image(self.stack.engine, image, self.stack.env, self.say)


def needs_local_build(service: str) -> bool:
    """NATS, Prometheus and the built services are what the offline override builds locally."""
    return service in ("nats", "prometheus") or service in BUILT_SERVICES


def absent_services(stack: Stack, images: Mapping[str, ServiceImage]) -> list[str]:
    """Step 1: the services whose needed image is not here."""
    return [service for service, spec in images.items()
            if spec.needed and not image_exists(stack.engine, spec.needed, stack.env)]


def pull_absent(absent: list[str], images: Mapping[str, ServiceImage],
                puller: Puller) -> list[str]:
    """Step 2: the services still absent after pulling their images."""
    return [service for service in absent if not puller.pull(images[service].needed)]


def fall_back_to_local(stack: Stack, absent: list[str], mode: str, say: Say) -> Stack:
    """Step 3: the offline override when NATS or the Python base could not be had, unless
    upstream images were asked for (StackError then)."""
    local_missing = [s for s in absent if needs_local_build(s)]
    if local_missing and mode != "upstream" and not stack.auto_pull:
        say(f"no registry image for {', '.join(local_missing)}: using locally built "
            "images (compose/docker-compose.offline.yml)")
        return stack.with_offline(True)
    if absent and local_missing:
        raise StackError(f"The images of {', '.join(absent)} are not here and could not be "
                         f"pulled (CORTEX_IMAGES={mode}): make a registry reachable"
                         + (" or unset CORTEX_IMAGES to build them locally."
                            if mode == "upstream" else "."))
    return stack


def build_local_images(stack: Stack, services: Sequence[str], say: Say) -> None:
    """Step 4: the local images, when a service to start needs them."""
    if not any(needs_local_build(s) for s in services):
        return
    try:
        built = ensure_local_images(stack.engine, stack.settings.compose_dir, stack.env, say=say)
        if "prometheus" in services and build_prometheus(
                stack.engine, stack.settings.compose_dir, stack.env, say=say):
            built.append("prometheus")
    except ImageError as exc:
        raise StackError(f"Local images could not be built: {exc}") from None
    if built:
        say(f"built {', '.join(built)}")


def skipped_services(stack: Stack, services: Sequence[str], allow_pull: bool,
                     puller: Puller) -> dict[str, str]:
    """Step 5: {service: why} for each service with no build whose image is not here."""
    skipped: dict[str, str] = {}
    images = service_images(stack, services)
    for service in services:
        spec = images[service]
        if spec.build or image_exists(stack.engine, spec.image, stack.env):
            continue
        if stack.offline and allow_pull and puller.pull(spec.image):
            continue
        skipped[service] = f"image {spec.image} is not here" + (
            " and could not be pulled" if allow_pull else "")
    return skipped


def resolve_images(stack: Stack, services: Sequence[str], say: Say,
                   allow_pull: bool | None = None) -> tuple[Stack, list[str], dict[str, str]]:
    """Make the images of `services` available (the steps: this module's docstring).

    Returns (the stack to use, services that can run, {skipped service: why}).
    """
    mode = image_mode(stack.settings)
    if allow_pull is None:
        allow_pull = mode == "upstream" or stack.auto_pull
    puller = Puller(stack, say)
    if not stack.offline:
        images = service_images(stack, services)
        absent = absent_services(stack, images)
        if absent and allow_pull:
            absent = pull_absent(absent, images, puller)
        stack = fall_back_to_local(stack, absent, mode, say)
    if stack.offline:
        build_local_images(stack, services, say)
    skipped = skipped_services(stack, services, allow_pull, puller)
    return stack, [s for s in services if s not in skipped], skipped


def warn_skipped(skipped: dict[str, str], say: Say, doing: str) -> None:
    """One line per skipped service, then one hint on how to get the images."""
    for service, why in skipped.items():
        say(f"warning: {doing} {service}: {why}")
    if skipped:
        say(f"  ({PULL_HINT}; status shows skipped services as not running)")
