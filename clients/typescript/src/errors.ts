/**
 * Every error the client throws, as one tree (the Python client's, class for class):
 *
 *     ConvServeError                      base of everything below
 *     └── APIError                        something went wrong talking to the server
 *         ├── APIConnectionError          no answer: refused, reset, DNS, TLS (retried)
 *         │   └── APITimeoutError         no answer within timeoutMs (retried)
 *         ├── APIResponseValidationError  a 2xx answer this client cannot read
 *         └── APIStatusError              a 4xx/5xx answer; carries status, problem, headers
 *             ├── BadRequestError              400
 *             ├── AuthenticationError          401  missing or wrong API key
 *             ├── PermissionDeniedError        403
 *             ├── NotFoundError                404  e.g. unknown preset
 *             ├── RequestTimeoutError          408  the body arrived too slowly (retried)
 *             ├── PayloadTooLargeError         413  upload over CONVSERVE_MAX_UPLOAD_BYTES
 *             ├── UnsupportedMediaTypeError    415
 *             ├── UnprocessableEntityError     422  invalid kernel, option or input
 *             ├── RateLimitError               429  (retried)
 *             └── InternalServerError          5xx
 *                 ├── ServiceUnavailableError  503  overloaded or not ready (retried)
 *                 └── GatewayTimeoutError      504  (retried unless the computation itself
 *                                                   outlived the server's budget)
 *
 * A status error's `problem` is the server's RFC 9457 body (`type`, `title`, `detail` with the
 * numbers involved, `errors` per field), so `String(error)` reads like
 * `422 Invalid argument: kernel.weight has shape (2, 2); OIHW needs 4 axes ...`.
 * A call cancelled through its `signal` rejects with the signal's reason (an `AbortError`
 * DOMException unless the caller gave another), as `fetch` does. Arguments this client cannot
 * even send (a ragged array, a kernel without a shape) throw `TypeError` or `RangeError` before
 * any request is made.
 */

import type { components } from './openapi.js';

/** One entry of a problem's `errors`: the request field and what is wrong with it. */
export interface FieldError {
  field?: string;
  message?: string;
  [key: string]: unknown;
}

/** The RFC 9457 body of every 4xx/5xx answer. */
export type Problem = Omit<components['schemas']['Problem'], 'errors'> & {
  errors?: FieldError[] | null;
};

/** The request a failure belongs to (the last attempt). */
export interface RequestInfo {
  method: string;
  url: string;
}

export class ConvServeError extends Error {
  override name = 'ConvServeError';
}

export class APIError extends ConvServeError {
  override name = 'APIError';
  readonly request: RequestInfo;

  constructor(message: string, request: RequestInfo, options?: { cause?: unknown }) {
    super(message, options);
    this.request = request;
  }
}

export class APIConnectionError extends APIError {
  override name = 'APIConnectionError';
}

export class APITimeoutError extends APIConnectionError {
  override name = 'APITimeoutError';
  readonly timeoutMs: number;

  constructor(request: RequestInfo, timeoutMs: number) {
    super(`${request.method} ${request.url} got no answer within ${timeoutMs / 1000} s`, request);
    this.timeoutMs = timeoutMs;
  }
}

export class APIResponseValidationError extends APIError {
  override name = 'APIResponseValidationError';
  readonly status: number;

  constructor(message: string, request: RequestInfo, status: number, options?: { cause?: unknown }) {
    super(message, request, options);
    this.status = status;
  }
}

export class APIStatusError extends APIError {
  override name = 'APIStatusError';
  readonly status: number;
  readonly problem: Problem;
  readonly headers: Headers;
  /** The server's `X-Request-ID`, to find the request in its logs. */
  readonly requestId: string | null;
  /** Seconds the server asked to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | null;

  constructor(status: number, problem: Problem, headers: Headers, request: RequestInfo,
    retryAfter: number | null = null) {
    super(`${status} ${problem.title}: ${problem.detail}`, request);
    this.status = status;
    this.problem = problem;
    this.headers = headers;
    this.requestId = headers.get('x-request-id');
    this.retryAfter = retryAfter;
  }

  get title(): string {
    return this.problem.title;
  }

  get detail(): string {
    return this.problem.detail;
  }

  get errors(): FieldError[] {
    return this.problem.errors ?? [];
  }
}

export class BadRequestError extends APIStatusError {
  override name = 'BadRequestError';
}

/** 401: the server wants an API key (`apiKey`) or a valid one. */
export class AuthenticationError extends APIStatusError {
  override name = 'AuthenticationError';
}

export class PermissionDeniedError extends APIStatusError {
  override name = 'PermissionDeniedError';
}

/** 404: unknown preset or path (is `baseURL` right?). */
export class NotFoundError extends APIStatusError {
  override name = 'NotFoundError';
}

/** 413: the upload or decoded image is over the server's limit (named in `detail`). */
/** 408: the request body did not arrive within the server's CONVSERVE_BODY_TIMEOUT_S. */
export class RequestTimeoutError extends APIStatusError {
  override name = 'RequestTimeoutError';
}

export class PayloadTooLargeError extends APIStatusError {
  override name = 'PayloadTooLargeError';
}

export class UnsupportedMediaTypeError extends APIStatusError {
  override name = 'UnsupportedMediaTypeError';
}

/** 422: the kernel, an option or the input is invalid; `errors` names the fields. */
export class UnprocessableEntityError extends APIStatusError {
  override name = 'UnprocessableEntityError';
}

export class RateLimitError extends APIStatusError {
  override name = 'RateLimitError';
}

export class InternalServerError extends APIStatusError {
  override name = 'InternalServerError';
}

/** 503: the server is overloaded or not ready yet; it sends `Retry-After`. */
export class ServiceUnavailableError extends InternalServerError {
  override name = 'ServiceUnavailableError';
}

export class GatewayTimeoutError extends InternalServerError {
  override name = 'GatewayTimeoutError';
}

type StatusErrorClass = new (
  status: number, problem: Problem, headers: Headers, request: RequestInfo, retryAfter?: number | null,
) => APIStatusError;

const BY_STATUS: Record<number, StatusErrorClass> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  408: RequestTimeoutError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  503: ServiceUnavailableError,
  504: GatewayTimeoutError,
};

/** The problem in a 4xx/5xx body, or one made from the status when the body is not one. */
export function parseProblem(status: number, statusText: string, body: string): Problem {
  try {
    const data: unknown = JSON.parse(body);
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
      const record = data as Record<string, unknown>;
      if (typeof record.title === 'string' || typeof record.detail === 'string') {
        const title = typeof record.title === 'string' ? record.title : statusText || `HTTP ${status}`;
        return {
          ...record,
          type: typeof record.type === 'string' ? record.type : 'about:blank',
          title,
          status: typeof record.status === 'number' ? record.status : status,
          detail: typeof record.detail === 'string' ? record.detail : title,
          errors: Array.isArray(record.errors) ? (record.errors as FieldError[]) : null,
        };
      }
    }
  } catch {
    // Not JSON (a proxy's HTML page): fall through to a problem made from the status.
  }
  const title = statusText || `HTTP ${status}`;
  const text = body.trim().slice(0, 200);
  return { type: 'about:blank', title, status, detail: text ? `${title}: ${text}` : title, errors: null };
}

/** The `APIStatusError` subclass for `status`, carrying its problem. */
export function statusError(status: number, problem: Problem, headers: Headers, request: RequestInfo,
  retryAfter: number | null): APIStatusError {
  const cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
  return new cls(status, problem, headers, request, retryAfter);
}
