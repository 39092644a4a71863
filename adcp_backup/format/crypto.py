"""age encryption of backup files: keys from settings, and streaming encrypt/decrypt layers over pyrage."""
from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any, cast

from ..conf import backup_settings
from ..exceptions import BackupConfigurationError, BackupError, EncryptionKeyError, InvalidBackup, Problem
from ..extras import require

logger = logging.getLogger(__name__)

SUFFIX = ".age"
SECRET_KEY_PREFIX = "AGE-SECRET-KEY-1"
PUBLIC_KEY_PREFIX = "age1"
# Plaintext or ciphertext held between the two threads of a layer: memory stays flat whatever the file's size.
CHANNEL_LIMIT = 1 << 20
WRITE_BLOCK = 256 << 10
JOIN_TIMEOUT = 60.0

_open_layers: ContextVar[list[Any] | None] = ContextVar("adcp_backup_age_layers", default=None)


def _pyrage() -> Any:
    return require("pyrage", needed_for="age encryption", extra="age")


# -- keys ------------------------------------------------------------------------------------------------
def recipients_setting() -> list[str]:
    return backup_settings.AGE_RECIPIENTS


def configured_recipients() -> list[Any]:
    """The recipients of new encrypted backups, parsed; a clear error when there are none or one is wrong."""
    keys = recipients_setting()
    if not keys:
        raise BackupConfigurationError(
            "Encryption is on but ADCP_BACKUP_AGE_RECIPIENTS is empty: set it to one or more age public keys "
            "(age1..., as printed by age-keygen), comma-separated."
        )
    return parse_recipients(keys)


def parse_recipients(keys: Sequence[str]) -> list[Any]:
    x25519 = _pyrage().x25519
    recipients = []
    for key in keys:
        if not key.startswith(PUBLIC_KEY_PREFIX):
            raise BackupConfigurationError(
                f"ADCP_BACKUP_AGE_RECIPIENTS holds {key[:12]!r}..., which is not an age public key (age1...)."
            )
        try:
            recipients.append(x25519.Recipient.from_str(key))
        except Exception as exc:  # pyrage.RecipientError
            raise BackupConfigurationError(f"{key!r} is not a valid age public key ({exc}).") from exc
    return recipients


def load_identities(identity: str | os.PathLike[str] | None = None) -> list[Any]:
    """The private keys of an identity file (``identity``, else ADCP_BACKUP_AGE_IDENTITY).

    Error messages name where the path came from, never the path or the file's content."""
    origin = "the identity file given with --identity" if identity else "the identity file in ADCP_BACKUP_AGE_IDENTITY"
    path = Path(identity).expanduser() if identity else backup_settings.AGE_IDENTITY
    if path is None:
        raise EncryptionKeyError(
            "The backup is encrypted with age and no identity is configured: pass --identity PATH "
            "or set ADCP_BACKUP_AGE_IDENTITY to the identity file written by age-keygen."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} does not exist.") from exc
    except IsADirectoryError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} is a folder, not a file.") from exc
    except PermissionError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} cannot be read (permission denied).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} cannot be read ({type(exc).__name__}).") from exc
    x25519 = _pyrage().x25519
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line.startswith(SECRET_KEY_PREFIX):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except Exception as exc:  # pyrage.IdentityError; its text never carries the key
            raise EncryptionKeyError(f"Cannot decrypt: line {number} of {origin} is not a valid age identity.") from exc
    if not identities:
        raise EncryptionKeyError(
            f"Cannot decrypt: {origin} holds no {SECRET_KEY_PREFIX}... line (write one with age-keygen)."
        )
    return identities


# -- passphrase files -----------------------------------------------------------------------------------------
# A file written by `age -p` has one recipient stanza, scrypt, right after the version line.
PASSPHRASE_STANZA = b"age-encryption.org/v1\n-> scrypt "
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"


def is_passphrase_encrypted(head: bytes) -> bool:
    """Whether the first bytes of an age file (binary or armored) show a passphrase (scrypt) recipient."""
    if head.startswith(PASSPHRASE_STANZA):
        return True
    if not head.startswith(ARMOR_BEGIN):
        return False
    lines = head[len(ARMOR_BEGIN):].strip().splitlines()
    if not lines:
        return False
    try:
        first = base64.b64decode(lines[0].strip() + b"=" * (-len(lines[0].strip()) % 4))
    except (binascii.Error, ValueError):
        return False
    return first.startswith(PASSPHRASE_STANZA[:len(first)]) and len(first) >= len(PASSPHRASE_STANZA)


def refuse_passphrase_file(head: bytes) -> None:
    """Passphrase files are not read (pyrage decrypts them only whole, in memory): say so, and how to convert."""
    if is_passphrase_encrypted(head):
        raise EncryptionKeyError(
            "This backup is encrypted with a passphrase (age -p), which adcp-backup does not read: it reads files "
            "encrypted to age public keys. Re-encrypt it to your key with "
            "'age -d FILE | age -r age1... -o FILE.age' and use the new file."
        )


# -- the channel between the caller's thread and pyrage's ---------------------------------------------------
class _Cancelled(Exception):
    """The other side of a channel went away; the worker stops."""


class _Channel:
    """A bounded FIFO of byte chunks between one producing and one consuming thread, with end and cancel."""

    def __init__(self, limit: int = CHANNEL_LIMIT) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._cond = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self.cancelled = False

    def send(self, data: bytes) -> None:
        with self._cond:
            while self._size >= self._limit and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise _Cancelled()
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def receive(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end; the producer's error once its data is used up."""
        with self._cond:
            while not self._chunks and not self._finished and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise _Cancelled()
            if self._chunks:
                chunk = self._chunks[0]
                if len(chunk) <= size:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[size:]
                    chunk = chunk[:size]
                self._size -= len(chunk)
                self._cond.notify_all()
                return chunk
            if self._error is not None:
                raise self._error
            return b""

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()


class _ChannelSink:
    """What pyrage writes to: the channel."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def write(self, data: Any) -> int:
        self._channel.send(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class _ChannelSource:
    """What pyrage reads from: the channel."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def read(self, size: int = -1) -> bytes:
        return self._channel.receive(size if size and size > 0 else CHANNEL_LIMIT)


class _RecordingSource:
    """The encrypted input, remembering an error of its own so it is not mistaken for an age error."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except BaseException as exc:
            self.error = exc
            raise


def _join(thread: threading.Thread) -> None:
    if thread is threading.current_thread() or not thread.is_alive():
        return
    thread.join(JOIN_TIMEOUT)
    if thread.is_alive():  # pragma: no cover - only when the underlying stream blocks for a minute
        logger.warning("The age worker thread %s did not stop within %.0f s.", thread.name, JOIN_TIMEOUT)


def _register(layer: Any) -> None:
    layers = _open_layers.get()
    if layers is not None:
        layers.append(layer)


@contextmanager
def layer_scope() -> Iterator[None]:
    """Stops every decrypting layer opened inside the block when it ends, before its file is closed."""
    layers: list[Any] = []
    token = _open_layers.set(layers)
    try:
        yield
    finally:
        _open_layers.reset(token)
        for layer in layers:
            layer.close()


# -- decryption ------------------------------------------------------------------------------------------
def _translate_decrypt_error(exc: BaseException, source: _RecordingSource) -> BaseException:
    if source.error is not None:  # the input itself failed (a disk or network error), not the decryption
        if isinstance(source.error, BackupError):
            return source.error
        read_error = BackupError(f"Reading the encrypted backup failed: {source.error}")
        read_error.__cause__ = source.error
        return read_error
    pyrage = _pyrage()
    message = str(exc)
    error: BaseException
    if isinstance(exc, pyrage.DecryptError):
        if "no matching keys" in message.lower():
            error = EncryptionKeyError(
                "The backup cannot be decrypted with the configured age identity: it was encrypted to other "
                "recipients, or its age header is damaged."
            )
        else:
            error = InvalidBackup(Problem("encryption", f"the age header is damaged or incomplete ({message})"))
    elif isinstance(exc, OSError):
        error = InvalidBackup(
            Problem("encryption", "an encrypted chunk failed age's authentication: the file is truncated "
                                  "or was altered after it was written")
        )
    else:
        error = BackupError(f"Decrypting the backup failed: {type(exc).__name__}: {message}")
    error.__cause__ = exc
    return error


def _decrypt_worker(stream: IO[bytes], identities: list[Any], channel: _Channel) -> None:
    source = _RecordingSource(stream)
    try:
        _pyrage().decrypt_io(source, _ChannelSink(channel), identities)
    except _Cancelled:
        return
    except BaseException as exc:  # handed to the reading thread, which raises it
        if channel.cancelled:
            return
        channel.finish(_translate_decrypt_error(exc, source))
        return
    channel.finish()


class DecryptingReader(io.RawIOBase):
    """The plaintext of an age file, decrypted by pyrage in a worker thread while it is read."""

    def __init__(self, stream: IO[bytes], identities: list[Any]) -> None:
        super().__init__()
        self._channel = _Channel()
        self._thread = threading.Thread(target=_decrypt_worker, args=(stream, identities, self._channel),
                                         name="adcp-backup-age-decrypt", daemon=True)
        # The worker holds the channel, not the reader: an abandoned reader is collected and stops it.
        self._finalizer = weakref.finalize(self, _stop, self._channel, self._thread)
        self._thread.start()
        _register(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed decrypting reader")
        try:
            data = self._channel.receive(len(buffer))
        except _Cancelled:
            raise ValueError("read from a closed decrypting reader") from None
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._finalizer()
        super().close()


def _stop(channel: _Channel, thread: threading.Thread) -> None:
    channel.cancel()
    _join(thread)


def decrypting_reader(stream: IO[bytes], *, identity: str | os.PathLike[str] | None = None) -> IO[bytes]:
    """The decrypted content of ``stream``, an age file, with the identity file ``identity`` (else the setting)."""
    identities = load_identities(identity)
    return cast(IO[bytes], DecryptingReader(stream, identities))


# -- encryption ------------------------------------------------------------------------------------------
def _encrypt_worker(raw: IO[bytes], recipients: list[Any], channel: _Channel, outcome: dict[str, Any]) -> None:
    try:
        _pyrage().encrypt_io(_ChannelSource(channel), raw, recipients)
    except _Cancelled:
        return
    except BaseException as exc:
        outcome["error"] = exc
        channel.cancel()  # the writing side raises the error at its next write


class EncryptingWriter:
    """Bytes written here reach ``raw`` as an age file; ``close`` writes the last chunk and waits for it."""

    def __init__(self, raw: IO[bytes] | Any, recipients: list[Any]) -> None:
        self._channel = _Channel()
        self._outcome: dict[str, Any] = {}
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._thread = threading.Thread(target=_encrypt_worker, args=(raw, recipients, self._channel, self._outcome),
                                        name="adcp-backup-age-encrypt", daemon=True)
        self._finalizer = weakref.finalize(self, _stop, self._channel, self._thread)
        self._thread.start()
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError("write to a closed encrypting writer")
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BLOCK:
            self._send()
        return len(data)

    def flush(self) -> None:
        pass

    def _send(self) -> None:
        block = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        try:
            self._channel.send(block)
        except _Cancelled:
            self._raise_worker_error()

    def _raise_worker_error(self) -> None:
        self._done = True
        self._finalizer()
        error = self._outcome.get("error")
        if isinstance(error, BackupError) or error is None:
            raise error or BackupError("The encryption stopped unexpectedly.")
        if isinstance(error, _pyrage().EncryptError):
            raise BackupError(f"Encrypting the backup failed: {error}") from error
        raise error

    def close(self) -> None:
        """Finish the age stream; raises what went wrong in the worker, if anything did."""
        if self._done:
            return
        if self._pending:
            self._send()
        self._channel.finish()
        self._done = True
        _join(self._thread)
        self._finalizer.detach()
        if "error" in self._outcome:
            self._raise_worker_error()

    def abort(self) -> None:
        """Stop without finishing: what was written is not a complete age file."""
        self._done = True
        self._finalizer()


@contextmanager
def encrypting(raw: IO[bytes] | Any, recipients: list[Any]) -> Iterator[EncryptingWriter]:
    """An encrypting layer over ``raw`` for the block: finished on success, abandoned on an exception."""
    writer = EncryptingWriter(raw, recipients)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()
