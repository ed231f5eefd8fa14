// Edits one image through the AI SDK's language-model path (`generateText` with an image file
// part + `@ai-sdk/prodia`, its only way to send an input image) and prints the outcome as
// JSON. Usage: node ai_sdk_text.mjs '<json: {baseURL, token, model, prompt, image, mediaType,
// aspectRatio?}>'
import { readFileSync } from "node:fs";
import { generateText } from "ai";
import { createProdia } from "@ai-sdk/prodia";

const args = JSON.parse(process.argv[2]);
const prodia = createProdia({ apiKey: args.token ?? "test-token", baseURL: args.baseURL });
try {
  const result = await generateText({
    model: prodia.languageModel(args.model),
    messages: [{
      role: "user",
      content: [
        { type: "text", text: args.prompt },
        { type: "file", data: new Uint8Array(readFileSync(args.image)), mediaType: args.mediaType },
      ],
    }],
    providerOptions: args.aspectRatio ? { prodia: { aspectRatio: args.aspectRatio } } : undefined,
  });
  console.log(JSON.stringify({
    ok: true, text: result.text,
    files: result.files.map((file) => ({ mediaType: file.mediaType, bytes: file.uint8Array.length,
                                         base64: file.base64 })),
    metadata: result.providerMetadata?.prodia ?? null,
  }));
} catch (error) {
  console.log(JSON.stringify({
    ok: false, errorClass: error.constructor.name, statusCode: error.statusCode,
    message: String(error.message), responseBody: String(error.responseBody ?? ""),
  }));
}
