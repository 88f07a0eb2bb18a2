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
export class ConvServeError extends Error {
    name = 'ConvServeError';
}
export class APIError extends ConvServeError {
    name = 'APIError';
    request;
    constructor(message, request, options) {
        super(message, options);
        this.request = request;
    }
}
export class APIConnectionError extends APIError {
    name = 'APIConnectionError';
}
export class APITimeoutError extends APIConnectionError {
    name = 'APITimeoutError';
    timeoutMs;
    constructor(request, timeoutMs) {
        super(`${request.method} ${request.url} got no answer within ${timeoutMs / 1000} s`, request);
        this.timeoutMs = timeoutMs;
    }
}
export class APIResponseValidationError extends APIError {
    name = 'APIResponseValidationError';
    status;
    constructor(message, request, status, options) {
        super(message, request, options);
        this.status = status;
    }
}
export class APIStatusError extends APIError {
    name = 'APIStatusError';
    status;
    problem;
    headers;
    /** The server's `X-Request-ID`, to find the request in its logs. */
    requestId;
    /** Seconds the server asked to wait (`Retry-After`), when it said. */
    retryAfter;
    constructor(status, problem, headers, request, retryAfter = null) {
        super(`${status} ${problem.title}: ${problem.detail}`, request);
        this.status = status;
        this.problem = problem;
        this.headers = headers;
        this.requestId = headers.get('x-request-id');
        this.retryAfter = retryAfter;
    }
    get title() {
        return this.problem.title;
    }
    get detail() {
        return this.problem.detail;
    }
    get errors() {
        return this.problem.errors ?? [];
    }
}
export class BadRequestError extends APIStatusError {
    name = 'BadRequestError';
}
/** 401: the server wants an API key (`apiKey`) or a valid one. */
export class AuthenticationError extends APIStatusError {
    name = 'AuthenticationError';
}
export class PermissionDeniedError extends APIStatusError {
    name = 'PermissionDeniedError';
}
/** 404: unknown preset or path (is `baseURL` right?). */
export class NotFoundError extends APIStatusError {
    name = 'NotFoundError';
}
/** 413: the upload or decoded image is over the server's limit (named in `detail`). */
/** 408: the request body did not arrive within the server's CONVSERVE_BODY_TIMEOUT_S. */
export class RequestTimeoutError extends APIStatusError {
    name = 'RequestTimeoutError';
}
export class PayloadTooLargeError extends APIStatusError {
    name = 'PayloadTooLargeError';
}
export class UnsupportedMediaTypeError extends APIStatusError {
    name = 'UnsupportedMediaTypeError';
}
/** 422: the kernel, an option or the input is invalid; `errors` names the fields. */
export class UnprocessableEntityError extends APIStatusError {
    name = 'UnprocessableEntityError';
}
export class RateLimitError extends APIStatusError {
    name = 'RateLimitError';
}
export class InternalServerError extends APIStatusError {
    name = 'InternalServerError';
}
/** 503: the server is overloaded or not ready yet; it sends `Retry-After`. */
export class ServiceUnavailableError extends InternalServerError {
    name = 'ServiceUnavailableError';
}
export class GatewayTimeoutError extends InternalServerError {
    name = 'GatewayTimeoutError';
}
const BY_STATUS = {
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
export function parseProblem(status, statusText, body) {
    try {
        const data = JSON.parse(body);
        if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
            const record = data;
            if (typeof record.title === 'string' || typeof record.detail === 'string') {
                const title = typeof record.title === 'string' ? record.title : statusText || `HTTP ${status}`;
                return {
                    ...record,
                    type: typeof record.type === 'string' ? record.type : 'about:blank',
                    title,
                    status: typeof record.status === 'number' ? record.status : status,
                    detail: typeof record.detail === 'string' ? record.detail : title,
                    errors: Array.isArray(record.errors) ? record.errors : null,
                };
            }
        }
    }
    catch {
        // Not JSON (a proxy's HTML page): fall through to a problem made from the status.
    }
    const title = statusText || `HTTP ${status}`;
    const text = body.trim().slice(0, 200);
    return { type: 'about:blank', title, status, detail: text ? `${title}: ${text}` : title, errors: null };
}
/** The `APIStatusError` subclass for `status`, carrying its problem. */
export function statusError(status, problem, headers, request, retryAfter) {
    const cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
    return new cls(status, problem, headers, request, retryAfter);
}
