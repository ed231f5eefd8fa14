// The stage: the current input and the result of editing it, compared with a slider
// (left of the split: before; right: after).

import { decodedImage } from "./images.js";

const $ = (id) => document.getElementById(id);
let shown = null;

const sizeText = (step) => `${step.width} × ${step.height}`;

function describe(input, result) {
  $("before-label").textContent = input ? `Input ${sizeText(input)}` : "";
  $("after-label").textContent = result
    ? `Result ${sizeText(result)} — seed ${result.seed}, ${result.elapsed} s` : "";
}

/** Show `input` and `result` (chain steps, either may be null). */
export async function renderStage(input, result) {
  const key = `${input?.id}|${result?.id}`;
  if (key === shown) return;
  shown = key;
  const images = [];
  if (input) images.push(await decodedImage(input.id, "input image", { id: "input-image",
                                                                       className: "before" }));
  if (result) images.push(await decodedImage(result.id, "result image", { id: "result-image",
                                                                          className: "after" }));
  if (shown !== key) return;  // a newer call is showing something else
  const main = result || input;
  const frame = $("frame");
  if (main) frame.style.setProperty("--ratio", main.width / main.height);
  frame.classList.toggle("single", images.length < 2);
  const badges = images.length < 2 ? [] : ["Before", "After"].map((text) =>
    Object.assign(document.createElement("span"), { className: `badge ${text.toLowerCase()}`,
                                                    textContent: text }));
  frame.replaceChildren(...images, ...badges);
  $("compare").hidden = images.length === 0;
  $("stage-empty").hidden = images.length > 0;
  $("split").hidden = images.length < 2;
  describe(input, result);
}

/** Move the split between before and after to `percent`. */
export function setSplit(percent) {
  $("frame").style.setProperty("--split", `${percent}%`);
}
