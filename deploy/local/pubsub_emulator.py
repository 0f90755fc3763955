"""Start and stop the Google Cloud SDK's Pub/Sub emulator for tests, benchmarks and the demo.

The ``gcloud beta emulators pubsub start`` wrapper leaves its Java child running when killed,
so this runs the emulator's own launcher in a new process group and stops that whole group.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType


def _die_with_parent() -> None:
    """In the child before exec: receive SIGTERM when the process that started us dies.

    The emulator runs in its own process group so it can be stopped as a whole; this makes
    sure a test run killed before its teardown does not leave the Java process behind.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class EmulatorError(RuntimeError):
    """The emulator could not be found or did not start."""


def sdk_root() -> Path:
    """The Google Cloud SDK's root, from ``CLOUDSDK_ROOT`` or ``gcloud info``."""
    env_root = os.environ.get("CLOUDSDK_ROOT")
    if env_root:
        return Path(env_root)
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorError("gcloud is not on PATH; install the Google Cloud SDK")
    out = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(out.stdout.strip())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float, what: str) -> None:
    """Wait until ``process`` accepts connections on 127.0.0.1:``port``.

    Raises RuntimeError if it exits first or does not listen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


class PubSubEmulator:
    """The Pub/Sub emulator on 127.0.0.1, in its own process group; a context manager."""

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.host_port = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 60.0) -> PubSubEmulator:
        """Launch the emulator and wait until it answers."""
        launcher = sdk_root() / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if not launcher.exists():
            raise EmulatorError(
                f"{launcher} not found: install the component "
                "(gcloud components install pubsub-emulator)"
            )
        self._data_dir = tempfile.TemporaryDirectory(prefix="pubsub-emulator-")
        log_path = self._log_path or Path(self._data_dir.name, "emulator.log")
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(launcher),
                    "--host=127.0.0.1",
                    f"--port={self.port}",
                    f"--dir={self._data_dir.name}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            wait_for_port(self._process, self.port, timeout, "Pub/Sub emulator")
        except RuntimeError as exc:
            self.stop()
            raise EmulatorError(str(exc)) from None
        return self

    def stop(self) -> None:
        """Stop the emulator's whole process group (the launcher and its Java child)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._data_dir is not None:
            self._data_dir.cleanup()
            self._data_dir = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
