// The page's "Network" mode: upload an ONNX model (or store the sample network), read its layer
// table, pick a layer, see its feature maps for a photo, and click a pixel of a Conv layer's
// map (or focus a map, move with the arrow keys and press Enter) to see the sum behind it
// (/v1/models/{id}/explain). A /v1/layers stack is shown the same way: its table, each layer's
// maps, and the sum behind a pixel of a conv2d layer (net-stack.js says how that stays exact).
// Every API call goes through the page's one client (`cs`, the compiled convserve-client), so
// errors are its classes with the problem body.

import { APIStatusError } from './convserve-client/index.js';
import { clear, fmt, fmtCount, h, shapeText } from './dom.js';
import { renderExplanation } from './explain.js';
import { LatestRequest } from './lifetimes.js';
import { describeStackLayer, EXAMPLE_STACKS, StackRun, stackNotes } from './net-stack.js';
import { cs } from './page.js';
import { PixelCursor } from './pixel-cursor.js';

const $ = (id) => document.getElementById(id);

const state = {
  source: 'model', // 'model' (an uploaded ONNX model) or 'stack' (a /v1/layers stack)
  stack: null, // the StackRun shown
  model: null, // the /v1/models/{id} answer
  layer: null, // the selected row
  image: null, // {blob, name}
  cursor: null, // the PixelCursor of the maps shown
};

const explaining = new LatestRequest();

function setMode(mode) {
  const network = mode === 'network';
  document.querySelector('main.layout').hidden = network;
  $('network').hidden = !network;
}

/**
 * Show an error as the problem it is (RFC 9457): the status and title, the detail, and each
 * field error whose message adds to the detail. A connection error, a timeout or an argument
 * the client refused (RangeError) shows its own message. With `stack`, an error that names a
 * field of `layers` marks the stack's JSON box invalid.
 */
function showError(err, { stack = false } = {}) {
  const box = clear($('net-error'));
  const stackBox = $('net-stack');
  stackBox.removeAttribute('aria-invalid');
  box.hidden = !err;
  if (!err) return;
  if (!(err instanceof APIStatusError)) {
    box.append(h('p', { class: 'problem-detail' }, err.message));
    return;
  }
  const { problem } = err;
  const detail = problem.detail || problem.title || err.message;
  const entries = Array.isArray(problem.errors) ? problem.errors : [];
  box.append(
    h('p', { class: 'problem-title' }, `${err.status} ${problem.title ?? ''}`.trim()),
    h('p', { class: 'problem-detail' }, detail));
  const extra = entries.filter((entry) => entry.message && entry.message !== detail);
  if (extra.length) {
    box.append(h('ul', { class: 'problem-errors' },
      extra.map((entry) => h('li', {}, h('code', {}, String(entry.field ?? '')), `: ${entry.message}`))));
  }
  if (stack && entries.some((entry) => String(entry.field ?? '').startsWith('layers'))) {
    stackBox.setAttribute('aria-invalid', 'true');
  }
}

function status(text) {
  $('net-status').textContent = text;
}

async function busy(label, work, { stack = false } = {}) {
  showError(null);
  status(label);
  $('net-progress').hidden = false;
  try {
    return await work();
  } catch (err) {
    showError(err, { stack });
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
  // A pixel of the previous model or stack still being explained no longer belongs here.
  explaining.abort();
  $('net-maps-card').hidden = true;
  $('net-explain').hidden = true;
}

function modelSummary(model) {
  const input = model.inputs[0];
  return `${model.filename || model.id}: input ${input.name} ${shapeText(input.shape)} `
    + `${input.layout}, ${fmtCount(model.total_params)} parameters, `
    + `${fmtCount(model.total_macs)} MACs, ${model.layers.length} layers.`;
}

/** A stack layer's name in the table: "0: conv2d 16×3×3×3 + relu". */
function stackLayerName(layer) {
  const options = layer.options || {};
  const weight = options.weight_shape ? ` ${options.weight_shape.join('×')}` : '';
  const activation = options.activation ? ` + ${options.activation.type ?? options.activation}` : '';
  return `${layer.index}: ${layer.type}${weight}${activation}`;
}

/** The /v1/layers answer's layers as table rows (with their maps). */
function stackRows(answer) {
  return answer.layers.map((layer) => ({
    index: layer.index, name: stackLayerName(layer), op: layer.type,
    output_shape: layer.output_shape, params: layer.params, macs: layer.macs,
    channels: layer.channels || [], layer,
  }));
}

/** Inputs that only models use: a stack reads the image as decoded. */
function showPreprocessing(forModel) {
  for (const id of ['net-resize', 'net-preprocess']) $(id).disabled = !forModel;
  $('net-preprocess-hint').hidden = forModel;
}

async function showStack() {
  let layers;
  try {
    layers = JSON.parse($('net-stack').value);
  } catch (err) {
    showError(new Error(`the stack is not valid JSON: ${err.message}`));
    $('net-stack').setAttribute('aria-invalid', 'true');
    return;
  }
  await busy('Running the stack…', async () => {
    if (!state.image) await loadImage($('net-sample').value);
    const image = state.image;
    const answer = await cs.layers({
      image: image.blob, filename: image.name, layers, return: 'all', format: 'json',
    });
    state.stack = new StackRun(layers, image, answer);
    state.source = 'stack';
    state.model = null;
    state.layer = null;
    showPreprocessing(false);
    const rows = stackRows(answer);
    renderTable(rows, `A /v1/layers stack of ${rows.length} layer${rows.length === 1 ? '' : 's'} over `
      + `${shapeText(answer.input.shape)}: ${fmtCount(answer.total_params)} parameters, `
      + `${fmtCount(answer.total_macs)} MACs.`);
    status('Pick a layer of the stack to see its maps.');
  }, { stack: true });
}

function pickExample() {
  const example = EXAMPLE_STACKS.find((e) => e.id === $('net-stack-example').value);
  if (!example) return;
  $('net-stack').value = JSON.stringify(example.layers, null, 1);
  $('net-stack-description').textContent = example.description;
  $('net-stack').removeAttribute('aria-invalid');
}

async function useModel(answer) {
  state.model = await cs.model(answer.id);
  state.source = 'model';
  state.stack = null;
  state.layer = null;
  showPreprocessing(true);
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
  explaining.abort();
  $('net-explain').hidden = true;
  $('net-layer-info').textContent = state.source === 'stack' ? describeStackLayer(row.layer) : '';
  if (state.source === 'stack') {
    renderMaps({ name: row.name, op: row.op, shape: row.output_shape, channels: row.channels },
      row.op === 'conv2d');
    status(`${row.name}: ${row.channels.length} channel(s).`);
    return;
  }
  await busy(`Computing the feature maps of ${row.name}…`, async () => {
    if (!state.image) await loadImage($('net-sample').value);
    const maps = await cs.features(state.model.id, { ...modelInput(), layers: [row.name], format: 'json' });
    renderMaps(maps.layers[0], row.op === 'Conv');
    status(`${row.name} (${row.op}): ${maps.layers[0].channels.length} channel(s).`);
  });
}

function renderMaps(layer, explainable) {
  const box = clear($('net-maps'));
  box.classList.remove('picked');
  const [, height, width] = layer.shape;
  state.cursor = new PixelCursor(box, height, width, explainPixel);
  $('net-maps-heading').textContent = `Feature maps of ${layer.name} ${shapeText(layer.shape)}`;
  $('net-maps-hint').textContent = explainable
    ? 'Click a pixel of a map, or focus a map and move with the arrow keys (Shift for 10 pixels), '
      + 'then press Enter, to see the sum that computed it.'
    : 'Pick a Conv layer (of a model) or a conv2d layer (of a stack) to click its pixels and see their sums.';
  for (const channel of layer.channels) {
    const label = `Channel ${channel.index} of ${layer.name}`;
    const img = h('img', {
      src: `data:image/png;base64,${channel.png_base64}`,
      alt: `${label}: ${width} × ${height} pixels, values from ${fmt(channel.min)} to ${fmt(channel.max)}`,
      width: String(width), height: String(height), draggable: 'false',
      class: 'net-map pixels', dataset: { channel: String(channel.index) },
    });
    const picture = explainable ? state.cursor.button(img, channel.index, label) : img;
    box.append(h('figure', { class: 'net-map-card' }, picture,
      h('figcaption', {}, `#${channel.index}: ${fmt(channel.min)} … ${fmt(channel.max)}`)));
  }
  state.cursor.move(0, 0);
  $('net-maps-card').hidden = false;
}

async function explainPixel(channel, y, x) {
  const layer = state.layer;
  const at = { channel, y, x };
  const body = $('net-explain-body');
  showError(null);
  status(`Explaining ${layer.name}[${channel}, ${y}, ${x}]…`);
  $('net-progress').hidden = false;
  body.setAttribute('aria-busy', 'true');
  const stack = state.source === 'stack' ? state.stack : null;
  const outcome = await explaining.run((signal) => (stack
    ? stack.explain(layer.index, at, signal)
    : cs.modelExplain(state.model.id, { ...modelInput(), layer: layer.name, at, signal })
      .then((data) => ({ data }))));
  if (outcome.stale) return;
  $('net-progress').hidden = true;
  body.removeAttribute('aria-busy');
  if (outcome.aborted) return;
  if (outcome.error) {
    showError(outcome.error, { stack: Boolean(stack) });
    status(`Could not explain ${layer.name}[${channel}, ${y}, ${x}].`);
    return;
  }
  const { data } = outcome.value;
  const inputNames = stack && layer.index === 0 ? stack.answer.input.channels : [];
  renderExplanation(body, data, {
    channel, y, x, outputName: layer.name, inputNames: inputNames || [],
    stride: data.stride, dilation: data.dilation, paddingMode: 'zeros',
    groupStart: data.terms.length ? data.terms[0].input_channel : 0,
  });
  if (stack) {
    const notes = stackNotes(layer.layer, data, at);
    body.querySelector('.explain-lead').after(...notes.before);
    body.append(...notes.after);
  }
  $('net-explain').hidden = false;
  status(`${layer.name}[${channel}, ${y}, ${x}] = ${fmt(data.value, 7)}`);
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
  const examples = $('net-stack-example');
  for (const example of EXAMPLE_STACKS) examples.append(h('option', { value: example.id }, example.label));
  examples.addEventListener('change', pickExample);
  pickExample();
  $('net-show-stack').addEventListener('click', showStack);
  const refresh = () => {
    if (state.source === 'stack' && state.stack) showStack();
    else if (state.layer) pickLayer(state.layer);
  };
  $('net-sample').addEventListener('change', async () => {
    await busy('Loading the photo…', () => loadImage($('net-sample').value));
    refresh();
  });
  $('net-image-file').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (!file) return;
    state.image = { blob: file, name: file.name };
    refresh();
  });
  for (const id of ['net-resize', 'net-preprocess']) {
    $(id).addEventListener('change', () => { if (state.source === 'model' && state.layer) pickLayer(state.layer); });
  }
}

init();
