// Presets: the list (GET /v1/presets), one preset's parameter controls, and the exact tensor
// it becomes for the current input (GET /v1/presets/{name}).

import { clear, fmt, h, shapeText, tensorGrid } from './dom.js';
import { showProblem } from './errors.js';
import { inputChannels, inputNames, presetParamValues } from './form.js';
import { LatestRequest } from './lifetimes.js';
import { cs, els, setStatus, state } from './page.js';

const resolving = new LatestRequest();
let presetTimer = 0;

export function currentPreset() {
  return state.presets.get(els.preset.value);
}

export function renderPresetControls() {
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

/** Resolve the current preset for the current input after `delay` ms (typing debounces). */
export function refreshPreset(delay = 0) {
  clearTimeout(presetTimer);
  presetTimer = setTimeout(resolvePreset, delay);
}

async function resolvePreset() {
  const preset = currentPreset();
  if (!preset) return;
  let params;
  try {
    params = presetParamValues();
  } catch {
    resolving.abort();
    return; // the dry run reports it next to the parameter
  }
  const channels = inputChannels();
  const outcome = await resolving.run((signal) => cs.preset(preset.name, { channels, params, signal }));
  if (outcome.stale || outcome.aborted) return;
  if (outcome.error) {
    state.resolved = null;
    clear(els.presetTensor).append(h('p', { class: 'hint' }, `No tensor to show: ${outcome.error.message}`));
    return;
  }
  state.resolved = outcome.value;
  renderPresetTensor(outcome.value, channels);
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

export async function loadPresets() {
  try {
    const presets = await cs.presets();
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
