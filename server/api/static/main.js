// The Kontext playground: chains of edits through the async API, with history, undo,
// live progress and cancel. Plain ES modules, no build step, nothing from the internet.

import * as api from "./api.js";
import { addResult, emptyChain, inputStep, moveTo, newStepId, resultStep, startChain }
  from "./chain.js";
import { readFields, renderFields, showFields } from "./fields.js";
import { renderHistory } from "./history.js";
import { forget, imageSize, remember, urlOf } from "./images.js";
import { currentInputs, renderInputs } from "./inputs.js";
import { buildJob } from "./job.js";
import { addRefs, emptyRefs, moveInput, removeRef } from "./references.js";
import { plannedSize } from "./size.js";
import { curlSnippet, jsSnippet } from "./snippets.js";
import { renderStage, setSplit } from "./stage.js";
import { hideProgress, setBusy, setStatus, showError, showNotice, showProgress, showSteps }
  from "./status.js";
import * as store from "./store.js";
import { keepStep, keepUpload, shrunkNote, sizeOf, wireDropZone } from "./uploads.js";

const $ = (id) => document.getElementById(id);
const EXTENSIONS = { jpeg: "jpg", png: "png", webp: "webp" };
const page = { config: null, chain: emptyChain(), refs: emptyRefs(), running: null };

const jobTypeOf = (name) => page.config.job_types.find((entry) => entry.type === name);
const currentJobType = () => jobTypeOf($("job-type").value);

/** The job for the current settings (the one builder; see job.js). With no size typed,
 * it asks for the input's shape (size.js). */
function currentJob() {
  const jobType = currentJobType();
  const inputs = currentInputs(page.chain, page.refs, jobType);
  const values = readFields($("fields"), jobType);
  const size = plannedSize(jobType, values, inputs[0]);
  if (size?.auto) Object.assign(values, { width: size.width, height: size.height });
  return buildJob({ jobType, prompt: $("prompt").value, values, inputs });
}

/** Say what size the next job will ask for (hidden when the job type has none). */
function showSize() {
  const jobType = currentJobType();
  const size = plannedSize(jobType, readFields($("fields"), jobType),
                           currentInputs(page.chain, page.refs, jobType)[0]);
  $("size-note").hidden = !size;
  if (size) {
    $("size-note").textContent = `Output: ${size.width} × ${size.height}`
      + (size.auto ? " — the input's shape at about 1 MP (type a width and height to choose)"
        : "");
  }
}

// --- the chain: change it, store it, show it ----------------------------------------

async function setChain(chain, dropped = []) {
  page.chain = chain;
  store.saveChain(chain);
  await render();
  forget(dropped.map((step) => step.id));  // after render: no element shows them now
}

async function render() {
  const { chain } = page;
  const result = resultStep(chain);
  $("edit-result").hidden = $("reuse-seed").hidden = $("download").hidden = !result;
  if (result) Object.assign($("download"), { href: urlOf(result.id), download: result.fileName });
  $("undo").disabled = chain.cursor <= 0;
  $("clear").disabled = chain.steps.length === 0;
  const inputs = currentInputs(chain, page.refs, currentJobType());
  showFields($("fields"), currentJobType(), inputs.length);
  showSize();
  await Promise.all([
    renderStage(inputStep(chain), result),
    renderHistory($("history"), chain, pickStep),
    renderInputs($("inputs"), inputs, INPUT_ACTIONS),
  ]);
}

// --- references: more input images for a job type that takes several -----------------

async function setRefs(refs, dropped = []) {
  page.refs = refs;
  store.saveRefs(refs);
  await render();
  forget(dropped);  // after render: no element shows them now
  await store.deleteImages(dropped);
}

const INPUT_ACTIONS = {
  onMove: (index, by) => idle() && setRefs(moveInput(page.refs, index, by)),
  onRemove: (id) => idle() && setRefs(removeRef(page.refs, id), [id]),
};

async function addReferences(files) {
  if (!files.length || !idle()) return;
  showError("");
  const most = currentJobType().max_inputs - 1;
  const room = Math.max(0, most - page.refs.refs.length);
  const added = [];
  for (const file of files.slice(0, room)) {
    const size = await sizeOf(file);
    const step = size && await keepUpload(file, "reference", size, page.config.input_limits);
    if (step) added.push(step);
  }
  sayShrunk(added);
  if (added.length) await setRefs(addRefs(page.refs, added));
  if (files.length > room) {
    showError(`This model takes at most ${most} reference images: remove one to add another.`);
  }
}

/** One line for the images just picked that were shrunk to the server's limits. */
function sayShrunk(steps) {
  const notes = steps.map((step) => shrunkNote(step, page.config.input_limits)).filter(Boolean);
  if (notes.length) setStatus(notes.join(" "));
}

function idle() {
  if (page.running) showError("A job is running: wait for it, or cancel it.");
  return !page.running;
}

/** A new chain from the first file; the other files become references. */
async function pickFiles(files) {
  const [file, ...rest] = files;
  if (!file || !idle()) return;
  showError("");
  const size = await sizeOf(file);
  if (!size) return;
  const old = page.chain.steps;
  await store.deleteImages(old.map((step) => step.id));
  const step = await keepUpload(file, "upload", size, page.config.input_limits);
  if (!step) return;
  sayShrunk([step]);
  await setChain(startChain(step), old);
  if (rest.length && currentJobType().max_inputs > 1) await addReferences(rest);
}

function pickStep(index) {
  if (idle()) setChain(moveTo(page.chain, index));
}

// --- running an edit ---------------------------------------------------------------

async function run() {
  if (page.running) return;
  showError("");
  let job;
  try { job = currentJob(); } catch (error) { showError(error.message); return; }
  const format = $("format").value;
  page.running = { id: null, cancelled: false };
  setBusy(true);
  setStatus("Submitting…");
  try {
    const reply = await api.submit(job, format);
    if (reply.status !== 201) throw new Error(await api.failureText(reply));
    page.running.id = (await reply.json()).id;
    await follow(page.running.id, job, format);
  } catch (error) {
    if (error.message.includes("needs a bearer token")) $("token-row").hidden = false;
    showError(error instanceof TypeError ? `Could not reach the server: ${error.message}`
      : error.message);
    setStatus("");
    hideProgress();
  } finally {
    page.running = null;
    setBusy(false);
  }
}

async function follow(jobId, job, format) {
  let last = null;
  for await (const { event, job: state } of api.events(jobId)) {
    last = state;
    if (event === "progress" && !page.running.cancelled) showProgress(state);
  }
  if (last?.state.current === "completed") return finish(jobId, last, job, format);
  if (page.running.cancelled || last?.error === "cancelled") return showCancelled();
  throw new Error(`The job failed: ${last?.error || "no answer"}`);
}

async function finish(jobId, done, job, format) {
  const steps = done.config.steps ?? 1;
  showSteps(steps, steps);  // the final event: every step is done
  const { blob } = await api.output(jobId);
  // Typed seeds are kept as typed (exact past 2^53); random ones are below 2^53.
  const seed = job.seed || String(done.config.seed);
  const index = page.chain.cursor + 1;
  const step = { id: newStepId(), kind: "edit", index, prompt: job.config.prompt, seed,
                 jobType: job.type, elapsed: done.metrics?.elapsed ?? null,
                 fileName: `kontext-${index}-${seed}.${EXTENSIONS[format]}`,
                 createdAt: new Date().toISOString(), ...await imageSize(blob) };
  await keepStep(step, blob);
  const { chain, dropped } = addResult(page.chain, step);
  await setChain(chain, dropped);
  await store.deleteImages(dropped.map((old) => old.id));
  setStatus(`Done in ${step.elapsed} s — seed ${seed}`);
  showNotice(done.notice);
  if (matchMedia("(max-width: 800px)").matches) $("stage").scrollIntoView({ block: "start" });
}

function showCancelled() {
  hideProgress();
  setStatus("Cancelled");
}

async function cancel() {
  const running = page.running;
  if (!running?.id) return;
  running.cancelled = true;
  setStatus("Cancelling…");
  const job = await api.cancel(running.id);
  if (job?.error === "cancelled" && page.running === running) showCancelled();
}

// --- settings ------------------------------------------------------------------------

function saveForm() {
  const jobType = currentJobType();
  store.saveForm({ jobType: jobType.type, prompt: $("prompt").value,
                   format: $("format").value, values: readFields($("fields"), jobType) });
}

function chooseJobType(name, saved = {}) {
  $("job-type").value = name;
  const jobType = currentJobType();
  renderFields($("fields"), jobType, saved);
  $("drop").hidden = jobType.max_inputs === 0;
  $("ref-drop").hidden = jobType.max_inputs < 2;
  $("no-inputs").hidden = jobType.max_inputs > 0;
  $("run").firstChild.textContent = jobType.max_inputs ? "Run edit " : "Generate ";
  render();
}

function setUpForm(config, saved) {
  const runnable = config.job_types.filter((entry) => entry.runnable);
  for (const entry of runnable) $("job-type").add(new Option(entry.label, entry.type));
  // A local model family the server does not serve is left out of the picker silently
  // (its reason stays in config.json); [pro]/[max] with nowhere to run are said.
  const blocked = config.job_types.filter((entry) => !entry.runnable && !entry.model);
  $("job-type-note").hidden = blocked.length === 0;
  $("job-type-note").textContent = blocked.length
    ? `[pro]/[max] are not offered: ${blocked[0].reason}.` : "";
  for (const format of config.output_formats) $("format").add(new Option(format, format));
  $("token-row").hidden = !config.auth_required;
  $("prompt").value = saved.prompt ?? "";
  if (config.output_formats.includes(saved.format)) $("format").value = saved.format;
  const start = jobTypeOf(saved.jobType)?.runnable ? saved.jobType : config.default_job_type;
  chooseJobType(start, saved.jobType === start ? saved.values : {});
}

// --- code snippets ---------------------------------------------------------------------

async function copySnippet(make) {
  showError("");
  let text;
  try {
    text = make(currentJob(), { origin: location.origin, format: $("format").value,
                                authRequired: page.config.auth_required });
  } catch (error) { showError(error.message); return; }
  $("snippet").textContent = text;
  $("snippet").hidden = false;
  try { await navigator.clipboard.writeText(text); setStatus("Copied to the clipboard"); } catch {
    setStatus("Select the code below to copy it");  // no clipboard outside https/localhost
  }
}

// --- wiring ----------------------------------------------------------------------------

function wireControls() {
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); run(); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  $("controls").addEventListener("input", () => { saveForm(); showSize(); });
  $("job-type").addEventListener("change", () => { chooseJobType($("job-type").value); saveForm(); });
  $("token").addEventListener("input", () => api.setToken($("token").value));
  $("cancel").addEventListener("click", cancel);
  $("edit-result").addEventListener("click", () => pickStep(page.chain.cursor + 1));
  $("undo").addEventListener("click", () => pickStep(page.chain.cursor - 1));
  $("clear").addEventListener("click", async () => {
    if (!idle()) return;
    const old = page.chain.steps;
    await store.deleteImages(old.map((step) => step.id));
    await setChain(emptyChain(), old);
  });
  $("reuse-seed").addEventListener("click", () => {
    const seed = document.getElementById("field-seed");
    if (seed) { seed.value = resultStep(page.chain).seed; saveForm(); }
  });
  $("split").addEventListener("input", () => setSplit($("split").value));
  $("copy-curl").addEventListener("click", () => copySnippet(curlSnippet));
  $("copy-js").addEventListener("click", () => copySnippet(jsSnippet));
}

async function main() {
  wireDropZone("drop", "file", pickFiles);
  wireDropZone("ref-drop", "ref-file", addReferences);
  wireControls();
  try {
    page.config = await api.loadConfig();
    const { chain, blobs } = await store.loadChain();
    for (const [id, blob] of blobs) remember(id, blob);
    page.chain = chain;
    const { refs, blobs: refBlobs } = await store.loadRefs();
    for (const [id, blob] of refBlobs) remember(id, blob);
    page.refs = refs;
    await store.keepOnlyImages([...chain.steps, ...refs.refs].map((step) => step.id));
    setUpForm(page.config, store.loadForm());
    await render();
    document.body.dataset.ready = "true";  // for tests: config and history are loaded
  } catch (error) {
    showError(`Could not load the playground: ${error.message}`);
  }
}

main();
