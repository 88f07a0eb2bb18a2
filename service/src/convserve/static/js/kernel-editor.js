// The custom kernel editor: dimensions, a grid of weight inputs (OIHW), a bias row and JSON.

import { ClientError } from './errors.js';
import { clear, divergingColor, h, maxAbs } from './dom.js';

/** Above this many weights the grid is not drawn; the tensor is edited as JSON instead. */
const MAX_GRID_CELLS = 1728;
const DIMS = ['c_out', 'c_in', 'k_h', 'k_w'];

function filled(shape, value = 0) {
  if (shape.length === 0) return value;
  return Array.from({ length: shape[0] }, () => filled(shape.slice(1), value));
}

/** The shape of a rectangular nested list of numbers, or throw ClientError saying where not. */
export function shapeOf(nested, path = 'weight') {
  if (!Array.isArray(nested)) {
    if (typeof nested === 'number' && Number.isFinite(nested)) return [];
    throw new ClientError('kernel.weight', `${path} = ${JSON.stringify(nested)} is not a finite number`);
  }
  if (nested.length === 0) throw new ClientError('kernel.weight', `${path} is an empty list`);
  const first = shapeOf(nested[0], `${path}[0]`);
  nested.forEach((item, index) => {
    const shape = shapeOf(item, `${path}[${index}]`);
    if (shape.join() !== first.join()) {
      throw new ClientError('kernel.weight',
        `${path}[${index}] has shape (${shape.join(', ')}) but ${path}[0] has (${first.join(', ')}); the lists must be rectangular`);
    }
  });
  return [nested.length, ...first];
}

/** (k_h, k_w, c_in, c_out) HWIO to (c_out, c_in, k_h, k_w) OIHW. */
export function hwioToOihw(weight) {
  const [k_h, k_w, c_in, c_out] = shapeOf(weight);
  return Array.from({ length: c_out }, (_, o) => Array.from({ length: c_in }, (_, i) =>
    Array.from({ length: k_h }, (_, u) => Array.from({ length: k_w }, (_, v) => weight[u][v][i][o]))));
}

export class KernelEditor {
  /**
   * @param {object} els the editor's elements: dims {c_out, c_in, k_h, k_w}, grid, hint,
   *   useBias, biasRow, jsonText, jsonLayout, jsonError
   * @param {() => void} onChange called after every edit
   */
  constructor(els, onChange) {
    this.els = els;
    this.onChange = onChange;
    this.weight = filled([1, 3, 3, 3]);
    this.bias = [0];
    // Upper bounds of each dimension: none until setLimits() has the server's.
    this.limits = { c_out: Infinity, c_in: Infinity, k_h: Infinity, k_w: Infinity };
    for (const input of Object.values(els.dims)) input.addEventListener('change', () => this.resize());
    els.useBias.addEventListener('change', () => { this.renderBias(); this.onChange(); });
    els.grid.addEventListener('input', (event) => this.cellEdited(event.target));
    els.biasRow.addEventListener('input', (event) => {
      const index = Number(event.target.dataset.o);
      this.bias[index] = event.target.value === '' ? Number.NaN : Number(event.target.value);
      this.onChange();
    });
  }

  /**
   * Bound the dimensions by the server's limits (GET /v1/limits).
   * @param {{outChannels: number, inChannels: number, kernelSize: number}} limits the most
   *   c_out, the most c_in, and the largest kernel side (k_h and k_w)
   */
  setLimits({ outChannels, inChannels, kernelSize }) {
    this.limits = { c_out: outChannels, c_in: inChannels, k_h: kernelSize, k_w: kernelSize };
    for (const name of DIMS) this.els.dims[name].max = String(this.limits[name]);
  }

  get shape() {
    const w = this.weight;
    return [w.length, w[0].length, w[0][0].length, w[0][0][0].length];
  }

  /** Replace the tensor (OIHW nested lists) and bias (list or null), and redraw. */
  setTensor(weight, bias) {
    const shape = shapeOf(weight);
    if (shape.length !== 4) {
      throw new ClientError('kernel.weight', `the weight has ${shape.length} axes (${shape.join(', ')}); a conv2d kernel has 4`);
    }
    for (const [index, name] of DIMS.entries()) {
      if (shape[index] > this.limits[name]) {
        throw new ClientError('kernel.weight', `${name} = ${shape[index]} is over ${this.limits[name]}, the server's limit`);
      }
    }
    if (bias !== null && bias !== undefined && (!Array.isArray(bias) || bias.length !== shape[0])) {
      throw new ClientError('kernel.bias', `bias must be a list of c_out = ${shape[0]} numbers`);
    }
    this.weight = weight.map((a) => a.map((b) => b.map((c) => c.map(Number))));
    this.bias = bias ? bias.map(Number) : Array(shape[0]).fill(0);
    this.els.useBias.checked = Boolean(bias) && bias.some((b) => b !== 0);
    const { dims } = this.els;
    [dims.c_out.value, dims.c_in.value, dims.k_h.value, dims.k_w.value] = shape.map(String);
    this.render();
  }

  /** Read the four dimension inputs and resize, keeping the weights that still fit. */
  resize() {
    const { dims } = this.els;
    const wanted = DIMS.map((name) => {
      const value = Math.round(Number(dims[name].value));
      const clamped = Number.isFinite(value) ? Math.min(this.limits[name], Math.max(1, value)) : 1;
      dims[name].value = String(clamped);
      return clamped;
    });
    const old = this.weight;
    this.weight = filled(wanted).map((a, o) => a.map((b, i) => b.map((c, u) => c.map((_, v) =>
      old[o]?.[i]?.[u]?.[v] ?? 0))));
    this.bias = Array.from({ length: wanted[0] }, (_, o) => this.bias[o] ?? 0);
    this.render();
    this.onChange();
  }

  cellEdited(input) {
    if (!input.dataset.index) return;
    const [o, i, u, v] = input.dataset.index.split(',').map(Number);
    const value = input.value === '' ? Number.NaN : Number(input.value);
    this.weight[o][i][u][v] = value;
    input.setAttribute('aria-invalid', String(!Number.isFinite(value)));
    input.style.background = divergingColor(value, maxAbs(this.weight));
    this.onChange();
  }

  render() {
    const grid = clear(this.els.grid);
    const [c_out, c_in, k_h, k_w] = this.shape;
    const cells = c_out * c_in * k_h * k_w;
    this.els.hint.textContent = `${cells} weights; output channel o adds up c_in = ${c_in} slices w[o, i] of ${k_h} × ${k_w}.`;
    if (cells > MAX_GRID_CELLS) {
      grid.append(h('p', { class: 'hint' },
        `This tensor has ${cells} weights, too many to type one by one here; edit it as JSON below.`));
      this.showJson();
      this.els.jsonText.closest('details').open = true;
    } else {
      const scale = maxAbs(this.weight);
      this.weight.forEach((slices, o) => {
        const group = h('fieldset', { class: 'weight-out' }, h('legend', {}, `Output channel ${o}`));
        const row = h('div', { class: 'weight-slices' });
        slices.forEach((slice, i) => {
          const table = h('table', { class: 'matrix matrix--input' },
            h('caption', {}, `w[${o}, ${i}]`),
            h('tbody', {}, slice.map((line, u) => h('tr', {}, line.map((value, v) => h('td', {},
              h('input', {
                type: 'number', step: 'any', inputmode: 'decimal',
                value: Number.isFinite(value) ? String(value) : '',
                'aria-label': `w[${o}, ${i}, ${u}, ${v}]`,
                dataset: { index: `${o},${i},${u},${v}` },
                style: { background: divergingColor(value, scale) },
              })))))));
          row.append(table);
        });
        group.append(row);
        grid.append(group);
      });
    }
    this.renderBias();
  }

  renderBias() {
    const row = clear(this.els.biasRow);
    row.hidden = !this.els.useBias.checked;
    if (row.hidden) return;
    this.bias.forEach((value, o) => {
      row.append(h('label', {}, `b[${o}] `, h('input', {
        type: 'number', step: 'any', inputmode: 'decimal', value: Number.isFinite(value) ? String(value) : '',
        dataset: { o: String(o) },
      })));
    });
  }

  /** The kernel field of the request: {weight, bias, layout: "OIHW"}; throws ClientError. */
  toKernel() {
    this.weight.forEach((slices, o) => slices.forEach((slice, i) => slice.forEach((line, u) => line.forEach((value, v) => {
      if (!Number.isFinite(value)) {
        throw new ClientError('kernel.weight', `w[${o}, ${i}, ${u}, ${v}] is empty or not a number`);
      }
    }))));
    let bias = null;
    if (this.els.useBias.checked) {
      this.bias.forEach((value, o) => {
        if (!Number.isFinite(value)) throw new ClientError('kernel.bias', `b[${o}] is empty or not a number`);
      });
      bias = [...this.bias];
    }
    return { weight: this.weight, bias, layout: 'OIHW' };
  }

  showJson() {
    const weight = JSON.stringify(this.weight.map((a) => a.map((b) => b.map((c) => c.map((v) => (Number.isFinite(v) ? v : null))))));
    const bias = this.els.useBias.checked ? JSON.stringify(this.bias) : 'null';
    this.els.jsonText.value = `{"weight": ${weight},\n "bias": ${bias},\n "layout": "OIHW"}`;
    this.els.jsonLayout.value = 'OIHW';
  }

  /** Parse the JSON box (a nested list or {weight, bias, layout}) into the grid. */
  loadJson() {
    const { jsonText, jsonLayout, jsonError } = this.els;
    jsonError.hidden = true;
    try {
      let parsed;
      try {
        parsed = JSON.parse(jsonText.value);
      } catch (err) {
        throw new ClientError('kernel', `not valid JSON: ${err.message}`);
      }
      let weight = parsed;
      let bias = null;
      let layout = jsonLayout.value;
      if (parsed && !Array.isArray(parsed) && typeof parsed === 'object') {
        ({ weight, bias = null } = parsed);
        if (parsed.layout) layout = String(parsed.layout).toUpperCase();
        if (weight === undefined) throw new ClientError('kernel.weight', 'the object has no "weight"');
      }
      if (layout !== 'OIHW' && layout !== 'HWIO') throw new ClientError('kernel', `layout "${layout}" is neither OIHW nor HWIO`);
      jsonLayout.value = layout;
      const shape = shapeOf(weight);
      if (shape.length !== 4) {
        throw new ClientError('kernel.weight', `the weight has ${shape.length} axes (${shape.join(', ')}); ${layout} needs 4`);
      }
      this.setTensor(layout === 'HWIO' ? hwioToOihw(weight) : weight, bias);
      this.onChange();
      return true;
    } catch (err) {
      if (!(err instanceof ClientError)) throw err;
      jsonError.textContent = err.message;
      jsonError.hidden = false;
      return false;
    }
  }
}
