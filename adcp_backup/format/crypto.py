"""age encryption of backup files: streaming encrypt/decrypt layers over pyrage, with parsed keys given.

Loading keys from the installation's settings is the caller's part (``adcp_backup.keys``)."""
from __future__ import annotations

import base64
import binascii
import io
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, TypeAlias

from .codecs import Sink
from .errors import BackupError, EncryptionKeyError, InvalidBackup, Problem
from .optional import require
from .pipe import Cancelled, Channel, ChannelSink, ChannelSource, RecordingSource, join, stop

SUFFIX = ".age"
SECRET_KEY_PREFIX = "AGE-SECRET-KEY-1"
PUBLIC_KEY_PREFIX = "age1"
WRITE_BLOCK = 256 << 10

# pyrage's key objects are opaque here: they come from pyrage (parsed by the caller) and go back to pyrage.
Identity: TypeAlias = object
Recipient: TypeAlias = object


def pyrage() -> Any:
    """The pyrage module, or a configuration error naming the extra that installs it."""
    return require("pyrage", needed_for="age encryption", extra="age")


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


# -- decryption ------------------------------------------------------------------------------------------
def _translate_decrypt_error(exc: BaseException, source: RecordingSource) -> BaseException:
    if source.error is not None:  # the input itself failed (a disk or network error), not the decryption
        if isinstance(source.error, BackupError):
            return source.error
        read_error = BackupError(f"Reading the encrypted backup failed: {source.error}")
        read_error.__cause__ = source.error
        return read_error
    age = pyrage()
    message = str(exc)
    error: BaseException
    if isinstance(exc, age.DecryptError):
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


def _decrypt_worker(stream: IO[bytes], identities: Sequence[Identity], channel: Channel) -> None:
    source = RecordingSource(stream)
    try:
        pyrage().decrypt_io(source, ChannelSink(channel), list(identities))
    except Cancelled:
        return
    except BaseException as exc:  # handed to the reading thread, which raises it
        if channel.cancelled:
            return
        channel.finish(_translate_decrypt_error(exc, source))
        return
    channel.finish()


class DecryptingReader(io.RawIOBase):
    """The plaintext of an age file, decrypted by pyrage in a worker thread while it is read."""

    def __init__(self, stream: IO[bytes], identities: Sequence[Identity]) -> None:
        super().__init__()
        self._channel = Channel()
        self._thread = threading.Thread(target=_decrypt_worker, args=(stream, identities, self._channel),
                                         name="adcp-backup-age-decrypt", daemon=True)
        # The worker holds the channel, not the reader: an abandoned reader is collected and stops it.
        self._finalizer = weakref.finalize(self, stop, self._channel, self._thread)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # a writable buffer: memoryview or bytearray
        if self.closed:
            raise ValueError("read from a closed decrypting reader")
        try:
            data = self._channel.receive(len(buffer))
        except Cancelled:
            raise ValueError("read from a closed decrypting reader") from None
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        """Stop the worker and wait for it: after this no thread reads the encrypted stream."""
        if not self.closed:
            self._finalizer()
        super().close()


def decrypting_reader(stream: IO[bytes], identities: Sequence[Identity]) -> DecryptingReader:
    """The decrypted content of ``stream``, an age file, with ``identities``; close it to stop its thread."""
    if not identities:
        raise EncryptionKeyError("The backup is encrypted with age and no identity was given to decrypt it.")
    return DecryptingReader(stream, identities)


# -- encryption ------------------------------------------------------------------------------------------
def _encrypt_worker(raw: Sink, recipients: Sequence[Recipient], channel: Channel,
                    outcome: dict[str, BaseException]) -> None:
    try:
        pyrage().encrypt_io(ChannelSource(channel), raw, list(recipients))
    except Cancelled:
        return
    except BaseException as exc:
        outcome["error"] = exc
        channel.cancel()  # the writing side raises the error at its next write


class EncryptingWriter:
    """Bytes written here reach ``raw`` as an age file; ``close`` writes the last chunk and waits for it."""

    def __init__(self, raw: Sink, recipients: Sequence[Recipient]) -> None:
        self._channel = Channel()
        self._outcome: dict[str, BaseException] = {}
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._thread = threading.Thread(target=_encrypt_worker, args=(raw, recipients, self._channel, self._outcome),
                                        name="adcp-backup-age-encrypt", daemon=True)
        self._finalizer = weakref.finalize(self, stop, self._channel, self._thread)
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
        except Cancelled:
            self._raise_worker_error()

    def _raise_worker_error(self) -> None:
        self._done = True
        self._finalizer()
        error = self._outcome.get("error")
        if isinstance(error, BackupError) or error is None:
            raise error or BackupError("The encryption stopped unexpectedly.")
        if isinstance(error, pyrage().EncryptError):
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
        join(self._thread)
        self._finalizer.detach()
        if "error" in self._outcome:
            self._raise_worker_error()

    def abort(self) -> None:
        """Stop without finishing: what was written is not a complete age file."""
        self._done = True
        self._finalizer()


@contextmanager
def encrypting(raw: Sink, recipients: Sequence[Recipient]) -> Iterator[EncryptingWriter]:
    """An encrypting layer over ``raw`` for the block: finished on success, abandoned on an exception."""
    writer = EncryptingWriter(raw, recipients)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()
