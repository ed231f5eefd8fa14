"""`kontext edit --local`: one edit through the job service in this process, driven by the
same runner as `kontext batch --local` (server/cli/batch/runner_local.py)."""

from __future__ import annotations

from typing import Any

from pipelines.errors import EngineError
from server.cli.batch.runner_local import LocalRunner
from server.cli.batch.stop import StopRequest
from server.cli.edit.progress import StepProgress
from server.cli.edit.result import Edited, EditFailed, SetupFailed
from server.errors import ApiError, ClientGone
from server.jobs.job import Job
from server.jobs.prepared import Submission
from server.jobs.progress import progress_json
from server.jobs.types import DEV_KONTEXT
from server.jobs.work_ahead import WorkAhead
from server.media.formats import ImageFormat
from server.settings import Settings
from server.wiring import SafeguardsError


def edit_local(settings: Settings, config: dict[str, Any], image: bytes, fmt: ImageFormat,
               progress: StepProgress, job_type: str = DEV_KONTEXT) -> Edited:
    """Load the engine, run the edit; EditFailed with the server's message on failure,
    KeyboardInterrupt when Ctrl-C cancelled it."""
    try:
        runner = LocalRunner(settings)
    except (EngineError, SafeguardsError) as exc:  # bad --weights, classifier, C2PA pair
        raise SetupFailed(str(exc)) from exc

    def show(job: Job) -> None:
        running = job.record.state == "processing"
        eta = WorkAhead(runner.path.engines, {job.id: job}).seconds_left(job.id)
        progress.show(progress_json(job.progress, 0 if running else None,
                                    eta if running else None))

    try:
        with StopRequest("stopping: cancelling the edit") as stop:
            job = runner.run_one(Submission(job_type, config, (image,), fmt), stop, show)
    except ApiError as exc:  # refused before it ran (e.g. the input image)
        raise EditFailed(exc.message) from exc
    finally:
        runner.close()
    if isinstance(job.error, ClientGone):
        raise KeyboardInterrupt
    if job.error is not None or job.outcome is None:
        raise EditFailed(job.error.message if job.error else "the job failed")
    return Edited(job.outcome.output, job.record.to_json())
