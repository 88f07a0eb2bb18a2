// What the page's modules share: the API client, the page's elements, its state, the status line.

import { ConvServe } from './convserve-client/index.js';

export const $ = (selector) => document.querySelector(selector);

/**
 * The service this page came from. Its URL is the page's directory, so the page also works
 * behind a path prefix. The service answers 504 after its own compute timeout (60 s by
 * default); the client's timeout only guards against a connection that never answers, so the
 * Run button cannot stay disabled forever.
 */
export const cs = new ConvServe({ baseURL: new URL('.', document.baseURI).href, timeoutMs: 180_000, maxRetries: 1 });

export const els = {
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

export const state = {
  image: null, // {blob, name, label, id, isArray}
  decoded: null, // {key, shape, names}: the input as the service decoded it (from a dry run)
  presets: new Map(),
  resolved: null, // GET /v1/presets/{name} for the current preset, channels and parameters
  engines: null,
  customTouched: false,
  autoGroups: null, // the groups value the page set itself when copying a preset
  busy: false,
  last: null, // {options, image, result}: the run the maps and the explain panel belong to
  cursor: null, // the PixelCursor of the maps shown (pixel-cursor.js)
  errorMarks: [],
};

export function setStatus(message) {
  els.status.textContent = message;
}

export function setBusy(busy) {
  state.busy = busy;
  els.runButton.disabled = busy;
  els.runButton.textContent = busy ? 'Running…' : 'Run convolution';
  els.progress.hidden = !busy;
  els.results.setAttribute('aria-busy', String(busy));
  els.downloadZip.disabled = busy || !state.last;
  els.downloadNpy.disabled = busy || !state.last;
}
