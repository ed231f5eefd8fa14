// The input images of the next edit, as a list. Today the list is the chain's current
// step alone; a multi-reference job type (up to 4 inputs, reorderable) will add slots here
// and buildJob sends them in this order.

import { inputStep } from "./chain.js";
import { blobOf, decodedImage } from "./images.js";

/** The next edit's inputs: [{ step, blob, name }], in the order they are sent. */
export function currentInputs(chain) {
  const step = inputStep(chain);
  return step ? [{ step, blob: blobOf(step.id), name: step.fileName }] : [];
}

let renders = 0;

/** Show `inputs` as small thumbnails in `list`, with how many the job type takes. */
export async function renderInputs(list, inputs, jobType) {
  const ticket = ++renders;
  const items = await Promise.all(inputs.slice(0, jobType.inputs).map(async ({ step }, i) => {
    const item = document.createElement("li");
    const label = step.kind === "upload" ? step.fileName : `result #${step.index}`;
    item.append(await decodedImage(step.id, `input ${i + 1}`, { className: "thumb" }),
                `${label} (${step.width} × ${step.height})`);
    return item;
  }));
  if (ticket === renders) list.replaceChildren(...items);
}
