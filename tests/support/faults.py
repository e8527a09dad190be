"""Tools for fault tests: finding leftover processes, a TCP proxy to cut, fake and recording terraforms."""

from __future__ import annotations

import os
import select
import shutil
import socket
import stat
import threading
from pathlib import Path


def leftover_processes(root: Path) -> list[str]:
    """Processes still working under `root` (terraform, providers and local-exec run in job dirs there)."""
    root = root.resolve()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            found.append(f"{pid}: {cmd}")
    return found


class TcpProxy:
    """A loopback TCP proxy that can be cut (listener closed, every connection dropped) and restored."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()


FAKE_TERRAFORM = r"""#!/bin/bash
# A fake terraform for what real terraform cannot do on demand: a plan that never ends, and one that
# ignores SIGINT (with a child of its own standing in for a provider plugin). FAKE_MODE comes from the
# workspace's environment variables.
case "$1" in
  version) echo "Terraform v9.9.9"; exit 0 ;;
  init) echo "Terraform has been successfully initialized!"; exit 0 ;;
  plan)
    if [ "$FAKE_MODE" = "ignore-int" ]; then
      trap '' INT
      sleep 600 &
    else
      trap 'echo "Interrupt received: stopping"; exit 1' INT
    fi
    i=0
    while true; do i=$((i+1)); echo "still planning $i"; sleep 0.2; done ;;
  *) echo "fake terraform: unsupported command $1" >&2; exit 1 ;;
esac
"""


def tools_with_fake(real_tools: Path, dest: Path, version: str = "9.9.9") -> Path:
    """A tools dir holding the real terraform versions plus a fake one."""
    shutil.copytree(real_tools, dest, symlinks=True, copy_function=os.link)
    fake = dest / "terraform" / version / "terraform"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_TERRAFORM)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return dest


def tools_with_recorder(real_tools: Path, dest: Path, record: Path) -> Path:
    """A tools dir whose terraform 1.0.3 copies what `plan` and `apply` write into `record`.plan / .apply."""
    shutil.copytree(real_tools, dest, symlinks=True, copy_function=os.link)
    binary = dest / "terraform" / "1.0.3" / "terraform"
    real = binary.with_name("terraform.real")
    binary.rename(real)
    binary.write_text(
        "#!/bin/bash\nset -o pipefail\n"
        f'case "$1" in plan|apply) "{real}" "$@" 2>&1 | tee -a "{record}.$1" ;; *) exec "{real}" "$@" ;; esac\n'
    )
    binary.chmod(0o755)
    return dest
