// The job's status line, progress bar and messages.

const $ = (id) => document.getElementById(id);

/** The status line. */
export function setStatus(text) { $("status").textContent = text; }

/** The error box: `text`, or hidden when empty. */
export function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

/** The muted notice under the status (e.g. the demo checkpoint's warning). */
export function showNotice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

/** Busy: Run disabled, Cancel enabled, the bar indeterminate until a step is done. */
export function setBusy(busy) {
  $("run").disabled = busy;
  $("cancel").disabled = !busy;
  if (busy) {
    $("progress").removeAttribute("value");
    $("progress").hidden = false;
  }
}

/** Hide the progress bar (a job failed or was cancelled; a finished one stays full). */
export function hideProgress() { $("progress").hidden = true; }

/** Show an unfinished job's `state.progress`: step n of N and the time left. */
export function showProgress(job) {
  const progress = job.state.progress || {};
  const eta = progress.eta_seconds == null ? ""
    : ` — about ${Math.ceil(progress.eta_seconds)} s left`;
  if (progress.step > 0 && progress.steps) {
    showSteps(progress.step, progress.steps);
    setStatus(`Step ${progress.step} of ${progress.steps}${eta}`);
  } else if (progress.queue_position > 0) {
    setStatus(`Queued: ${progress.queue_position} job(s) ahead${eta}`);
  } else {
    setStatus(progress.steps === null ? `Running upstream…${eta}` : `Starting…${eta}`);
  }
}

/** The bar at `step` of `steps`. */
export function showSteps(step, steps) {
  $("progress").max = steps;
  $("progress").value = step;
}
