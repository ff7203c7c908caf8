"""Stored contact imports: a large CSV uploaded through the API, run by a worker, and
every CSV imported through the admin's import wizard.

The upload is stored (default storage, under ``imports/``) and an ``ImportJob`` row
records its progress, so a client can follow it and a worker that dies mid-import
leaves a job the broker hands to another worker (the task is acknowledged late, and
importing a file again is safe: rows already stored are skipped). The wizard stores
the file first (:func:`import_job_store`), lets the user match its columns, then
starts it (:func:`import_job_start`) in the request or, for a large file, in a worker;
either way the job keeps the result and its row errors for the report.
"""

import logging
from datetime import timedelta
from functools import partial

from celery import shared_task

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from smscampaigns.models import ApiKey

from .imports import ContactImportError, ImportResult, contact_import_csv
from .models import ContactList, ImportJob
from .services import contact_list_get_or_create, signups_prune

logger = logging.getLogger(__name__)


def import_job_create(
    *,
    file: UploadedFile,
    contact_list: ContactList | None = None,
    region: str = "",
    encoding: str = "",
    delimiter: str = "",
    keypad_letters: bool = False,
    created_by_key: ApiKey | None = None,
) -> ImportJob:
    """Store ``file`` and queue its import; return the pending job.

    A blank ``encoding`` or ``delimiter`` is told from the file when it runs.
    """
    job = import_job_store(
        file=file,
        contact_list=contact_list,
        region=region,
        encoding=encoding,
        delimiter=delimiter,
        keypad_letters=keypad_letters,
        created_by_key=created_by_key,
    )
    import_job_enqueue(job_id=job.pk)
    return job


def import_job_store(
    *,
    file: UploadedFile,
    contact_list: ContactList | None = None,
    new_list_name: str = "",
    region: str = "",
    encoding: str = "",
    delimiter: str = "",
    keypad_letters: bool = False,
    created_by_key: ApiKey | None = None,
    created_by: AbstractBaseUser | None = None,
) -> ImportJob:
    """Store ``file`` as a pending job without starting it.

    The admin's import wizard keeps the upload here while the user matches its
    columns, then starts it with :func:`import_job_start`.
    """
    job = ImportJob(
        contact_list=contact_list,
        new_list_name=new_list_name,
        region=region,
        encoding=encoding,
        delimiter=delimiter,
        keypad_letters=keypad_letters,
        # Control characters (NUL above all) cannot be stored in PostgreSQL text.
        file_name="".join(c for c in file.name or "" if c.isprintable())[:255],
        created_by_key=created_by_key,
        created_by=created_by,
    )
    # Named after the job, not the upload: unique, and no user text in the path.
    job.file.save(f"{job.pk}.csv", file, save=False)
    job.save()
    return job


def import_job_enqueue(*, job_id) -> None:
    """Hand the job to a worker once the current transaction commits."""
    transaction.on_commit(partial(_enqueue, job_id))


def import_job_start(
    *, job_id, columns: dict[str, str | None], background: bool
) -> ImportJob | None:
    """Fix the column mapping of a job stored by :func:`import_job_store` and run it.

    ``background`` leaves it to a worker: queued for Celery when a broker is
    configured, else left pending for ``run_worker`` (:func:`import_jobs_run_pending`).
    Otherwise it runs here and the finished job is returned. A list named ``new_list_name`` is created (or found) first.
    Returns None when the job was already started, e.g. by a form submitted twice.
    """
    # Setting the mapping is the claim: a second submission finds it set.
    claimed = ImportJob.objects.filter(
        pk=job_id, status=ImportJob.Status.PENDING, columns__isnull=True
    ).update(columns=columns)
    if not claimed:
        return None
    job = ImportJob.objects.get(pk=job_id)
    if job.contact_list_id is None and job.new_list_name:
        job.contact_list, _ = contact_list_get_or_create(name=job.new_list_name)
        job.save(update_fields=["contact_list"])
    if background:
        from smscampaigns.celery import broker_configured

        if broker_configured():
            import_job_enqueue(job_id=job.pk)
        return job
    return import_job_run(job_id=job.pk)


def import_job_discard(*, job: ImportJob) -> None:
    """Delete a job and its stored file (a wizard left before the import started)."""
    if job.file:
        job.file.delete(save=False)
    job.delete()


def _enqueue(job_id) -> None:
    try:
        run_import.delay(str(job_id))
    except Exception:
        # The broker is down or refused the task: say so on the job rather than
        # leave it pending forever.
        logger.exception("Could not queue import job %s", job_id)
        _finish(
            job_id,
            status=ImportJob.Status.FAILED,
            error="The import could not be queued; upload the file again later.",
        )


@shared_task(acks_late=True, ignore_result=True)
def run_import(job_id: str) -> None:
    import_job_run(job_id=job_id)


def import_job_run(*, job_id: str) -> ImportJob | None:
    """Import a stored upload; return the finished job, or None if there is nothing to do.

    A job found ``running`` is run again: its worker died, and the broker redelivered
    the task.
    """
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.PENDING, ImportJob.Status.RUNNING]
    ).update(status=ImportJob.Status.RUNNING, progress_at=timezone.now())
    if not claimed:
        return None
    job = ImportJob.objects.select_related("contact_list").get(pk=job_id)

    def heartbeat(result: ImportResult) -> None:
        # Each chunk written shows the worker is alive (see import_jobs_fail_stalled).
        ImportJob.objects.filter(pk=job_id).update(progress_at=timezone.now())

    try:
        with job.file.open("rb") as file:
            result = contact_import_csv(
                file=file,
                columns=job.columns,
                contact_list=job.contact_list,
                region=job.region or None,
                encoding=job.encoding or None,
                delimiter=job.delimiter or None,
                keypad_letters=job.keypad_letters,
                on_chunk=heartbeat,
            )
    except ContactImportError as exc:
        _finish(job.pk, status=ImportJob.Status.FAILED, error=str(exc))
    except Exception:
        _finish(
            job.pk,
            status=ImportJob.Status.FAILED,
            error="The import stopped on an internal error.",
        )
        raise
    else:
        # With each error's cells, for the admin's error report.
        _finish(
            job.pk,
            status=ImportJob.Status.DONE,
            result=result.to_dict(with_cells=True),
        )
    job.refresh_from_db()
    return job


def _finish(
    job_id, *, status: str, result: dict | None = None, error: str = ""
) -> None:
    job = ImportJob.objects.get(pk=job_id)
    if job.file:
        # The file holds people's numbers: keep it no longer than the import needs it.
        job.file.delete(save=False)
    ImportJob.objects.filter(pk=job_id).update(
        status=status,
        result=result,
        error=error,
        file="",
        finished_at=timezone.now(),
    )


STALLED_MINUTES = 15
"""A running import with no progress for this long lost its worker: it fails.
(A chunk of 2,000 rows takes well under a second.)"""
ABANDONED_HOURS = 24
"""Uploads left at the column-matching step are deleted after this long."""


def import_job_stalled(job: ImportJob) -> bool:
    """Whether ``job`` is running with no progress for so long its worker must be dead.

    A chunk takes seconds, so minutes without one means the process stopped.
    """
    if job.status != ImportJob.Status.RUNNING:
        return False
    last = job.progress_at or job.created_at
    return last < timezone.now() - _stalled_after()


def import_jobs_run_pending(*, limit: int = 1) -> int:
    """The ``run_worker`` round's import work, for a machine without a broker.

    Runs up to ``limit`` imports that wait for a worker (large wizard uploads, API
    uploads), marks failed the running imports whose worker died, and deletes
    wizard uploads abandoned at the column-matching step. With a broker, Celery
    runs the imports and only the clean-up happens here. Returns how many
    imports ran.
    """
    from smscampaigns.celery import broker_configured

    import_jobs_fail_stalled()
    import_jobs_discard_abandoned()
    if broker_configured():
        return 0
    waiting = (
        ImportJob.objects.filter(status=ImportJob.Status.PENDING)
        # A wizard upload is ready once its columns are matched.
        .exclude(columns__isnull=True, created_by__isnull=False)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    ran = 0
    for job_id in list(waiting[:limit]):
        # The pending → running update is the claim: two workers never share a job.
        claimed = ImportJob.objects.filter(
            pk=job_id, status=ImportJob.Status.PENDING
        ).update(status=ImportJob.Status.RUNNING, progress_at=timezone.now())
        if claimed:
            import_job_run(job_id=job_id)
            ran += 1
    return ran


def import_jobs_fail_stalled() -> int:
    """Mark failed the running imports with no progress for a while (their worker
    died); return how many. The rows imported before it stopped are kept."""
    minutes = int(_stalled_after().total_seconds() // 60)
    cutoff = timezone.now() - _stalled_after()
    stalled = ImportJob.objects.filter(status=ImportJob.Status.RUNNING).filter(
        Q(progress_at__lt=cutoff) | Q(progress_at__isnull=True, created_at__lt=cutoff)
    )
    failed = 0
    for job_id in stalled.values_list("pk", flat=True):
        failed += 1
        _finish(
            job_id,
            status=ImportJob.Status.FAILED,
            error=f"The worker running the import stopped (no progress for {minutes} "
            "minutes). The rows imported before that are kept; upload the file "
            "again to import the rest (rows already imported are skipped).",
        )
    return failed


def import_jobs_discard_abandoned() -> int:
    """Delete wizard uploads whose columns were never matched within
    :data:`ABANDONED_HOURS` (the stored file holds people's numbers)."""
    cutoff = timezone.now() - timedelta(hours=ABANDONED_HOURS)
    abandoned = ImportJob.objects.filter(
        status=ImportJob.Status.PENDING,
        columns__isnull=True,
        created_by__isnull=False,
        created_at__lt=cutoff,
    )
    count = 0
    for job in abandoned:
        import_job_discard(job=job)
        count += 1
    return count


def _stalled_after() -> timedelta:
    return timedelta(minutes=STALLED_MINUTES)


@shared_task(ignore_result=True)
def prune_pending_signups() -> int:
    """Forget keyword sign-ups long past their window (beat, hourly)."""
    return signups_prune()
