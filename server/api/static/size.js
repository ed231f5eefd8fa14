// The output size the page asks for when none is typed: the input's own shape at about
// 1 MP, at the nearest size the job type allows. The same arithmetic as the server's
// `size_for_shape` (server/wire/ratio.py), so the page, `kontext edit` and `kontext batch`
// ask for the same size for the same photo (a test compares them).

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** { width, height } of a `w` × `h` shape with about `rule.area` pixels, each side a
 * multiple of `rule.unit` within [rule.low, rule.high]. */
export function sizeForShape(w, h, { low, high, unit, area }) {
  const width = Math.sqrt(area * w / h), height = Math.sqrt(area * h / w);
  const shrink = Math.min(1.0, high / Math.max(width, height));
  const side = (length) => Math.min(high, Math.max(low, roundHalfEven(length * shrink / unit) * unit));
  return { width: side(width), height: side(height) };
}

/**
 * The size the next job asks for, and why: { width, height, auto }. Typed width and
 * height win (one typed alone leaves the other to the server's default); with neither,
 * the input's shape (auto). null when the job type has no size or there is no input.
 */
export function plannedSize(jobType, values, input) {
  const rule = jobType.size_from_input;
  if (!rule) return null;
  const typed = (name) => (values[name] === undefined ? null : values[name]);
  if (typed("width") !== null || typed("height") !== null) {
    const fallback = (name) => jobType.fields.find((f) => f.name === name)?.default;
    return { width: typed("width") ?? fallback("width"), height: typed("height") ?? fallback("height"),
             auto: false };
  }
  if (!input) return null;
  return { ...sizeForShape(input.step.width, input.step.height, rule), auto: true };
}

/** An image blob brought within `limits` (longest side, bytes), shape kept: the blob and
 * its new size, or null when it is within them already. JPEG stays JPEG (quality 0.95);
 * anything else becomes PNG (lossless, transparency kept). */
export async function shrinkToLimits(blob, size, limits) {
  const scale = Math.min(1, limits.max_side / Math.max(size.width, size.height));
  if (scale === 1 && blob.size <= limits.max_bytes) return null;
  const width = Math.max(1, Math.round(size.width * scale));
  const height = Math.max(1, Math.round(size.height * scale));
  const bitmap = await createImageBitmap(blob, { resizeWidth: width, resizeHeight: height,
                                                 resizeQuality: "high" });
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const type = blob.type === "image/jpeg" ? "image/jpeg" : "image/png";
  const shrunk = await canvas.convertToBlob({ type, quality: 0.95 });
  return { blob: shrunk, width, height };
}
