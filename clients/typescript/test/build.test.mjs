// What is committed matches what the tools make now: the types generated from the OpenAPI
// document (src/openapi.ts) and the compiled copy the demo page serves. No server needed.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

import { APIStatusError, InternalServerError, statusError } from '../dist/index.js';
import { PACKAGE_DIR, REPO_ROOT } from './support/servers.mjs';

const BIN = join(PACKAGE_DIR, 'node_modules', '.bin');
const STATIC_COPY = resolve(REPO_ROOT, 'service', 'src', 'convserve', 'static', 'js', 'convserve-client');
let tmp;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'convserve-client-'));
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function run(command, args) {
  return execFileSync(join(BIN, command), args, { cwd: PACKAGE_DIR, encoding: 'utf8', stdio: 'pipe' });
}

test('src/openapi.ts is what openapi-typescript makes of openapi/openapi.json', async () => {
  const fresh = join(tmp, 'openapi.ts');
  const generate = JSON.parse(await readFile(join(PACKAGE_DIR, 'package.json'), 'utf8')).scripts.generate;
  const args = generate.split(' ').slice(1).map((arg) => (arg === 'src/openapi.ts' ? fresh : arg));
  run('openapi-typescript', args);
  const committed = await readFile(join(PACKAGE_DIR, 'src', 'openapi.ts'), 'utf8');
  assert.ok(committed === await readFile(fresh, 'utf8'),
    'src/openapi.ts is stale: run `npm run generate` in clients/typescript (after `make openapi`)');
});

test("the demo page's copy of the client is a fresh build of src/", async () => {
  const out = join(tmp, 'static');
  run('tsc', ['-p', 'tsconfig.static.json', '--outDir', out]);
  const built = (await readdir(out)).sort();
  assert.deepEqual((await readdir(STATIC_COPY)).sort(), built,
    'the files differ: run `npm run build` in clients/typescript');
  for (const name of built) {
    assert.ok(await readFile(join(out, name), 'utf8') === await readFile(join(STATIC_COPY, name), 'utf8'),
      `${name} differs from a fresh build: run \`npm run build\` in clients/typescript`);
  }
});

test('every error status the OpenAPI document lists has its own error class', async () => {
  const document = JSON.parse(await readFile(resolve(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8'));
  const statuses = new Set();
  for (const operations of Object.values(document.paths)) {
    for (const operation of Object.values(operations)) {
      for (const code of Object.keys(operation.responses ?? {})) if (Number(code) >= 400) statuses.add(Number(code));
    }
  }
  assert.ok(statuses.has(422) && statuses.has(503), [...statuses].join(', '));
  for (const status of statuses) {
    const problem = { type: 'about:blank', title: 'T', status, detail: 'D' };
    const error = statusError(status, problem, new Headers(), { method: 'GET', url: 'http://x/' }, null);
    assert.ok(error instanceof APIStatusError);
    assert.ok(![APIStatusError, InternalServerError].includes(error.constructor),
      `status ${status} is documented but maps to ${error.constructor.name}: add a subclass in src/errors.ts`);
  }
});
