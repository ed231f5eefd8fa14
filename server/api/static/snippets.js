// Copy-as-curl and copy-as-JS: the job buildJob made, as a command a user can run.

import { jobText } from "./job.js";

const EXTENSIONS = { jpeg: "jpg", png: "png", webp: "webp" };
const MEDIA = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };

/** A POSIX shell word: single quotes, with ' written as '\''. */
export function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

// A file name that needs no quoting in curl's -F syntax (no ; , " or spaces).
function plainName(name, index) {
  return /^[\w.-]+$/.test(name) ? name : `input-${index + 1}.png`;
}

/**
 * A curl command for POST /v2/job (synchronous: the answer is the image). The job JSON
 * goes through a quoted here-document, so any prompt text arrives unchanged.
 *   origin        e.g. http://127.0.0.1:8000
 *   authRequired  add the Authorization header, token from $KONTEXT_TOKEN
 */
export function curlSnippet(job, { origin, format, authRequired }) {
  const lines = [`curl --fail-with-body -sS ${origin}/v2/job`,
                 `-H ${shellQuote(`Accept: image/${format}`)}`];
  if (authRequired) lines.push('-H "Authorization: Bearer $KONTEXT_TOKEN"');
  job.inputs.forEach((input, index) => {
    lines.push(`-F ${shellQuote(`input=@${plainName(input.name, index)}`)}`);
  });
  lines.push("-F 'job=@-;type=application/json;filename=job.json'");
  lines.push(`-o kontext-edit.${EXTENSIONS[format]} <<'JOB'`);
  return `${inputsComment(job, "#")}${lines.join(" \\\n  ")}\n${jobText(job)}\nJOB\n`;
}

/** An ES module for node (18+) with the official client, npm package `prodia` (v2 API). */
export function jsSnippet(job, { origin, format, authRequired }) {
  const token = authRequired ? "process.env.KONTEXT_TOKEN" : '"unused" /* no token needed */';
  const files = job.inputs.map((input, index) => {
    const name = plainName(input.name, index);
    const type = MEDIA[name.split(".").pop().toLowerCase()] || "image/png";
    return `  new File([await fs.readFile("${name}")], "${name}", { type: "${type}" }),`;
  });
  const big = job.seed && BigInt(job.seed) > BigInt(Number.MAX_SAFE_INTEGER);
  return `${inputsComment(job, "//")}// npm install prodia; save as edit.mjs; node edit.mjs
import fs from "node:fs/promises";
import { createProdia } from "prodia/v2";

const prodia = createProdia({ baseUrl: "${origin}/v2", token: ${token} });
const inputs = [
${files.join("\n")}
];
${big ? "// This seed is past 2^53: a JavaScript number cannot hold it exactly.\n" : ""}\
const job = await prodia.job(${jobText(job, 2)}, {
  inputs, accept: "image/${format}",
});
await fs.writeFile("kontext-edit.${EXTENSIONS[format]}", await job.uint8Array());
console.log("seed", job.job.config.seed);
`;
}

function inputsComment(job, mark) {
  if (!job.inputs.length) return "";
  const names = job.inputs.map((input, index) => plainName(input.name, index)).join(", ");
  // A photo the page shrank is sent as its shrunk copy: the original would get a 400.
  const shrunk = job.inputs.filter((input) => input.step?.shrunkFrom).map((input) => {
    const { name, width, height } = input.step.shrunkFrom;
    return `${mark} ${name} (${width} × ${height}) is over this server's limit: the page sent `
      + `a shrunk copy, ${input.name}; save it with its Download link, or the server refuses `
      + "the original\n";
  });
  return `${mark} Input: ${names} (the history's Download link saves each step under its name)\n`
    + shrunk.join("");
}
