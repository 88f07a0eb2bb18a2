// The page's "Network" mode: upload an ONNX model (or store the sample network), read its layer
// table, pick a layer, see its feature maps for a photo, and click a pixel of a Conv layer's
// map to see the sum behind it (/v1/models/{id}/explain). A /v1/layers stack (JSON) is shown
// the same way: its table and each layer's maps.

import { clear, fmt, fmtCount, h, shapeText } from './dom.js';
import { renderExplanation } from './explain.js';

/** A failed request: `problem` is the RFC 9457 body ({type, title, status, detail, errors}). */
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.problem = problem;
  }
}

/** fetch() a relative path; an error answer becomes ApiError with its problem. */
async function request(path, { method = 'GET', body } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body });
  } catch (err) {
    throw new ApiError(0, { title: 'Network error', detail: `could not reach the service (${err.message})` });
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { detail: `HTTP ${response.status} ${response.statusText}` };
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

async function requestJson(path, options) {
  return (await request(path, options)).json();
}

const $ = (id) => document.getElementById(id);

const DEFAULT_STACK = [
  { type: 'conv2d', preset: 'gabor', preset_params: { size: 3, orientations: 16 }, activation: 'relu' },
  { type: 'maxpool2d', kernel_size: 2 },
  { type: 'conv2d', filters: 32, kernel_size: 3, activation: 'relu', seed: 1 },
  { type: 'maxpool2d', kernel_size: 2 },
];

const state = {
  source: 'model', // 'model' (an uploaded ONNX model) or 'stack' (a /v1/layers stack)
  stack: null, // the /v1/layers answer (return=all)
  model: null, // the /v1/models/{id} answer
  layer: null, // the selected row
  image: null, // {blob, name}
  maps: null, // the features answer of the selected layer
};

function setMode(mode) {
  const network = mode === 'network';
  document.querySelector('main.layout').hidden = network;
  $('network').hidden = !network;
}

function showError(err) {
  const box = $('net-error');
  if (!err) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  const problem = err instanceof ApiError ? err.problem : { detail: err.message };
  box.textContent = problem.detail || problem.title || String(err);
  box.hidden = false;
}

function status(text) {
  $('net-status').textContent = text;
}

async function busy(label, work) {
  showError(null);
  status(label);
  $('net-progress').hidden = false;
  try {
    return await work();
  } catch (err) {
    showError(err);
    status('');
    return null;
  } finally {
    $('net-progress').hidden = true;
  }
}

function renderTable(rows, summary) {
  const body = clear($('net-layers'));
  for (const row of rows) {
    const select = h('button', {
      type: 'button', class: 'layer-pick', dataset: { name: row.name, index: String(row.index) },
      'aria-pressed': state.layer && state.layer.name === row.name ? 'true' : 'false',
      onclick: () => pickLayer(row),
    }, row.name);
    body.append(h('tr', {},
      h('td', { class: 'num' }, String(row.index)),
      h('td', {}, select),
      h('td', {}, row.op),
      h('td', { class: 'mono' }, shapeText(row.output_shape)),
      h('td', { class: 'num' }, fmtCount(row.params)),
      h('td', { class: 'num' }, fmtCount(row.macs))));
  }
  $('net-summary').textContent = summary;
  $('net-table-card').hidden = false;
}

function modelSummary(model) {
  const input = model.inputs[0];
  return `${model.filename || model.id}: input ${input.name} ${shapeText(input.shape)} `
    + `${input.layout}, ${fmtCount(model.total_params)} parameters, `
    + `${fmtCount(model.total_macs)} MACs, ${model.layers.length} layers.`;
}

/** The /v1/layers answer's layers as table rows (with their maps). */
function stackRows(stack) {
  return stack.layers.map((layer) => ({
    index: layer.index, name: `${layer.index}: ${layer.type}`, op: layer.type,
    output_shape: layer.output_shape, params: layer.params, macs: layer.macs,
    channels: layer.channels || [],
  }));
}

async function showStack() {
  let layers;
  try {
    layers = JSON.parse($('net-stack').value);
  } catch (err) {
    showError(new Error(`the stack is not valid JSON: ${err.message}`));
    return;
  }
  if (!state.image) await loadImage($('net-sample').value);
  await busy('Running the stack…', async () => {
    const form = new FormData();
    form.append('image', state.image.blob, state.image.name);
    form.append('layers', JSON.stringify(layers));
    form.append('return', 'all');
    form.append('format', 'json');
    state.stack = await requestJson('v1/layers', { method: 'POST', body: form });
    state.source = 'stack';
    state.model = null;
    state.layer = null;
    const rows = stackRows(state.stack);
    renderTable(rows, `A /v1/layers stack of ${rows.length} layers over ${shapeText(state.stack.input.shape)}: `
      + `${fmtCount(state.stack.total_params)} parameters, ${fmtCount(state.stack.total_macs)} MACs.`);
    status('Pick a layer of the stack to see its maps.');
  });
}

async function useModel(answer) {
  state.model = await requestJson(`v1/models/${answer.id}`);
  state.source = 'model';
  state.layer = null;
  renderTable(state.model.layers, modelSummary(state.model));
  status(`Model ${state.model.id} is ready: pick a layer.`);
}

async function uploadModel(file) {
  await busy(`Uploading ${file.name}…`, async () => {
    const form = new FormData();
    form.append('model', file, file.name);
    const size = $('net-input-size').value.trim();
    if (size) form.append('input_size', size);
    await useModel(await requestJson('v1/models', { method: 'POST', body: form }));
  });
}

async function useSample() {
  await busy('Building the sample network…', async () => {
    await useModel(await requestJson('v1/models/sample', { method: 'POST' }));
  });
}

async function loadImage(name) {
  const response = await request(`static/samples/${name}`);
  state.image = { blob: await response.blob(), name };
}

function preprocessValue() {
  const value = { resize: $('net-resize').value };
  if ($('net-preprocess').value === 'imagenet') {
    value.mean = [0.485, 0.456, 0.406];
    value.std = [0.229, 0.224, 0.225];
  }
  return JSON.stringify(value);
}

function inputForm(fields) {
  const form = new FormData();
  form.append('image', state.image.blob, state.image.name);
  form.append('preprocess', preprocessValue());
  for (const [name, value] of fields) form.append(name, value);
  return form;
}

async function pickLayer(row) {
  state.layer = row;
  for (const button of document.querySelectorAll('#net-layers .layer-pick')) {
    button.setAttribute('aria-pressed', button.dataset.name === row.name ? 'true' : 'false');
  }
  if (state.source === 'stack') {
    renderMaps({ name: row.name, op: row.op, shape: row.output_shape, channels: row.channels });
    status(`${row.name}: ${row.channels.length} channel(s).`);
    return;
  }
  if (!state.image) await loadImage($('net-sample').value);
  await busy(`Computing the feature maps of ${row.name}…`, async () => {
    const body = inputForm([['layers', JSON.stringify([row.name])], ['format', 'json']]);
    state.maps = await requestJson(`v1/models/${state.model.id}/features`, { method: 'POST', body });
    renderMaps(state.maps.layers[0]);
    status(`${row.name} (${row.op}): ${state.maps.layers[0].channels.length} channel(s).`);
  });
}

function renderMaps(layer) {
  const box = clear($('net-maps'));
  const explainable = state.source === 'model' && layer.op === 'Conv';
  $('net-maps-heading').textContent = `Feature maps of ${layer.name} ${shapeText(layer.shape)}`;
  $('net-maps-hint').textContent = explainable
    ? 'Click a pixel of a map to see the sum that computed it.'
    : 'Pick a Conv layer of an uploaded model to click its pixels and see their sums.';
  for (const channel of layer.channels) {
    const img = h('img', {
      src: `data:image/png;base64,${channel.png_base64}`,
      alt: `channel ${channel.index} of ${layer.name}`,
      width: String(layer.shape[2]), height: String(layer.shape[1]),
      class: 'net-map', dataset: { channel: String(channel.index) },
    });
    if (explainable) {
      img.addEventListener('click', (event) => {
        const rect = img.getBoundingClientRect();
        const x = Math.min(layer.shape[2] - 1, Math.floor((event.clientX - rect.left) / rect.width * layer.shape[2]));
        const y = Math.min(layer.shape[1] - 1, Math.floor((event.clientY - rect.top) / rect.height * layer.shape[1]));
        explainPixel(channel.index, y, x);
      });
    }
    box.append(h('figure', { class: 'net-map-card' }, img,
      h('figcaption', {}, `#${channel.index}: ${fmt(channel.min)} … ${fmt(channel.max)}`)));
  }
  $('net-maps-card').hidden = false;
}

async function explainPixel(channel, y, x) {
  const layer = state.layer;
  await busy(`Explaining ${layer.name}[${channel}, ${y}, ${x}]…`, async () => {
    const body = inputForm([['layer', layer.name], ['at', JSON.stringify({ channel, y, x })]]);
    const data = await requestJson(`v1/models/${state.model.id}/explain`, { method: 'POST', body });
    renderExplanation($('net-explain-body'), data, {
      channel, y, x, outputName: layer.name, inputNames: [],
      stride: data.stride, dilation: data.dilation, paddingMode: 'zeros',
    });
    $('net-explain').hidden = false;
    status(`${layer.name}[${channel}, ${y}, ${x}] = ${fmt(data.value, 7)}`);
  });
}

function init() {
  if (!$('network')) return;
  for (const radio of document.querySelectorAll('input[name="page-mode"]')) {
    radio.addEventListener('change', () => setMode(radio.value));
  }
  $('net-model-file').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (file) uploadModel(file);
  });
  $('net-use-sample').addEventListener('click', useSample);
  $('net-stack').value = JSON.stringify(DEFAULT_STACK, null, 1);
  $('net-show-stack').addEventListener('click', showStack);
  $('net-sample').addEventListener('change', async () => {
    await loadImage($('net-sample').value);
    if (state.source === 'stack' && state.stack) showStack();
    else if (state.layer) pickLayer(state.layer);
  });
  $('net-image-file').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (!file) return;
    state.image = { blob: file, name: file.name };
    if (state.layer) pickLayer(state.layer);
  });
  for (const id of ['net-resize', 'net-preprocess']) {
    $(id).addEventListener('change', () => { if (state.layer) pickLayer(state.layer); });
  }
}

init();
