// Every method of ConvServe against a real uvicorn, and the faults (retries, timeouts,
// cancellation) against a scripted local server. Run after `npm run build` (npm test does).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  APIConnectionError, APIError, APIResponseValidationError, APIStatusError, APITimeoutError,
  AuthenticationError, BadRequestError, ConvServe, ConvServeError, GatewayTimeoutError,
  InternalServerError, NotFoundError, PayloadTooLargeError, PermissionDeniedError, RateLimitError,
  ServiceUnavailableError, UnprocessableEntityError, UnsupportedMediaTypeError, decodeNpy, encodeNpy,
  retryAfterSeconds, retryDelayMs,
} from '../dist/index.js';
import { PACKAGE_DIR, REPO_ROOT, problem, startFaultServer, startService } from './support/servers.mjs';

const KEY = 'ts-test-key';
const MAX_PIXELS = 200_000; // chelsea.png (451 x 300) fits, camera.png (512 x 512) does not
// Dive into Deep Learning, section 7.4: two input channels, one 2x2 kernel per channel.
const X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]];
const K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]];
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

let service;
let cs;
let chelseaPng;
let cameraPng;

/** [width, height] from a PNG's IHDR chunk, after checking the signature. */
async function pngSize(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  assert.deepEqual([...bytes.subarray(0, 8)], PNG_MAGIC);
  const view = new DataView(bytes.buffer);
  return [view.getUint32(16), view.getUint32(20)];
}

before(async () => {
  service = await startService({ CONVSERVE_API_KEYS: KEY, CONVSERVE_MAX_PIXELS: String(MAX_PIXELS) });
  cs = new ConvServe({ baseURL: service.url, apiKey: KEY, maxRetries: 0 });
  const data = (name) => readFile(resolve(REPO_ROOT, 'tests', 'data', name));
  chelseaPng = new Blob([await data('chelsea.png')], { type: 'image/png' });
  cameraPng = new Blob([await data('camera.png')], { type: 'image/png' });
});

after(async () => {
  await service?.stop();
});

describe('convolve', () => {
  test('D2L example as format=array gives [[56, 72], [104, 120]]', async () => {
    const a = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: 'array' });
    assert.deepEqual(a.data, [[[56, 72], [104, 120]]]);
    assert.deepEqual(a.shape, [1, 2, 2]);
    assert.equal(a.dtype, 'float32');
  });

  test('D2L example as format=npy decodes to a Float32Array and its shape', async () => {
    const n = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: 'npy' });
    assert.deepEqual(n.shape, [1, 2, 2]);
    assert.ok(n.data instanceof Float32Array);
    assert.deepEqual([...n.data], [56, 72, 104, 120]);
  });

  test('typed arrays with shapes are sent as the same numbers', async () => {
    const n = await cs.convolve({
      input: { array: Float32Array.from(X.flat(2)), shape: [2, 3, 3] },
      kernel: { weight: Float32Array.from(K.flat(2)), shape: [1, 2, 2, 2], bias: [0.5] },
      format: 'npy',
    });
    assert.deepEqual([...n.data], [56.5, 72.5, 104.5, 120.5]);
  });

  test('a typed kernel without a shape is refused before sending', async () => {
    assert.throws(() => cs.convolve({ input: { array: X }, kernel: { weight: Float32Array.from(K.flat(2)) } }),
      { name: 'TypeError', message: /kernel\.shape with 4 axes/ });
  });

  test('a Sobel PNG round trip: multipart in, channel PNGs and npy out with the same shape', async () => {
    const [width, height] = await pngSize(chelseaPng);
    const j = await cs.convolve({ image: chelseaPng, preset: 'sobel' });
    assert.deepEqual(j.shape, [2, height, width]);
    assert.equal(j.kernel.name, 'sobel');
    assert.deepEqual(j.channels.map((c) => c.name), ['x', 'y']);
    assert.equal(typeof j.channels[0].png_base64, 'string');
    const png = j.channels[0].png();
    assert.equal(png.type, 'image/png');
    assert.deepEqual(await pngSize(png), [width, height]);
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(j.channels[0]))).sort(),
      ['index', 'max', 'mean', 'min', 'name', 'png_base64']);

    const n = await cs.convolve({ image: chelseaPng, preset: 'sobel', format: 'npy' });
    assert.deepEqual(n.shape, [2, height, width]);
    for (const [c, channel] of j.channels.entries()) {
      const values = n.data.subarray(c * height * width, (c + 1) * height * width);
      assert.equal(values.reduce((a, b) => Math.min(a, b)), channel.min);
      assert.equal(values.reduce((a, b) => Math.max(a, b)), channel.max);
    }

    const single = await cs.convolve({ image: new Uint8Array(await chelseaPng.arrayBuffer()), preset: 'sobel',
      format: 'png', channel: 1 });
    assert.ok(single instanceof Blob);
    assert.deepEqual(await pngSize(single), [width, height]);
    assert.deepEqual(new Uint8Array(await single.arrayBuffer()),
      new Uint8Array(await j.channels[1].png().arrayBuffer()));
  });

  test('dry_run answers shapes and cost without channels', async () => {
    const info = await cs.convolve({ image: await chelseaPng.arrayBuffer(), preset: 'sobel', dry_run: true,
      stride: 2, padding: 'valid' });
    assert.equal(info.dry_run, true);
    assert.deepEqual(info.stride, [2, 2]);
    assert.deepEqual(info.channels, []);
    assert.equal(typeof info.cost.macs, 'number');
  });

  test('format=image is a PNG Blob', async () => {
    const image = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: 'image' });
    assert.deepEqual(await pngSize(image), [2, 2]);
  });
});

describe('the other endpoints', () => {
  test('explain shows the sum behind output[0, 1, 1] = 120', async () => {
    const e = await cs.explain({ input: { array: X }, kernel: { weight: [K] }, at: [0, 1, 1] });
    assert.equal(e.value, 120);
    assert.deepEqual(e.terms.map((t) => t.sum), [4 * 0 + 5 * 1 + 7 * 2 + 8 * 3, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4]);
    const same = await cs.explain({ image: chelseaPng, preset: 'box_blur', at: { channel: 0, y: 3, x: 4 } });
    assert.deepEqual(same.at, { channel: 0, y: 3, x: 4 });
  });

  test('layers answers json and the last maps as npy', async () => {
    const layers = [{ type: 'conv2d', kernel: { weight: [K] } }, { type: 'relu' }];
    const json = await cs.layers({ input: { array: X }, layers });
    assert.deepEqual(json.output_shape, [1, 2, 2]);
    assert.equal(json.layers.length, 2);
    const npy = await cs.layers({ input: { array: X }, layers, format: 'npy' });
    assert.deepEqual([...npy.data], [56, 72, 104, 120]);
    const onnx = await cs.layers({ image: chelseaPng, layers: [{ type: 'conv2d', preset: 'sobel' }], format: 'onnx' });
    assert.ok(onnx instanceof Blob && onnx.size > 100);
  });

  test('layers reads a conv2d weight from kernelFile, as the same kernel sent as JSON', async () => {
    const weight = [[[[0.25]], [[0.5]], [[-1]]], [[[1]], [[0]], [[2]]]];  // (2, 3, 1, 1)
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1, 1), }";
    const padded = header.padEnd(117, ' ') + '\n';  // 10 + 118 bytes: a multiple of 64
    const npy = new Uint8Array(10 + padded.length + 24);
    npy.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0, padded.length, 0]);
    npy.set(new TextEncoder().encode(padded), 10);
    new Float32Array(npy.buffer, 10 + padded.length).set(weight.flat(3));
    const fromFile = await cs.layers({
      image: chelseaPng, layers: [{ type: 'conv2d', kernel_file: true }], kernelFile: npy, format: 'npy' });
    const fromJson = await cs.layers({
      image: chelseaPng, layers: [{ type: 'conv2d', kernel: { weight } }], format: 'npy' });
    assert.deepEqual(fromFile.shape, [2, 300, 451]);
    assert.deepEqual([...fromFile.data], [...fromJson.data]);
    const described = await cs.layers({
      image: chelseaPng, layers: [{ type: 'conv2d', kernel_file: true }], kernelFile: npy, dry_run: true });
    assert.equal(described.layers[0].kernel.source, 'kernel_file');
    await assert.rejects(async () => cs.layers({ input: { array: X }, layers: [], kernelFile: npy }),
      /kernel_file is sent as a file part/);
  });

  test('presets lists sobel, and preset resolves it for one channel', async () => {
    const presets = await cs.presets();
    const sobel = presets.find((p) => p.name === 'sobel');
    assert.equal(sobel.rule, 'luminance');
    assert.ok(Array.isArray(sobel.parameters));
    const resolved = await cs.preset('sobel', { channels: 1 });
    assert.deepEqual(resolved.weight_shape, [2, 1, 3, 3]);
    assert.deepEqual(resolved.weight[0][0], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]);
    const gaussian = await cs.preset('gaussian_blur', { channels: 3, params: { sigma: 2, size: 7 } });
    assert.equal(gaussian.params.sigma, 2);
    assert.deepEqual(gaussian.weight_shape, [3, 1, 7, 7]);
  });

  test('limits are the effective values of the server, each with its variable', async () => {
    const limits = await cs.limits();
    assert.equal(limits.max_pixels, MAX_PIXELS);
    assert.equal(limits.env.max_pixels, 'CONVSERVE_MAX_PIXELS');
    assert.equal(limits.max_kernel_size, 63);
    assert.equal(typeof limits.max_preset_channels, 'number');
  });

  test('engines, health and ready', async () => {
    const engines = await cs.engines();
    assert.ok(engines.engines.some((e) => e.name === engines.default_engine));
    assert.deepEqual(await cs.health(), { status: 'ok' });
    const ready = await cs.ready();
    assert.equal(ready.ready, true);
  });
});

describe('errors from real 4xx answers', () => {
  const expectStatus = async (promise, cls, status, detail) => {
    await assert.rejects(promise, (error) => {
      assert.ok(error instanceof cls, `${error} is not a ${cls.name}`);
      assert.ok(error instanceof APIStatusError && error instanceof APIError && error instanceof ConvServeError);
      assert.equal(error.status, status);
      assert.equal(error.problem.status, status);
      assert.match(error.problem.detail, detail);
      assert.equal(error.name, cls.name);
      assert.match(String(error), new RegExp(`^${cls.name}: ${status} `));
      assert.equal(typeof error.requestId, 'string');
      return true;
    });
  };

  test('422: the README call with one input channel in the kernel', async () => {
    await expectStatus(cs.convolve({ input: { array: X }, kernel: { weight: [[K[0]]] } }),
      UnprocessableEntityError, 422, /^weight\.shape=\(1, 1, 2, 2\) needs C_in\/\/groups=2/);
  });

  test('422 names the field', async () => {
    await assert.rejects(cs.convolve({ input: { array: X }, kernel: { weight: [[K[0]]] } }), (error) => {
      assert.deepEqual(error.errors.map((e) => e.field), ['kernel.weight']);
      assert.equal(error.problem.type, '/problems/shape-mismatch');
      return true;
    });
  });

  test('401 without the API key', async () => {
    const anonymous = new ConvServe({ baseURL: service.url, apiKey: null, maxRetries: 0 });
    await expectStatus(anonymous.presets(), AuthenticationError, 401, /requires an API key/);
  });

  test('404 for an unknown preset', async () => {
    await expectStatus(cs.preset('no-such-preset'), NotFoundError, 404, /no-such-preset/);
  });

  test('413 for an image over CONVSERVE_MAX_PIXELS', async () => {
    await expectStatus(cs.convolve({ image: cameraPng, preset: 'sobel' }),
      PayloadTooLargeError, 413, /^The image is 512x512 = 262,144 pixels; the limit is 200,000 pixels/);
  });

  test('415 for a body that is neither multipart nor JSON', async () => {
    await expectStatus(cs.request('POST', '/v1/convolve', { body: 'x', contentType: 'text/plain' }),
      UnsupportedMediaTypeError, 415, /multipart\/form-data|application\/json/);
  });

  test('400 for a multipart body that cannot be parsed', async () => {
    await expectStatus(cs.request('POST', '/v1/convolve', {
      body: 'not multipart', contentType: 'multipart/form-data; boundary=zz',
    }), BadRequestError, 400, /could not be parsed/);
  });
});

describe('retries, timeouts and cancellation', () => {
  const unavailable = {
    status: 503,
    headers: { 'retry-after': '0' },
    body: problem(503, 'Service unavailable', 'the compute queue is full'),
  };

  test('503 with Retry-After is retried until the answer comes', async () => {
    const fault = await startFaultServer([unavailable, unavailable, { status: 200, body: { status: 'ok' } }]);
    try {
      const client = new ConvServe({ baseURL: fault.url, maxRetries: 2 });
      assert.deepEqual(await client.health(), { status: 'ok' });
      assert.equal(fault.requests.length, 3);
    } finally {
      await fault.stop();
    }
  });

  test('503 after every retry is a ServiceUnavailableError with the problem and Retry-After', async () => {
    const fault = await startFaultServer([unavailable]);
    try {
      const client = new ConvServe({ baseURL: fault.url, maxRetries: 1, apiKey: 'k' });
      await assert.rejects(client.convolve({ input: { array: X }, kernel: { weight: [K] } }), (error) => {
        assert.ok(error instanceof ServiceUnavailableError && error instanceof InternalServerError);
        assert.equal(error.retryAfter, 0);
        assert.equal(error.problem.detail, 'the compute queue is full');
        return true;
      });
      assert.equal(fault.requests.length, 2);
      assert.equal(fault.requests[0].headers.authorization, 'Bearer k');
      assert.equal(fault.requests[0].headers['content-type'], 'application/json');
    } finally {
      await fault.stop();
    }
  });

  test('429, 502 and 504 are retried; 403 and a compute timeout are not', async () => {
    const cases = [
      [429, RateLimitError, 2], [502, InternalServerError, 2], [504, GatewayTimeoutError, 2],
      [403, PermissionDeniedError, 1],
    ];
    for (const [status, cls, attempts] of cases) {
      const fault = await startFaultServer([{ status, headers: { 'retry-after': '0' }, body: problem(status, 'Fault', `status ${status}`) }]);
      try {
        const client = new ConvServe({ baseURL: fault.url, maxRetries: 1 });
        await assert.rejects(client.engines(), cls);
        assert.equal(fault.requests.length, attempts, `status ${status}`);
      } finally {
        await fault.stop();
      }
    }
    const fault = await startFaultServer([{
      status: 504, body: problem(504, 'Computation timed out', 'over 60 s', '/problems/compute-timeout'),
    }]);
    try {
      await assert.rejects(new ConvServe({ baseURL: fault.url, maxRetries: 2 }).engines(), GatewayTimeoutError);
      assert.equal(fault.requests.length, 1);
    } finally {
      await fault.stop();
    }
  });

  test('Retry-After sets the wait, in seconds or as an HTTP date, capped at 60 s', () => {
    assert.equal(retryDelayMs(0, retryAfterSeconds(new Headers({ 'retry-after': '2' }))), 2000);
    assert.equal(retryDelayMs(3, retryAfterSeconds(new Headers({ 'retry-after-ms': '250' }))), 250);
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(retryAfterSeconds(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:07 GMT' }), now), 7);
    assert.equal(retryDelayMs(0, 3600), 60_000);
    assert.equal(retryAfterSeconds(new Headers()), null);
    // Without Retry-After: 0.5 s doubling to at most 8 s, shortened by up to a quarter.
    assert.equal(retryDelayMs(0, null, () => 0), 500);
    assert.equal(retryDelayMs(1, null, () => 1), 750);
    assert.equal(retryDelayMs(10, null, () => 0), 8000);
  });

  test('no answer within timeoutMs is an APITimeoutError after each retry', async () => {
    const fault = await startFaultServer(['hang']);
    try {
      const client = new ConvServe({ baseURL: fault.url, timeoutMs: 200, maxRetries: 1 });
      await assert.rejects(client.presets(), (error) => {
        assert.ok(error instanceof APITimeoutError && error instanceof APIConnectionError);
        assert.equal(error.timeoutMs, 200);
        return true;
      });
      assert.equal(fault.requests.length, 2);
    } finally {
      await fault.stop();
    }
  });

  test('a 2xx answer that is not what the endpoint sends is an APIResponseValidationError', async () => {
    const fault = await startFaultServer([{ status: 200, headers: { 'content-type': 'text/html' }, body: '<html>' }]);
    try {
      const client = new ConvServe({ baseURL: fault.url, maxRetries: 2 });
      await assert.rejects(client.engines(), (error) => error instanceof APIResponseValidationError
        && error.status === 200 && /is http:\/\/127\.0\.0\.1:\d+ a convserve server/.test(error.message));
      await assert.rejects(client.convolve({ input: { array: X }, kernel: [K], format: 'npy' }),
        (error) => error instanceof APIResponseValidationError && /magic string/.test(error.message));
      assert.equal(fault.requests.length, 2);
    } finally {
      await fault.stop();
    }
  });

  test('a refused connection is an APIConnectionError', async () => {
    const fault = await startFaultServer([{ status: 200, body: {} }]);
    await fault.stop();
    const client = new ConvServe({ baseURL: fault.url, maxRetries: 0 });
    await assert.rejects(client.health(), (error) => error instanceof APIConnectionError
      && !(error instanceof APITimeoutError) && error.message.startsWith(`could not reach ${fault.url}`));
  });

  test('aborting the signal cancels a request in flight', async () => {
    const controller = new AbortController();
    const fault = await startFaultServer(['hang'], { onRequest: () => controller.abort() });
    try {
      const client = new ConvServe({ baseURL: fault.url, maxRetries: 2 });
      await assert.rejects(client.convolve({ image: cameraPng, preset: 'sobel', signal: controller.signal }),
        { name: 'AbortError' });
      assert.equal(fault.requests.length, 1);
    } finally {
      await fault.stop();
    }
  });

  test('aborting the signal cancels the wait before a retry', async () => {
    const controller = new AbortController();
    const fault = await startFaultServer([{ ...unavailable, headers: { 'retry-after': '30' } }],
      { onRequest: () => setTimeout(() => controller.abort(new Error('user left')), 50) });
    try {
      const client = new ConvServe({ baseURL: fault.url, maxRetries: 2 });
      await assert.rejects(client.engines({ signal: controller.signal }), { message: 'user left' });
      assert.equal(fault.requests.length, 1);
    } finally {
      await fault.stop();
    }
  });

  test('an already aborted signal sends nothing', async () => {
    const fault = await startFaultServer([{ status: 200, body: {} }]);
    try {
      const client = new ConvServe({ baseURL: fault.url });
      await assert.rejects(client.health({ signal: AbortSignal.abort() }), { name: 'AbortError' });
      assert.equal(fault.requests.length, 0);
    } finally {
      await fault.stop();
    }
  });

  test('a real convolution cancelled in flight rejects with AbortError', async () => {
    const controller = new AbortController();
    const pending = cs.convolve({ image: chelseaPng, preset: 'sobel', signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    assert.deepEqual(await cs.health(), { status: 'ok' });
  });
});

describe('the package as published', () => {
  // The calls the issue asks the README to show, held to the letter.
  const QUICK_START = `\
import { ConvServe, APIStatusError } from "convserve-client";
const cs = new ConvServe({ baseURL: "http://localhost:8000" });
const X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]];
const K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]];
const a = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: "array" });
a.data;                                    // [[[56, 72], [104, 120]]]
const n = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: "npy" });
n.shape; n.data;                           // [1, 2, 2], Float32Array [56, 72, 104, 120]
const j = await cs.convolve({ image: pngBlob, preset: "sobel" });   // format "json" by default
j.shape; j.channels[0].png_base64;         // typed as the OpenAPI ConvolveResponse
try { await cs.convolve({ input: { array: X }, kernel: { weight: [[K[0]]] } }); }
catch (e) { e instanceof APIStatusError; e.status; e.problem.detail; }   // 422, the server's words
`;

  /** The README's quick start, with each bare expression statement recorded as it runs. */
  function instrumented(snippet, url, pngPath) {
    const record = (code) => code.replace(/(?<=^|[;{]\s*)([A-Za-z_$][\w$.[\]]*(?: instanceof \w+)?);/g,
      (_, expr) => `seen.push([${JSON.stringify(expr)}, ${expr}]);`);
    const lines = snippet.trimEnd().split('\n').map((line) => {
      const cut = line.search(/\s\/\/ /);
      return cut < 0 ? line : record(line.slice(0, cut));
    });
    const body = lines.join('\n').replace('"http://localhost:8000"', JSON.stringify(url));
    return `import { readFileSync } from "node:fs";\n${body.split('\n')[0]}\n`
      + 'const seen = [];\n'
      + `const pngBlob = new Blob([readFileSync(${JSON.stringify(pngPath)})], { type: "image/png" });\n`
      + `${body.split('\n').slice(1).join('\n')}\n`
      + 'console.log(JSON.stringify(seen.map(([expr, value]) => [expr, value instanceof Float32Array ? '
      + '{ Float32Array: [...value] } : value])));\n';
  }

  test('the README shows the quick start to the letter', async () => {
    const readme = await readFile(resolve(PACKAGE_DIR, 'README.md'), 'utf8');
    assert.ok(readme.includes(`\`\`\`js\n${QUICK_START}\`\`\``), 'README.md lost the quick start');
    const root = await readFile(resolve(REPO_ROOT, 'README.md'), 'utf8');
    assert.match(root, /clients\/python/);
    assert.match(root, /clients\/typescript/);
  });

  test('npm pack installs into an empty directory and runs the README there', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'convserve-pack-'));
    try {
      const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'],
        { cwd, encoding: 'utf8', stdio: 'pipe' });
      const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], PACKAGE_DIR));
      const files = packed[0].files.map((f) => f.path).sort();
      assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts'), files.join(', '));
      assert.ok(files.every((f) => f.startsWith('dist/') || ['README.md', 'package.json'].includes(f)), files.join(', '));
      const app = join(dir, 'app');
      await mkdir(app);
      await writeFile(join(app, 'package.json'), '{"name": "app", "private": true, "type": "module"}\n');
      npm(['install', '--offline', join(dir, packed[0].filename)], app);
      await writeFile(join(app, 'readme.mjs'),
        instrumented(QUICK_START, service.url, resolve(REPO_ROOT, 'tests', 'data', 'chelsea.png')));
      const out = execFileSync(process.execPath, ['readme.mjs'], {
        cwd: app, encoding: 'utf8', env: { ...process.env, CONVSERVE_API_KEY: KEY },
      });
      const seen = Object.fromEntries(JSON.parse(out));
      assert.deepEqual(Object.keys(seen), ['a.data', 'n.shape', 'n.data', 'j.shape', 'j.channels[0].png_base64',
        'e instanceof APIStatusError', 'e.status', 'e.problem.detail']);
      assert.deepEqual(seen['a.data'], [[[56, 72], [104, 120]]]);
      assert.deepEqual(seen['n.shape'], [1, 2, 2]);
      assert.deepEqual(seen['n.data'], { Float32Array: [56, 72, 104, 120] });
      assert.deepEqual(seen['j.shape'], [2, 300, 451]);
      assert.ok(seen['j.channels[0].png_base64'].startsWith('iVBORw0KGgo'));
      assert.equal(seen['e instanceof APIStatusError'], true);
      assert.equal(seen['e.status'], 422);
      assert.equal(seen['e.problem.detail'], 'weight.shape=(1, 1, 2, 2) needs C_in//groups=2 for x.shape=(1, 2, 3, 3), groups=1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('npy', () => {
  test('encodeNpy writes the bytes NumPy writes, and decodeNpy reads them back', async () => {
    const { execFileSync: run } = await import('node:child_process');
    const python = process.env.CONVSERVE_PYTHON ?? resolve(REPO_ROOT, '.venv', 'bin', 'python');
    const numpy = run(python, ['-c', 'import io, sys, numpy as np; b = io.BytesIO(); '
      + 'np.save(b, np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8); sys.stdout.buffer.write(b.getvalue())']);
    const ours = new Uint8Array(await encodeNpy({ data: Float32Array.from({ length: 24 }, (_, i) => i / 8), shape: [2, 3, 4] }).arrayBuffer());
    assert.deepEqual(ours, new Uint8Array(numpy));
    const back = decodeNpy(ours.buffer);
    assert.deepEqual(back.shape, [2, 3, 4]);
    assert.equal(back.data[23], 23 / 8);
  });
});
