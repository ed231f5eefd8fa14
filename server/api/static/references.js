// The reference images of the next edit and the order of all its inputs, as plain data:
// { refs: [{ id, fileName, width, height }], order: ["chain", id, …] }. "chain" stands for
// the chain's current step (the image the chain edits); the job sends the inputs in
// `order`, so input 1 (the image edited) may be a reference and the chain step a later
// one. Functions here return new values; store.js persists them.

export const CHAIN = "chain";

/** No references: the chain's step is the only input. */
export function emptyRefs() { return { refs: [], order: [CHAIN] }; }

/** `refs` with `added` references appended at the end of the order. */
export function addRefs(state, added) {
  return { refs: [...state.refs, ...added],
           order: [...state.order, ...added.map((ref) => ref.id)] };
}

/** `refs` without the reference `id`. */
export function removeRef(state, id) {
  return { refs: state.refs.filter((ref) => ref.id !== id),
           order: state.order.filter((key) => key !== id) };
}

/** `refs` with the input at `index` of the order swapped with its neighbour at `index+by`. */
export function moveInput(state, index, by) {
  const other = index + by;
  if (index < 0 || other < 0 || index >= state.order.length || other >= state.order.length) {
    return state;
  }
  const order = [...state.order];
  [order[index], order[other]] = [order[other], order[index]];
  return { refs: state.refs, order };
}

/** References read back from storage, or none if they are not valid. */
export function validRefs(value) {
  if (!value || !Array.isArray(value.refs) || !Array.isArray(value.order)) return emptyRefs();
  const refs = value.refs.filter((ref) => ref && typeof ref.id === "string");
  const known = new Set([CHAIN, ...refs.map((ref) => ref.id)]);
  const seen = new Set();
  const order = value.order.filter((key) => known.has(key) && !seen.has(key) && seen.add(key));
  // What the stored order lost goes back: the chain's step first, references last.
  const lost = refs.map((ref) => ref.id).filter((id) => !seen.has(id));
  return { refs, order: [...(seen.has(CHAIN) ? [] : [CHAIN]), ...order, ...lost] };
}
