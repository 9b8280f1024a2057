"""--reload: a watchfiles watcher that tells the master (over a pipe) which files changed."""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from pathlib import Path

import watchfiles

from roadrunner.config import Config

logger = logging.getLogger("roadrunner.error")

DEFAULT_INCLUDES = ["*.py"]
DEFAULT_EXCLUDES = [".*", ".py[cod]", ".sw.*", "~*"]


class ReloadFilter(watchfiles.DefaultFilter):
    """watchfiles' default ignores plus --reload-include / --reload-exclude globs."""

    def __init__(self, includes: list[str], excludes: list[str]) -> None:
        super().__init__()
        self.includes = [p for p in DEFAULT_INCLUDES + includes if p not in excludes]
        self.excludes = [p for p in DEFAULT_EXCLUDES + excludes if p not in includes]

    @staticmethod
    def matches(path: Path, pattern: str) -> bool:
        return fnmatch.fnmatch(path.name, pattern) or path.match(pattern)

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        candidate = Path(path)
        if any(self.matches(candidate, p) for p in self.excludes):
            return False
        return any(self.matches(candidate, p) for p in self.includes)


class FileWatcher:
    """Watches --reload-dir (default: the working directory) in a thread.

    The master selects on fileno(); a readable pipe means changes() has paths to report.
    """

    def __init__(self, config: Config) -> None:
        self.dirs = [d.resolve() for d in config.reload_dirs] or [Path.cwd()]
        self.filter = ReloadFilter(config.reload_includes, config.reload_excludes)
        # --reload-delay: how long changes are grouped before one reload.
        self.debounce_ms = max(int(config.reload_delay * 1000), 50)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="roadrunner-reload", daemon=True)

    def start(self) -> None:
        shown = ", ".join(f"'{d}'" for d in self.dirs)
        logger.info("Will watch for changes in these directories: [%s]", shown)
        self.thread.start()

    def fileno(self) -> int:
        return self.read_fd

    def watch(self) -> None:
        watcher = watchfiles.watch(
            *self.dirs, watch_filter=self.filter, debounce=self.debounce_ms, step=50,
            stop_event=self.stop_event, rust_timeout=200, yield_on_timeout=True,
            raise_interrupt=False,
        )
        for changes in watcher:
            self.ready.set()  # the first timeout yield: the OS watch is in place
            if not changes:
                continue
            cwd = Path.cwd()
            with self.lock:
                for _, path in changes:
                    try:
                        self.pending.add(str(Path(path).relative_to(cwd)))
                    except ValueError:
                        self.pending.add(path)
            try:
                os.write(self.write_fd, b"C")
            except OSError:  # pragma: no cover - pipe full: the master has a change to read
                pass

    def changes(self) -> set[str]:
        """Drain the pipe; the paths changed since the last call."""
        try:
            os.read(self.read_fd, 4096)
        except BlockingIOError:  # pragma: no cover
            pass
        with self.lock:
            changed, self.pending = self.pending, set()
        return changed

    def close_in_child(self) -> None:
        """A forked worker does not keep the master's pipe open."""
        os.close(self.read_fd)
        os.close(self.write_fd)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(2)
        os.close(self.read_fd)
        os.close(self.write_fd)
