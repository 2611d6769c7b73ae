from celery import shared_task

from leads import availability


@shared_task
def availability_job_run(job_id: str):
    countdown = availability.availability_job_process(job_id=job_id)
    if countdown is not None:
        availability_job_run.apply_async((job_id,), countdown=countdown)


@shared_task
def availability_jobs_resume():
    """Restart jobs that waited for a new UTC day's quota, or whose worker died."""
    return len(availability.availability_jobs_resume())


@shared_task
def availability_cache_purge():
    return availability.cache_purge_expired()
