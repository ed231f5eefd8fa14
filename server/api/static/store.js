// What survives a reload, all in this browser: the chain's images in IndexedDB (blobs are
// too big for localStorage), the chain itself and the form's settings in localStorage.

import { validChain } from "./chain.js";
import { removeRef, validRefs } from "./references.js";

const DB_NAME = "kontext-playground";
const STORE = "images";
const CHAIN_KEY = "kontext-playground/chain/v1";
const FORM_KEY = "kontext-playground/form/v1";
const REFS_KEY = "kontext-playground/refs/v1";

let opened = null;

function database() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

// Run `work(store)` in one transaction; resolves with the last request's result.
async function transact(mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(STORE, mode);
    const request = work(transaction.objectStore(STORE));
    transaction.oncomplete = () => resolve(request?.result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

/** Keep the image of step `id`. */
export const putImage = (id, blob) => transact("readwrite", (store) => store.put(blob, id));

/** The image of step `id`, or undefined. */
export const getImage = (id) => transact("readonly", (store) => store.get(id));

/** Forget the images of these step ids. */
export function deleteImages(ids) {
  return transact("readwrite", (store) => { for (const id of ids) store.delete(id); });
}

/** Forget every image but those of these step ids (what a crash may have left behind). */
export function keepOnlyImages(ids) {
  const keep = new Set(ids);
  return transact("readwrite", (store) => {
    const request = store.getAllKeys();
    request.onsuccess = () => {
      for (const key of request.result) if (!keep.has(key)) store.delete(key);
    };
    return request;
  });
}

/** Save the chain (its images must be stored first, so it never names a missing one). */
export function saveChain(chain) {
  localStorage.setItem(CHAIN_KEY, JSON.stringify(chain));
}

/** The saved chain and its images ({ chain, blobs: Map id → Blob }); cut where one is lost. */
export async function loadChain() {
  let saved;
  try { saved = validChain(JSON.parse(localStorage.getItem(CHAIN_KEY))); } catch {
    saved = validChain(null);
  }
  const blobs = new Map();
  for (const [index, step] of saved.steps.entries()) {
    const blob = await getImage(step.id);
    if (!(blob instanceof Blob)) {
      const steps = saved.steps.slice(0, index);
      return { chain: { steps, cursor: Math.min(saved.cursor, steps.length - 1) }, blobs };
    }
    blobs.set(step.id, blob);
  }
  return { chain: saved, blobs };
}

/** Save the references (their images must be stored first). */
export function saveRefs(refs) { localStorage.setItem(REFS_KEY, JSON.stringify(refs)); }

/** The saved references and their images ({ refs, blobs }); those whose image is lost are
 * dropped. */
export async function loadRefs() {
  let saved;
  try { saved = validRefs(JSON.parse(localStorage.getItem(REFS_KEY))); } catch {
    saved = validRefs(null);
  }
  const blobs = new Map();
  for (const ref of saved.refs) {
    const blob = await getImage(ref.id);
    if (blob instanceof Blob) blobs.set(ref.id, blob);
  }
  const lost = saved.refs.map((ref) => ref.id).filter((id) => !blobs.has(id));
  return { refs: lost.reduce(removeRef, saved), blobs };
}

/** Save the form's settings (small: job type, prompt, field values, output format). */
export function saveForm(form) { localStorage.setItem(FORM_KEY, JSON.stringify(form)); }

/** The saved form settings, or {}. */
export function loadForm() {
  try { return JSON.parse(localStorage.getItem(FORM_KEY)) || {}; } catch { return {}; }
}
