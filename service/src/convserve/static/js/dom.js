// Small DOM and formatting helpers shared by the page's modules.

/**
 * Create an element: h('p', {class: 'hint', text: 'hello'}, child, ...).
 * Attributes set to false, null or undefined are left out; `true` sets an empty attribute.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style' && typeof value === 'object') {
      for (const [name, css] of Object.entries(value)) el.style.setProperty(name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), css);
    }
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A number in at most `digits` significant digits: 0.1235, -2, 1.5e-5. */
export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return '—';
  if (typeof value !== 'number' || !Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e7) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e7)) return value.toExponential(digits - 2);
  return String(Number.parseFloat(value.toPrecision(digits)));
}

const COMPACT = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 2 });
const GROUPED = new Intl.NumberFormat('en');

/** A count for people: "2.44M (2,436,120)", or "56" when small. */
export function fmtCount(value) {
  if (value < 10000) return GROUPED.format(value);
  return `${COMPACT.format(value)} (${GROUPED.format(value)})`;
}

export function shapeText(shape) {
  return `(${shape.join(', ')})`;
}

/** The largest |v| of a nested list of numbers (1 when all are 0), for a shared colour scale. */
export function maxAbs(nested) {
  let best = 0;
  const walk = (v) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'number' && Number.isFinite(v)) best = Math.max(best, Math.abs(v));
  };
  walk(nested);
  return best || 1;
}

/** Background for a value on a diverging scale: warm for positive, blue for negative. */
export function divergingColor(value, scale, strength = 0.55) {
  if (!Number.isFinite(value) || value === 0) return 'transparent';
  const alpha = Math.min(1, Math.abs(value) / scale) * strength;
  return value > 0 ? `rgba(214, 96, 77, ${alpha.toFixed(3)})` : `rgba(67, 147, 195, ${alpha.toFixed(3)})`;
}

/** Background for a value in [0, 1] (an input pixel) on a grey ramp. */
export function greyColor(value) {
  if (!Number.isFinite(value)) return 'transparent';
  const level = Math.round(255 * Math.min(1, Math.max(0, value)));
  return `rgb(${level}, ${level}, ${level})`;
}

const MAX_TABLE_SIDE = 9;

/**
 * A k_h x k_w matrix as a table of numbers (or a heat map canvas when a side is > 9).
 * @param {number[][]} rows
 * @param {{label: string, scale?: number, mask?: boolean[][], colour?: 'diverging'|'grey', className?: string}} options
 */
export function matrix(rows, { label, scale, mask, colour = 'diverging', className = '' } = {}) {
  const k_h = rows.length;
  const k_w = k_h ? rows[0].length : 0;
  const range = scale ?? maxAbs(rows);
  if (k_h > MAX_TABLE_SIDE || k_w > MAX_TABLE_SIDE) return heatmap(rows, { label, scale: range, colour, mask });
  const body = rows.map((row, u) => h('tr', {},
    row.map((value, v) => {
      const padded = Boolean(mask && mask[u] && mask[u][v]);
      // A padded cell shows its hatching on the card's colour, whatever value it holds.
      const background = padded ? 'transparent' : colour === 'grey' ? greyColor(value) : divergingColor(value, range);
      const light = !padded && colour === 'grey' && value < 0.5;
      return h('td', {
        class: [padded ? 'pad' : '', light ? 'on-dark' : ''].join(' ').trim() || null,
        title: `[${u}, ${v}] = ${value}${padded ? ' (padding)' : ''}`,
        style: { background },
      }, fmt(value, 3));
    })));
  return h('table', { class: `matrix ${className}`.trim(), 'aria-label': label },
    h('tbody', {}, body));
}

/** A canvas heat map for large matrices, with a text alternative. */
export function heatmap(rows, { label, scale, colour = 'diverging', mask }) {
  const k_h = rows.length;
  const k_w = rows[0].length;
  const cell = Math.max(2, Math.floor(160 / Math.max(k_h, k_w)));
  const canvas = h('canvas', { width: k_w * cell, height: k_h * cell, class: 'heatmap', role: 'img' });
  const ctx = canvas.getContext('2d');
  let lo = Infinity;
  let hi = -Infinity;
  rows.forEach((row, u) => row.forEach((value, v) => {
    lo = Math.min(lo, value);
    hi = Math.max(hi, value);
    ctx.fillStyle = colour === 'grey' ? greyColor(value) : divergingColor(value, scale, 0.95);
    ctx.fillRect(v * cell, u * cell, cell, cell);
    if (mask && mask[u] && mask[u][v]) {
      ctx.strokeStyle = 'rgba(120,120,120,0.8)';
      ctx.strokeRect(v * cell + 0.5, u * cell + 0.5, cell - 1, cell - 1);
    }
  }));
  canvas.setAttribute('aria-label', `${label}: ${k_h} × ${k_w} values from ${fmt(lo)} to ${fmt(hi)}, drawn as a heat map`);
  return canvas;
}

/**
 * A weight tensor (c_out, c_in_g, k_h, k_w) as a grid of c_out rows x c_in_g columns of matrices.
 * @param {number[][][][]} weight
 * @param {{rowNames?: string[], columnName?: (o: number, i: number) => string, caption?: string}} options
 */
export function tensorGrid(weight, { rowNames = [], columnName = (o, i) => `in ${i}`, caption } = {}) {
  const scale = maxAbs(weight);
  const c_in = weight.length ? weight[0].length : 0;
  const grid = h('div', { class: 'tensor-grid', style: { '--cols': String(c_in) }, role: 'group', 'aria-label': caption });
  weight.forEach((slices, o) => {
    const name = rowNames[o] ?? String(o);
    grid.append(h('div', { class: 'tensor-row-label' }, h('span', { class: 'mono' }, `o=${o}`), ' ', name !== String(o) ? name : ''));
    slices.forEach((slice, i) => {
      grid.append(h('figure', { class: 'tensor-cell' },
        matrix(slice, { label: `w[${o}, ${i}]`, scale }),
        h('figcaption', {}, columnName(o, i))));
    });
  });
  return grid;
}
