// The page's "Network" mode: upload an ONNX model (or store the sample network), read its layer
// table, pick a layer, see its feature maps for a photo, and click a pixel of a Conv layer's
// map to see the sum behind it (/v1/models/{id}/explain). A /v1/layers stack (JSON) is shown
// the same way: its table and each layer's maps. Every API call goes through the page's one
// client (`cs`, the compiled convserve-client), so errors are its classes with the problem body.

import { APIStatusError } from './convserve-client/index.js';
import { clear, fmt, fmtCount, h, shapeText } from './dom.js';
import { renderExplanation } from './explain.js';
import { cs } from './page.js';

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
  // A status error carries the server's problem (RFC 9457); a connection error, a timeout or a
  // refused argument (RangeError) its own message.
  const problem = err instanceof APIStatusError ? err.problem : { detail: err.message };
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
    state.stack = await cs.layers({
      image: state.image.blob, filename: state.image.name, layers, return: 'all', format: 'json',
    });
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
  state.model = await cs.model(answer.id);
  state.source = 'model';
  state.layer = null;
  renderTable(state.model.layers, modelSummary(state.model));
  status(`Model ${state.model.id} is ready: pick a layer.`);
}

async function uploadModel(file) {
  await busy(`Uploading ${file.name}…`, async () => {
    // "224,224", "224x224" or "[224, 224]"; the client refuses anything but two positive integers.
    const size = $('net-input-size').value.split(/[\s,x[\]]+/).filter(Boolean).map(Number);
    await useModel(await cs.uploadModel(file, { inputSize: size.length ? size : undefined }));
  });
}

async function useSample() {
  await busy('Building the sample network…', async () => {
    await useModel(await cs.sampleModel());
  });
}

/** A sample photo of the page (a static file, not an API call). */
async function loadImage(name) {
  const response = await fetch(new URL(`static/samples/${name}`, document.baseURI));
  if (!response.ok) throw new Error(`could not load the sample ${name} (HTTP ${response.status})`);
  state.image = { blob: await response.blob(), name };
}

function preprocessValue() {
  const value = { resize: $('net-resize').value };
  if ($('net-preprocess').value === 'imagenet') {
    value.mean = [0.485, 0.456, 0.406];
    value.std = [0.229, 0.224, 0.225];
  }
  return value;
}

/** The fields every model call sends: the photo (multipart) and its preprocessing. */
function modelInput() {
  return { image: state.image.blob, filename: state.image.name, preprocess: preprocessValue() };
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
    state.maps = await cs.features(state.model.id, { ...modelInput(), layers: [row.name], format: 'json' });
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
    const data = await cs.modelExplain(state.model.id, { ...modelInput(), layer: layer.name, at: { channel, y, x } });
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
