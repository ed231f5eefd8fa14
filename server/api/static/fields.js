// A job type's form fields, rendered from config.json (limits read from the server's wire
// models) and read back as { name: value }. One renderer per field kind: a new kind is one
// more entry in KINDS.

import { lorasKind } from "./loras.js";

const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);

// A field with `auto` starts empty: the page then picks its value (the output size: the
// input's shape, size.js) and says which.
function numberInput(field) {
  return el("input", { type: "number", min: field.min, max: field.max, step: field.step,
                       value: field.auto ? "" : field.default ?? "",
                       placeholder: field.auto ? "auto" : "" });
}

const KINDS = {
  integer: { make: numberInput, read: (input) => input.value === "" ? undefined
    : Number(input.value) },
  number: { make: numberInput, read: (input) => input.value === "" ? undefined
    : Number(input.value) },
  boolean: {
    make: (field) => el("input", { type: "checkbox", checked: Boolean(field.default) }),
    read: (input) => input.checked,
    write: (input, value) => { input.checked = Boolean(value); },
  },
  enum: {
    make(field) {
      const select = el("select");
      if (field.optional) select.add(new Option("none", ""));
      for (const option of field.options) select.add(new Option(option, option));
      select.value = field.default ?? "";
      return select;
    },
    read: (input) => input.value || undefined,
  },
  seed: {
    make: () => el("input", { type: "text", inputMode: "numeric", placeholder: "random",
                              autocomplete: "off" }),
    read: (input) => input.value.trim(),
  },
  aspect_ratio: {
    make(field) {
      const input = el("input", { type: "text", value: field.default ?? "",
                                  placeholder: field.default ?? "the input's" });
      input.setAttribute("list", "aspect-ratios");
      return input;
    },
    read: (input) => input.value.trim() || undefined,
  },
  loras: lorasKind,
};

function ratioList(field) {
  const list = el("datalist", { id: "aspect-ratios" });
  for (const ratio of field.options) list.append(el("option", { value: ratio }));
  return list;
}

/** Render `jobType`'s fields into `container`, restoring `saved` values by field name. */
export function renderFields(container, jobType, saved = {}) {
  container.replaceChildren();
  for (const field of jobType.fields) {
    const kind = KINDS[field.kind];
    if (!kind) continue;  // a kind this page does not know yet: the server default applies
    const input = kind.make(field);
    input.id = `field-${field.name}`;
    input.name = field.name;
    input.title = field.description;
    if (field.name in saved) (kind.write || ((node, value) => { node.value = value; }))(
      input, saved[field.name]);
    const label = el("label", { htmlFor: input.id, textContent: field.label });
    const wrap = el("div", { className: `field field-${field.kind}` });
    if (field.kind === "boolean") wrap.append(input, label);
    else wrap.append(label, input);
    if (field.kind === "aspect_ratio") wrap.append(ratioList(field));
    container.append(wrap);
  }
}

/** The rendered fields' values, { name: value }. */
export function readFields(container, jobType) {
  const values = {};
  for (const field of jobType.fields) {
    const input = container.querySelector(`#field-${field.name}`);
    if (input) values[field.name] = KINDS[field.kind].read(input);
  }
  return values;
}

/** Show only the fields that mean something with `inputCount` input images. */
export function showFields(container, jobType, inputCount) {
  for (const field of jobType.fields) {
    const input = container.querySelector(`#field-${field.name}`);
    if (input) input.closest(".field").hidden = inputCount < (field.min_inputs ?? 0);
  }
}
