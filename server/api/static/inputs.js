// The input images of the next edit, as a list: the chain's current step and, for a job
// type that takes several (the [dev] type: up to 4), the reference images, in the order
// references.js keeps. buildJob sends them in this order; input 1 is the image edited.

import { inputStep } from "./chain.js";
import { blobOf, decodedImage } from "./images.js";
import { CHAIN } from "./references.js";

const entry = (key, step) => ({ key, step, blob: blobOf(step.id), name: step.fileName });

/**
 * The next edit's inputs: [{ key, step, blob, name }], in the order they are sent. None
 * without a chain step (an edit's result continues the chain); a job type that takes one
 * image gets the chain's step alone.
 */
export function currentInputs(chain, refs, jobType) {
  const step = inputStep(chain);
  if (!step) return [];
  if (jobType.max_inputs <= 1) return [entry(CHAIN, step)];
  const byId = new Map(refs.refs.map((ref) => [ref.id, ref]));
  return refs.order.map((key) => entry(key, key === CHAIN ? step : byId.get(key)))
    .slice(0, jobType.max_inputs);
}

function button(text, label, onClick, disabled = false) {
  const node = Object.assign(document.createElement("button"), {
    type: "button", textContent: text, title: label, disabled, onclick: onClick,
    className: "mini" });
  node.setAttribute("aria-label", label);
  return node;
}

function describe({ step }, index, count) {
  const name = step.kind === "edit" ? `result #${step.index}` : step.fileName;
  const text = `${name} (${step.width} × ${step.height})`;
  if (count < 2) return text;
  return `${index + 1} · ${index === 0 ? "edited" : "reference"}: ${text}`;
}

// Move earlier / later, and remove (references only; the chain's step stays an input).
function controls(input, index, count, { onMove, onRemove }) {
  const number = index + 1;
  const box = Object.assign(document.createElement("span"), { className: "input-buttons" });
  box.append(button("←", `Move input ${number} earlier`, () => onMove(index, -1), index === 0),
             button("→", `Move input ${number} later`, () => onMove(index, 1),
                    index === count - 1));
  if (input.key !== CHAIN) {
    box.append(button("×", `Remove input ${number}`, () => onRemove(input.key)));
  }
  return box;
}

let renders = 0;

/** Show `inputs` as small thumbnails in `list`; with several, buttons to reorder them
 * (`actions.onMove(index, ±1)`) and to remove a reference (`actions.onRemove(id)`). */
export async function renderInputs(list, inputs, actions) {
  const ticket = ++renders;
  const items = await Promise.all(inputs.map(async (input, i) => {
    const item = document.createElement("li");
    item.dataset.key = input.key;
    const caption = Object.assign(document.createElement("span"), {
      className: "input-caption", textContent: describe(input, i, inputs.length) });
    item.append(await decodedImage(input.step.id, `input ${i + 1}`, { className: "thumb" }),
                caption);
    if (inputs.length > 1) item.append(controls(input, i, inputs.length, actions));
    return item;
  }));
  if (ticket === renders) list.replaceChildren(...items);
}
