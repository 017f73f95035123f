"""A real Hub-protocol server on loopback for the Hub tests: olah in offline mirror mode.

olah serves plain git repositories under ``<mirrors>/models/<org>/<repo>`` (branch ``main``) with
the Hugging Face Hub's HTTP API, so ``huggingface_hub`` downloads from it exactly as from the Hub.
:func:`hub` is a module-scoped pytest fixture starting one server per test module; tests add
repositories made from checkpoint folders with :meth:`Hub.add_repo` (olah reads them on demand).

:class:`FlakyProxy` sits in front of the server to make it die in the middle of a download.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
_GIT = ["git", "-c", "user.name=zoo-tests", "-c", "user.email=tests@zoo.invalid"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_endpoint() -> str:
    """An endpoint URL nothing listens on (for 'the network must not be used' checks)."""
    return f"http://127.0.0.1:{free_port()}"


class OlahServer:
    """One olah process serving the git repositories under ``root / "mirrors"``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "olah.out"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.port = free_port()
        config = self.root / "olah.toml"
        # The upstream points at a dead port: nothing may ever leave the machine.
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.root / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            'hf-scheme = "http"\n'
            f'hf-netloc = "127.0.0.1:{free_port()}"\n'
            f'hf-lfs-netloc = "127.0.0.1:{free_port()}"\n'
            "metadata-cache-ttl = 0\n"
            "[accessibility]\n"
            "offline = true\n"
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "olah.server",
                    "--config",
                    str(config),
                    "--log-path",
                    str(self.root / "olah-logs"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited at start-up:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/api/models/none/none/revision/main", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers (with an error for an unknown repo): it is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"olah did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def add_repo(self, repo_id: str, folder: Path, tags: tuple[str, ...] = ()) -> str:
        """Commit ``folder``'s files to the repo ``repo_id`` (created if new); return the sha."""
        repo = self.mirrors / "models" / repo_id
        if not (repo / ".git").exists():
            repo.mkdir(parents=True)
            subprocess.run([*_GIT, "init", "-q", "-b", "main"], cwd=repo, check=True)
        for path in folder.iterdir():
            if path.is_file():
                shutil.copy2(path, repo / path.name)
        subprocess.run([*_GIT, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*_GIT, "commit", "-q", "-m", f"upload {folder.name}"], cwd=repo, check=True)
        for tag in tags:
            subprocess.run([*_GIT, "tag", "-f", tag], cwd=repo, check=True, capture_output=True)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahServer]:
    """A running olah mirror for the test module; skipped where olah is not installed."""
    try:
        import olah  # noqa: F401
    except ImportError:
        pytest.skip("olah is not installed (pip install 'zoo[test]'); the Hub tests need it")
    if shutil.which("git") is None:
        pytest.skip("git is not installed; the olah mirror serves git repositories")
    server = OlahServer(tmp_path_factory.mktemp("hub"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FlakyProxy:
    """A TCP proxy in front of a server that can die in the middle of a response.

    After :meth:`die_during` ``(suffix)``, the next GET whose path ends with ``suffix`` gets its
    headers and half its body, then the connection drops and every later connection is closed
    at once, as if the server had crashed. :meth:`revive` brings it back.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.dead = False
        self.kill_suffix: str | None = None
        self.killed = threading.Event()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def die_during(self, suffix: str) -> None:
        self.kill_suffix = suffix
        self.killed.clear()

    def revive(self) -> None:
        self.dead = False
        self.kill_suffix = None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, client: socket.socket) -> None:
        if self.dead:
            return  # closing without an answer, like a crashed server
        head = _read_head(client)
        if not head:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        # One request per connection: the upstream closes after its answer, which ends our copy.
        headers = [h for h in lines[1:] if h and not h.lower().startswith("connection:")]
        request = "\r\n".join([lines[0], *headers, "Connection: close", "", ""]).encode("latin-1")
        kill = self.kill_suffix is not None and method == "GET" and path.endswith(self.kill_suffix)
        with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            upstream.sendall(request)
            response_head = _read_head(upstream)
            client.sendall(response_head)
            if kill:
                length = _content_length(response_head)
                client.sendall(upstream.recv(max(1, length // 2)))
                self.dead = True
                self.killed.set()
                return
            while chunk := upstream.recv(65536):
                client.sendall(chunk)


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            return data
        data += chunk
    return data


def _content_length(head: bytes) -> int:
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip())
    return 2


@contextlib.contextmanager
def flaky_proxy(upstream_port: int) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()


# --- registry entries and subprocesses --------------------------------------------------------
def entry_kwargs(name: str, repo_id: str, revision: str, folder: Path) -> dict[str, Any]:
    """Keyword arguments of a ``PretrainedEntry`` for a checkpoint folder served at ``repo_id``."""
    from toy_arch import ARCHITECTURE

    from zoo.hub.checkpoint import file_hashes

    return {
        "name": name,
        "architecture": ARCHITECTURE,
        "repo_id": repo_id,
        "revision": revision,
        "sha256": file_hashes(folder),
        "dataset": "none (random weights)",
        "licence": "MIT",
        "metrics": {"energy_mae": 1.0, "forces_mae": 2.0},
    }


# Run in a fresh interpreter: registers the test architecture and one registry entry, loads the
# model and prints its outputs. huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT at import,
# which is why these checks need their own process. With a barrier (a folder and a count), the
# processes wait for each other after their slow imports, so that their downloads overlap.
_LOAD_SCRIPT = """
import json, os, sys, time
from pathlib import Path
import toy_arch
import zoo
from zoo.hub.pretrained import PretrainedEntry, register_pretrained
register_pretrained(PretrainedEntry(**json.loads(sys.argv[1])))
if len(sys.argv) > 3:
    barrier, parties = Path(sys.argv[3]), int(sys.argv[4])
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.01)
model = zoo.load(sys.argv[2])
print(json.dumps({"outputs": toy_arch.example_outputs(model).tolist(),
                  "folder": model.zoo_info["folder"], "revision": model.zoo_info["revision"]}))
"""


def start_load_process(
    entry: dict[str, Any],
    name: str,
    env: dict[str, str],
    barrier: tuple[Path, int] | None = None,
) -> subprocess.Popen[str]:
    """Start ``zoo.load(name)`` in a subprocess with ``env`` added to the environment.

    ``barrier`` = ``(empty folder, number of processes)`` makes the processes start loading
    together.
    """
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT), str(TESTS_DIR), full_env.get("PYTHONPATH", "")]
    )
    extra = [str(barrier[0]), str(barrier[1])] if barrier else []
    return subprocess.Popen(
        [sys.executable, "-c", _LOAD_SCRIPT, json.dumps(entry), name, *extra],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_load_process(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """Wait for a :func:`start_load_process` process; its result, or a failure with its stderr."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        pytest.fail(f"zoo.load in a subprocess failed ({process.returncode}):\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])
