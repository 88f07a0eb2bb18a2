// The HTTP API as this page uses it: fetch with problem+json errors turned into ApiError.
// Paths are relative ("v1/convolve"), so the page also works behind a path prefix.

/** A failed request: `problem` is the RFC 9457 body ({type, title, status, detail, errors}). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/** A mistake found before anything is sent (a weight cell that is not a number). */
export class ClientError extends Error {
  constructor(field, message) {
    super(message);
    this.name = 'ClientError';
    this.problem = { title: 'Invalid input', detail: message, errors: [{ field, message }] };
  }
}

/**
 * fetch() that resolves with an ok Response or throws ApiError; an abort rethrows AbortError.
 * @param {string} path relative URL such as "v1/convolve"
 * @param {{method?: string, body?: BodyInit, signal?: AbortSignal}} [options]
 */
export async function request(path, { method = 'GET', body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, {
      title: 'Network error',
      detail: `could not reach the service (${err.message}); is it still running?`,
    });
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText, detail: `HTTP ${response.status} ${response.statusText}` };
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

/** GET or POST and parse the JSON answer. */
export async function requestJson(path, options) {
  const response = await request(path, options);
  return response.json();
}

/**
 * Multipart body for /v1/convolve and /v1/explain.
 * @param {{blob: Blob, name: string}} image
 * @param {Array<[string, string]>} fields
 */
export function multipart(image, fields) {
  const form = new FormData();
  form.append('image', image.blob, image.name);
  for (const [name, value] of fields) form.append(name, value);
  return form;
}

/** The file name a response suggests in Content-Disposition, or `fallback`. */
export function suggestedFilename(response, fallback) {
  const header = response.headers.get('Content-Disposition') || '';
  const match = /filename="?([^";]+)"?/i.exec(header);
  return match ? match[1] : fallback;
}
