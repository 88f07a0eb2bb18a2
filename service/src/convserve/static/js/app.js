// The demo page: wires the form to the public HTTP API (v1/presets, v1/engines, v1/convolve,
// v1/explain) and draws what comes back. Nothing here computes a convolution.

import { ApiError, ClientError, multipart, request, requestJson, suggestedFilename } from './api.js';
import { clear, fmt, fmtCount, h, shapeText, tensorGrid } from './dom.js';
import { originOf, renderExplanation } from './explain.js';
import { KernelEditor } from './kernel-editor.js';

const $ = (selector) => document.querySelector(selector);

const CHANNELS_BY_MODE = { rgb: 3, gray: 1, rgba: 4 };
const COMPOSED_MODES = { 1: 'grey (L)', 3: 'RGB', 4: 'RGBA' };
const DRY_RUN_DELAY_MS = 250;
// The service answers 504 after its own compute timeout (60 s by default); this only guards
// against a connection that never answers, so the Run button cannot stay disabled forever.
const RUN_TIMEOUT_MS = 180_000;
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

const els = {
  form: $('#conv-form'),
  samples: [...document.querySelectorAll('input[name="sample"]')],
  file: $('#image-file'),
  dropZone: $('#drop-zone'),
  imageName: $('#image-name'),
  colorMode: $('#color-mode'),
  sourcePreset: $('#source-preset'),
  sourceCustom: $('#source-custom'),
  presetPanel: $('#preset-panel'),
  customPanel: $('#custom-panel'),
  preset: $('#preset'),
  presetDescription: $('#preset-description'),
  presetParams: $('#preset-params'),
  presetTensor: $('#preset-tensor'),
  editPreset: $('#edit-preset'),
  stride: $('#stride'),
  dilation: $('#dilation'),
  paddingKind: $('#padding-kind'),
  paddingValues: $('#padding-values'),
  paddingMode: $('#padding-mode'),
  groups: $('#groups'),
  normalize: $('#normalize'),
  engine: $('#engine'),
  device: $('#device'),
  deviceNotes: $('#device-notes'),
  deviceDetails: $('#device-details'),
  deviceSummary: $('#device-summary'),
  preview: $('#preview'),
  runButton: $('#run-button'),
  progress: $('#progress'),
  status: $('#status'),
  formError: $('#form-error'),
  curl: $('#curl'),
  results: $('#results'),
  resultSummary: $('#result-summary'),
  timings: $('#timings'),
  downloadZip: $('#download-zip'),
  downloadNpy: $('#download-npy'),
  maps: $('#maps'),
  explain: $('#explain'),
  explainBody: $('#explain-body'),
  placeholder: $('#placeholder'),
};

const state = {
  image: null, // {blob, name, label, url, isArray}
  decoded: null, // {key, shape, names}: the input as the service decoded it (from a dry run)
  presets: new Map(),
  resolved: null, // GET /v1/presets/{name} for the current preset, channels and parameters
  engines: null,
  customTouched: false,
  autoGroups: null, // the groups value the page set itself when copying a preset
  busy: false,
  last: null, // {fields, image, result}: the run the maps and the explain panel belong to
  cursor: { y: 0, x: 0 },
  composedUrl: null,
  errorMarks: [],
};

const editor = new KernelEditor({
  dims: { c_out: $('#dim-cout'), c_in: $('#dim-cin'), k_h: $('#dim-kh'), k_w: $('#dim-kw') },
  grid: $('#weight-grid'),
  hint: $('#dims-hint'),
  useBias: $('#use-bias'),
  biasRow: $('#bias-row'),
  jsonText: $('#kernel-json'),
  jsonLayout: $('#json-layout'),
  jsonError: $('#json-error'),
}, () => {
  state.customTouched = true;
  scheduleDryRun();
});

// ---------------------------------------------------------------------------------------------
// Status, busy state and errors

function setStatus(message) {
  els.status.textContent = message;
}

function setBusy(busy) {
  state.busy = busy;
  els.runButton.disabled = busy;
  els.runButton.textContent = busy ? 'Running…' : 'Run convolution';
  els.progress.hidden = !busy;
  els.results.setAttribute('aria-busy', String(busy));
  els.downloadZip.disabled = busy || !state.last;
  els.downloadNpy.disabled = busy || !state.last;
}

function clearErrors() {
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

function markField(container, message) {
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
function showProblem(error) {
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
  const status = error instanceof ApiError && error.status ? `${error.status} ${problem.title ?? ''}`.trim() : 'Check the input';
  return `${status}: ${detail}${where}`;
}

// ---------------------------------------------------------------------------------------------
// The request fields

function kernelSource() {
  return els.sourceCustom.checked ? 'custom' : 'preset';
}

function presetParamValues() {
  const values = {};
  for (const input of els.presetParams.querySelectorAll('[data-param]')) {
    const text = input.value.trim();
    if (text === '') continue;
    const value = Number(text);
    if (!Number.isFinite(value)) {
      throw new ClientError(`preset_params.${input.dataset.param}`, `${input.dataset.param} must be a number`);
    }
    values[input.dataset.param] = value;
  }
  return values;
}

/** The multipart fields of the current form (everything but the image and format). */
function collectFields() {
  const fields = [];
  if (kernelSource() === 'custom') {
    fields.push(['kernel', JSON.stringify(editor.toKernel())]);
  } else {
    if (!els.preset.value) throw new ClientError('preset', 'the presets have not loaded yet');
    fields.push(['preset', els.preset.value]);
    const params = presetParamValues();
    if (Object.keys(params).length) fields.push(['preset_params', JSON.stringify(params)]);
  }
  for (const [name, input] of [['stride', els.stride], ['dilation', els.dilation]]) {
    if (input.value.trim()) fields.push([name, input.value.trim()]);
  }
  if (els.paddingKind.value === 'explicit') {
    const text = els.paddingValues.value.trim();
    if (!text) throw new ClientError('padding', 'type the padding: p, p_h,p_w or top,bottom,left,right');
    fields.push(['padding', text]);
  } else if (els.paddingKind.value) {
    fields.push(['padding', els.paddingKind.value]);
  }
  if (els.paddingMode.value) fields.push(['padding_mode', els.paddingMode.value]);
  if (els.groups.value.trim()) fields.push(['groups', els.groups.value.trim()]);
  if (els.engine.value) fields.push(['engine', els.engine.value]);
  if (els.device.value) fields.push(['device', els.device.value]);
  fields.push(['color_mode', els.colorMode.value], ['normalize', els.normalize.value]);
  return fields;
}

function curlCommand(fields, image) {
  const quote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;
  const url = new URL('v1/convolve', document.baseURI).href;
  return [
    `curl -sS ${url}`,
    `  -F ${quote(`image=@${image.name}`)}`,
    ...fields.map(([name, value]) => `  --form-string ${quote(`${name}=${value}`)}`),
    '  -F format=zip -o convserve.zip',
  ].join(' \\\n');
}

// ---------------------------------------------------------------------------------------------
// Image

function formatBytes(bytes) {
  return bytes < 1024 * 1024 ? `${Math.max(1, Math.round(bytes / 1024))} KB` : `${(bytes / 1048576).toFixed(1)} MB`;
}

function setImage(blob, name, label) {
  const previous = state.image;
  state.image = { blob, name, label, url: URL.createObjectURL(blob), isArray: /\.npy$/i.test(name) };
  if (previous && previous !== state.last?.image) URL.revokeObjectURL(previous.url);
  state.decoded = null;
  clear(els.imageName).append(
    state.image.isArray ? '' : h('img', { src: state.image.url, alt: '', class: 'thumb' }),
    h('span', {}, `Using ${label} (${name}, ${formatBytes(blob.size)})`),
  );
  refreshPreset();
  scheduleDryRun(0);
}

async function useSample(radio) {
  setStatus(`Loading the sample “${radio.dataset.label}”…`);
  try {
    const response = await request(`static/samples/${radio.value}`);
    setImage(await response.blob(), radio.value, `the sample “${radio.dataset.label}”`);
    setStatus(`Sample “${radio.dataset.label}” loaded.`);
  } catch (error) {
    setStatus(`Could not load the sample: ${error.message}`);
  }
}

function useFile(file) {
  if (!file) return;
  for (const radio of els.samples) radio.checked = false;
  setImage(file, file.name, 'your file');
  setStatus(`Loaded ${file.name}.`);
}

/** C, the number of input channels, as the service decodes the current image. */
function inputChannels() {
  if (state.decoded && state.decoded.key === decodedKey()) return state.decoded.shape[0];
  return CHANNELS_BY_MODE[els.colorMode.value] ?? 3;
}

function inputNames() {
  if (state.decoded && state.decoded.key === decodedKey()) return state.decoded.names;
  return { 1: ['L'], 3: ['R', 'G', 'B'], 4: ['R', 'G', 'B', 'A'] }[inputChannels()] ?? [];
}

function decodedKey() {
  return `${state.image?.url}|${els.colorMode.value}`;
}

// ---------------------------------------------------------------------------------------------
// Presets

function currentPreset() {
  return state.presets.get(els.preset.value);
}

function renderPresetControls() {
  const preset = currentPreset();
  clear(els.presetParams);
  if (!preset) return;
  const rule = {
    depthwise: 'depthwise: each input channel is filtered on its own (groups = C)',
    luminance: 'luminance: each filter reads the weighted sum of the colour channels',
    full: `full: an explicit tensor${preset.requires_channels ? ` for C = ${preset.requires_channels}` : ''}`,
  }[preset.rule] ?? preset.rule;
  els.presetDescription.textContent = `${preset.description} Channel rule: ${rule}.`
    + `${preset.range_preserving ? ' Range-preserving.' : ''} Source: ${preset.source}`;
  for (const param of preset.parameters) {
    const id = `param-${param.name}`;
    const hintId = `${id}-hint`;
    let control;
    if (param.choices && param.choices.length) {
      control = h('select', { id, dataset: { param: param.name }, 'aria-describedby': hintId },
        param.choices.map((choice) => h('option', { value: String(choice), selected: choice === param.default }, String(choice))));
    } else {
      control = h('input', {
        id, type: 'number', value: String(param.default), min: param.min, max: param.max,
        step: param.type === 'int' ? (param.odd ? 2 : 1) : 'any',
        inputmode: param.type === 'int' ? 'numeric' : 'decimal',
        dataset: { param: param.name }, 'aria-describedby': hintId,
      });
    }
    const range = param.choices && param.choices.length ? '' : ` (${fmt(param.min)} to ${fmt(param.max)}${param.odd ? ', odd' : ''})`;
    els.presetParams.append(h('div', { class: 'field', dataset: { field: `preset_params.${param.name}` } },
      h('label', { for: id }, param.name),
      control,
      h('p', { class: 'hint', id: hintId }, `${param.description}${range}`)));
  }
}

let presetController = null;
let presetTimer = 0;

function refreshPreset(delay = 0) {
  clearTimeout(presetTimer);
  presetTimer = setTimeout(resolvePreset, delay);
}

async function resolvePreset() {
  const preset = currentPreset();
  if (!preset) return;
  presetController?.abort();
  const controller = new AbortController();
  presetController = controller;
  let params;
  try {
    params = presetParamValues();
  } catch (error) {
    return; // the dry run reports it next to the parameter
  }
  const channels = inputChannels();
  const query = new URLSearchParams({ channels: String(channels) });
  for (const [name, value] of Object.entries(params)) query.set(name, String(value));
  try {
    const resolved = await requestJson(`v1/presets/${encodeURIComponent(preset.name)}?${query}`, { signal: controller.signal });
    if (controller !== presetController) return;
    state.resolved = resolved;
    renderPresetTensor(resolved, channels);
  } catch (error) {
    if (error.name === 'AbortError' || controller !== presetController) return;
    state.resolved = null;
    clear(els.presetTensor).append(h('p', { class: 'hint' }, `No tensor to show: ${error.message}`));
  }
}

function renderPresetTensor(resolved, channels) {
  const [c_out, c_in_g, k_h, k_w] = resolved.weight_shape;
  const names = inputNames();
  const groups = resolved.groups;
  const perGroupOut = c_out / groups;
  const columnName = (o, i) => {
    const channel = Math.floor(o / perGroupOut) * c_in_g + i;
    return `× input ${channel}${names[channel] ? ` (${names[channel]})` : ''}`;
  };
  const weights = c_out * c_in_g * k_h * k_w;
  clear(els.presetTensor).append(
    h('p', { class: 'tensor-caption' },
      h('strong', {}, `weight ${shapeText(resolved.weight_shape)}`),
      ` for C = ${channels}: groups = ${groups}, ${weights} weights`,
      resolved.bias ? `, bias ${shapeText([resolved.bias.length])}` : ', no bias',
      groups > 1 ? `. Output channel o reads input channel ${perGroupOut === 1 ? 'o' : `o // ${perGroupOut}`} only.` : '.'),
    tensorGrid(resolved.weight, {
      rowNames: resolved.output_names,
      columnName,
      caption: `Resolved weight tensor of ${resolved.name}, one row per output channel`,
    }));
}

async function loadPresets() {
  try {
    const { presets } = await requestJson('v1/presets');
    for (const preset of presets) state.presets.set(preset.name, preset);
    els.preset.replaceChildren(...presets.map((preset) =>
      h('option', { value: preset.name, selected: preset.name === 'sobel' }, preset.name)));
    renderPresetControls();
    refreshPreset();
  } catch (error) {
    showProblem(error);
    setStatus(`Could not load the presets: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Engines and devices

async function loadEngines() {
  try {
    state.engines = await requestJson('v1/engines');
  } catch (error) {
    els.engine.replaceChildren(h('option', { value: '' }, 'server default'));
    els.device.replaceChildren(h('option', { value: '' }, 'server default'));
    els.deviceNotes.replaceChildren(h('li', {}, `Could not list the engines: ${error.message}`));
    els.deviceSummary.textContent = 'Engines unknown';
    els.deviceDetails.hidden = false;
    return;
  }
  const { engines, default_engine: defaultEngine, default_device: defaultDevice } = state.engines;
  els.engine.replaceChildren(...engines.map((engine) => {
    const usable = engine.devices.some((device) => device.available);
    return h('option', { value: engine.name, selected: engine.name === defaultEngine, disabled: !usable },
      `${engine.name} ${engine.version}${usable ? '' : ' (unavailable)'}`);
  }));
  renderDevices(defaultDevice);
}

function renderDevices(preferred) {
  const engine = state.engines?.engines.find((e) => e.name === els.engine.value);
  if (!engine) return;
  const wanted = preferred ?? els.device.value;
  const firstAvailable = engine.devices.find((d) => d.available)?.device;
  const selected = engine.devices.some((d) => d.device === wanted && d.available) ? wanted : firstAvailable;
  els.device.replaceChildren(...engine.devices.map((device) => h('option', {
    value: device.device, disabled: !device.available, selected: device.device === selected,
  }, device.available ? device.device : `${device.device} (unavailable)`)));
  const notes = state.engines.engines.flatMap((e) => e.devices.filter((d) => !d.available)
    .map((d) => h('li', {}, `${e.name} on ${d.device} is unavailable: ${d.reason ?? 'no reason given'}`)));
  els.deviceNotes.replaceChildren(...notes);
  els.deviceSummary.textContent = `${notes.length} engine and device pair${notes.length === 1 ? ' is' : 's are'} unavailable here: why`;
  els.deviceDetails.hidden = notes.length === 0;
}

// ---------------------------------------------------------------------------------------------
// Dry run: shapes and cost before running

let dryTimer = 0;
let dryController = null;

function scheduleDryRun(delay = DRY_RUN_DELAY_MS) {
  clearTimeout(dryTimer);
  dryTimer = setTimeout(dryRun, delay);
}

async function dryRun() {
  if (!state.image) return;
  dryController?.abort();
  const controller = new AbortController();
  dryController = controller;
  let fields;
  clearErrors();
  try {
    fields = collectFields();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    showProblem(error);
    renderPreviewProblem(error.message);
    return;
  }
  els.curl.textContent = curlCommand(fields, state.image);
  els.preview.classList.add('pending');
  try {
    const info = await requestJson('v1/convolve', {
      method: 'POST', body: multipart(state.image, [...fields, ['dry_run', 'true']]), signal: controller.signal,
    });
    if (controller !== dryController) return;
    clearErrors();
    rememberDecoded(info);
    renderPreview(info);
  } catch (error) {
    if (error.name === 'AbortError' || controller !== dryController) return;
    clearErrors();
    showProblem(error);
    renderPreviewProblem(error.message);
  } finally {
    if (controller === dryController) els.preview.classList.remove('pending');
  }
}

function rememberDecoded(info) {
  const channelsBefore = inputChannels();
  state.decoded = { key: decodedKey(), shape: info.input.shape, names: info.input.channels };
  if (info.input.shape[0] !== channelsBefore) refreshPreset();
}

function renderPreviewProblem(message) {
  clear(els.preview).append(h('p', { class: 'hint' },
    `Nothing to preview until this is fixed: ${message}`));
}

function renderPreview(info) {
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

// ---------------------------------------------------------------------------------------------
// Run and results

async function run(event) {
  event.preventDefault();
  if (state.busy) return;
  clearTimeout(dryTimer);
  dryController?.abort();
  clearErrors();
  if (!state.image) {
    markField(els.dropZone, 'Choose a sample photo or upload an image first.');
    setStatus('Choose an image first.');
    return;
  }
  let fields;
  try {
    fields = collectFields();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    setStatus(showProblem(error));
    return;
  }
  const image = state.image;
  setBusy(true);
  setStatus('Running the convolution…');
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), RUN_TIMEOUT_MS);
  try {
    const result = await requestJson('v1/convolve', {
      method: 'POST', body: multipart(image, [...fields, ['format', 'json']]), signal: controller.signal,
    });
    const roundTrip = performance.now() - started;
    if (state.last && state.last.image !== image && state.last.image !== state.image) URL.revokeObjectURL(state.last.image.url);
    state.last = { fields, image, result };
    rememberDecoded(result);
    renderPreview(result);
    renderResults(result, roundTrip);
    if (els.results.getBoundingClientRect().top > window.innerHeight) {
      els.results.scrollIntoView({ block: 'start', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
    }
    const [c_out, h_out, w_out] = result.shape;
    setStatus(`Done: ${c_out} feature map${c_out === 1 ? '' : 's'} of ${h_out} × ${w_out} in ${Math.round(roundTrip)} ms.`);
    if (COMPOSED_MODES[c_out]) await loadComposed(fields, image, c_out);
  } catch (error) {
    if (error.name === 'AbortError') {
      setStatus(`No answer from the service after ${RUN_TIMEOUT_MS / 1000} s; try a smaller image or kernel.`);
    } else {
      setStatus(`The request failed: ${showProblem(error)}`);
    }
  } finally {
    clearTimeout(timer);
    setBusy(false);
  }
}

function figureFrame(img, extra) {
  return h('div', { class: 'map-frame' }, img, extra);
}

function renderResults(result, roundTrip) {
  els.placeholder.hidden = true;
  els.results.hidden = false;
  els.explain.hidden = true;
  clear(els.explainBody);
  const [c_out, h_out, w_out] = result.shape;
  const [c_in, h_in, w_in] = result.input.shape;
  state.cursor = { y: Math.floor(h_out / 2), x: Math.floor(w_out / 2) };
  const kernel = result.kernel.source === 'preset' ? `preset ${result.kernel.name}` : 'a custom kernel';
  els.resultSummary.textContent = `${kernel}, weight ${shapeText(result.kernel.weight_shape)}, `
    + `groups ${result.groups}, stride ${result.stride.join('×')}, dilation ${result.dilation.join('×')}, `
    + `padding ${shapeText(result.padding)} ${result.padding_mode}: input ${shapeText(result.input.shape)} → `
    + `output ${shapeText(result.shape)}; ${result.engine} on ${result.device}; PNGs normalized with ${result.normalize}.`;
  const timing = Object.entries(result.timing_ms).map(([stage, ms]) => `${stage} ${fmt(ms, 3)} ms`).join(' · ');
  els.timings.textContent = `Server time: ${timing}. Round trip in this browser: ${Math.round(roundTrip)} ms.`;

  const maps = clear(els.maps);
  maps.classList.remove('picked');
  const inputImg = state.last.image.isArray
    ? h('p', { class: 'hint no-preview' }, 'A NumPy array has no picture here.')
    : h('img', { src: state.last.image.url, alt: `Input image, ${w_in} × ${h_in} pixels, ${c_in} channel${c_in === 1 ? '' : 's'}`, class: 'pixels' });
  maps.append(h('figure', { class: 'map map--input' },
    figureFrame(inputImg, h('span', { class: 'receptive-field', hidden: true, 'aria-hidden': 'true' })),
    h('figcaption', {}, h('strong', {}, 'Input'), h('span', {}, `${shapeText(result.input.shape)}, channels ${result.input.channels.join(' ')}`))));

  for (const channel of result.channels) {
    maps.append(mapFigure(channel, h_out, w_out));
  }
  if (COMPOSED_MODES[c_out]) {
    maps.append(h('figure', { class: 'map map--composed', id: 'composed' },
      h('div', { class: 'map-frame' }, h('p', { class: 'hint' }, 'Composing…')),
      h('figcaption', {}, h('strong', {}, 'Composed'), h('span', {}, `${c_out} channel${c_out === 1 ? '' : 's'} as ${COMPOSED_MODES[c_out]}`))));
  }
  moveCursor(0, 0);
}

function mapLabel(channel, h_out, w_out) {
  const name = channel.name && channel.name !== String(channel.index) ? ` (${channel.name})` : '';
  return `Feature map ${channel.index}${name}`;
}

function mapFigure(channel, h_out, w_out) {
  const label = mapLabel(channel, h_out, w_out);
  const img = h('img', {
    src: `data:image/png;base64,${channel.png_base64}`,
    alt: `${label}: ${w_out} × ${h_out} pixels, values from ${fmt(channel.min)} to ${fmt(channel.max)}, mean ${fmt(channel.mean)}`,
    class: 'pixels',
    draggable: 'false',
  });
  const button = h('button', {
    type: 'button', class: 'map-frame map-button', dataset: { channel: String(channel.index), label },
  }, img, h('span', { class: 'cursor', 'aria-hidden': 'true' }));
  button.addEventListener('click', (event) => {
    if (event.detail > 0) {
      const rect = img.getBoundingClientRect();
      const x = Math.floor(((event.clientX - rect.left) / rect.width) * w_out);
      const y = Math.floor(((event.clientY - rect.top) / rect.height) * h_out);
      state.cursor = { y: Math.min(h_out - 1, Math.max(0, y)), x: Math.min(w_out - 1, Math.max(0, x)) };
      moveCursor(0, 0);
    }
    els.maps.classList.add('picked');
    explainAt(channel.index, state.cursor.y, state.cursor.x, channel.name);
  });
  button.addEventListener('keydown', (event) => {
    const step = event.shiftKey ? 10 : 1;
    const moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
    if (!moves[event.key]) return;
    event.preventDefault();
    moveCursor(...moves[event.key]);
  });
  const stats = { channel: String(channel.index), min: String(channel.min), max: String(channel.max), mean: String(channel.mean) };
  return h('figure', { class: 'map', dataset: stats },
    button,
    h('figcaption', {},
      h('strong', {}, `${channel.index}${channel.name && channel.name !== String(channel.index) ? ` · ${channel.name}` : ''}`),
      h('span', { class: 'stats' }, `min ${fmt(channel.min)} · max ${fmt(channel.max)} · mean ${fmt(channel.mean)}`)));
}

/** Move the shared pixel cursor by (dy, dx), clamped, and update every map's marker and label. */
function moveCursor(dy, dx) {
  if (!state.last) return;
  const [, h_out, w_out] = state.last.result.shape;
  const y = Math.min(h_out - 1, Math.max(0, state.cursor.y + dy));
  const x = Math.min(w_out - 1, Math.max(0, state.cursor.x + dx));
  state.cursor = { y, x };
  for (const button of els.maps.querySelectorAll('.map-button')) {
    const marker = button.querySelector('.cursor');
    marker.style.left = `${((x + 0.5) / w_out) * 100}%`;
    marker.style.top = `${((y + 0.5) / h_out) * 100}%`;
    button.setAttribute('aria-label', `${button.dataset.label}. Press Enter to explain row ${y}, column ${x}; arrow keys move.`);
  }
}

async function loadComposed(fields, image, c_out) {
  const figure = $('#composed');
  try {
    const response = await request('v1/convolve', { method: 'POST', body: multipart(image, [...fields, ['format', 'image']]) });
    const blob = await response.blob();
    if (state.composedUrl) URL.revokeObjectURL(state.composedUrl);
    state.composedUrl = URL.createObjectURL(blob);
    figure.querySelector('.map-frame').replaceChildren(h('img', {
      src: state.composedUrl, class: 'pixels',
      alt: `All ${c_out} output channel${c_out === 1 ? '' : 's'} composed into one ${COMPOSED_MODES[c_out]} image`,
    }));
  } catch (error) {
    figure.querySelector('.map-frame').replaceChildren(h('p', { class: 'field-error' }, `Could not compose: ${error.message}`));
  }
}

async function download(format, button) {
  if (!state.last) return;
  const { fields, image } = state.last;
  button.disabled = true;
  setStatus(`Preparing the ${format} download…`);
  try {
    const response = await request('v1/convolve', { method: 'POST', body: multipart(image, [...fields, ['format', format]]) });
    const url = URL.createObjectURL(await response.blob());
    const link = h('a', { href: url, download: suggestedFilename(response, `convserve.${format}`), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus(`Downloaded ${link.download}.`);
  } catch (error) {
    setStatus(`The download failed: ${showProblem(error)}`);
  } finally {
    button.disabled = state.busy;
  }
}

// ---------------------------------------------------------------------------------------------
// Explain one output value

let explainController = null;

async function explainAt(channel, y, x, name) {
  const last = state.last;
  if (!last) return;
  explainController?.abort();
  const controller = new AbortController();
  explainController = controller;
  els.explain.hidden = false;
  els.explainBody.setAttribute('aria-busy', 'true');
  setStatus(`Explaining output[${channel}, ${y}, ${x}]…`);
  const fields = last.fields.filter(([field]) => field !== 'normalize');
  try {
    const data = await requestJson('v1/explain', {
      method: 'POST',
      body: multipart(last.image, [...fields, ['at', JSON.stringify({ channel, y, x })]]),
      signal: controller.signal,
    });
    if (controller !== explainController) return;
    const { result } = last;
    const groupsIn = result.input.shape[0] / result.groups;
    renderExplanation(els.explainBody, data, {
      channel, y, x, outputName: name,
      inputNames: result.input.channels,
      stride: result.stride, dilation: result.dilation, paddingMode: result.padding_mode,
      groupStart: Math.floor(channel / (result.shape[0] / result.groups)) * groupsIn,
    });
    showReceptiveField(data, result);
    setStatus(`output[${channel}, ${y}, ${x}] = ${fmt(data.value, 6)}, the sum of ${data.terms.length} input channel term${data.terms.length === 1 ? '' : 's'}${data.bias ? ' plus the bias' : ''}.`);
  } catch (error) {
    if (error.name === 'AbortError' || controller !== explainController) return;
    clear(els.explainBody).append(h('p', { class: 'field-error', role: 'alert' }, error.message));
    setStatus(`Could not explain that pixel: ${error.message}`);
  } finally {
    if (controller === explainController) els.explainBody.removeAttribute('aria-busy');
  }
}

/** Outline the input window the explained value reads, on the input picture. */
function showReceptiveField(data, result) {
  const box = els.maps.querySelector('.receptive-field');
  if (!box || !data.terms.length) return;
  const [, h_in, w_in] = result.input.shape;
  const [r0, c0] = originOf(data);
  const k_h = data.terms[0].kernel.length;
  const k_w = data.terms[0].kernel[0].length;
  const [d_h, d_w] = result.dilation;
  const height = (k_h - 1) * d_h + 1;
  const width = (k_w - 1) * d_w + 1;
  Object.assign(box.style, {
    top: `${(r0 / h_in) * 100}%`, left: `${(c0 / w_in) * 100}%`,
    height: `${(height / h_in) * 100}%`, width: `${(width / w_in) * 100}%`,
  });
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Wiring

function showKernelPanel() {
  const custom = kernelSource() === 'custom';
  if (custom && !state.customTouched && state.resolved) copyPresetToEditor(false);
  if (!custom && state.autoGroups !== null && els.groups.value === String(state.autoGroups)) {
    els.groups.value = '';
    state.autoGroups = null;
  }
  els.presetPanel.hidden = custom;
  els.customPanel.hidden = !custom;
  if (custom) editor.render();
  scheduleDryRun(0);
}

function copyPresetToEditor(announce = true) {
  const { resolved } = state;
  if (!resolved) return;
  editor.setTensor(resolved.weight, resolved.bias);
  if (resolved.groups > 1) {
    els.groups.value = String(resolved.groups);
    state.autoGroups = resolved.groups;
  }
  state.customTouched = true;
  if (announce) {
    els.sourceCustom.checked = true;
    showKernelPanel();
    els.sourceCustom.focus();
    setStatus(`Copied ${resolved.name}'s weight ${shapeText(resolved.weight_shape)} into the custom kernel editor.`);
  }
}

function wire() {
  els.form.addEventListener('submit', run);
  for (const radio of els.samples) radio.addEventListener('change', () => radio.checked && useSample(radio));
  els.file.addEventListener('change', () => useFile(els.file.files[0]));
  for (const type of ['dragenter', 'dragover']) {
    els.dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      els.dropZone.classList.add('dragging');
    });
  }
  for (const type of ['dragleave', 'drop']) {
    els.dropZone.addEventListener(type, () => els.dropZone.classList.remove('dragging'));
  }
  els.dropZone.addEventListener('drop', (event) => {
    event.preventDefault();
    useFile(event.dataTransfer?.files?.[0]);
  });
  els.colorMode.addEventListener('change', () => { refreshPreset(); scheduleDryRun(0); });
  for (const radio of [els.sourcePreset, els.sourceCustom]) radio.addEventListener('change', showKernelPanel);
  els.preset.addEventListener('change', () => {
    renderPresetControls();
    refreshPreset();
    scheduleDryRun(0);
  });
  els.presetParams.addEventListener('input', () => { refreshPreset(DRY_RUN_DELAY_MS); scheduleDryRun(); });
  els.presetParams.addEventListener('change', () => { refreshPreset(); scheduleDryRun(0); });
  els.editPreset.addEventListener('click', () => copyPresetToEditor(true));
  $('#apply-json').addEventListener('click', () => {
    if (editor.loadJson()) setStatus(`Loaded a kernel of shape ${shapeText(editor.shape)} from JSON.`);
  });
  $('#show-json').addEventListener('click', () => editor.showJson());
  els.paddingKind.addEventListener('change', () => {
    const explicit = els.paddingKind.value === 'explicit';
    els.paddingValues.hidden = !explicit;
    els.paddingValues.previousElementSibling.hidden = !explicit;
    scheduleDryRun(0);
  });
  for (const input of [els.stride, els.dilation, els.paddingValues, els.groups]) {
    input.addEventListener('input', () => scheduleDryRun());
  }
  for (const select of [els.paddingMode, els.normalize, els.device]) {
    select.addEventListener('change', () => scheduleDryRun(0));
  }
  els.engine.addEventListener('change', () => { renderDevices(); scheduleDryRun(0); });
  els.downloadZip.addEventListener('click', () => download('zip', els.downloadZip));
  els.downloadNpy.addEventListener('click', () => download('npy', els.downloadNpy));
}

async function start() {
  wire();
  editor.render();
  setBusy(false);
  await Promise.all([loadPresets(), loadEngines()]);
  const first = els.samples.find((radio) => radio.checked) ?? els.samples[0];
  first.checked = true;
  await useSample(first);
  document.body.dataset.ready = 'true';
}

start();
