// The job for the current settings, assembled in one place: the run button, copy-as-curl
// and copy-as-JS all send exactly what buildJob returns.

const SEED_MARK = "@@seed@@";

/**
 * The job: { type, config, seed, text, inputs }.
 *   jobType  one entry of config.json's job_types
 *   prompt   the instruction
 *   values   { field name: value } from the form (undefined/"" = the server's default)
 *   inputs   [{ blob, name }] input images, in order; the job type takes its first
 *            `jobType.max_inputs` of them (the [dev] type: the image edited, then up
 *            to 3 references)
 *   extras   { config field: value } from pickers that are not plain fields (e.g. a
 *            future LoRA picker's `loras: [{name, scale}]`)
 * Throws an Error naming the field when a value cannot be sent.
 */
export function buildJob({ jobType, prompt, values, inputs = [], extras = {} }) {
  const config = { prompt };
  const sent = inputs.slice(0, jobType.max_inputs);
  let seed = "";
  for (const field of jobType.fields) {
    const value = values[field.name];
    if (value === undefined || value === null || value === "") continue;
    if (sent.length < (field.min_inputs ?? 0)) continue;  // e.g. reference_method
    if (field.kind === "seed") seed = checkSeed(value, field);
    else config[field.name] = value;
  }
  Object.assign(config, extras);
  if (jobType.min_inputs > 0 && sent.length === 0) {
    throw new Error("Pick or drop an image first.");
  }
  const job = { type: jobType.type, config, seed, inputs: sent };
  return { ...job, text: jobText(job) };
}

/** The job JSON text, with an exact seed: seeds go up to 2^63-1, past a JS number. */
export function jobText(job, indent = 0) {
  const config = job.seed ? { ...job.config, seed: SEED_MARK } : job.config;
  const text = JSON.stringify({ type: job.type, config }, null, indent);
  // Inside a JSON string a quote is escaped, so `"@@seed@@"` can only be our value.
  return job.seed ? text.replace(`"${SEED_MARK}"`, job.seed) : text;
}

function checkSeed(text, field) {
  if (!/^\d+$/.test(text) || BigInt(text) > BigInt(field.max)) {
    throw new Error(`config.seed: must be a whole number from ${field.min} to ${field.max}`);
  }
  return String(BigInt(text));  // no leading zeros: JSON has none
}
