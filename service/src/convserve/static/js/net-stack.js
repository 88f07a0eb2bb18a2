// Layer stacks (/v1/layers) in the Network mode: example stacks to start from, and the exact
// explanation of a pixel of a stack's conv2d layer.
//
// A stack's pixel is explained with endpoints that exist already, so the arithmetic shown is
// that of the layer's real input: `/v1/layers` with format=onnx returns the stack as a
// standalone ONNX model holding the weights the run used (presets, kernels and seeded filters
// are all deterministic); it is stored once with `/v1/models` (its id is a content hash, so the
// same stack over an image of the same size is stored once), and `/v1/models/{id}/explain`
// explains that layer's Conv node on the image as /v1/layers read it (no preprocessing: the
// decoded pixels in [0, 1]). The Conv node of stack layer i is named `l{i}_conv` by the export
// (convserve.conv.graphs.stack_model; tests/api/test_stack_explain.py holds it to that).

import { NotFoundError } from './convserve-client/index.js';
import { fmt, h } from './dom.js';
import { cs } from './page.js';

/** Stacks a learner can start from: each fills the JSON box; every one runs on the samples. */
export const EXAMPLE_STACKS = [
  {
    id: 'gabor',
    label: 'Gabor bank, max pool, 32 seeded filters, max pool',
    description: 'A first layer of 16 Gabor filters (edges at 16 orientations, like the kernels a '
      + 'trained network learns first), then 32 untrained 3 × 3 filters that each read all 16 maps.',
    layers: [
      { type: 'conv2d', preset: 'gabor', preset_params: { size: 3, orientations: 16 }, activation: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
      { type: 'conv2d', filters: 32, kernel_size: 3, activation: 'relu', seed: 1 },
      { type: 'maxpool2d', kernel_size: 2 },
    ],
  },
  {
    id: 'keras',
    label: 'The Keras reference CNN\'s convolutions, untrained',
    description: 'Conv2D 16, 32 and 64 (3 × 3, ReLU, Keras\' glorot_uniform initial weights) each '
      + 'followed by MaxPool 2: 448, 4,640 and 18,496 parameters, as in model.summary().',
    layers: [
      { type: 'conv2d', filters: 16, kernel_size: 3, init: 'glorot_uniform', activation: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
      { type: 'conv2d', filters: 32, kernel_size: 3, init: 'glorot_uniform', activation: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
      { type: 'conv2d', filters: 64, kernel_size: 3, init: 'glorot_uniform', activation: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
    ],
  },
  {
    id: 'sobel',
    label: 'Sobel edges, then their magnitude (abs)',
    description: 'The Sobel preset on the luminance gives two maps, the x and the y gradient; abs '
      + 'keeps how strong an edge is, whichever way it goes.',
    layers: [
      { type: 'conv2d', preset: 'sobel' },
      { type: 'abs' },
    ],
  },
  {
    id: 'handwritten',
    label: 'A hand-written kernel: D2L\'s edge detector [1, −1]',
    description: 'One output channel with a 1 × 2 kernel slice [1, −1] per colour channel: the '
      + 'difference of neighbouring pixels, summed over R, G and B. Edit the numbers and run it again.',
    layers: [
      { type: 'conv2d', kernel: { weight: [[[[1, -1]], [[1, -1]], [[1, -1]]]] }, activation: 'relu' },
    ],
  },
  {
    id: 'strided',
    label: 'Blur, a strided convolution, average pooling',
    description: 'A Gaussian blur per colour channel, then 8 seeded 3 × 3 filters with stride 2 '
      + 'and padding 1 (half the size) and a leaky ReLU, then 2 × 2 average pooling.',
    layers: [
      { type: 'conv2d', preset: 'gaussian_blur', preset_params: { size: 5, sigma: 1.5 } },
      { type: 'conv2d', filters: 8, kernel_size: 3, stride: 2, padding: 1,
        activation: { type: 'leaky_relu', slope: 0.1 }, seed: 7 },
      { type: 'avgpool2d', kernel_size: 2 },
    ],
  },
];

/**
 * A stack run: the layers as sent, the image they ran on and the /v1/layers answer. Its
 * exported model is stored on the first explained pixel and reused by the next ones.
 */
export class StackRun {
  constructor(layers, image, answer) {
    this.layers = layers;
    this.image = image;
    this.answer = answer;
    this.stored = null; // Promise of the /v1/models answer for the exported stack
  }

  /** The /v1/models answer (id and layer table) of this stack's ONNX export, stored once. */
  model() {
    if (!this.stored) {
      // Not tied to one click's AbortSignal: the next clicks wait for the same upload.
      const stored = (async () => {
        const onnx = await cs.layers({
          image: this.image.blob, filename: this.image.name, layers: this.layers, format: 'onnx',
        });
        return cs.uploadModel(onnx, { filename: 'convserve_layers.onnx' });
      })();
      this.stored = stored;
      stored.catch(() => { if (this.stored === stored) this.stored = null; });
    }
    return this.stored;
  }

  /**
   * Explain output element `at` of the conv2d layer `index` on its real input.
   * @returns {Promise<{data: object, conv: object, model: object}>} the /v1/models/{id}/explain
   *   answer, the exported model's Conv row and the stored model
   */
  async explain(index, at, signal) {
    for (let attempt = 0; ; attempt += 1) {
      const model = await this.model();
      const conv = convRow(model, index, this.answer.layers[index].output_shape);
      try {
        const data = await cs.modelExplain(model.id, {
          image: this.image.blob, filename: this.image.name, preprocess: 'none',
          layer: conv.name, at, signal,
        });
        return { data, conv, model };
      } catch (error) {
        // The store evicts the least recently used models: store this one again, once.
        if (attempt > 0 || !(error instanceof NotFoundError) || signal?.aborted) throw error;
        this.stored = null;
      }
    }
  }
}

/** The Conv row of stack layer `index` in the exported model's layer table. */
export function convRow(model, index, shape) {
  const row = model.layers.find((r) => r.node === `l${index}_conv` && r.op === 'Conv');
  if (!row || row.output_shape.join(',') !== shape.join(',')) {
    throw new Error(`the exported stack has no Conv node l${index}_conv of shape (${shape.join(', ')}) `
      + `for layer ${index}; its nodes: ${model.layers.map((r) => r.node || r.name).join(', ')}`);
  }
  return row;
}

/**
 * The activation a conv2d layer applies after its sum (its `options.activation`), or null.
 * @returns {{name: string, formula: string, apply: (v: number) => number} | null}
 */
export function activationOf(options) {
  const activation = options?.activation;
  if (!activation) return null;
  const kind = typeof activation === 'string' ? activation : activation.type;
  const slope = activation.slope ?? 0.01;
  switch (kind) {
    case 'relu': return { name: 'relu', formula: 'max(0, v)', apply: (v) => Math.max(0, v) };
    case 'leaky_relu': return {
      name: `leaky_relu (slope ${slope})`, formula: `v if v ≥ 0, else ${slope} · v`,
      apply: (v) => (v >= 0 ? v : slope * v),
    };
    case 'sigmoid': return { name: 'sigmoid', formula: '1 / (1 + e^−v)', apply: (v) => 1 / (1 + Math.exp(-v)) };
    case 'tanh': return { name: 'tanh', formula: 'tanh(v)', apply: Math.tanh };
    case 'abs': return { name: 'abs', formula: '|v|', apply: Math.abs };
    default: return { name: kind, formula: `${kind}(v)`, apply: () => Number.NaN };
  }
}

/**
 * What a stack layer's explanation adds to the terms: `before` them, where the window's rows
 * and columns count when the layer pads by reflection, replication or wrapping (the export
 * pads in a node of its own, so the Conv reads the padded input); `after` them, the
 * activation that turns the sum into the map's value.
 * @returns {{before: HTMLElement[], after: HTMLElement[]}}
 */
export function stackNotes(layer, data, at) {
  const options = layer.options || {};
  const before = [];
  const after = [];
  const [top, bottom, left, right] = options.padding || [0, 0, 0, 0];
  if (options.padding_mode && options.padding_mode !== 'zeros' && (top || bottom || left || right)) {
    before.push(h('p', { class: 'explain-note' },
      `This layer pads its input with ${options.padding_mode} (top ${top}, bottom ${bottom}, left ${left}, `
      + `right ${right}) before the convolution, so the window's rows and columns count in the padded `
      + `input: padded row r is input row r − ${top}, padded column c is input column c − ${left}.`));
  }
  const activation = activationOf(options);
  if (activation) {
    const shown = activation.apply(data.value);
    after.push(h('p', { class: 'explain-value explain-activated' },
      `The layer's map shows ${activation.name} of this sum, ${activation.formula}: `
      + `map[${at.channel}, ${at.y}, ${at.x}] = `,
      h('output', { class: 'mono activated-output', dataset: { value: String(shown) } }, fmt(shown, 7))));
  }
  return { before, after };
}

/** One sentence on what a stack layer does, from the /v1/layers answer's options and kernel. */
export function describeStackLayer(layer) {
  const o = layer.options || {};
  const io = `${shape(layer.input_shape)} → ${shape(layer.output_shape)}`;
  if (layer.type === 'conv2d') {
    const k = layer.kernel || {};
    const source = k.source === 'preset' ? `the preset ${k.name} (${k.rule})`
      : k.source === 'init' ? `seeded ${k.init} weights (seed ${k.seed})`
        : k.source === 'kernel_file'
          ? `the weight file's ${k.weight_key ?? 'only tensor'} (${k.format}${k.layout === 'HWIO' ? ', HWIO' : ''})`
          : 'the given kernel';
    const activation = activationOf(o);
    return `conv2d ${io}: weight ${shape(o.weight_shape)} from ${source}${o.bias ? ' with a bias' : ''}, `
      + `stride ${o.stride.join(' × ')}, padding ${shape(o.padding)} ${o.padding_mode}, dilation `
      + `${o.dilation.join(' × ')}, groups ${o.groups}${activation ? `, then ${activation.name}` : ''}.`;
  }
  if (layer.type === 'maxpool2d' || layer.type === 'avgpool2d') {
    return `${layer.type} ${io}: window ${o.kernel_size.join(' × ')}, stride ${o.stride.join(' × ')}, `
      + `padding ${o.padding.join(' × ')}${layer.type === 'maxpool2d' ? ': the largest value of each window.'
        : ': the mean of each window.'}`;
  }
  const activation = activationOf({ activation: { type: layer.type, ...o } });
  return `${activation.name} ${io}: ${activation.formula} for every value.`;
}

function shape(values) {
  return `(${values.join(', ')})`;
}
