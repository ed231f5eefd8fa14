// Generates one image through the AI SDK (`generateImage` + `@ai-sdk/prodia`) and prints the
// outcome as JSON. Usage: node ai_sdk_image.mjs '<json: {baseURL, token, model, prompt, seed?,
// size?}>'
import { generateImage } from "ai";
import { createProdia } from "@ai-sdk/prodia";

const args = JSON.parse(process.argv[2]);
const prodia = createProdia({ apiKey: args.token ?? "test-token", baseURL: args.baseURL });
try {
  const result = await generateImage({
    model: prodia.image(args.model), prompt: args.prompt, seed: args.seed ?? undefined,
    size: args.size ?? undefined });
  console.log(JSON.stringify({
    ok: true, mediaType: result.image.mediaType, bytes: result.image.uint8Array.length,
    metadata: result.providerMetadata.prodia.images[0],
  }));
} catch (error) {
  console.log(JSON.stringify({
    ok: false, errorClass: error.constructor.name, statusCode: error.statusCode,
    message: String(error.message), responseBody: String(error.responseBody ?? ""),
  }));
}
