"""The ledger of an archive: one SQLite file in DEST, written only by the client process.

Workers never touch it: they return their results and the client records each one in its own
transaction as it arrives. SQLite's rollback journal makes every transaction atomic, so a killed
client (SIGKILL included) leaves the ledger as it was after the last recorded item, and a dying
worker cannot corrupt it. ``journal_mode=DELETE`` (not WAL, which needs shared memory that network
file systems do not give) and ``synchronous=FULL``: see docs/SCALE.md for shared storage.

Tables: ``items`` (one row per output: its kind, state ``pending`` / ``done`` / ``failed``, the
reason of a failure, the output's SHA-256 and size), ``sources`` (per item, every source file with
its size, modification time, SHA-256 and permission bits), ``runs`` (one row per command, with its summary) and
``meta`` (the ledger's format and the SOURCE it archives).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .walk import LEDGER_NAME, LOCK_NAME, Item

FORMAT = 2  # 2: sources.mode (an lvpnet before it would write rows without it: it is told to upgrade)
DAMAGED = "damaged: "  # a done row's reason when a --check found its output damaged (``note_damage``)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    root TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    reason TEXT,
    output_sha256 TEXT,
    output_bytes INTEGER,
    source_bytes INTEGER NOT NULL,
    raw_bytes INTEGER,
    identical INTEGER,
    codecs TEXT,
    encodes INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    key TEXT NOT NULL REFERENCES items (key) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    hint TEXT,
    mode INTEGER,
    PRIMARY KEY (key, path)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    summary TEXT
);
"""


@dataclass
class Row:
    key: str
    kind: str
    root: str
    state: str
    reason: str | None
    output_sha256: str | None
    output_bytes: int | None
    source_bytes: int
    raw_bytes: int | None
    identical: int | None
    encodes: int
    updated: float
    sources: list[tuple[str, int, int, str | None, int | None]]  # (path, size, mtime_ns, sha256, mode)


class Ledger:
    """The ledger of ``dest``; ``create`` makes a new one, else it must exist."""

    def __init__(self, dest: str | os.PathLike, *, create: bool = False, read_only: bool = False):
        """``read_only`` (restore): nothing is written to DEST, so an archive on read-only storage (a
        snapshot, WORM media, a read-only mount) restores."""
        self.dest = Path(dest)
        self.path = self.dest / LEDGER_NAME
        self.read_only = read_only
        if not create and not self.path.is_file():
            raise InputError(f"{dest}: no lvpnet archive here (no {LEDGER_NAME})")
        self._copy: tempfile.TemporaryDirectory | None = None
        try:
            if read_only:  # and no transaction: BEGIN IMMEDIATE takes a write lock
                self.db = sqlite3.connect(f"{self._readable().resolve().as_uri()}?mode=ro", uri=True,
                                          isolation_level=None, timeout=30)
                have = self._meta("format")
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self.db.execute("PRAGMA journal_mode=DELETE")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self.db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS); executescript commits on its own
                with self.transaction():
                    have = self._meta("format")
                    if have is not None and int(have) > FORMAT:
                        raise InputError(f"{self.path}: ledger format {have} is newer than this lvpnet: please upgrade")
                    if "mode" not in self._source_columns():  # a ledger written before modes were kept
                        self.db.execute("ALTER TABLE sources ADD COLUMN mode INTEGER")
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))
            if have is not None and int(have) > FORMAT:
                raise InputError(f"{self.path}: ledger format {have} is newer than this lvpnet: please upgrade")
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path}: not a readable lvpnet ledger ({e})") from None
        self._lock_fd: int | None = None

    def _readable(self) -> Path:
        """The ledger to read without writing DEST. An archive command killed inside a transaction leaves
        its rollback journal beside the ledger, and read-only SQLite cannot roll it back ("attempt to write
        a readonly database"): then a copy of both, in a temporary folder, is rolled back and read, which
        is the ledger as it was after its last recorded item."""
        journal = self.path.with_name(self.path.name + "-journal")
        if not (journal.is_file() and journal.stat().st_size > 0):
            return self.path
        self._copy = tempfile.TemporaryDirectory(prefix="lvpnet-ledger-")
        copy = Path(self._copy.name) / self.path.name
        try:
            shutil.copyfile(self.path, copy)
            shutil.copyfile(journal, copy.with_name(journal.name))
        except OSError as e:
            raise InputError(f"{self.path}: its journal of an interrupted run could not be rolled back in a "
                             f"copy ({e.strerror or e}); run lvpnet archive on DEST once to roll it back") from None
        con = sqlite3.connect(copy)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reading rolls the journal back
        finally:
            con.close()
        return copy

    # ------------------------------------------------------------ plumbing

    def transaction(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.unlock()
        self.db.close()
        if self._copy is not None:
            self._copy.cleanup()

    def lock(self) -> None:
        """One archive command per DEST at a time (a second one would record the same items)."""
        import fcntl

        try:
            fd = os.open(self.dest / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if not (self.read_only and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM)):
                raise
            try:  # a read-only DEST: its lock file, if it has one, still takes a shared lock
                fd = os.open(self.dest / LOCK_NAME, os.O_RDONLY)
            except OSError:
                return  # none: nothing can change a DEST that cannot be written
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise InputError(f"{self.dest}: another lvpnet command is working on this archive (or a script "
                                 "calls lvpnet.archive / restore outside `if __name__ == \"__main__\":`, which each "
                                 "worker process it starts runs again)") from None
            return  # a file system without locks (docs/SCALE.md): run one command per DEST yourself
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def meta(self, key: str) -> str | None:
        return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------ reading

    def _source_columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(sources)")}

    def rows(self) -> dict[str, Row]:
        srcs: dict[str, list] = {}
        mode = "mode" if "mode" in self._source_columns() else "NULL"  # a read-only ledger of before modes
        for key, *source in self.db.execute(
            f"SELECT key, path, size, mtime_ns, sha256, {mode} FROM sources ORDER BY key, path"
        ):
            srcs.setdefault(key, []).append(tuple(source))
        out = {}
        for r in self.db.execute(
            "SELECT key, kind, root, state, reason, output_sha256, output_bytes, source_bytes, raw_bytes, "
            "identical, encodes, updated FROM items ORDER BY key"
        ):
            out[r[0]] = Row(*r, sources=srcs.get(r[0], []))
        return out

    # ------------------------------------------------------------ writing (the client only)

    def plan(self, items: list[Item]) -> None:
        """Record what this run will do as ``pending`` (one transaction): the ledger lists the whole
        plan from the start. A row that exists keeps its history (``encodes``)."""
        now = time.time()
        with self.transaction():
            for it in items:
                self.db.execute(
                    "INSERT INTO items (key, kind, root, state, source_bytes, updated) VALUES (?, ?, ?, 'pending', ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, root = excluded.root, state = 'pending', "
                    "reason = NULL, source_bytes = excluded.source_bytes, updated = excluded.updated",
                    (it.key, it.kind, it.root, it.source_bytes, now),
                )
                self.db.execute("DELETE FROM sources WHERE key = ?", (it.key,))
                self.db.executemany("INSERT INTO sources (key, path, size, mtime_ns, hint, mode) VALUES (?, ?, ?, ?, ?, ?)",
                                    [(it.key, s.rel, s.size, s.mtime_ns, s.hint, s.mode) for s in it.sources])

    def refresh(self, items: list[Item]) -> None:
        """What the walk learnt of items done and unchanged: each file's hint (a header read again, as
        for a NIfTI archived before hints were kept) and its permission bits (chmod changes no
        modification time), so a rerun reads no header again and restore gives the bits as they are."""
        with self.transaction():
            self.db.executemany("UPDATE sources SET hint = ?, mode = ? WHERE key = ? AND path = ?",
                                [(s.hint, s.mode, it.key, s.rel) for it in items for s in it.sources])

    def record(self, key: str, result: dict) -> None:
        """One item's result, in one transaction."""
        now = time.time()
        with self.transaction():
            if result["ok"]:
                self.db.execute(
                    "UPDATE items SET state = 'done', reason = NULL, output_sha256 = ?, output_bytes = ?, "
                    "raw_bytes = ?, identical = ?, codecs = ?, encodes = encodes + ?, updated = ? WHERE key = ?",
                    (result["output_sha256"], result["output_bytes"], result.get("raw_bytes"),
                     None if result.get("identical") is None else int(result["identical"]),
                     json.dumps(result.get("codecs") or {}), int(bool(result.get("encoded"))), now, key),
                )
            else:
                self.db.execute(
                    "UPDATE items SET state = 'failed', reason = ?, output_sha256 = NULL, output_bytes = NULL, "
                    "updated = ? WHERE key = ?",
                    (result["reason"], now, key),
                )
            # what the worker read, hashes included; a file that changed since the walk loses its hint
            # (the walk's header reading), so the next walk reads its header again
            self.db.executemany(
                "UPDATE sources SET hint = CASE WHEN size = ? AND mtime_ns = ? THEN hint END, "
                "size = ?, mtime_ns = ?, sha256 = ?, mode = ? WHERE key = ? AND path = ?",
                [(s["size"], s["mtime_ns"], s["size"], s["mtime_ns"], s.get("sha256"), s.get("mode"), key, s["rel"])
                 for s in result.get("sources") or []],
            )

    def keep_previous(self, row: Row, reason: str) -> None:
        """An item archived before (``row``, read before this run's ``plan``) whose new version failed:
        the row and its sources go back to what the archive still holds, so restore gives it (the .lvp
        was never replaced: writes are atomic); ``reason`` says why it is not the newest."""
        with self.transaction():
            self.db.execute(
                "UPDATE items SET state = 'done', reason = ?, output_sha256 = ?, output_bytes = ?, source_bytes = ?, "
                "raw_bytes = ?, identical = ?, updated = ? WHERE key = ?",
                (reason, row.output_sha256, row.output_bytes, row.source_bytes, row.raw_bytes, row.identical,
                 time.time(), row.key),
            )
            self.db.execute("DELETE FROM sources WHERE key = ?", (row.key,))
            self.db.executemany("INSERT INTO sources (key, path, size, mtime_ns, sha256, mode) VALUES (?, ?, ?, ?, ?, ?)",
                                [(row.key, *source) for source in row.sources])

    def note_damage(self, key: str, reason: str | None) -> None:
        """A done item whose output ``archive --check`` found damaged and SOURCE cannot give again: its
        reason says so (``DAMAGED`` first), so that a plain run, which reads no output, still reports it;
        None: found intact since (a copy put back from a backup), the note is dropped."""
        with self.transaction():
            if reason is None:
                self.db.execute("UPDATE items SET reason = NULL WHERE key = ? AND state = 'done' AND reason LIKE ?",
                                (key, DAMAGED + "%"))
            else:
                self.db.execute("UPDATE items SET reason = ? WHERE key = ? AND state = 'done'", (DAMAGED + reason, key))

    def forget(self, keys: list[str]) -> None:
        """Drop items that never made an output (failed, or planned and never done) and that SOURCE no
        longer has: nothing of them is in the archive, so nothing should stay reported."""
        with self.transaction():
            for key in keys:
                self.db.execute("DELETE FROM sources WHERE key = ?", (key,))
                self.db.execute("DELETE FROM items WHERE key = ? AND state != 'done'", (key,))

    def known_files(self) -> dict[str, tuple[int, int, str | None]]:
        """``{path: (size, mtime_ns, hint)}`` of every source file the ledger knows (for the walk)."""
        return {p: (size, mtime, hint) for p, size, mtime, hint in
                self.db.execute("SELECT path, size, mtime_ns, hint FROM sources")}

    def start_run(self, command: str) -> int:
        with self.transaction():
            cur = self.db.execute("INSERT INTO runs (command, started) VALUES (?, ?)", (command, time.time()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, summary: dict) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET finished = ?, summary = ? WHERE id = ?",
                            (time.time(), json.dumps(summary), run_id))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. A ledger that cannot be written
    (a full disk, a read-only mount) stops the run with a message, not a traceback: everything
    recorded before stays, and the outputs not recorded are adopted by the next run."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise InputError(f"cannot write the archive's ledger ({e})") from None
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise InputError(f"cannot write the archive's ledger ({e})") from None
            return False
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise InputError(f"cannot write the archive's ledger ({exc})") from None
        return False
