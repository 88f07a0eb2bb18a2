// Engines and devices (GET /v1/engines): the two selects, and why a pair is unavailable.

import { h } from './dom.js';
import { cs, els, state } from './page.js';

export async function loadEngines() {
  try {
    state.engines = await cs.engines();
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

/** The device select for the chosen engine, keeping `preferred` (or the current) if usable. */
export function renderDevices(preferred) {
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
