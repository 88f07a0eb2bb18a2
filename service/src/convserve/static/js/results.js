// Running the convolution and showing what comes back: the feature maps, the composed picture,
// the downloads, and the explanation of one output value.

import { APITimeoutError, encodeNpy } from './convserve-client/index.js';
import { clear, fmt, h, shapeText } from './dom.js';
import { ClientError, clearErrors, markField, showProblem } from './errors.js';
import { originOf, renderExplanation } from './explain.js';
import { collectOptions } from './form.js';
import { LatestRequest, objectUrls } from './lifetimes.js';
import { $, cs, els, setBusy, setStatus, state } from './page.js';
import { PixelCursor } from './pixel-cursor.js';
import { cancelDryRun, rememberDecoded, renderPreview } from './preview.js';

const COMPOSED_MODES = { 1: 'grey (L)', 3: 'RGB', 4: 'RGBA' };
const explaining = new LatestRequest();

/** The form's submit: one convolution with format json, then its maps (and composed picture). */
export async function run(event) {
  event.preventDefault();
  if (state.busy) return;
  cancelDryRun();
  clearErrors();
  if (!state.image) {
    markField(els.dropZone, 'Choose a sample photo or upload an image first.');
    setStatus('Choose an image first.');
    return;
  }
  let options;
  try {
    options = collectOptions();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    setStatus(showProblem(error));
    return;
  }
  const image = state.image;
  setBusy(true);
  setStatus('Running the convolution…');
  const started = performance.now();
  try {
    const result = await cs.convolve({ image: image.blob, filename: image.name, ...options, format: 'json' });
    const roundTrip = performance.now() - started;
    state.last = { options, image, result };
    rememberDecoded(result);
    renderPreview(result);
    renderResults(result, roundTrip);
    if (els.results.getBoundingClientRect().top > window.innerHeight) {
      els.results.scrollIntoView({ block: 'start', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
    }
    const [c_out, h_out, w_out] = result.shape;
    setStatus(`Done: ${c_out} feature map${c_out === 1 ? '' : 's'} of ${h_out} × ${w_out} in ${Math.round(roundTrip)} ms.`);
    if (COMPOSED_MODES[c_out]) await loadComposed(options, image, c_out);
  } catch (error) {
    if (error instanceof APITimeoutError) {
      setStatus(`No answer from the service after ${error.timeoutMs / 1000} s; try a smaller image or kernel.`);
    } else {
      setStatus(`The request failed: ${showProblem(error)}`);
    }
  } finally {
    setBusy(false);
  }
}

function renderResults(result, roundTrip) {
  els.placeholder.hidden = true;
  els.results.hidden = false;
  els.explain.hidden = true;
  clear(els.explainBody);
  const [c_out, h_out, w_out] = result.shape;
  const [c_in, h_in, w_in] = result.input.shape;
  const kernel = result.kernel.source === 'preset' ? `preset ${result.kernel.name}` : 'a custom kernel';
  els.resultSummary.textContent = `${kernel}, weight ${shapeText(result.kernel.weight_shape)}, `
    + `groups ${result.groups}, stride ${result.stride.join('×')}, dilation ${result.dilation.join('×')}, `
    + `padding ${shapeText(result.padding)} ${result.padding_mode}: input ${shapeText(result.input.shape)} → `
    + `output ${shapeText(result.shape)}; ${result.engine} on ${result.device}; PNGs normalized with ${result.normalize}.`;
  const timing = Object.entries(result.timing_ms).map(([stage, ms]) => `${stage} ${fmt(ms, 3)} ms`).join(' · ');
  els.timings.textContent = `Server time: ${timing}. Round trip in this browser: ${Math.round(roundTrip)} ms.`;

  const maps = clear(els.maps);
  maps.classList.remove('picked');
  const names = Object.fromEntries(result.channels.map((channel) => [channel.index, channel.name]));
  state.cursor = new PixelCursor(maps, h_out, w_out, (channel, y, x) => explainAt(channel, y, x, names[channel]));
  const { image } = state.last;
  const inputImg = image.isArray
    ? h('p', { class: 'hint no-preview' }, 'A NumPy array has no picture here.')
    : h('img', { src: objectUrls.set('result-input', image.blob), alt: `Input image, ${w_in} × ${h_in} pixels, ${c_in} channel${c_in === 1 ? '' : 's'}`, class: 'pixels' });
  maps.append(h('figure', { class: 'map map--input' },
    h('div', { class: 'map-frame' }, inputImg, h('span', { class: 'receptive-field', hidden: true, 'aria-hidden': 'true' })),
    h('figcaption', {}, h('strong', {}, 'Input'), h('span', {}, `${shapeText(result.input.shape)}, channels ${result.input.channels.join(' ')}`))));

  const urls = objectUrls.setAll('maps', result.channels.map((channel) => channel.png()));
  result.channels.forEach((channel, i) => maps.append(mapFigure(channel, urls[i], h_out, w_out)));
  if (COMPOSED_MODES[c_out]) {
    maps.append(h('figure', { class: 'map map--composed', id: 'composed' },
      h('div', { class: 'map-frame' }, h('p', { class: 'hint' }, 'Composing…')),
      h('figcaption', {}, h('strong', {}, 'Composed'), h('span', {}, `${c_out} channel${c_out === 1 ? '' : 's'} as ${COMPOSED_MODES[c_out]}`))));
  }
  state.cursor.move(0, 0);
}

function mapFigure(channel, url, h_out, w_out) {
  const name = channel.name && channel.name !== String(channel.index) ? channel.name : '';
  const label = `Feature map ${channel.index}${name ? ` (${name})` : ''}`;
  const img = h('img', {
    src: url,
    alt: `${label}: ${w_out} × ${h_out} pixels, values from ${fmt(channel.min)} to ${fmt(channel.max)}, mean ${fmt(channel.mean)}`,
    class: 'pixels',
    draggable: 'false',
  });
  const button = state.cursor.button(img, channel.index, label);
  const stats = { channel: String(channel.index), min: String(channel.min), max: String(channel.max), mean: String(channel.mean) };
  return h('figure', { class: 'map', dataset: stats },
    button,
    h('figcaption', {},
      h('strong', {}, `${channel.index}${name ? ` · ${name}` : ''}`),
      h('span', { class: 'stats' }, `min ${fmt(channel.min)} · max ${fmt(channel.max)} · mean ${fmt(channel.mean)}`)));
}

async function loadComposed(options, image, c_out) {
  const figure = $('#composed');
  try {
    const blob = await cs.convolve({ image: image.blob, filename: image.name, ...options, format: 'image' });
    figure.querySelector('.map-frame').replaceChildren(h('img', {
      src: objectUrls.set('composed', blob), class: 'pixels',
      alt: `All ${c_out} output channel${c_out === 1 ? '' : 's'} composed into one ${COMPOSED_MODES[c_out]} image`,
    }));
  } catch (error) {
    figure.querySelector('.map-frame').replaceChildren(h('p', { class: 'field-error' }, `Could not compose: ${error.message}`));
  }
}

/** Download the last run's output as `format` (zip of PNGs, or npy). */
export async function download(format, button) {
  if (!state.last) return;
  const { options, image } = state.last;
  button.disabled = true;
  setStatus(`Preparing the ${format} download…`);
  try {
    const answer = await cs.convolve({ image: image.blob, filename: image.name, ...options, format });
    // The client decodes npy answers; encoded again, they are the file the service sent.
    const blob = answer instanceof Blob ? answer : encodeNpy(answer);
    const link = h('a', { href: objectUrls.set('download', blob), download: `convserve.${format}`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setStatus(`Downloaded ${link.download}.`);
  } catch (error) {
    setStatus(`The download failed: ${showProblem(error)}`);
  } finally {
    button.disabled = state.busy;
  }
}

// ---------------------------------------------------------------------------------------------
// Explain one output value

async function explainAt(channel, y, x, name) {
  const last = state.last;
  if (!last) return;
  els.explain.hidden = false;
  els.explainBody.setAttribute('aria-busy', 'true');
  setStatus(`Explaining output[${channel}, ${y}, ${x}]…`);
  const { normalize, ...options } = last.options;
  const outcome = await explaining.run((signal) => cs.explain({
    image: last.image.blob, filename: last.image.name, ...options, at: { channel, y, x }, signal,
  }));
  if (outcome.stale) return;
  els.explainBody.removeAttribute('aria-busy');
  if (outcome.aborted) return;
  if (outcome.error) {
    clear(els.explainBody).append(h('p', { class: 'field-error', role: 'alert' }, outcome.error.message));
    setStatus(`Could not explain that pixel: ${outcome.error.message}`);
    return;
  }
  const data = outcome.value;
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
