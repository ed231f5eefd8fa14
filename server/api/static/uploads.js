// Images the user gives the page: file pickers and drop zones, and keeping each image
// (in memory and in IndexedDB) as a step that survives a reload.

import { newStepId } from "./chain.js";
import { imageSize, remember } from "./images.js";
import { showError } from "./status.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);

/** Keep step `id`'s image: in memory now, in IndexedDB for a reload. */
export async function keepStep(step, blob) {
  remember(step.id, blob);
  await store.putImage(step.id, blob);
}

/** The size of an image file, or null (error shown) when this browser cannot read it. */
export async function sizeOf(file) {
  try { return await imageSize(file); } catch {
    showError(`${file.name} is not an image this browser can read.`);
    return null;
  }
}

/** A new step of `kind` for `file`, its image kept; null (error shown) if it cannot be. */
export async function keepUpload(file, kind, size) {
  const step = { id: newStepId(), kind, index: 0, fileName: file.name, ...size,
                 createdAt: new Date().toISOString() };
  try { await keepStep(step, file); } catch (error) {
    // e.g. storage full or disabled: the image cannot survive a reload
    showError(`This browser refused to keep the image: ${error?.message ?? error}`);
    return null;
  }
  return step;
}

/** Files dropped on `zoneId` or picked with `fileId` go to `onFiles([File…])`. */
export function wireDropZone(zoneId, fileId, onFiles) {
  const zone = $(zoneId);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles([...event.dataTransfer.files]);
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $(fileId).click();
  });
  $(fileId).addEventListener("change", () => {
    onFiles([...$(fileId).files]);
    $(fileId).value = "";  // the same file picked again is a new pick
  });
}
