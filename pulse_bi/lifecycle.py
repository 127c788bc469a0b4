"""``pulse-bi backup``, ``restore`` and ``rebuild``: the DuckDB file's lifecycle
(docs/OPERATIONS.md, "Backup", "Restore", "Rebuild").

Domain errors (``BackupError``, ``ArchiveError``, ``DatabaseFileError``) become one line
on stderr and exit code 2 here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from pulse_bi.options import EnvNumber
from pulse_bi.settings import Float

#: How long ``pulse-bi backup`` waits for the materializer's answer by default (seconds).
BACKUP_TIMEOUT = 600.0

_R = TypeVar("_R")

#: ``--output`` of ``restore`` and ``rebuild``: the file written instead of DUCKDB_PATH.
_output = functools.partial(
    click.option, "--output", type=click.Path(dir_okay=False, path_type=Path), default=None
)


def _settings() -> Any:
    from materializer.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(f"bad setting: {exc}") from None


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def _domain_errors() -> Iterator[None]:
    import duckdb

    from materializer.archive import ArchiveError
    from materializer.backup import BackupError
    from materializer.db import DatabaseFileError

    try:
        yield
    except (BackupError, ArchiveError, DatabaseFileError) as exc:
        _fail(str(exc))
    except duckdb.Error as exc:
        _fail(f"DuckDB: {' '.join(str(exc).split())}")


def _print_backup(path: Path, manifest: Any) -> None:
    click.echo(f"backup:   {path}")
    click.echo(f"sequence: {manifest.last_sequence}")
    click.echo(f"schema:   {manifest.schema_version}")
    click.echo(
        f"events:   {manifest.events_applied} applied, {manifest.events_rejected} rejected, "
        f"{manifest.events_duplicate} duplicate"
    )
    click.echo(f"size:     {manifest.size_bytes} bytes, sha256 {manifest.sha256}")
    click.echo(f"took:     {manifest.seconds:.2f} s")


@click.command("backup")
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--offline",
    is_flag=True,
    envvar="BACKUP_OFFLINE",
    help="Back up DUCKDB_PATH directly instead of asking the running materializer "
    "(the materializer must be stopped). [env: BACKUP_OFFLINE]",
)
@click.option(
    "--timeout",
    envvar="BACKUP_TIMEOUT",
    type=EnvNumber(Float(1)),
    default=BACKUP_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the materializer to write the backup. [env: BACKUP_TIMEOUT]",
)
def backup_command(dest: Path | None, offline: bool, timeout: float) -> None:
    """Write a consistent backup of the DuckDB file into a new directory in DEST.

    DEST defaults to BACKUP_PATH. The running materializer writes it (asked over
    NATS_URL); with no materializer answering, the stopped file is backed up directly.
    Prints the backup's directory and manifest; exit 2 when no backup was written.
    """
    from materializer.backup import snapshot_offline
    from materializer.backup_service import BACKUP_SUBJECT, BackupReply, BackupRequest
    from pulse_bi import __version__

    settings = _settings()
    root = (dest or settings.backup_path).absolute()
    with _domain_errors():
        if not offline:
            asked = BackupRequest(dest=str(root))
            answered = asyncio.run(
                _ask(settings.nats_url, BACKUP_SUBJECT, asked, BackupReply, timeout)
            )
            if answered is not None:
                reply = answered
                if reply.error:
                    _fail(f"the materializer did not write the backup: {reply.error}")
                assert reply.path is not None and reply.manifest is not None
                _print_backup(Path(reply.path), reply.manifest)
                return
            click.echo(
                "no materializer answered over NATS: backing up the stopped file "
                f"{settings.duckdb_path}",
                err=True,
            )
        taken = snapshot_offline(settings.duckdb_path, root, __version__)
        _print_backup(taken.path, taken.manifest)


async def _ask(url: str, subject: str, request: Any, reply: type[_R], timeout: float) -> _R | None:
    """The running materializer's reply of type ``reply`` to ``request`` on ``subject``,
    or None when none answers (or NATS is down); exit 2 when it does not answer in time."""
    import msgspec
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout

    nc = await _connect(url)
    if nc is None:
        return None
    try:
        try:
            msg = await nc.request(subject, msgspec.json.encode(request), timeout=timeout)
        except NoRespondersError:
            return None
        except NatsTimeout:
            _fail(f"the materializer did not answer within {timeout:g} s")
        return msgspec.json.decode(msg.data, type=reply)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-30T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _refuse_if_in_use(path: Path) -> Any:
    """Refuse to replace a file a process (the materializer) holds open.

    Returns a read-only connection to it (or None): its shared lock keeps a
    materializer from opening the file until the caller closes it, just before the swap.
    """
    import duckdb

    from materializer import db

    if not path.exists():
        return None
    try:
        return duckdb.connect(
            str(path),
            read_only=True,
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
    except duckdb.Error as exc:
        error = db.file_error(path, exc)
        if isinstance(error, db.DatabaseLocked):
            _fail(
                f"refusing to restore onto {path}: it is in use ({error}). Stop the "
                "materializer first; a running one keeps serving its own file"
            )
        return None  # a corrupt file is what a restore is for


@click.command("restore")
@click.argument("backup", required=False, type=click.Path(path_type=Path))
@click.option(
    "--to-sequence",
    type=click.IntRange(min=0),
    default=None,
    help="Replay the archive and the stream after the backup only up to this stream "
    "sequence: the state as it was then.",
)
@click.option(
    "--to-time",
    default=None,
    help="Replay only the events the stream received up to this time (ISO 8601, UTC "
    "when no offset is given).",
)
@_output(help="Write the restored file here instead of DUCKDB_PATH (an audit copy).")
def restore_command(
    backup: Path | None, to_sequence: int | None, to_time: str | None, output: Path | None
) -> None:
    """Verify BACKUP and install it as DUCKDB_PATH (or --output).

    The backup is checked first (manifest, checksum, schema version, readable). Events
    archived after it are applied from the archive, so the materializer resumes from
    the stream where the archive ends. With --to-sequence or --to-time the archive and
    the stream are replayed up to that point only. Without BACKUP, --to-sequence or
    --to-time starts from an empty file. Refused while a process holds the target file.
    """
    from materializer import backup as backups

    settings = _settings()
    until_time = _parse_time(to_time) if to_time is not None else None
    if backup is None and to_sequence is None and until_time is None:
        raise click.UsageError("give a BACKUP, or --to-sequence/--to-time to replay from empty")
    target = (output or settings.duckdb_path).absolute()
    with _domain_errors():
        held = _refuse_if_in_use(target)
        verified = None
        if backup is not None:
            verified = backups.verify(backup)
            click.echo(f"verified {verified.path}: sequence {verified.manifest.last_sequence}")
            if to_sequence is not None and to_sequence < verified.manifest.last_sequence:
                _fail(
                    f"the backup holds sequence {verified.manifest.last_sequence}, after "
                    f"{to_sequence}: restore an older backup, or none to replay from empty"
                )
        result = asyncio.run(
            _restore(
                settings,
                verified,
                target,
                held,
                to_sequence,
                until_time,
                replay_stream=bool(to_sequence is not None or until_time is not None),
            )
        )
        click.echo(json.dumps(result))


async def _restore(
    settings: Any,
    verified: Any,
    target: Path,
    held: Any,
    to_sequence: int | None,
    until_time: datetime | None,
    *,
    replay_stream: bool,
) -> dict[str, Any]:
    from materializer import archive, backup, rebuild, replay
    from materializer.store import Store

    incoming = target.with_name(f"{target.name}.restoring")
    for leftover in (incoming, Path(f"{incoming}.wal")):
        leftover.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if verified is not None:
        await asyncio.to_thread(backup.copy_verified, verified, incoming)
    until = replay.Until(sequence=to_sequence, time=until_time)
    store = await asyncio.to_thread(Store.open, incoming)
    try:
        store.archive = archive.ArchiveReader(settings.archive_path, store.read(archive.horizon))
        js_connection = None
        js = None
        if replay_stream:
            js_connection, js = await _jetstream(settings.nats_url)
            if verified is None:
                await rebuild.keep_identity(store, js)
        try:
            result = await replay.replay(store, js, settings.archive_path, until)
        finally:
            if js_connection is not None:
                await js_connection.close()
        horizon = await asyncio.to_thread(rebuild.retire_archived, store, settings.archive_path)
        store.checkpoint(force=True)
        last = store.last_sequence()
    finally:
        store.close()
    if held is not None:
        held.close()
    aside = backup.swap_in(incoming, target, "before-restore")
    return {
        "restored": str(target),
        "last_sequence": last,
        "from_archive": result.archive.messages,
        "from_stream": result.stream.messages,
        "archive_horizon": horizon,
        "previous_file": str(aside) if aside else None,
    }


async def _connect(url: str, timeout: float = 5.0) -> Any:
    """A NATS connection, or None when the server cannot be reached within ``timeout``
    (nats-py would otherwise retry the first connect forever)."""
    import nats

    async def quiet(error: Exception) -> None:
        """Connection errors are reported once, by the caller."""

    try:
        return await asyncio.wait_for(
            nats.connect(
                url.split(","),
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=quiet,
            ),
            timeout,
        )
    except Exception:
        return None


async def _jetstream(url: str) -> tuple[Any, Any]:
    nc = await _connect(url)
    if nc is None:
        _fail(f"cannot reach NATS at {url} to read the stream")
    return nc, nc.jetstream()


@click.command("rebuild")
@_output(help="Where the new file is written (default: DUCKDB_PATH with .rebuilt appended).")
@click.option(
    "--swap/--no-swap",
    default=True,
    help="Put the new file in place of DUCKDB_PATH when done (the old one is kept "
    "beside it as .replaced-<time>): the running materializer does it between two "
    "batches, or, when none runs, this command.",
)
def rebuild_command(output: Path | None, swap: bool) -> None:
    """Build a new DuckDB file from the Parquet archive followed by the stream's tail.

    Runs while the materializer keeps serving the old file. The new file loads the
    archive's typed rows and recomputes every aggregate from them with set-based SQL
    (an archive written before typed rows existed is applied message by message), then
    applies the stream up to its last sequence through the same code as live ingest,
    and ends with the same aggregates. With --swap (the default) it
    then replaces DUCKDB_PATH: a running materializer catches the new file up to its
    own sequence and swaps between two batches; a stopped one's file is swapped here.
    """
    from materializer.swap import SWAP_SUBJECT, SwapReply, SwapRequest

    settings = _settings()
    target = output or settings.duckdb_path.with_name(settings.duckdb_path.name + ".rebuilt")
    target = target.absolute()
    with _domain_errors():
        if target == settings.duckdb_path.absolute():
            _fail("--output must not be DUCKDB_PATH: the rebuild never writes the live file")
        result = asyncio.run(_rebuild(settings, target))
        click.echo(json.dumps(result))
        if swap:
            answered = asyncio.run(
                _ask(
                    settings.nats_url,
                    SWAP_SUBJECT,
                    SwapRequest(str(target)),
                    SwapReply,
                    BACKUP_TIMEOUT,
                )
            )
            if answered is not None:
                if answered.error:
                    _fail(f"the materializer did not swap the files: {answered.error}")
                click.echo(
                    f"swapped: {answered.swapped} at sequence {answered.last_sequence} "
                    f"({answered.caught_up} events caught up, ingest paused "
                    f"{answered.pause_seconds:.2f} s); previous file: {answered.previous_file}"
                )
                return
            held = _refuse_if_in_use(settings.duckdb_path)
            if held is not None:
                held.close()
            from materializer import backup

            aside = backup.swap_in(target, settings.duckdb_path.absolute(), "replaced")
            click.echo(f"swapped: {settings.duckdb_path} (previous file: {aside})")


async def _rebuild(settings: Any, target: Path) -> dict[str, Any]:
    from materializer import rebuild

    for leftover in (target, Path(f"{target}.wal")):
        leftover.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    nc, js = await _jetstream(settings.nats_url)
    try:
        result = await rebuild.rebuild(target, settings.archive_path, js)
    finally:
        await nc.close()
    return {"rebuilt": str(target), **result.report()}
