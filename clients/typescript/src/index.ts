/**
 * convserve-client: a typed client for the convserve convolution API, for browsers and
 * Node 18+, with no runtime dependencies (the platform's fetch, FormData, Blob, AbortSignal).
 *
 *     import { ConvServe } from "convserve-client";
 *     const cs = new ConvServe({ baseURL: "http://localhost:8000" });
 *     const a = await cs.convolve({ input: { array: X }, kernel: { weight: [K] }, format: "array" });
 *     const m = await cs.sampleModel();
 *     const f = await cs.features(m.id, { image: png, layers: ["conv1"], preprocess: { resize: "stretch" } });
 */

export {
  ConvServe, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, INITIAL_RETRY_DELAY_MS,
  MAX_RETRY_AFTER_MS, MAX_RETRY_DELAY_MS, RETRY_JITTER, RETRY_STATUSES, retryAfterSeconds, retryDelayMs,
} from './client.js';
export type { ClientOptions } from './client.js';
export { modelPath } from './models.js';
export {
  APIConnectionError, APIError, APIResponseValidationError, APIStatusError, APITimeoutError,
  AuthenticationError, BadRequestError, ConvServeError, GatewayTimeoutError, InternalServerError,
  NotFoundError, PayloadTooLargeError, PermissionDeniedError, RateLimitError, RequestTimeoutError,
  ServiceUnavailableError, UnprocessableEntityError, UnsupportedMediaTypeError, statusError,
} from './errors.js';
export type { FieldError, Problem, RequestInfo } from './errors.js';
export { decodeNpy, encodeNpy } from './npy.js';
export type { NDArray } from './npy.js';
export type { ArrayInput, ImageSource, KernelInput, NestedNumbers } from './inputs.js';
export type * from './types.js';
export type { components, operations, paths } from './openapi.js';
