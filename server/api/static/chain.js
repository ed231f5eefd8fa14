// The chain of edits, as plain data: { steps, cursor }. steps[0] is the first image (an
// upload, or a text-to-image result); each later step is an edit's result. steps[cursor]
// is the input of the next edit (-1: none yet) and steps[cursor + 1], if any, the result
// of editing it. Functions here return new chains; store.js persists them.

/** A chain with no image. */
export function emptyChain() { return { steps: [], cursor: -1 }; }

/** A new chain starting from one image (a new upload). */
export function startChain(step) { return { steps: [step], cursor: 0 }; }

/** The chain with `step` as the result of editing the current input; what it replaced. */
export function addResult(chain, step) {
  const keep = chain.steps.slice(0, chain.cursor + 1);
  return { chain: { steps: [...keep, step], cursor: chain.cursor },
           dropped: chain.steps.slice(chain.cursor + 1) };
}

/** The chain with the step at `index` as the input of the next edit (undo to it). */
export function moveTo(chain, index) {
  const cursor = Math.max(-1, Math.min(index, chain.steps.length - 1));
  return { steps: chain.steps, cursor };
}

/** The current input step, or null. */
export const inputStep = (chain) => chain.steps[chain.cursor] ?? null;

/** The result of editing the current input, or null. */
export const resultStep = (chain) => chain.steps[chain.cursor + 1] ?? null;

/** A chain read back from storage, or an empty one if it is not one. */
export function validChain(value) {
  if (!value || !Array.isArray(value.steps) || !Number.isInteger(value.cursor)) {
    return emptyChain();
  }
  const steps = value.steps.filter((step) => step && typeof step.id === "string");
  return moveTo({ steps, cursor: value.cursor }, value.cursor);
}

/** A fresh step id. */
export function newStepId() {
  return `step-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
