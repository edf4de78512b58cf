"""Local image builds: what the error says when they cannot run here; and the Docker engine
installer's derivation of its trixie APT source (deb822, one-line sources.list, neither)."""
import subprocess
from pathlib import Path

import pytest

import tasks.images as images
from tasks.compose import Engine
from tests.support import REPO_ROOT

ENGINE = Engine(kind="docker", cli="docker", compose=("docker", "compose"))
INSTALLER = REPO_ROOT / "scripts" / "install-docker-engine.sh"


@pytest.fixture
def no_image(monkeypatch):
    monkeypatch.setattr(images, "image_exists", lambda *a, **k: False)


def _which(found):
    return lambda name, path=None: found


def test_macos_points_at_upstream_images(monkeypatch, no_image):
    monkeypatch.setattr(images.shutil, "which", _which(None))
    monkeypatch.setattr(images.platform, "system", lambda: "Darwin")
    with pytest.raises(images.ImageError) as err:
        images.build_python_base(ENGINE, env={})
    msg = str(err.value)
    assert "Linux only" in msg
    assert "set CORTEX_IMAGES=upstream to pull the official images (needs a registry)" in msg
    assert "reachable" not in msg


def test_linux_without_debootstrap_says_install_or_upstream(monkeypatch, no_image):
    monkeypatch.setattr(images.shutil, "which", _which(None))
    monkeypatch.setattr(images.platform, "system", lambda: "Linux")
    with pytest.raises(images.ImageError, match="not installed: install it .*"
                       "or set CORTEX_IMAGES=upstream to pull the official images"):
        images.build_python_base(ENGINE, env={})


def test_linux_without_root_says_sudo_setup_once(monkeypatch, no_image):
    monkeypatch.setattr(images.shutil, "which", _which("/usr/sbin/debootstrap"))
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(images.ImageError) as err:
        images.build_python_base(ENGINE, env={})
    msg = str(err.value)
    assert "run `sudo .venv/bin/inv setup --no-install` once to build them" in msg
    assert "or set CORTEX_IMAGES=upstream to pull the official images" in msg


def test_setup_has_the_flag_the_message_names():
    from tasks import stack_tasks
    assert "no_install" in stack_tasks.setup.body.__code__.co_varnames


# --- scripts/install-docker-engine.sh: the trixie source ----------------------------------------

def _derive(apt: Path) -> subprocess.CompletedProcess:
    """Source the installer (functions only) and write the trixie source under `apt`."""
    return subprocess.run(["bash", "-c", f'source "{INSTALLER}" && add_trixie_source'],
                          env={"PATH": "/usr/bin:/bin", "CORTEX_APT_ETC": str(apt)},
                          capture_output=True, text=True, timeout=30)


def _apt(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    return tmp_path


def test_trixie_from_one_line_sources_list(tmp_path):
    apt = _apt(tmp_path)
    (apt / "sources.list").write_text(
        "# deb cdrom:[Debian GNU/Linux 12 _Bookworm_ NETINST]/ bookworm main\n\n"
        "deb cdrom:[Debian GNU/Linux 12 _Bookworm_ NETINST]/ bookworm contrib main\n"
        "deb-src http://mirror.invalid/debian/ bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/debian/"
        " bookworm main non-free-firmware\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n")
    done = _derive(apt)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == ["cortex-trixie.list"]
    assert (apt / "sources.list.d" / "cortex-trixie.list").read_text() == (
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/debian/"
        " trixie main\n")
    assert "Pin-Priority: 100" in (apt / "preferences.d" / "cortex-trixie").read_text()


def test_trixie_from_first_deb822_stanza(tmp_path):
    apt = _apt(tmp_path)
    (apt / "sources.list").write_text("deb http://other.invalid/debian bookworm main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "# header\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")
    done = _derive(apt)
    assert done.returncode == 0, done.stderr
    assert (apt / "sources.list.d" / "cortex-trixie.sources").read_text() == (
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: trixie\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/k.gpg\n")
    assert not (apt / "sources.list.d" / "cortex-trixie.list").exists()


def test_existing_trixie_source_is_kept(tmp_path):
    apt = _apt(tmp_path)
    (apt / "sources.list.d" / "cortex-trixie.list").write_text("kept\n")
    done = _derive(apt)
    assert done.returncode == 0, done.stderr
    assert (apt / "sources.list.d" / "cortex-trixie.list").read_text() == "kept\n"


def test_no_debian_archive_fails_with_one_sentence(tmp_path):
    apt = _apt(tmp_path)
    (apt / "sources.list").write_text("# nothing\n")
    done = _derive(apt)
    assert done.returncode != 0
    assert "No Debian archive is configured" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not any((apt / "sources.list.d").iterdir())


@pytest.mark.parametrize("os_release, ubuntu", [
    ('ID=ubuntu\nVERSION_CODENAME=noble\n', True),
    ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', True),
    ('ID=debian\nVERSION_CODENAME=bookworm\n', False),
])
def test_ubuntu_detection(tmp_path, os_release, ubuntu):
    (tmp_path / "os-release").write_text(os_release)
    env = {"PATH": "/usr/bin:/bin", "CORTEX_OS_RELEASE": str(tmp_path / "os-release")}
    done = subprocess.run(["bash", "-c", f'source "{INSTALLER}" && is_ubuntu'], env=env,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode == 0) is ubuntu, done.stderr


def _fake_engine(tmp_path: Path) -> Path:
    """docker (info answers once `up` exists), systemctl and dockerd that log and bring it up."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "docker": f'[ "$1" = info ] && exec test -e "{tmp_path}/up"; exit 0',
        "systemctl": f'echo "systemctl $*" >>"{tmp_path}/calls"; '
                     f'[ "$1" = start ] && touch "{tmp_path}/up"; exit 0',
        "dockerd": f'echo dockerd >>"{tmp_path}/calls"; touch "{tmp_path}/up"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("systemd, expected", [
    (True, ["systemctl list-unit-files docker.service", "systemctl start docker"]),
    (False, ["dockerd"]),
])
def test_engine_start_prefers_systemd(tmp_path, systemd, expected):
    bin_dir = _fake_engine(tmp_path)
    script = (f'source "{INSTALLER}"; DOCKERD_LOG="{tmp_path}/dockerd.log"; '
              f'systemd_runs() {{ {"true" if systemd else "false"}; }}; start_engine')
    done = subprocess.run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().split("\n")[:-1] == expected
