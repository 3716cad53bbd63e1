"""Where messages come from: an IMAP folder over TLS, or files (.eml, .mbox, Maildir).

Sources hand out raw bytes and the server's arrival time; they know nothing of the
database. The IMAP mailbox also moves (or flags) a message once its result is committed.
"""

import imaplib
import mailbox
import os
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from forum.ingest.services import Settings

DONE_KEYWORD = "AportaProcesado"
ERROR_KEYWORD = "AportaError"
_FETCH_META = re.compile(rb"UID (\d+)|INTERNALDATE \"([^\"]+)\"|RFC822\.SIZE (\d+)")


class SourceError(Exception):
    """The mailbox or file could not be read (message in Spanish)."""


@dataclass
class RawItem:
    raw: bytes
    source: str
    source_ref: str
    received_at: datetime | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    size: int | None = None


class ImapMailbox:
    """One IMAP session on the configured folder: list, fetch raw, then move or flag."""

    def __init__(self, config: Settings):
        self.config = config
        self.connection: imaplib.IMAP4 | None = None
        self.uidvalidity: int = 0
        self.can_move = False

    def __enter__(self) -> "ImapMailbox":
        config = self.config
        if not config.imap_host:
            raise SourceError("Falta APORTA_IMAP_HOST: no hay buzón IMAP configurado.")
        context = ssl.create_default_context(cafile=config.imap_cafile or None)
        connection = None
        try:
            if config.imap_security == "starttls":
                connection = imaplib.IMAP4(
                    config.imap_host, config.imap_port, timeout=config.imap_timeout
                )
                connection.starttls(ssl_context=context)
            elif config.imap_security == "ssl":
                connection = imaplib.IMAP4_SSL(
                    config.imap_host,
                    config.imap_port,
                    ssl_context=context,
                    timeout=config.imap_timeout,
                )
            else:
                raise SourceError("APORTA_IMAP_SECURITY debe ser «ssl» o «starttls».")
            connection.login(config.imap_user, config.imap_password)
        except (OSError, imaplib.IMAP4.error) as error:
            if connection is not None:
                connection.shutdown()
            raise SourceError(
                f"No se pudo entrar al buzón IMAP {config.imap_host}: {error}"
            ) from error
        self.connection = connection
        self.can_move = "MOVE" in connection.capabilities
        status, data = connection.select(_quote(config.imap_folder))
        if status != "OK":
            raise SourceError(f"No existe la carpeta IMAP «{config.imap_folder}».")
        found = connection.untagged_responses.get("UIDVALIDITY") or [b"0"]
        self.uidvalidity = int(found[-1])
        if config.after == "move":
            for folder in (config.done_folder, config.error_folder):
                connection.create(_quote(folder))  # "already exists" is fine
        return self

    def __exit__(self, *exc) -> None:
        if self.connection is None:
            return
        try:
            self.connection.logout()
        except (OSError, imaplib.IMAP4.error):
            try:  # the connection is already broken: just close the socket
                self.connection.shutdown()
            except OSError:
                pass
        self.connection = None

    def pending_uids(self) -> list[int]:
        """UIDs of the messages still to ingest, oldest first."""
        criteria = "ALL"
        if self.config.after == "flag":
            criteria = f"UNKEYWORD {DONE_KEYWORD} UNKEYWORD {ERROR_KEYWORD}"
        status, data = self.connection.uid("SEARCH", None, criteria)
        _check(status, data)
        return sorted(int(uid) for uid in (data[0] or b"").split())

    def fetch(self, uids: list[int]) -> list[RawItem]:
        """The raw bytes (BODY.PEEK[], so nothing is marked read) and INTERNALDATE of UIDs.

        A message over the size limit is fetched as its header section only.
        """
        if not uids:
            return []
        status, data = self.connection.uid("FETCH", _uid_set(uids), "(UID RFC822.SIZE)")
        _check(status, data)
        sizes = {meta["uid"]: meta["size"] for meta, _ in _fetched(data)}
        small = [uid for uid in uids if sizes.get(uid, 0) <= self.config.message_max_bytes]
        large = [uid for uid in uids if uid not in small and uid in sizes]
        items = []
        for part, wanted in (("BODY.PEEK[]", small), ("BODY.PEEK[HEADER]", large)):
            if not wanted:
                continue
            status, data = self.connection.uid(
                "FETCH", _uid_set(wanted), f"(UID INTERNALDATE RFC822.SIZE {part})"
            )
            _check(status, data)
            for meta, raw in _fetched(data):
                items.append(
                    RawItem(
                        raw=raw,
                        source="imap",
                        source_ref=self.config.imap_folder,
                        received_at=meta.get("internaldate"),
                        uidvalidity=self.uidvalidity,
                        uid=meta["uid"],
                        size=meta.get("size"),
                    )
                )
        return sorted(items, key=lambda item: item.uid)

    def finish(self, uids: list[int], statuses: list[str]) -> None:
        """After the commit: move the batch to the done and error folders (one UID MOVE each)."""
        failed = [uid for uid, status in zip(uids, statuses, strict=True) if status == "error"]
        done = [uid for uid, status in zip(uids, statuses, strict=True) if status != "error"]
        for uids, folder, keyword in (
            (done, self.config.done_folder, DONE_KEYWORD),
            (failed, self.config.error_folder, ERROR_KEYWORD),
        ):
            if not uids:
                continue
            if self.config.after == "flag":
                self._uid("STORE", _uid_set(uids), "+FLAGS", f"(\\Seen {keyword})")
            elif self.can_move:
                self._uid("MOVE", _uid_set(uids), _quote(folder))
            else:
                self._uid("COPY", _uid_set(uids), _quote(folder))
                self._uid("STORE", _uid_set(uids), "+FLAGS", "(\\Deleted)")
                if "UIDPLUS" in self.connection.capabilities:
                    self._uid("EXPUNGE", _uid_set(uids))
                else:
                    self.connection.expunge()

    def _uid(self, command: str, *args) -> None:
        status, data = self.connection.uid(command, *args)
        _check(status, data)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: list[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def _check(status: str, data) -> None:
    if status != "OK":
        raise SourceError(f"El servidor IMAP respondió {status}: {data!r}")


def _fetched(data: list) -> Iterator[tuple[dict, bytes]]:
    """(metadata, literal) pairs of a FETCH answer; metadata has uid, size, internaldate."""
    for entry in data:
        if not isinstance(entry, tuple):
            continue
        head, literal = entry
        meta: dict = {}
        for uid, date, size in _FETCH_META.findall(head):
            if uid:
                meta["uid"] = int(uid)
            if date:
                meta["internaldate"] = datetime.strptime(
                    date.decode(), "%d-%b-%Y %H:%M:%S %z"
                ).astimezone(UTC)
            if size:
                meta["size"] = int(size)
        if "uid" in meta:
            yield meta, literal


# Files ---------------------------------------------------------------------------------

FILE_SUFFIXES = (".eml", ".msg", ".txt")


def file_loaders(paths: list[str]) -> list[Callable[[], Iterator[RawItem]]]:
    """One loader per .eml file, mbox file or Maildir, so a long run can show progress."""
    loaders: list[Callable[[], Iterator[RawItem]]] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise SourceError(f"No existe el archivo o la carpeta «{name}».")
        if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
            loaders.extend(_maildir_loaders(path))
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() == ".mbox":
                    loaders.append(_mbox_loader(child))
                elif child.suffix.lower() in FILE_SUFFIXES and not _inside_maildir(child):
                    loaders.append(_eml_loader(child))
            for maildir in sorted(p for p in path.rglob("cur") if (p.parent / "new").is_dir()):
                loaders.extend(_maildir_loaders(maildir.parent))
        elif path.suffix.lower() == ".mbox" or _starts_like_mbox(path):
            loaders.append(_mbox_loader(path))
        else:
            loaders.append(_eml_loader(path))
    return loaders


def _inside_maildir(path: Path) -> bool:
    return path.parent.name in ("cur", "new", "tmp") and (path.parent.parent / "cur").is_dir()


def _starts_like_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def _eml_loader(path: Path) -> Callable[[], Iterator[RawItem]]:
    def load() -> Iterator[RawItem]:
        yield RawItem(raw=path.read_bytes(), source="file", source_ref=str(path))

    return load


def _maildir_loaders(path: Path) -> list[Callable[[], Iterator[RawItem]]]:
    """Maildir: every file in new/ and cur/, its delivery time from the file's mtime."""
    files = sorted(p for sub in ("new", "cur") for p in (path / sub).iterdir() if p.is_file())

    def loader(file: Path) -> Callable[[], Iterator[RawItem]]:
        def load() -> Iterator[RawItem]:
            arrived = datetime.fromtimestamp(os.stat(file).st_mtime, UTC)
            yield RawItem(
                raw=file.read_bytes(), source="file", source_ref=str(file), received_at=arrived
            )

        return load

    return [loader(file) for file in files]


def _mbox_loader(path: Path) -> Callable[[], Iterator[RawItem]]:
    def load() -> Iterator[RawItem]:
        yield from mbox_items(str(path))

    return load


def mbox_items(path: str, source: str = "file", label: str = "") -> Iterator[RawItem]:
    """Each message of an mbox file, its arrival time from the 'From ' line."""
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            handle = box.get_file(key, from_=True)
            try:
                from_line = handle.readline().decode("ascii", "replace")
            finally:
                handle.close()
            yield RawItem(
                raw=raw,
                source=source,
                source_ref=f"{label or path}#{key}",
                received_at=_mbox_date(from_line),
            )
    finally:
        box.close()


def _mbox_date(from_line: str) -> datetime | None:
    """'From sender Mon Sep 25 10:15:00 2017' -> that instant (read as UTC)."""
    text = " ".join(from_line.split()[2:7])
    try:
        return datetime.strptime(text, "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
    except ValueError:
        return None
