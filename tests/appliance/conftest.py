"""The appliance under a real systemd: a Debian rootfs booted with nspawn.

``scripts/appliance-rootfs`` builds (or restores from its cache) a Debian
bookworm root with wabscan installed as a package would install it; this
file boots it with ``systemd-nspawn`` and gives the tests an
:class:`Appliance` to run commands in it through ``nsenter``.

Why it boots the way it does (FIELD-NOTES, "systemd without systemd"):

- ``--register=no --keep-unit``: the host has no machined and no system bus.
- ``--private-network``: the container gets its own loopback, so its ports
  (9471-9473) are its own.
- PID 1 is ``/usr/local/libexec/wabscan-appliance/init``, which makes the
  cgroup v1 memory hierarchy writable and execs systemd; with it,
  ``MemoryMax=`` is a real limit (without it nspawn mounts the hierarchy
  read-only and systemd ignores every memory setting). ``--kill-signal=
  SIGRTMIN+3`` is what ``--boot`` would set: nspawn's SIGTERM halts the
  container cleanly.
- The container runs in a child memory cgroup of this process's own, made
  here and removed afterwards, so that what its systemd creates stays under
  one folder that is ours.

The suite runs only when asked (``pytest -m appliance`` or
``WABSCAN_APPLIANCE=1``): it needs root, takes minutes, and a first build
downloads Debian packages. It skips, with the reason, where it cannot run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "appliance-rootfs"
INSIDE = Path(__file__).with_name("inside.py")
INSIDE_PATH = "/usr/local/libexec/wabscan-appliance/inside.py"
INIT = "/usr/local/libexec/wabscan-appliance/init"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG = "/etc/wabscan/wabscan.toml"
SERVICES = ("bridge", "scanner", "reporter")
PORTS = {"bridge": 9471, "scanner": 9472, "reporter": 9473}
UNITS = tuple(f"wabscan-{name}.service" for name in (*SERVICES, "redis"))
# The exit status by which scripts/appliance-rootfs says "this machine cannot
# build the rootfs" (no root, no debootstrap, no network).
CANNOT_BUILD = 3
# Seconds each phase took, printed at the end of the run.
TIMINGS: dict[str, float] = {}


class ApplianceError(Exception):
    pass


NOT_REQUESTED = (
    "the appliance suite runs only when asked: pytest -m appliance "
    "(or WABSCAN_APPLIANCE=1); see docs/appliance-tests.md"
)
# Set by pytest_configure below, before the test module is imported.
REQUESTED = False


def requested(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", "") or ""
    return "appliance" in markexpr or os.environ.get("WABSCAN_APPLIANCE") == "1"


def pytest_configure(config: pytest.Config) -> None:
    global REQUESTED
    REQUESTED = requested(config)


def memory_cgroup_v1() -> Path | None:
    """This process's cgroup v1 memory folder, if the host has one."""
    mount = Path("/sys/fs/cgroup/memory")
    if not (mount / "cgroup.procs").exists():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return mount / path.lstrip("/")
    return None


@dataclass
class Appliance:
    """One booted container; ``run`` executes a command inside it as root."""

    root: Path
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int = 0  # the container's PID 1, as the host sees it
    cgroup: Path | None = None
    boots: int = 0
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    # -- lifecycle ----------------------------------------------------------

    def boot(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        # The tests' helper, beside the init shim (test-only files).
        shutil.copyfile(INSIDE, self.root / INSIDE_PATH.lstrip("/"))
        parent = memory_cgroup_v1()
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--kill-signal=SIGRTMIN+3",
            "--console=passive",
            f"--directory={self.root}",
            INIT,
        ]
        if parent is not None and os.access(parent, os.W_OK):
            self.cgroup = parent / f"wabscan-appliance-{uuid.uuid4().hex[:8]}"
            self.cgroup.mkdir()
            argv = [
                "/bin/sh",
                "-c",
                'echo $$ > "$0/cgroup.procs" && exec "$@"',
                str(self.cgroup),
                *argv,
            ]
        with self.console_log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_for_init(timeout)
        self._wait_running(timeout - (time.monotonic() - started))
        self.boots += 1
        self.timings.setdefault("boot_seconds", time.monotonic() - started)

    def reboot(self, timeout: float = 120.0) -> float:
        """``systemctl reboot`` inside. nspawn ends with status 133 when its
        container asks for a reboot (systemd-nspawn@.service restarts it on
        that status); the harness does the same: boots the same rootfs again."""
        started = time.monotonic()
        assert self.process is not None
        self.run("systemctl", "reboot", "--no-block", check=False)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ApplianceError("the container did not go down to reboot") from None
        if code != 133:
            raise ApplianceError(
                f"nspawn ended with {code}, not 133 (reboot):\n{self.console_tail()}"
            )
        self.stop()
        self.boot(timeout - (time.monotonic() - started))
        return time.monotonic() - started

    def stop(self, timeout: float = 60.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            # nspawn turns SIGTERM into --kill-signal: a clean halt.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # A container whose nspawn was killed keeps running: killing its
        # PID 1 ends every process of its pid namespace.
        if self.pid and _container_init_alive(self.pid):
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        self.process = None
        if self.cgroup is not None:
            _remove_cgroup(self.cgroup)
            self.cgroup = None

    def _wait_for_init(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ApplianceError(
                    f"systemd-nspawn exited with {self.process.returncode}:\n"
                    + self.console_tail()
                )
            pid = _container_init(self.process.pid)
            if pid:
                self.pid = pid
                return
            time.sleep(0.05)
        raise ApplianceError("the container's PID 1 did not appear")

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=timeout
            )
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise ApplianceError(f"the system did not come up (state {state!r})")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:])

    # -- commands -----------------------------------------------------------

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside, in every namespace of the container, with a
        clean environment (and as ``user`` through runuser)."""
        command = ["env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "SYSTEMD_PAGER="]
        if user is not None:
            command = [
                "runuser",
                "-u",
                user,
                "--",
                *command,
                f"WABSCAN_CONFIG={CONFIG}",
            ]
        full = ["nsenter", "-t", str(self.pid), "-a", *command, *argv]
        result = subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ApplianceError(
                f"{shlex.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def sh(self, script: str, **kwargs: Any) -> str:
        return self.run("/bin/sh", "-ec", script, **kwargs).stdout

    def inside(self, *args: str, timeout: float = 120.0) -> Any:
        """Run tests/appliance/inside.py in the appliance as the service user;
        its JSON answer."""
        result = self.run(
            "/opt/wabscan/bin/python",
            INSIDE_PATH,
            *args,
            user="wabscan",
            timeout=timeout,
        )
        return json.loads(result.stdout)

    def inside_background(self, *args: str) -> subprocess.Popen[str]:
        """The same, not waited for (``communicate()`` gives its answer)."""
        argv = [
            "nsenter", "-t", str(self.pid), "-a",
            "runuser", "-u", "wabscan", "--",
            "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", f"WABSCAN_CONFIG={CONFIG}",
            "/opt/wabscan/bin/python", INSIDE_PATH, *args,
        ]  # fmt: skip
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.run("systemctl", *args, check=check).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(
            "systemctl", "show", unit, *(f"--property={p}" for p in props)
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def host_pid(self, container_pid: int) -> int:
        """The host's pid of a process of the container (for kill/SIGSTOP from
        outside, and for the kernel's log)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if (
                            len(ids) == 2
                            and int(ids[1]) == container_pid
                            and _same_pidns(entry.name, self.pid)
                        ):
                            return int(entry.name)
        raise ApplianceError(f"no host pid for container pid {container_pid}")

    def wait_for(
        self, what: str, check: Any, timeout: float = 60.0, every: float = 0.2
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(every)
        raise ApplianceError(f"timed out after {timeout}s waiting for {what}: {last!r}")

    def active(self, unit: str) -> bool:
        props = self.show(unit, "ActiveState", "SubState")
        return props.get("ActiveState") == "active"

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Every service active and answering /healthz with 200."""

        def healthy() -> bool:
            if not all(self.active(unit) for unit in UNITS):
                return False
            return all(self.http(port, "/healthz")[0] == 200 for port in PORTS.values())

        self.wait_for("every unit healthy", healthy, timeout, every=0.5)

    def http(
        self,
        port: int,
        path: str,
        method: str = "GET",
        body: Any = None,
        token: bool = False,
        timeout: float = 20.0,
    ) -> tuple[int, str]:
        """A request from inside the container (its own loopback)."""
        argv = ["curl", "-s", "-m", str(int(timeout)), "-X", method]
        argv += ["-o", "/dev/stdout", "-w", "\n%{http_code}"]
        if token:
            argv += ["-H", f"Authorization: Bearer {self.token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        result = self.run(
            *argv, f"http://127.0.0.1:{port}{path}", check=False, timeout=timeout + 5
        )
        text, _, code = result.stdout.rpartition("\n")
        return int(code or 0), text

    def journal(self, *args: str) -> list[dict[str, Any]]:
        out = self.run(
            "journalctl", "--no-pager", "-o", "json", *args, timeout=60
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def drop_in(self, unit: str, name: str, text: str) -> None:
        """A runtime drop-in (under /run: gone at the next boot)."""
        folder = f"/run/systemd/system/{unit}.d"
        self.run("mkdir", "-p", folder)
        self.run("tee", f"{folder}/{name}.conf", input=text)
        self.run("systemctl", "daemon-reload")

    def remove_drop_in(self, unit: str, name: str) -> None:
        self.run("rm", "-f", f"/run/systemd/system/{unit}.d/{name}.conf")
        self.run("systemctl", "daemon-reload")


def _container_init(nspawn_pid: int) -> int:
    """The child of nspawn that is PID 1 of a new pid namespace."""
    children: list[str] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{nspawn_pid}/task").iterdir():
            children += (task / "children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1":
                    return int(child)
    return 0


def _same_pidns(pid: str, init: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return False


def _container_init_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    nspid = next((x for x in status.splitlines() if x.startswith("NSpid:")), "")
    return nspid.split()[-1:] == ["1"] and "State:\tZ" not in status


def _remove_cgroup(path: Path, timeout: float = 15.0) -> None:
    # Deepest first, with rmdir (never rm -r); the last processes of a
    # halted container may take a moment to leave.
    deadline = time.monotonic() + timeout
    while path.exists():
        for folder, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)


def skip_reason() -> str | None:
    """Why this machine cannot run the suite at all, or None."""
    if os.geteuid() != 0:
        return "the appliance suite needs root (debootstrap, systemd-nspawn, nsenter)"
    if shutil.which("nsenter") is None:
        return "nsenter (util-linux) is not installed"
    return None


@pytest.fixture(scope="session")
def appliance_root(request: pytest.FixtureRequest) -> Iterator[tuple[Path, float]]:
    """A fresh rootfs from scripts/appliance-rootfs (cached layers)."""
    if not requested(request.config):
        pytest.skip(NOT_REQUESTED)
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="wabscan-appliance-", dir="/var/tmp"))
    root = workdir / "root"
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), str(root)], capture_output=True, text=True, timeout=1800
    )
    took = time.monotonic() - started
    if result.returncode == CANNOT_BUILD:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot build the rootfs here: {result.stderr.strip()[-500:]}")
    if result.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"scripts/appliance-rootfs failed:\n{result.stderr[-3000:]}")
    try:
        yield root, took
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def appliance(appliance_root: tuple[Path, float]) -> Iterator[Appliance]:
    """The booted appliance, shared by the tests in order (each leaves it
    healthy); stopped at the end of the session."""
    root, build_seconds = appliance_root
    # Can nspawn run a container here at all? Past this probe, a container
    # that does not boot is a failure of the appliance, not a skip.
    probe = subprocess.run(
        ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
         "--private-network", f"--directory={root}", "/bin/true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"systemd-nspawn cannot run a container here: {probe.stderr}")
    box = Appliance(root, root.parent)
    box.timings["rootfs_seconds"] = build_seconds
    try:
        box.boot()
        box.wait_healthy()
        box.token = box.run("cat", "/var/lib/wabscan-credentials/control-token").stdout
        box.token = box.token.strip()
        yield box
    finally:
        box.stop()
        TIMINGS.update(box.timings)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "appliance timings")
        for key, value in sorted(TIMINGS.items()):
            terminalreporter.write_line(f"{key}: {value:.1f}")
