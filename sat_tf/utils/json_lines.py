"""An append-only JSON Lines output that a killed run can resume without losing a written line.

Each record is one line, written and flushed as it comes, and synced to disk by `sync()` (after
each batch). A kill can leave at most one partial last line; resuming cuts it off, reads which
records are done, and appends after them.

Example:
    with JsonLinesOutput("captions.jsonl", resume=True) as output:
        for record in records:
            if record["image"] not in output.done:
                output.write(record)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sat_tf.errors import ConfigError


class JsonLinesOutput:
    """Appends JSON records, one a line, to `path`.

    Args:
        path: the `.jsonl` file.
        resume: continue a file that exists: its complete lines are kept and the values of their
            `key` field are in `done`; without it, an existing file is an error (never overwritten).
        key: the field that names what a record is about (default "image").
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False, key: str = "image"):
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        if self.path.exists() and not resume:
            raise ConfigError(f"{self.path}: exists; --resume continues it, or remove it to start again")
        if self.path.exists():
            self.done = self._read_done()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def _read_done(self) -> set[str]:
        """The keys of the complete lines; a partial last line (a kill mid-write) is cut off."""
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as file:
                file.truncate(len(complete))
        done = set()
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{self.path}: line {number} is not JSON ({exc.msg}); not a file this run wrote"
                ) from exc
            if not isinstance(record, dict) or self.key not in record:
                raise ConfigError(f"{self.path}: line {number} has no '{self.key}' field; not a file this run wrote")
            done.add(str(record[self.key]))
        return done

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record as a line and flushes it."""
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done.add(str(record[self.key]))

    def sync(self) -> None:
        """Makes the lines written so far durable (fsync)."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> JsonLinesOutput:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
