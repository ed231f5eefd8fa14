// The history list: one item per chain step (thumbnail, instruction, seed, time), the
// current input and its result marked; clicking a step makes it the input again.

import { decodedImage, urlOf } from "./images.js";

const items = new Map();  // step id → Promise of its <li>
let renders = 0;

function caption(step, index) {
  const title = step.kind === "upload" ? step.fileName : step.prompt;
  const when = new Date(step.createdAt).toLocaleTimeString();
  const facts = step.kind === "upload" ? `${step.width} × ${step.height}, ${when}`
    : `seed ${step.seed}, ${step.elapsed} s, ${when}`;
  const text = document.createElement("span");
  text.className = "caption";
  text.append(Object.assign(document.createElement("b"), { textContent: `#${index} ` }),
              title, document.createElement("br"),
              Object.assign(document.createElement("small"), { textContent: facts }));
  return text;
}

async function makeItem(step, index) {
  const thumb = await decodedImage(step.id, `step ${index}`, { className: "thumb" });
  const button = Object.assign(document.createElement("button"), { type: "button",
                                                                   className: "step" });
  button.append(thumb, caption(step, index));
  const download = Object.assign(document.createElement("a"), {
    href: urlOf(step.id), download: step.fileName, textContent: "↓", className: "save",
    title: `Download ${step.fileName}`,
  });
  const item = document.createElement("li");
  item.dataset.id = step.id;
  item.append(button, download);
  return item;
}

/** Render `chain` into `list`; `onPick(index)` is called when a step is clicked. */
export async function renderHistory(list, chain, onPick) {
  const ticket = ++renders;
  for (const id of items.keys()) {
    if (!chain.steps.some((step) => step.id === id)) items.delete(id);
  }
  chain.steps.forEach((step, index) => {
    if (!items.has(step.id)) items.set(step.id, makeItem(step, index));
  });
  const made = await Promise.all(chain.steps.map((step) => items.get(step.id)));
  if (ticket !== renders) return;  // a newer call renders a newer chain
  made.forEach((item, index) => {
    item.className = index === chain.cursor ? "input" : index === chain.cursor + 1 ? "result"
      : index > chain.cursor + 1 ? "later" : "";
    item.querySelector("button").onclick = () => onPick(index);
    item.querySelector("button").setAttribute("aria-current",
                                              index === chain.cursor ? "step" : "false");
  });
  list.replaceChildren(...made);
}
