// Images the user gives the page: file pickers and drop zones, and keeping each image
// (in memory and in IndexedDB) as a step that survives a reload.

import { newStepId } from "./chain.js";
import { imageSize, remember } from "./images.js";
import { shrinkToLimits } from "./size.js";
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

/** A new step of `kind` for `file`, its image kept; null (error shown) if it cannot be.
 * A photo over the server's `limits` is kept shrunk to them (shape kept), as it will be
 * sent; the step then has `shrunkFrom`, its size before. */
export async function keepUpload(file, kind, size, limits) {
  const step = { id: newStepId(), kind, index: 0, fileName: file.name, ...size,
                 createdAt: new Date().toISOString() };
  let blob = file;
  // A browser that cannot shrink it sends it as it is: the server then says why not.
  const shrunk = limits && await shrinkToLimits(file, size, limits).catch(() => null);
  if (shrunk) {
    blob = shrunk.blob;
    Object.assign(step, { width: shrunk.width, height: shrunk.height,
                          shrunkFrom: { ...size, name: file.name },
                          fileName: shrunkName(file.name, shrunk) });
  }
  try { await keepStep(step, blob); } catch (error) {
    // e.g. storage full or disabled: the image cannot survive a reload
    showError(`This browser refused to keep the image: ${error?.message ?? error}`);
    return null;
  }
  return step;
}

// The shrunk copy's own file name (photo.jpg → photo-1440x1920.jpg), its extension saying
// what the re-encoded image now is: the history's Download link and the copied curl/JS
// name this copy, never the original the server would refuse.
function shrunkName(name, { blob, width, height }) {
  const extension = blob.type === "image/jpeg" ? "jpg" : "png";
  return `${name.replace(/\.[^.]*$/, "")}-${width}x${height}.${extension}`;
}

/** The line saying a step's image was shrunk to the server's limits, or "". */
export function shrunkNote(step, limits) {
  if (!step.shrunkFrom) return "";
  const { width, height, name } = step.shrunkFrom;
  return `${name}: ${width} × ${height} is over the ${limits.max_side} px a side this `
    + `server takes; it is sent as ${step.width} × ${step.height} (same shape).`;
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
