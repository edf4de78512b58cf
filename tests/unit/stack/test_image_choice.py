"""CORTEX_IMAGES=auto: which images a machine gets (tasks.stack.image_choice.choose_images, a pure function).

Each case is a machine as the facts describe it: a Mac with Docker Desktop or OrbStack, Linux as
root (this project's machines), Linux without root, with and without sudo, Podman (rootful and
rootless), and no registry reachable.
"""
from dataclasses import replace

import pytest

from tasks.stack.image_choice import ImageChoice, Machine, choose_images

LINUX_ROOT = Machine(system="Linux", root=True, sudo=False, engine="docker",
                     engine_rootless=False, engine_arch_matches=True, debootstrap=True,
                     registry=None, local_images=False, upstream_images=False)
MAC_ARM64 = Machine(system="Darwin", root=False, sudo=True, engine="docker",
                    engine_rootless=False, engine_arch_matches=True, debootstrap=False,
                    registry=None, local_images=False, upstream_images=False)


def _one_line(choice: ImageChoice) -> str:
    assert choice.message and "\n" not in choice.message
    return choice.message


def test_linux_as_root_builds_offline_by_default():
    assert choose_images(LINUX_ROOT) == ImageChoice("local", build=True)


def test_linux_as_root_builds_offline_even_with_a_registry():
    assert choose_images(replace(LINUX_ROOT, registry=True)) == ImageChoice("local", build=True)


def test_images_already_here_are_used_without_building_or_pulling():
    assert choose_images(replace(LINUX_ROOT, local_images=True)) == ImageChoice("local")
    assert choose_images(replace(MAC_ARM64, upstream_images=True)) == ImageChoice("upstream")
    assert choose_images(replace(MAC_ARM64, local_images=True, registry=False)) == \
        ImageChoice("local")


def test_macos_arm64_pulls_the_upstream_images_and_says_why_in_one_line():
    choice = choose_images(MAC_ARM64)
    assert (choice.source, choice.build, choice.pull) == ("upstream", False, True)
    line = _one_line(choice)
    assert "macOS" in line and "Linux (debootstrap)" in line and "upstream" in line


def test_macos_with_debootstrap_from_homebrew_still_cannot_build():
    choice = choose_images(replace(MAC_ARM64, debootstrap=True, root=True))
    assert choice.source == "upstream" and choice.pull


def test_macos_without_a_registry_is_one_clear_sentence():
    choice = choose_images(replace(MAC_ARM64, registry=False))
    assert choice.source == "none" and not choice.build and not choice.pull
    line = _one_line(choice)
    assert line.startswith("No images can be had here")
    assert "macOS" in line and "registry" in line


def test_linux_without_root_or_sudo_pulls_upstream():
    machine = replace(LINUX_ROOT, root=False, sudo=False)
    choice = choose_images(machine)
    assert choice.source == "upstream" and choice.pull
    assert "not root and has no sudo" in _one_line(choice)


def test_linux_without_root_or_sudo_and_no_registry_says_so():
    choice = choose_images(replace(LINUX_ROOT, root=False, sudo=False, registry=False))
    assert choice.source == "none"
    assert "no image registry answers" in _one_line(choice)


def test_linux_with_sudo_keeps_the_offline_build_and_names_the_one_step():
    choice = choose_images(replace(LINUX_ROOT, root=False, sudo=True))
    assert choice.source == "none" and not choice.pull
    line = _one_line(choice)
    assert "sudo .venv/bin/inv setup --no-install" in line
    assert "CORTEX_IMAGES=upstream" in line


def test_linux_with_sudo_and_a_registry_that_answers_pulls():
    choice = choose_images(replace(LINUX_ROOT, root=False, sudo=True, registry=True))
    assert choice.source == "upstream" and choice.pull
    assert "sudo .venv/bin/inv setup --no-install" in _one_line(choice)


def test_linux_without_debootstrap_pulls_upstream():
    choice = choose_images(replace(LINUX_ROOT, debootstrap=False))
    assert choice.source == "upstream" and "debootstrap" in _one_line(choice)


def test_rootful_podman_as_root_builds_offline():
    assert choose_images(replace(LINUX_ROOT, engine="podman")) == ImageChoice("local", build=True)


def test_rootless_podman_does_not_offer_sudo_whose_images_it_cannot_see():
    machine = replace(LINUX_ROOT, engine="podman", engine_rootless=True, root=False, sudo=True)
    choice = choose_images(machine)
    assert choice.source == "upstream" and choice.pull
    line = _one_line(choice)
    assert "rootless podman" in line and "sudo" not in line


def test_podman_machine_on_macos_pulls_upstream():
    choice = choose_images(replace(MAC_ARM64, engine="podman"))
    assert choice.source == "upstream" and "macOS" in _one_line(choice)


def test_remote_engine_of_another_architecture_cannot_take_the_local_build():
    choice = choose_images(replace(LINUX_ROOT, engine_arch_matches=False))
    assert choice.source == "upstream" and "architecture" in _one_line(choice)


@pytest.mark.parametrize("registry", [True, None])
def test_no_registry_check_means_trying_to_pull_where_nothing_else_can_work(registry):
    choice = choose_images(replace(MAC_ARM64, registry=registry))
    assert choice.source == "upstream" and choice.pull


def test_the_choice_is_pure():
    assert choose_images(MAC_ARM64) == choose_images(MAC_ARM64)
    assert MAC_ARM64 == replace(MAC_ARM64)  # the input is not touched
