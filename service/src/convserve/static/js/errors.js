// Errors on the page: a mistake found before sending (ClientError), and any error (the API's
// problem+json or the page's own) shown next to the fields it names.

import { APIStatusError } from './convserve-client/index.js';
import { h } from './dom.js';
import { els, state } from './page.js';

/** A mistake found before anything is sent (a weight cell that is not a number). */
export class ClientError extends Error {
  constructor(field, message) {
    super(message);
    this.name = 'ClientError';
    this.problem = { title: 'Invalid input', detail: message, errors: [{ field, message }] };
  }
}

// Error fields that name a part of the request this page shows under another name.
const FIELD_ALIASES = {
  weight: 'kernel.weight',
  bias: 'kernel.bias',
  input: 'image',
  'input.array': 'image',
  'input.image_base64': 'image',
  channels: 'color_mode',
  channel_names: 'color_mode',
  layout: 'kernel',
};

export function clearErrors() {
  for (const { element, id } of state.errorMarks) {
    element.removeAttribute('aria-invalid');
    const ids = (element.getAttribute('aria-describedby') || '').split(/\s+/).filter((t) => t && t !== id);
    if (ids.length) element.setAttribute('aria-describedby', ids.join(' '));
    else element.removeAttribute('aria-describedby');
  }
  state.errorMarks = [];
  for (const slot of document.querySelectorAll('.field-error[data-slot]')) slot.remove();
  for (const field of document.querySelectorAll('.has-error')) field.classList.remove('has-error');
  els.formError.hidden = true;
  els.formError.textContent = '';
}

/** The visible element marked data-field that an error's `field` belongs to, or null. */
function fieldContainer(field) {
  const candidates = [];
  const addWithParents = (name) => {
    for (let cut = name; cut; cut = cut.includes('.') ? cut.slice(0, cut.lastIndexOf('.')) : '') {
      candidates.push(cut);
    }
  };
  addWithParents(field);
  if (FIELD_ALIASES[field]) addWithParents(FIELD_ALIASES[field]);
  if (/^(kernel|weight|bias|preset)/.test(field)) candidates.push('kernel', 'preset');
  for (const name of candidates) {
    const element = document.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (element && !element.closest('[hidden]')) return element;
  }
  return null;
}

let slotCount = 0;

export function markField(container, message) {
  let slot = container.querySelector(':scope > .field-error[data-slot]');
  if (!slot) {
    slotCount += 1;
    slot = h('p', { class: 'field-error', id: `field-error-${slotCount}`, dataset: { slot: '' } });
    if (container.classList.contains('weight-grid')) container.prepend(slot);
    else container.append(slot);
  }
  slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
  container.classList.add('has-error');
  const controls = container.matches('input, select, textarea')
    ? [container] : [...container.querySelectorAll('input:not([type="radio"]), select, textarea')];
  for (const element of controls.slice(0, 64)) {
    element.setAttribute('aria-invalid', 'true');
    const ids = (element.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
    element.setAttribute('aria-describedby', [...ids, slot.id].join(' '));
    state.errorMarks.push({ element, id: slot.id });
  }
  return slot;
}

/**
 * Show an API or client error next to the fields it names (its errors[].field), and its detail
 * by the Run button when no field of this page matches. Returns a short summary for the status.
 */
export function showProblem(error) {
  const problem = error.problem ?? { detail: error.message };
  const detail = problem.detail || problem.title || error.message;
  const entries = Array.isArray(problem.errors) ? problem.errors : [];
  const placed = [];
  for (const entry of entries) {
    const container = fieldContainer(String(entry.field ?? ''));
    if (!container) continue;
    markField(container, entries.length === 1 ? detail : String(entry.message ?? detail));
    const label = container.querySelector('label, legend');
    placed.push(label ? label.textContent.trim().replace(/\s+/g, ' ') : entry.field);
  }
  if (placed.length === 0 || placed.length < entries.length) {
    els.formError.textContent = detail;
    els.formError.hidden = false;
  }
  const where = placed.length ? ` (see ${placed.join(', ')})` : '';
  const status = error instanceof APIStatusError ? `${error.status} ${problem.title ?? ''}`.trim() : 'Check the input';
  return `${status}: ${detail}${where}`;
}
