// The Kontext playground: submit an edit through the async API, follow its events, show
// the input and the result side by side. Plain browser JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const EXTENSIONS = { jpeg: "jpg", png: "png", webp: "webp" };
const page = { file: null, jobId: null, seedText: null, urls: {} };

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setNumber(input, spec) {
  Object.assign(input, { min: spec.min, max: spec.max, step: spec.step, value: spec.default });
}

async function loadConfig() {
  const config = await (await fetch("/playground/config.json")).json();
  for (const name of config.style_presets) {
    $("style").add(new Option(name, name));
  }
  setNumber($("width"), config.width);
  setNumber($("height"), config.height);
  setNumber($("steps"), config.steps);
  setNumber($("guidance"), config.guidance_scale);
  page.jobType = config.job_type;
  $("token-row").hidden = !config.auth_required;
}

function showImage(key, img, blob, sizeLabel) {
  if (page.urls[key]) URL.revokeObjectURL(page.urls[key]);
  page.urls[key] = URL.createObjectURL(blob);
  img.onload = () => {
    sizeLabel.textContent = `${img.naturalWidth} × ${img.naturalHeight}`;
  };
  img.src = page.urls[key];
  img.hidden = false;
  return page.urls[key];
}

function pickFile(file) {
  if (!file) return;
  page.file = file;
  $("drop-text").textContent = `${file.name} — drop or click to change`;
  showImage("input", $("input-image"), file, $("input-size"));
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function setBusy(busy) {
  $("run").disabled = busy;
  $("rerun").disabled = busy || page.seedText === null;
  $("cancel").disabled = !busy;
  $("progress").hidden = !busy;
  if (busy) $("progress").removeAttribute("value");  // indeterminate until a step is done
}

// The job JSON by hand around the seed: seeds go up to 2^63-1, past what a JS number holds.
function jobJson(seedText) {
  const config = {
    prompt: $("prompt").value,
    width: Number($("width").value), height: Number($("height").value),
    steps: Number($("steps").value), guidance_scale: Number($("guidance").value),
  };
  if ($("style").value) config.style_preset = $("style").value;
  let text = JSON.stringify({ type: page.jobType, config });
  if (seedText) {
    if (!/^\d+$/.test(seedText)) throw new Error("seed: must be a whole number ≥ 0");
    text = text.replace(/}}$/, `,"seed":${seedText}}}`);
  }
  return text;
}

async function failureText(reply) {
  const text = await reply.text();
  if (reply.status === 401) {
    $("token-row").hidden = false;
    return "This server needs a bearer token: enter a valid one below and run again.";
  }
  let message = text;
  try { message = JSON.parse(text).error || text; } catch { /* not JSON: show as is */ }
  const retry = reply.headers.get("Retry-After");
  return `${reply.status}: ${message}${retry ? ` (try again in ${retry} s)` : ""}`;
}

async function run(seedText) {
  showError("");
  if (!page.file) { showError("Pick or drop an image first."); return; }
  let job;
  try { job = jobJson(seedText); } catch (error) { showError(error.message); return; }
  const form = new FormData();
  form.append("input", page.file, page.file.name);
  form.append("job", new Blob([job], { type: "application/json" }), "job.json");
  const format = $("format").value;
  setBusy(true);
  setStatus("Submitting…");
  try {
    const reply = await fetch("/v2/job/async", {
      method: "POST", body: form, headers: { Accept: `image/${format}`, ...authHeaders() },
    });
    if (reply.status !== 201) { showError(await failureText(reply)); setStatus(""); return; }
    const accepted = await reply.json();
    page.jobId = accepted.id;
    setStatus(`Job ${accepted.id} accepted`);
    await follow(accepted.id, seedText);
  } catch (error) {
    showError(`Could not reach the server: ${error.message}`);
  } finally {
    page.jobId = null;
    setBusy(false);
  }
}

// Server-sent events read through fetch, because EventSource cannot send a bearer token.
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, job: JSON.parse(data.join("\n")) };
    }
  }
}

function showProgress(job) {
  const progress = job.state.progress || {};
  const eta = progress.eta_seconds == null ? "" : ` — about ${Math.ceil(progress.eta_seconds)} s left`;
  if (progress.step > 0) {
    $("progress").max = progress.steps;
    $("progress").value = progress.step;
    setStatus(`Step ${progress.step} of ${progress.steps}${eta}`);
  } else if (progress.queue_position > 0) {
    setStatus(`Queued: ${progress.queue_position} job(s) ahead${eta}`);
  } else {
    setStatus(`Starting…${eta}`);
  }
}

async function follow(jobId, seedText) {
  const base = `/v2/job/async/${jobId}`;
  const stream = await fetch(`${base}/events`, { headers: authHeaders() });
  if (!stream.ok) { showError(await failureText(stream)); return; }
  let last = null;
  for await (const { event, job } of serverEvents(stream)) {
    last = job;
    if (event === "progress") showProgress(job);
  }
  if (!last || last.state.current !== "completed") {
    const job = last || await (await fetch(`${base}/job.json`, { headers: authHeaders() })).json();
    showError(`The job failed: ${job.error || job.state.current}`);
    setStatus("");
    return;
  }
  await showResult(base, last, seedText);
}

async function showResult(base, job, seedText) {
  const names = await (await fetch(`${base}/output`, { headers: authHeaders() })).json();
  const reply = await fetch(`${base}/output/${names[0]}`, { headers: authHeaders() });
  if (!reply.ok) { showError(await failureText(reply)); return; }
  const url = showImage("result", $("result-image"), await reply.blob(), $("result-size"));
  // Typed seeds are kept as typed (exact past 2^53); random ones are below 2^53.
  page.seedText = seedText || String(job.config.seed);
  const extension = names[0].split(".").pop() || EXTENSIONS.jpeg;
  Object.assign($("download"), { href: url, download: `kontext-${page.seedText}.${extension}` });
  $("download").hidden = false;
  setStatus(`Done in ${job.metrics.elapsed} s — seed ${page.seedText}`);
  $("notice").textContent = job.notice || "";  // e.g. the demo checkpoint's warning
  $("notice").hidden = !job.notice;
}

function wireDropZone() {
  const zone = $("drop");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    pickFile(event.dataTransfer.files[0]);
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
  $("file").addEventListener("change", () => pickFile($("file").files[0]));
}

function main() {
  wireDropZone();
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    run($("seed").value.trim() || null);
  });
  $("rerun").addEventListener("click", () => {
    $("seed").value = page.seedText;
    run(page.seedText);
  });
  $("cancel").addEventListener("click", () => {
    if (page.jobId) fetch(`/v2/job/async/${page.jobId}`, { method: "DELETE", headers: authHeaders() });
  });
  loadConfig().catch((error) => showError(`Could not load the playground settings: ${error.message}`));
}

main();
