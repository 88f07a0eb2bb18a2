// Servers for the tests: the real service under uvicorn, and a small local HTTP server that
// produces the faults a healthy service cannot (503 with Retry-After, 429, 502, hangs).

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_ROOT = resolve(PACKAGE_DIR, '..', '..');
export const PYTHON = process.env.CONVSERVE_PYTHON ?? resolve(REPO_ROOT, '.venv', 'bin', 'python');
// A cold start of Python, NumPy, ONNX Runtime and the warm-up on a busy 2-core machine.
const START_TIMEOUT_MS = 90_000;

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Start `python -m uvicorn convserve.main:app` with `env` added to this environment and wait
 * until /readyz answers 200. Returns `{ url, stop, log }`. The sample network is not stored at
 * start-up (CONVSERVE_SAMPLE_MODEL=0) unless `env` asks for it: the tests store it themselves.
 */
export async function startService(env = {}) {
  const port = await freePort();
  const child = spawn(PYTHON, ['-m', 'uvicorn', 'convserve.main:app', '--host', '127.0.0.1',
    '--port', String(port), '--no-access-log'], {
    env: { ...process.env, PYTHONUNBUFFERED: '1', CONVSERVE_SAMPLE_MODEL: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`uvicorn exited with ${child.exitCode}:\n${log.slice(-4000)}`);
    try {
      const response = await fetch(`${url}/readyz`);
      if (response.status === 200) {
        const stop = async () => {
          if (child.exitCode === null) {
            child.kill('SIGTERM');
            await once(child, 'exit');
          }
        };
        return { url, stop, log: () => log };
      }
      last = `${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => { setTimeout(r, 100); });
  }
  child.kill('SIGKILL');
  throw new Error(`${url}/readyz was not 200 after ${START_TIMEOUT_MS} ms (${last}):\n${log.slice(-4000)}`);
}

/**
 * A local server whose answers are scripted: `answers` is a list of
 * `{ status, headers, body }` (or `'hang'` to never answer), used in order, the last repeated.
 * `requests` records each request's method and URL; `onRequest` runs as each arrives.
 */
export async function startFaultServer(answers, { onRequest } = {}) {
  const requests = [];
  const hanging = [];
  const server = createServer((request, response) => {
    requests.push({ method: request.method, url: request.url, headers: request.headers });
    onRequest?.(requests.length);
    request.resume();
    const answer = answers[Math.min(requests.length - 1, answers.length - 1)];
    if (answer === 'hang') {
      hanging.push(response);
      return;
    }
    const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
    response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
    response.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${server.address().port}`;
  const stop = async () => {
    for (const response of hanging) response.destroy();
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  };
  return { url, requests, stop };
}

/** An RFC 9457 body as the service writes it. */
export function problem(status, title, detail, type = `/problems/${title.toLowerCase().replace(/ /g, '-')}`) {
  return { type, title, status, detail };
}
