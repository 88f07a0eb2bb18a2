// The demo page: wires the form to the public HTTP API through convserve-client (the
// TypeScript client, compiled into ./convserve-client/) and draws what comes back. Nothing
// here computes a convolution. The parts: page.js (client, elements, state), errors.js,
// form.js (image, kernel editor, options), presets.js, engines.js, preview.js (dry run),
// results.js (run, maps, downloads, explain), lifetimes.js (latest request, object URLs).

import { shapeText } from './dom.js';
import { loadEngines, renderDevices } from './engines.js';
import { editor, kernelSource, loadLimits, useFile, useSample } from './form.js';
import { $, els, setBusy, setStatus, state } from './page.js';
import { refreshPreset, renderPresetControls, loadPresets } from './presets.js';
import { scheduleDryRun } from './preview.js';
import { download, run } from './results.js';

const DRY_RUN_DELAY_MS = 250;

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
  await Promise.all([loadLimits(), loadPresets(), loadEngines()]);
  const first = els.samples.find((radio) => radio.checked) ?? els.samples[0];
  first.checked = true;
  await useSample(first);
  document.body.dataset.ready = 'true';
}

start();
