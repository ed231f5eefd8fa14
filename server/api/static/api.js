// Talking to this server: the playground's config, and the async job API
// (POST /v2/job/async, GET …/{id}/events, …/output, DELETE …/{id}; docs/async.md).

let token = "";

/** Set the bearer token sent with every request (kept in memory: this tab only). */
export function setToken(value) { token = value.trim(); }

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/** GET /playground/config.json: job types, their fields and limits. */
export async function loadConfig() {
  const reply = await fetch("/playground/config.json");
  if (!reply.ok) throw new Error(`config.json answered ${reply.status}`);
  return reply.json();
}

/** GET /v2/loras: the LoRA folder's files and whether this server takes LoRAs now. */
export async function listLoras(url = "/v2/loras") {
  const reply = await fetch(url, { headers: headers() });
  if (reply.status === 401) throw new Error("Listing LoRAs needs the bearer token: enter it.");
  if (!reply.ok) throw new Error(`Listing LoRAs answered ${reply.status}.`);
  return reply.json();
}

/** POST /v2/job/async as multipart: inputs first, then the job JSON (as the JS client). */
export function submit(job, format) {
  const form = new FormData();
  for (const input of job.inputs) form.append("input", input.blob, input.name);
  form.append("job", new Blob([job.text], { type: "application/json" }), "job.json");
  return fetch("/v2/job/async", {
    method: "POST", body: form, headers: headers({ Accept: `image/${format}` }),
  });
}

/** DELETE /v2/job/async/{id}: the job JSON, failed with error "cancelled" if it was running. */
export async function cancel(jobId) {
  const reply = await fetch(`/v2/job/async/${jobId}`, { method: "DELETE", headers: headers() });
  return reply.ok ? reply.json() : null;
}

/** The job's output image: { blob, name } (output.jpg, output.png, …). */
export async function output(jobId) {
  const base = `/v2/job/async/${jobId}/output`;
  const names = await (await fetch(base, { headers: headers() })).json();
  const reply = await fetch(`${base}/${names[0]}`, { headers: headers() });
  if (!reply.ok) throw new Error(await failureText(reply));
  return { blob: await reply.blob(), name: names[0] };
}

/**
 * The job's server-sent events, as { event, job }: `progress` on every change, then one
 * `processed` or `failed`. Read through fetch: EventSource cannot send a bearer token.
 */
export async function* events(jobId) {
  const reply = await fetch(`/v2/job/async/${jobId}/events`, { headers: headers() });
  if (!reply.ok) throw new Error(await failureText(reply));
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (message) yield message;
    }
  }
}

// One event block of the text/event-stream format (comments are keep-alives).
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = text;
    else if (field === "data") data.push(text);
  }
  return data.length ? { event, job: JSON.parse(data.join("\n")) } : null;
}

/** A readable line for a failed reply: the server's error message, status and Retry-After. */
export async function failureText(reply) {
  const text = await reply.text();
  if (reply.status === 401) {
    return "This server needs a bearer token: enter a valid one and run again.";
  }
  let message = text;
  try { message = JSON.parse(text).error || text; } catch { /* not JSON: show as is */ }
  const retry = reply.headers.get("Retry-After");
  return `${reply.status}: ${message}${retry ? ` (try again in ${retry} s)` : ""}`;
}
