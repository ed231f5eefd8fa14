// The chain's images as object URLs, and <img> elements that enter the page only once
// decoded, so that no broken or half-loaded image is ever displayed.

const blobs = new Map();
const urls = new Map();

/** Keep step `id`'s image; its object URL. */
export function remember(id, blob) {
  if (!urls.has(id)) {
    blobs.set(id, blob);
    urls.set(id, URL.createObjectURL(blob));
  }
  return urls.get(id);
}

/** The image blob of step `id`. */
export const blobOf = (id) => blobs.get(id);

/** The object URL of step `id`'s image. */
export const urlOf = (id) => urls.get(id);

/** Let go of these steps' images (once no element shows them any more). */
export function forget(ids) {
  for (const id of ids) {
    if (urls.has(id)) URL.revokeObjectURL(urls.get(id));
    urls.delete(id);
    blobs.delete(id);
  }
}

/** A new <img> of step `id`, resolved once it has decoded (never shown broken). */
export async function decodedImage(id, alt, props = {}) {
  const img = Object.assign(new Image(), { alt, ...props });
  img.src = urls.get(id);
  await img.decode();
  return img;
}

/** The natural size of an image blob: { width, height }. */
export async function imageSize(blob) {
  const bitmap = await createImageBitmap(blob);
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return size;
}
