// Runs one job through the official `prodia/v2` client and prints the outcome as JSON.
// Usage: node run_job.mjs '<json: {baseUrl, token, type, config, inputs?: [path], accept?,
//         inputKind?: "file"|"blob"|"uint8array"}>'
import { createProdia, ProdiaUserError, ProdiaCapacityError, ProdiaBadResponseError } from "prodia/v2";
import fs from "node:fs";
import path from "node:path";

const args = JSON.parse(process.argv[2]);
const prodia = createProdia({ token: args.token ?? "test-token", baseUrl: args.baseUrl, maxRetries: args.maxRetries ?? 10 });
const inputs = (args.inputs ?? []).map((file) => {
  const bytes = fs.readFileSync(file);
  if (args.inputKind === "uint8array") return new Uint8Array(bytes);
  if (args.inputKind === "blob") return new Blob([bytes], { type: "image/png" });
  return new File([bytes], path.basename(file), { type: "image/png" });
});
try {
  const result = await prodia.job({ type: args.type, config: args.config }, { inputs, accept: args.accept });
  const output = Buffer.from(await result.arrayBuffer());
  if (args.outputPath) fs.writeFileSync(args.outputPath, output);
  console.log(JSON.stringify({ ok: true, job: result.job, outputBytes: output.length }));
} catch (error) {
  const kind = error instanceof ProdiaUserError ? "ProdiaUserError"
    : error instanceof ProdiaCapacityError ? "ProdiaCapacityError"
    : error instanceof ProdiaBadResponseError ? "ProdiaBadResponseError" : error.constructor.name;
  console.log(JSON.stringify({ ok: false, errorClass: kind, message: String(error.message) }));
}
