// The explain panel: the arithmetic behind one output value, laid out like D2L's worked example.

import { clear, fmt, h, matrix, maxAbs } from './dom.js';

/** [y, x] from the API's window_origin, whether it is sent as [y, x] or {y, x}. */
export function originOf(data) {
  const origin = data.window_origin;
  if (Array.isArray(origin)) return [origin[0], origin[1]];
  return [origin.y, origin.x];
}

/** The k_h x k_w mask of window cells that lie in the padding, if the term carries one. */
function paddingMask(term) {
  return term.in_padding ?? term.padding_mask ?? term.padded ?? term.mask ?? null;
}

/**
 * Fill `body` with the explanation `data` (the /v1/explain answer).
 * @param {HTMLElement} body
 * @param {object} data
 * @param {{channel: number, y: number, x: number, outputName: string, inputNames: string[],
 *          stride: number[], dilation: number[], paddingMode: string}} ctx
 * @returns {number} the value recomputed from the terms' sums and the bias
 */
export function renderExplanation(body, data, ctx) {
  clear(body);
  const [r0, c0] = originOf(data);
  const { channel, y, x } = ctx;
  const first = data.terms[0];
  const k_h = first ? first.kernel.length : 0;
  const k_w = first ? first.kernel[0].length : 0;
  const anyPadding = data.terms.some((t) => (paddingMask(t) || []).flat().some(Boolean));
  const outputName = ctx.outputName && ctx.outputName !== String(channel) ? ` (${ctx.outputName})` : '';

  body.append(h('p', { class: 'explain-lead' },
    `Output channel ${channel}${outputName} at row ${y}, column ${x} reads a ${k_h} × ${k_w} window of `,
    `${data.terms.length === 1 ? 'one input channel' : `${data.terms.length} input channels`}, `,
    `starting at input row ${r0}, column ${c0}`,
    ctx.stride ? ` (stride ${ctx.stride.join(' × ')}, dilation ${ctx.dilation.join(' × ')})` : '',
    '. Each window is multiplied element by element with its kernel slice and the products are summed.',
    anyPadding ? ` Hatched cells lie in the padding (${ctx.paddingMode}).` : ''));

  const productScale = maxAbs(data.terms.map((t) => t.products));
  const kernelScale = maxAbs(data.terms.map((t) => t.kernel));
  let recomputed = data.bias ?? 0;
  const list = h('ol', { class: 'terms', 'aria-label': 'One term per input channel' });
  for (const term of data.terms) {
    const i = term.input_channel;
    const name = ctx.inputNames?.[i];
    recomputed += term.sum;
    list.append(h('li', { class: 'term', dataset: { inputChannel: String(i) } },
      h('h3', {}, `Input channel ${i}${name && name !== String(i) ? ` (${name})` : ''}`),
      h('div', { class: 'term-row' },
        h('figure', {}, matrix(term.window, { label: `input window of channel ${i}`, colour: 'grey', mask: paddingMask(term) }),
          h('figcaption', {}, 'input window')),
        h('span', { class: 'op', 'aria-hidden': 'true' }, '⊙'),
        h('figure', {}, matrix(term.kernel, { label: `kernel slice w[${channel}, ${i - (ctx.groupStart ?? 0)}]`, scale: kernelScale }),
          h('figcaption', {}, 'kernel slice')),
        h('span', { class: 'op', 'aria-hidden': 'true' }, '='),
        h('figure', {}, matrix(term.products, { label: `products for channel ${i}`, scale: productScale }),
          h('figcaption', {}, 'products')),
        h('p', { class: 'term-sum' }, 'sum = ', h('strong', { class: 'mono', dataset: { sum: String(term.sum) } }, fmt(term.sum, 6))))));
  }
  body.append(list);

  const parts = data.terms.map((t) => fmt(t.sum, 6));
  if (data.bias !== null && data.bias !== undefined) parts.push(`bias ${fmt(data.bias, 6)}`);
  body.append(h('p', { class: 'explain-total' },
    h('span', {}, `${parts.join(' + ')} = `),
    h('strong', { class: 'mono explain-sum', dataset: { sum: String(recomputed) } }, fmt(recomputed, 6))));
  body.append(h('p', { class: 'explain-value' },
    `output[${channel}, ${y}, ${x}] = `,
    h('output', { class: 'mono explain-output', dataset: { value: String(data.value), channel: String(channel), y: String(y), x: String(x) } },
      fmt(data.value, 7))));
  if (data.expression) {
    body.append(h('details', { class: 'expression' },
      h('summary', {}, 'The whole computation on one line'),
      h('p', { class: 'mono' }, data.expression)));
  }
  return recomputed;
}
