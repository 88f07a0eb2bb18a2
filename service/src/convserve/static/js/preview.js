// The preview: a dry run of the current form (shapes and cost before running), and the curl box.

import { clear, fmtCount, h, shapeText } from './dom.js';
import { ClientError, clearErrors, showProblem } from './errors.js';
import { collectOptions, curlCommand, decodedKey, inputChannels } from './form.js';
import { LatestRequest } from './lifetimes.js';
import { cs, els, state } from './page.js';
import { refreshPreset } from './presets.js';

const DRY_RUN_DELAY_MS = 250;
const dryRuns = new LatestRequest();
let dryTimer = 0;

/** Dry-run the form after `delay` ms; a newer call replaces a pending or running one. */
export function scheduleDryRun(delay = DRY_RUN_DELAY_MS) {
  clearTimeout(dryTimer);
  dryTimer = setTimeout(dryRun, delay);
}

/** Stop a pending or running dry run (a real run is about to start). */
export function cancelDryRun() {
  clearTimeout(dryTimer);
  dryRuns.abort();
}

async function dryRun() {
  if (!state.image) return;
  let options;
  clearErrors();
  try {
    options = collectOptions();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    dryRuns.abort();
    showProblem(error);
    renderPreviewProblem(error.message);
    return;
  }
  const image = state.image;
  els.curl.textContent = curlCommand(options, image);
  els.preview.classList.add('pending');
  const outcome = await dryRuns.run((signal) => cs.convolve({
    image: image.blob, filename: image.name, ...options, dry_run: true, signal,
  }));
  if (outcome.stale) return;
  els.preview.classList.remove('pending');
  if (outcome.aborted) return;
  clearErrors();
  if (outcome.error) {
    showProblem(outcome.error);
    renderPreviewProblem(outcome.error.message);
    return;
  }
  rememberDecoded(outcome.value);
  renderPreview(outcome.value);
}

/** Keep the input's shape and channel names as the service decoded them. */
export function rememberDecoded(info) {
  const channelsBefore = inputChannels();
  state.decoded = { key: decodedKey(), shape: info.input.shape, names: info.input.channels };
  if (info.input.shape[0] !== channelsBefore) refreshPreset();
}

function renderPreviewProblem(message) {
  clear(els.preview).append(h('p', { class: 'hint' },
    `Nothing to preview until this is fixed: ${message}`));
}

export function renderPreview(info) {
  const { cost } = info;
  const [top, bottom, left, right] = info.padding;
  const row = (term, value, id) => [h('dt', {}, term), h('dd', { id }, value)];
  const formula = Object.entries(cost.output_size || {}).map(([axis, text]) => h('li', { class: 'mono' }, `${axis}: ${text}`));
  clear(els.preview).append(
    h('dl', { class: 'preview-list' },
      row('Input (C, H, W)', shapeText(info.input.shape), 'preview-input'),
      row('Kernel (c_out, c_in/groups, k_h, k_w)', `${shapeText(info.kernel.weight_shape)}, groups ${info.groups}`, 'preview-kernel'),
      row('Output (c_out, H_out, W_out)', shapeText(info.shape), 'preview-shape'),
      row('Padding (top, bottom, left, right)', `${shapeText([top, bottom, left, right])} ${info.padding_mode}`, 'preview-padding'),
      row('Parameters', fmtCount(cost.params), 'preview-params'),
      row('Multiply-accumulates', fmtCount(cost.macs), 'preview-macs')),
    formula.length ? h('details', { class: 'formula' }, h('summary', {}, 'Output size formula'), h('ul', {}, formula)) : '');
}
