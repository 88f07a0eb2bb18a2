// The model methods of ConvServe (/v1/models) against a real uvicorn with its own model store:
// the sample network through multipart, a small model with exporter-style layer names
// ('/' and ':') through JSON, cross-checked against convolve, and errors from real 4xx answers.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  APIStatusError, ConvServe, NotFoundError, UnprocessableEntityError, modelPath,
} from '../dist/index.js';
import { PYTHON, REPO_ROOT, startService } from './support/servers.mjs';

const KEY = 'ts-models-key';
const CONV = '/features/conv:0';
const RELU = '/features/relu:0';
// The named model: x (1, 2, 5, 5) -> Conv 3x3 (pads 1, weight arange/10 - 2.5, bias) -> Relu.
const WEIGHT = Array.from({ length: 54 }, (_, i) => i / 10 - 2.5);
const BIAS = [0.5, -1, 0];
// Input (2, 5, 5): values -1.2 ... 3.7, so the Relu zeroes some outputs and keeps others.
const INPUT = [0, 1].map((c) => [0, 1, 2, 3, 4].map((y) => [0, 1, 2, 3, 4].map((x) => (c * 25 + y * 5 + x) / 10 - 1.2)));

// Written by the repository's Python with onnx.helper; the hostile model is the test suite's own.
const BUILD_MODELS = `
import sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper
sys.path.insert(0, sys.argv[1])
from tests.onnx_models import custom_domain_model, serialize
w = (np.arange(54, dtype=np.float32) / 10 - 2.5).reshape(3, 2, 3, 3)
b = np.array([0.5, -1, 0], np.float32)
nodes = [helper.make_node("Conv", ["x", "w", "b"], ["${CONV}"], name="/features/Conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["${CONV}"], ["${RELU}"], name="/features/Relu")]
graph = helper.make_graph(nodes, "named", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                          [helper.make_tensor_value_info("${RELU}", TensorProto.FLOAT, [1, 3, 5, 5])],
                          initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                          producer_name="convserve-ts-tests")
open(sys.argv[2] + "/named.onnx", "wb").write(model.SerializeToString())
open(sys.argv[2] + "/hostile.onnx", "wb").write(serialize(custom_domain_model()))
`;

let service;
let cs;
let dir;
let named;
let hostile;
let chelseaPng;

function assertClose(actual, expected, what) {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i += 1) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-4 * (1 + Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} != ${expected[i]}`);
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'convserve-ts-models-'));
  execFileSync(PYTHON, ['-c', BUILD_MODELS, REPO_ROOT, dir]);
  named = new Blob([await readFile(join(dir, 'named.onnx'))]);
  hostile = await readFile(join(dir, 'hostile.onnx'));
  chelseaPng = new Blob([await readFile(resolve(REPO_ROOT, 'tests', 'data', 'chelsea.png'))], { type: 'image/png' });
  service = await startService({ CONVSERVE_API_KEYS: KEY, CONVSERVE_MODEL_DIR: join(dir, 'store') });
  cs = new ConvServe({ baseURL: service.url, apiKey: KEY, maxRetries: 0 });
});

after(async () => {
  await service?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the sample network (multipart)', () => {
  let id;

  test('sampleModel stores it once; models and model list and describe it', async () => {
    const first = await cs.sampleModel();
    assert.match(first.id, /^[0-9a-f]{32}$/);
    assert.equal(first.created_now, true);
    assert.equal(first.total_params, 9_494_561);
    assert.deepEqual(first.inputs[0].size, [150, 150]);
    assert.ok(!('created_now' in JSON.parse(JSON.stringify(first))));
    const again = await cs.sampleModel();
    assert.equal(again.id, first.id);
    assert.equal(again.created_now, false);
    id = first.id;

    const listed = await cs.models();
    assert.deepEqual(listed.map((m) => m.id), [id]);
    assert.ok(!('layers' in listed[0]));
    const model = await cs.model(id);
    assert.deepEqual(model.layers.map((l) => l.name), first.layers.map((l) => l.name));
    assert.equal(model.layers[0].name, 'conv1');
    assert.equal(model.layers[0].op, 'Conv');
    assert.deepEqual(model.layers[0].output_shape, [16, 148, 148]);
  });

  test('features of a photo: json with channel PNGs, by name and by row index', async () => {
    const f = await cs.features(id, { image: chelseaPng, layers: ['conv1', 1], preprocess: { resize: 'stretch' } });
    assert.equal(f.model, id);
    assert.deepEqual(f.layers.map((l) => [l.name, l.op]), [['conv1', 'Conv'], ['relu1', 'Relu']]);
    assert.deepEqual(f.layers[0].shape, [16, 148, 148]);
    assert.equal(f.layers[0].channels.length, 16);
    assert.equal(f.preprocess.resize, 'stretch');
    const png = f.layers[1].channels[3].png();
    assert.equal(png.type, 'image/png');
    const bytes = new Uint8Array(await png.arrayBuffer());
    const view = new DataView(bytes.buffer);
    assert.deepEqual([view.getUint32(16), view.getUint32(20)], [148, 148]);
    assert.ok(f.layers[1].channels.every((c) => c.min >= 0), 'relu1 maps are never negative');
  });

  test('features as npy match the json statistics; grid is a PNG Blob', async () => {
    const j = await cs.features(id, { image: chelseaPng, layers: 'conv1', preprocess: { resize: 'stretch' } });
    const n = await cs.features(id, { image: chelseaPng, layers: 'conv1', format: 'npy', preprocess: { resize: 'stretch' } });
    assert.deepEqual(n.shape, [16, 148, 148]);
    assert.ok(n.data instanceof Float32Array);
    const plane = 148 * 148;
    for (const channel of j.layers[0].channels) {
      const values = n.data.subarray(channel.index * plane, (channel.index + 1) * plane);
      assert.equal(values.reduce((a, b) => Math.min(a, b)), channel.min);
      assert.equal(values.reduce((a, b) => Math.max(a, b)), channel.max);
    }
    const grid = await cs.features(id, { image: chelseaPng, layers: ['conv1'], format: 'grid', preprocess: { resize: 'stretch' } });
    assert.ok(grid instanceof Blob);
    assert.equal(grid.type, 'image/png');
  });

  test('modelKernel by name and by index; modelExplain of a conv1 pixel', async () => {
    const byName = await cs.modelKernel(id, 'conv1');
    const byIndex = await cs.modelKernel(id, 0);
    assert.deepEqual(byIndex, byName);
    assert.equal(byName.layer.name, 'conv1');
    assert.deepEqual([byName.weight.length, byName.weight[0].length, byName.weight[0][0].length], [16, 3, 3]);
    const e = await cs.modelExplain(id, { image: chelseaPng, layer: 'conv1', at: [2, 10, 20],
      preprocess: { resize: 'stretch' } });
    assert.equal(e.model, id);
    assert.deepEqual(e.at, { channel: 2, y: 10, x: 20 });
    assert.equal(e.terms.length, 3);
    assert.ok(Math.abs(e.value - e.total) <= 1e-4 * (1 + Math.abs(e.total)), `${e.value} vs ${e.total}`);
  });

  test('deleteModel removes it: model() is then a NotFoundError, delete again too', async () => {
    await cs.deleteModel(id);
    assert.deepEqual(await cs.models(), []);
    await assert.rejects(cs.model(id), (error) => error instanceof NotFoundError && error.status === 404
      && error.problem.detail.includes(id));
    await assert.rejects(cs.deleteModel(id), NotFoundError);
  });
});

describe('a model with exporter-style names (JSON input)', () => {
  let id;

  before(async () => {
    const m = await cs.uploadModel(named, { filename: 'named.onnx' });
    id = m.id;
    assert.equal(m.filename, 'named.onnx');
    assert.deepEqual(m.layers.map((l) => l.name), [CONV, RELU]);
  });

  test('modelKernel percent-encodes a name holding "/" and ":"', async () => {
    const k = await cs.modelKernel(id, CONV);
    assert.equal(k.layer.name, CONV);
    assert.equal(k.input, 'x');
    assertClose(k.weight.flat(3), WEIGHT, 'weight');
    assertClose(k.bias, BIAS, 'bias');
    assert.deepEqual([k.stride, k.padding, k.dilation, k.groups], [[1, 1], [1, 1, 1, 1], [1, 1], 1]);
  });

  test('features npy of the Conv equal convolve with its kernel; the Relu is their positive part', async () => {
    const k = await cs.modelKernel(id, CONV);
    const expected = await cs.convolve({ input: { array: INPUT }, kernel: { weight: k.weight, bias: k.bias },
      stride: k.stride, padding: k.padding, dilation: k.dilation, groups: k.groups, format: 'npy' });
    const conv = await cs.features(id, { input: { array: INPUT }, layers: [CONV], format: 'npy' });
    assert.deepEqual(conv.shape, [3, 5, 5]);
    assertClose(conv.data, expected.data, 'conv');
    const relu = await cs.features(id, { input: { array: Float32Array.from(INPUT.flat(2)), shape: [2, 5, 5] },
      layers: 1, format: 'npy' });
    assertClose(relu.data, [...conv.data].map((v) => Math.max(0, v)), 'relu');
    assert.ok(conv.data.some((v) => v < 0) && conv.data.some((v) => v > 0));
  });

  test('features json and modelExplain agree with the npy values', async () => {
    const conv = await cs.features(id, { input: { array: INPUT }, layers: [CONV], format: 'npy' });
    const j = await cs.features(id, { input: { array: INPUT }, layers: [CONV, RELU], normalize: 'clip' });
    assert.equal(j.normalize, 'clip');
    assert.deepEqual(j.layers.map((l) => l.shape), [[3, 5, 5], [3, 5, 5]]);
    assert.equal(j.layers[0].channels[1].min, Math.min(...conv.data.subarray(25, 50)));
    const e = await cs.modelExplain(id, { input: { array: INPUT }, layer: CONV, at: { channel: 1, y: 2, x: 3 } });
    assertClose([e.value, e.total], [conv.data[25 + 2 * 5 + 3], conv.data[25 + 2 * 5 + 3]], 'explained value');
    assert.equal(e.bias, -1);
    assert.equal(e.terms.length, 2);
  });

  test('the same file uploaded from bytes has the same id and is not new', async () => {
    const again = await cs.uploadModel(new Uint8Array(await named.arrayBuffer()));
    assert.equal(again.id, id);
    assert.equal(again.created_now, false);
  });

  test('real 4xx answers: a layer the model lacks, a kernel of a Relu, an unknown id', async () => {
    await assert.rejects(cs.features(id, { input: { array: INPUT }, layers: ['/no/such:0'] }),
      (error) => error instanceof UnprocessableEntityError && error.status === 422
        && error.problem.detail.includes('/no/such:0'));
    await assert.rejects(cs.modelKernel(id, RELU),
      (error) => error instanceof UnprocessableEntityError && /Conv/.test(error.problem.detail));
    const unknown = '0'.repeat(32);
    await assert.rejects(cs.modelKernel(unknown, CONV), (error) => error instanceof NotFoundError
      && error.problem.type.length > 0 && error.request.url.endsWith(
        `${modelPath(unknown)}/layers/${encodeURIComponent(CONV)}/kernel`));
  });

  test('an aborted signal cancels a model call', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(cs.features(id, { input: { array: INPUT }, layers: [CONV], signal: controller.signal }),
      { name: 'AbortError' });
  });
});

describe('refusals', () => {
  test('a hostile model (custom operator domain) is a 422 naming the domain', async () => {
    await assert.rejects(cs.uploadModel(hostile), (error) => error instanceof UnprocessableEntityError
      && error instanceof APIStatusError && error.status === 422 && /com\.evil/.test(error.problem.detail));
    assert.ok((await cs.models()).every((m) => m.filename !== 'model.onnx'));
  });

  test('bytes that are not ONNX are a 422; a bad inputSize is refused before sending', async () => {
    await assert.rejects(cs.uploadModel(new TextEncoder().encode('not a model')),
      (error) => error instanceof UnprocessableEntityError && error.problem.detail.length > 0);
    assert.throws(() => cs.uploadModel(named, { inputSize: [0, 10] }), RangeError);
    assert.throws(() => cs.modelKernel('abc', -1), RangeError);
  });
});
