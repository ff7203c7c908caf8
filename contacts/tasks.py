"""Background contact imports: a large CSV uploaded through the API, run by a worker.

The upload is stored (default storage, under ``imports/``) and an ``ImportJob`` row
records its progress, so a client can follow it and a worker that dies mid-import
leaves a job the broker hands to another worker (the task is acknowledged late, and
importing a file again is safe: rows already stored are skipped).
"""

import logging
from functools import partial

from celery import shared_task

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from smscampaigns.models import ApiKey

from .imports import ContactImportError, contact_import_csv
from .models import ContactList, ImportJob

logger = logging.getLogger(__name__)


def import_job_create(
    *,
    file: UploadedFile,
    contact_list: ContactList | None = None,
    region: str = "",
    created_by_key: ApiKey | None = None,
) -> ImportJob:
    """Store ``file`` and queue its import; return the pending job."""
    job = ImportJob(
        contact_list=contact_list,
        region=region,
        # Control characters (NUL above all) cannot be stored in PostgreSQL text.
        file_name="".join(c for c in file.name or "" if c.isprintable())[:255],
        created_by_key=created_by_key,
    )
    # Named after the job, not the upload: unique, and no user text in the path.
    job.file.save(f"{job.pk}.csv", file, save=False)
    job.save()
    transaction.on_commit(partial(_enqueue, job.pk))
    return job


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
    ).update(status=ImportJob.Status.RUNNING)
    if not claimed:
        return None
    job = ImportJob.objects.select_related("contact_list").get(pk=job_id)
    try:
        with job.file.open("rb") as file:
            result = contact_import_csv(
                file=file, contact_list=job.contact_list, region=job.region or None
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
        _finish(job.pk, status=ImportJob.Status.DONE, result=result.to_dict())
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
