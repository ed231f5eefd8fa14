// The LoRA picker for `config.loras`: up to `max_items` rows of (LoRA, scale), the choices
// listed by GET /v2/loras. It reads back as [{ name, scale }] (undefined when empty); a LoRA
// the listing says cannot load is shown disabled, with the reason as its tooltip.

import { listLoras } from "./api.js";

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

// Add/remove change the form without an input event of their own: say so (saveForm).
const changed = (picker) => picker.dispatchEvent(new Event("input", { bubbles: true }));
const rowsOf = (picker) => [...picker.querySelectorAll(".lora-row")];

function optionFor(entry) {
  const rank = entry.rank ? `, rank ${entry.rank}` : "";
  const option = new Option(`${entry.name}${rank}${entry.loads ? "" : " — cannot be used"}`,
                            entry.name);
  option.disabled = !entry.loads;
  option.title = entry.problem || entry.base_model || "";
  return option;
}

/** The row's LoRA options from the listing, keeping its choice (even one not listed). */
function fillOptions(picker, row) {
  const chosen = row.dataset.name;
  const listed = picker.listing?.loras ?? [];
  row.select.replaceChildren(...listed.map(optionFor));
  if (chosen && !listed.some((entry) => entry.name === chosen)) {
    row.select.add(new Option(`${chosen} (not in the folder)`, chosen), 0);
  }
  row.select.value = chosen;
}

function addRow(picker, name, scale) {
  const { field } = picker;
  const taken = new Set(rowsOf(picker).map((row) => row.dataset.name));
  const free = (picker.listing?.loras ?? []).find((entry) => entry.loads && !taken.has(entry.name));
  const row = el("li", { className: "lora-row" });
  row.dataset.name = name ?? free?.name ?? "";
  row.select = el("select", { className: "lora-name", ariaLabel: "LoRA" });
  row.select.addEventListener("input", () => { row.dataset.name = row.select.value; });
  row.scale = el("input", { type: "number", className: "lora-scale", ariaLabel: "scale",
                            min: field.scale.min, max: field.scale.max, step: field.scale.step,
                            value: scale ?? field.scale.default, title: "scale" });
  const remove = el("button", { type: "button", className: "lora-remove", textContent: "×",
                                title: "Remove this LoRA" });
  remove.addEventListener("click", () => { row.remove(); update(picker); changed(picker); });
  row.append(row.select, row.scale, remove);
  fillOptions(picker, row);
  picker.rows.append(row);
  update(picker);
}

/** The note and the Add button, from the listing and the rows. */
function update(picker) {
  const { listing, field } = picker;
  const usable = (listing?.loras ?? []).filter((entry) => entry.loads).length;
  picker.add.disabled = !listing?.enabled || usable === 0
    || rowsOf(picker).length >= field.max_items;
  if (picker.failure) picker.note.textContent = picker.failure;
  else if (!listing) picker.note.textContent = "Loading the LoRA list…";
  else if (!listing.enabled) picker.note.textContent = `No LoRAs: ${listing.problem}`;
  else picker.note.textContent = `${usable} of ${listing.loras.length} LoRAs in the folder can `
    + `be used; up to ${field.max_items} per edit.`;
}

async function load(picker) {
  picker.failure = "";
  try {
    picker.listing = await listLoras(picker.field.list_url);
  } catch (error) {
    picker.failure = `${error.message} Then press Refresh.`;
  }
  for (const row of rowsOf(picker)) fillOptions(picker, row);
  update(picker);
}

export const lorasKind = {
  make(field) {
    const picker = el("div", { className: "lora-picker" });
    picker.field = field;
    picker.listing = null;
    picker.rows = el("ol", { className: "lora-rows" });
    picker.add = el("button", { type: "button", className: "lora-add", textContent: "Add LoRA" });
    picker.add.addEventListener("click", () => { addRow(picker); changed(picker); });
    const refresh = el("button", { type: "button", className: "lora-refresh",
                                   textContent: "Refresh",
                                   title: "List the LoRA folder again (new files need no restart)" });
    refresh.addEventListener("click", () => load(picker));
    picker.note = el("p", { className: "lora-note muted small" });
    picker.append(picker.rows, el("div", { className: "buttons" }, picker.add, refresh),
                  picker.note);
    update(picker);
    load(picker);
    return picker;
  },
  read(picker) {
    const loras = rowsOf(picker).filter((row) => row.dataset.name).map((row) => (
      row.scale.value === "" ? { name: row.dataset.name }
        : { name: row.dataset.name, scale: Number(row.scale.value) }));
    return loras.length ? loras : undefined;
  },
  write(picker, value) {
    picker.rows.replaceChildren();
    for (const entry of value ?? []) {
      if (typeof entry === "string") addRow(picker, entry);
      else addRow(picker, entry.name, entry.scale);
    }
  },
};
