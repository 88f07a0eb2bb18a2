// The form: the image, the kernel editor, the limits it allows, and the request options it makes.

import { ClientError } from './errors.js';
import { clear, h } from './dom.js';
import { KernelEditor } from './kernel-editor.js';
import { objectUrls } from './lifetimes.js';
import { $, cs, els, setStatus, state } from './page.js';
import { refreshPreset } from './presets.js';
import { scheduleDryRun } from './preview.js';

const CHANNELS_BY_MODE = { rgb: 3, gray: 1, rgba: 4 };

export const editor = new KernelEditor({
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

/**
 * Bound the editor by the server's own limits (GET /v1/limits): c_out by max_out_channels,
 * c_in by max_preset_channels (the most channels an input is spread over), kernel sides by
 * max_kernel_size. Without an answer the editor leaves the bounds to the server, which names
 * them when a request exceeds one.
 */
export async function loadLimits() {
  try {
    const limits = await cs.limits();
    editor.setLimits({
      outChannels: limits.max_out_channels,
      inChannels: limits.max_preset_channels,
      kernelSize: limits.max_kernel_size,
    });
  } catch (error) {
    setStatus(`Could not read the server's limits (${error.message}); it will check them itself.`);
  }
}

export function kernelSource() {
  return els.sourceCustom.checked ? 'custom' : 'preset';
}

export function presetParamValues() {
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

/**
 * The options of the current form for ConvServe.convolve (everything but the image and the
 * format). Text fields (stride "2,3", padding "0,1,0,1") go to the service as typed; it parses
 * them and names the field when one is wrong. Throws ClientError for what cannot be sent.
 */
export function collectOptions() {
  const options = {};
  if (kernelSource() === 'custom') {
    options.kernel = editor.toKernel();
  } else {
    if (!els.preset.value) throw new ClientError('preset', 'the presets have not loaded yet');
    options.preset = els.preset.value;
    const params = presetParamValues();
    if (Object.keys(params).length) options.preset_params = params;
  }
  for (const [name, input] of [['stride', els.stride], ['dilation', els.dilation]]) {
    if (input.value.trim()) options[name] = input.value.trim();
  }
  if (els.paddingKind.value === 'explicit') {
    const text = els.paddingValues.value.trim();
    if (!text) throw new ClientError('padding', 'type the padding: p, p_h,p_w or top,bottom,left,right');
    options.padding = text;
  } else if (els.paddingKind.value) {
    options.padding = els.paddingKind.value;
  }
  if (els.paddingMode.value) options.padding_mode = els.paddingMode.value;
  if (els.groups.value.trim()) options.groups = els.groups.value.trim();
  if (els.engine.value) options.engine = els.engine.value;
  if (els.device.value) options.device = els.device.value;
  options.color_mode = els.colorMode.value;
  options.normalize = els.normalize.value;
  return options;
}

/** The same request as a curl command, for the "with curl" box. */
export function curlCommand(options, image) {
  const quote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;
  const url = new URL('v1/convolve', document.baseURI).href;
  const fields = Object.entries(options)
    .map(([name, value]) => [name, typeof value === 'string' ? value : JSON.stringify(value)]);
  return [
    `curl -sS ${url}`,
    `  -F ${quote(`image=@${image.name}`)}`,
    ...fields.map(([name, value]) => `  --form-string ${quote(`${name}=${value}`)}`),
    '  -F format=zip -o convserve.zip',
  ].join(' \\\n');
}

// ---------------------------------------------------------------------------------------------
// The image

function formatBytes(bytes) {
  return bytes < 1024 * 1024 ? `${Math.max(1, Math.round(bytes / 1024))} KB` : `${(bytes / 1048576).toFixed(1)} MB`;
}

let imageCount = 0;

function setImage(blob, name, label) {
  imageCount += 1;
  state.image = { blob, name, label, id: imageCount, isArray: /\.npy$/i.test(name) };
  state.decoded = null;
  clear(els.imageName).append(
    state.image.isArray ? '' : h('img', { src: objectUrls.set('thumbnail', blob), alt: '', class: 'thumb' }),
    h('span', {}, `Using ${label} (${name}, ${formatBytes(blob.size)})`),
  );
  refreshPreset();
  scheduleDryRun(0);
}

export async function useSample(radio) {
  setStatus(`Loading the sample “${radio.dataset.label}”…`);
  try {
    const response = await fetch(new URL(`static/samples/${radio.value}`, document.baseURI));
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    setImage(await response.blob(), radio.value, `the sample “${radio.dataset.label}”`);
    setStatus(`Sample “${radio.dataset.label}” loaded.`);
  } catch (error) {
    setStatus(`Could not load the sample: ${error.message}`);
  }
}

export function useFile(file) {
  if (!file) return;
  for (const radio of els.samples) radio.checked = false;
  setImage(file, file.name, 'your file');
  setStatus(`Loaded ${file.name}.`);
}

export function decodedKey() {
  return `${state.image?.id}|${els.colorMode.value}`;
}

/** C, the number of input channels, as the service decodes the current image. */
export function inputChannels() {
  if (state.decoded && state.decoded.key === decodedKey()) return state.decoded.shape[0];
  return CHANNELS_BY_MODE[els.colorMode.value] ?? 3;
}

export function inputNames() {
  if (state.decoded && state.decoded.key === decodedKey()) return state.decoded.names;
  return { 1: ['L'], 3: ['R', 'G', 'B'], 4: ['R', 'G', 'B', 'A'] }[inputChannels()] ?? [];
}
