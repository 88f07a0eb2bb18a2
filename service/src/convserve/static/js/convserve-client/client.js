/**
 * `ConvServe`: one method per endpoint, over the platform's `fetch`.
 *
 * Every endpoint is a pure function of its inputs, so any call may be retried: after a
 * connection error or timeout, and after 408, 429, 502, 503 and 504 (except a 504 that says the
 * computation itself outlived the server's budget, which would only time out again). The wait
 * is the server's `Retry-After` when it sends one, else exponential backoff with jitter.
 */
import { APIConnectionError, APIResponseValidationError, APITimeoutError, parseProblem, statusError, } from './errors.js';
import { withPng } from './calls.js';
import { kernelJson, requestBody } from './inputs.js';
import { deleteModelCall, featuresCall, modelCall, modelExplainCall, modelKernelCall, modelsCall, sampleModelCall, uploadModelCall, } from './models.js';
import { decodeNpy } from './npy.js';
/** Defaults, in one place: where to connect, how long to wait, how to retry. */
export const DEFAULT_BASE_URL = 'http://localhost:8000';
/** A large image through a large kernel bank can take seconds. Per attempt. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Retries after the first attempt (so at most three requests per call). */
export const DEFAULT_MAX_RETRIES = 2;
/** Milliseconds before the first retry; doubles with each further retry. */
export const INITIAL_RETRY_DELAY_MS = 500;
/** Longest backoff between two attempts when the server gives no Retry-After. */
export const MAX_RETRY_DELAY_MS = 8_000;
/** Backoff delays are shortened by a random fraction up to this, so clients spread out. */
export const RETRY_JITTER = 0.25;
/** Longest wait a server's Retry-After may impose; a longer one is cut to this. */
export const MAX_RETRY_AFTER_MS = 60_000;
/** Statuses that say "try again later": rate limited, overloaded, or a gateway in between. */
export const RETRY_STATUSES = new Set([408, 429, 502, 503, 504]);
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
/** Seconds a `Retry-After` (delay or HTTP date) or `Retry-After-Ms` header asks for, or null. */
export function retryAfterSeconds(headers, now = Date.now()) {
    const millis = headers.get('retry-after-ms');
    if (millis !== null && Number.isFinite(Number(millis)) && millis.trim() !== '') {
        return Math.max(0, Number(millis) / 1000);
    }
    const value = headers.get('retry-after');
    if (value === null || value.trim() === '')
        return null;
    if (Number.isFinite(Number(value)))
        return Math.max(0, Number(value));
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(0, (when - now) / 1000);
}
/** Milliseconds to wait before retry number `retriesDone + 1` (see the module comment). */
export function retryDelayMs(retriesDone, retryAfter, rand = Math.random) {
    if (retryAfter !== null)
        return Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS);
    const backoff = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** retriesDone, MAX_RETRY_DELAY_MS);
    return backoff * (1 - RETRY_JITTER * rand());
}
function env(name) {
    const proc = globalThis.process;
    return proc?.env?.[name] || undefined;
}
function abortReason(signal) {
    return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}
/** Resolve after `ms`, or reject with the signal's reason when it aborts first. */
function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(abortReason(signal));
            return;
        }
        const onAbort = () => {
            clearTimeout(timer);
            reject(abortReason(signal));
        };
        const timer = setTimeout(() => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
        }, ms);
        signal?.addEventListener('abort', onAbort, { once: true });
    });
}
/** The convolution options as request fields (`kernel` converted to nested lists). */
function convFields(options) {
    const { kernel, preset, preset_params: presetParams, stride, padding, dilation, groups, padding_mode: paddingMode, engine, device, color_mode: colorMode } = options;
    return {
        kernel: kernel === undefined ? undefined : kernelJson(kernel),
        preset,
        preset_params: presetParams && Object.keys(presetParams).length ? presetParams : undefined,
        stride,
        padding,
        dilation,
        groups,
        padding_mode: paddingMode,
        engine,
        device,
        color_mode: colorMode,
    };
}
export class ConvServe {
    baseURL;
    apiKey;
    timeoutMs;
    maxRetries;
    headers;
    fetchImpl;
    constructor(options = {}) {
        const url = options.baseURL ?? env('CONVSERVE_URL') ?? DEFAULT_BASE_URL;
        let parsed;
        try {
            parsed = new URL(url);
        }
        catch {
            throw new TypeError(`baseURL must be an http:// or https:// URL, not ${JSON.stringify(url)}`);
        }
        if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
            throw new TypeError(`baseURL must be an http:// or https:// URL, not ${JSON.stringify(url)}`);
        }
        const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
        if (!Number.isInteger(maxRetries) || maxRetries < 0) {
            throw new RangeError(`maxRetries must be an integer >= 0, not ${maxRetries}`);
        }
        const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
        if (!(timeoutMs > 0))
            throw new RangeError(`timeoutMs must be > 0, not ${timeoutMs}`);
        this.baseURL = url.replace(/\/+$/, '');
        this.apiKey = options.apiKey === undefined ? env('CONVSERVE_API_KEY') ?? null : options.apiKey;
        this.timeoutMs = timeoutMs;
        this.maxRetries = maxRetries;
        this.headers = { ...(options.headers ?? {}) };
        this.fetchImpl = options.fetch ?? ((...args) => globalThis.fetch(...args));
    }
    // --- endpoints ---------------------------------------------------------------------------
    /**
     * One convolution layer over one image: `POST /v1/convolve`.
     *
     * With `image` the request goes as multipart, with `input` as JSON. The answer depends on
     * `format`: json (default) the generated `ConvolveResponse` with `png()` per channel; array
     * the same plus `data` (C_out, H_out, W_out) as nested lists; npy `{ data, shape }`; png,
     * image, grid and zip a `Blob`.
     */
    convolve(params) {
        const { image, input, filename, signal, timeoutMs, format, normalize, channel, dry_run: dryRun, ...options } = params;
        const fmt = (format ?? 'json');
        const fields = { ...convFields(options), format: fmt, normalize, channel, dry_run: dryRun || undefined };
        return this.send({
            method: 'POST',
            path: '/v1/convolve',
            body: requestBody(image, input, fields, filename),
            options: { signal, timeoutMs },
            parse: async (response) => {
                if (fmt === 'json') {
                    const data = await response.json();
                    return { ...data, channels: (data.channels ?? []).map(withPng) };
                }
                if (fmt === 'array')
                    return await response.json();
                if (fmt === 'npy')
                    return decodeNpy(await response.arrayBuffer());
                return await response.blob();
            },
        });
    }
    /** The arithmetic behind one output value: `POST /v1/explain`. */
    explain(params) {
        const { image, input, filename, signal, timeoutMs, at, ...options } = params;
        const where = Array.isArray(at) ? { channel: at[0], y: at[1], x: at[2] } : at;
        return this.send({
            method: 'POST',
            path: '/v1/explain',
            body: requestBody(image, input, { ...convFields(options), at: where }, filename),
            options: { signal, timeoutMs },
            parse: async (response) => await response.json(),
        });
    }
    /**
     * A stack of layers (conv2d, activations, pooling): `POST /v1/layers`. format json (default)
     * answers the generated `LayersResponse`, npy the last layer's maps, zip and onnx a `Blob`.
     * `kernelFile` sends a weight file whose tensors conv2d entries name with `kernel_key`.
     */
    layers(params) {
        const { image, input, filename, signal, timeoutMs, format, kernelFile, ...fields } = params;
        const fmt = (format ?? 'json');
        const files = kernelFile === undefined ? {} : { kernel_file: kernelFile };
        return this.send({
            method: 'POST',
            path: '/v1/layers',
            body: requestBody(image, input, { ...fields, format: fmt, dry_run: fields.dry_run || undefined }, filename, files),
            options: { signal, timeoutMs },
            parse: async (response) => {
                if (fmt === 'json')
                    return await response.json();
                if (fmt === 'npy')
                    return decodeNpy(await response.arrayBuffer());
                return await response.blob();
            },
        });
    }
    /** Every named kernel: `GET /v1/presets`. */
    presets(options = {}) {
        return this.send({
            method: 'GET',
            path: '/v1/presets',
            options,
            parse: async (response) => (await response.json()).presets,
        });
    }
    /**
     * A preset resolved for `channels` input channels (default 3), with its parameters:
     * `GET /v1/presets/{name}`.
     */
    preset(name, params = {}) {
        const { channels, params: values, ...options } = params;
        const query = {};
        if (channels !== undefined)
            query.channels = String(channels);
        for (const [key, value] of Object.entries(values ?? {}))
            query[key] = String(value);
        return this.send({
            method: 'GET',
            path: `/v1/presets/${encodeURIComponent(name)}`,
            query,
            options,
            parse: async (response) => await response.json(),
        });
    }
    /** The engines and devices this server has, and which are usable: `GET /v1/engines`. */
    engines(options = {}) {
        return this.send({
            method: 'GET', path: '/v1/engines', options,
            parse: async (response) => await response.json(),
        });
    }
    /**
     * The server's effective limits (upload bytes, pixels, kernel size, channels, MACs, ...), each
     * with the environment variable that sets it in `env`: `GET /v1/limits`.
     */
    limits(options = {}) {
        return this.send({
            method: 'GET', path: '/v1/limits', options,
            parse: async (response) => await response.json(),
        });
    }
    /** Liveness: `GET /healthz`. */
    health(options = {}) {
        return this.send({
            method: 'GET', path: '/healthz', options,
            parse: async (response) => await response.json(),
        });
    }
    /** Readiness: `GET /readyz`; not ready (503) resolves with `ready: false`, never retried. */
    ready(options = {}) {
        return this.send({
            method: 'GET',
            path: '/readyz',
            options,
            retry: false,
            accept: new Set([503]),
            parse: async (response) => {
                const data = await response.json();
                if (response.status === 503) {
                    return {
                        ready: false,
                        status: String(data.title ?? 'not ready'),
                        detail: String(data.detail ?? ''),
                        retryAfter: retryAfterSeconds(response.headers),
                    };
                }
                return { ...data, ready: true, status: String(data.status ?? 'ready') };
            },
        });
    }
    // --- models ------------------------------------------------------------------------------
    /**
     * Upload an ONNX model (multipart): `POST /v1/models`. Resolves with the model and its layer
     * table; `created_now` says whether this upload stored it (the same file has the same id).
     */
    uploadModel(file, options = {}) {
        return this.send(uploadModelCall(file, options));
    }
    /** Store the demo page's sample network (the Keras reference CNN): `POST /v1/models/sample`. */
    sampleModel(options = {}) {
        return this.send(sampleModelCall(options));
    }
    /** Every stored model, without layer tables, oldest first: `GET /v1/models`. */
    models(options = {}) {
        return this.send(modelsCall(options));
    }
    /** A stored model with its layer table: `GET /v1/models/{id}`. */
    model(id, options = {}) {
        return this.send(modelCall(id, options));
    }
    /** Delete a stored model: `DELETE /v1/models/{id}` (a `NotFoundError` when there is none). */
    deleteModel(id, options = {}) {
        return this.send(deleteModelCall(id, options));
    }
    /**
     * Feature maps of layers of a model for one input: `POST /v1/models/{id}/features`. format
     * json (default) answers the generated `FeaturesResponse` with `png()` per channel; npy one
     * layer's (C, H, W) maps as `{ data, shape }`; zip and grid a `Blob`.
     */
    features(id, params) {
        return this.send(featuresCall(id, params));
    }
    /** The arithmetic of one output element of a model's Conv layer: `POST /v1/models/{id}/explain`. */
    modelExplain(id, params) {
        return this.send(modelExplainCall(id, params));
    }
    /**
     * A Conv layer's weights and geometry, ready for `convolve`: `GET
     * /v1/models/{id}/layers/{name}/kernel`. `layer` is its output name (sent percent-encoded)
     * or its row index.
     */
    modelKernel(id, layer, options = {}) {
        return this.send(modelKernelCall(id, layer, options));
    }
    /**
     * Any request this client does not wrap, with its retries and errors: resolves with the
     * `Response` of a 2xx answer, throws the `APIStatusError` subclass otherwise.
     */
    request(method, path, init = {}) {
        const { body, contentType, query, ...options } = init;
        return this.send({
            method,
            path,
            query,
            body: body === undefined ? undefined : { body, contentType },
            options,
            parse: async (response) => response,
        });
    }
    // --- sending -----------------------------------------------------------------------------
    url(path, query) {
        const search = query && Object.keys(query).length ? `?${new URLSearchParams(query)}` : '';
        return `${this.baseURL}${path}${search}`;
    }
    requestHeaders(contentType) {
        const headers = {
            Accept: 'application/json, application/problem+json;q=0.9, */*;q=0.8',
        };
        if (this.apiKey)
            headers.Authorization = `Bearer ${this.apiKey}`;
        if (contentType)
            headers['Content-Type'] = contentType;
        return { ...headers, ...this.headers };
    }
    async send(call) {
        const { signal } = call.options ?? {};
        const timeoutMs = call.options?.timeoutMs ?? this.timeoutMs;
        const maxRetries = call.retry === false ? 0 : this.maxRetries;
        const info = { method: call.method, url: this.url(call.path, call.query) };
        for (let retriesDone = 0;; retriesDone += 1) {
            if (signal?.aborted)
                throw abortReason(signal);
            const attempt = await this.attempt(call, info, timeoutMs, signal);
            if (attempt.ok)
                return attempt.value;
            const error = attempt.error;
            if (retriesDone >= maxRetries || !attempt.retryable)
                throw error;
            const retryAfter = 'retryAfter' in error && typeof error.retryAfter === 'number' ? error.retryAfter : null;
            await sleep(retryDelayMs(retriesDone, retryAfter), signal);
        }
    }
    /** One request: its value, or the error and whether a retry may help. */
    async attempt(call, info, timeoutMs, signal) {
        // One controller per attempt, aborted by the caller's signal or by the timeout; the
        // timeout covers the whole answer, body included.
        const controller = new AbortController();
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            controller.abort();
        }, timeoutMs);
        const forward = () => controller.abort(signal?.reason);
        signal?.addEventListener('abort', forward, { once: true });
        const failed = (cause) => {
            if (signal?.aborted)
                throw abortReason(signal);
            if (timedOut) {
                const error = new APITimeoutError(info, timeoutMs);
                return { ok: false, error, retryable: true };
            }
            const where = new URL(info.url).origin;
            // undici's "fetch failed" hides the reason (ECONNREFUSED, ...) in its cause.
            const inner = cause instanceof Error && cause.cause instanceof Error ? cause.cause : cause;
            const reason = inner instanceof Error ? inner.message : String(inner);
            return {
                ok: false,
                error: new APIConnectionError(`could not reach ${where}: ${reason}`, info, { cause }),
                retryable: true,
            };
        };
        try {
            let response;
            try {
                response = await this.fetchImpl(info.url, {
                    method: call.method,
                    headers: this.requestHeaders(call.body?.contentType),
                    body: call.body?.body,
                    signal: controller.signal,
                });
            }
            catch (cause) {
                return failed(cause);
            }
            // The whole body is read here, under the timeout, so that a failure while reading it is
            // a connection error (retried) and a failure to parse it is a validation error (not).
            let body;
            try {
                body = await response.arrayBuffer();
            }
            catch (cause) {
                return failed(cause);
            }
            if (!response.ok && !call.accept?.has(response.status)) {
                const problem = parseProblem(response.status, response.statusText, new TextDecoder().decode(body));
                const error = statusError(response.status, problem, response.headers, info, retryAfterSeconds(response.headers));
                const computeTimeout = response.status === 504 && problem.type.endsWith('/compute-timeout');
                return { ok: false, error, retryable: RETRY_STATUSES.has(response.status) && !computeTimeout };
            }
            const { status, statusText, headers } = response;
            // A Response with a body may not have a null-body status (DELETE's 204).
            const read = new Response(NULL_BODY_STATUSES.has(status) ? null : body, { status, statusText, headers });
            try {
                return { ok: true, value: await call.parse(read) };
            }
            catch (cause) {
                throw new APIResponseValidationError(`${call.method} ${call.path} answered ${response.status} with a body this client cannot `
                    + `read (${cause instanceof Error ? cause.message : String(cause)}); is ${this.baseURL} a `
                    + 'convserve server of a compatible version?', info, response.status, { cause });
            }
        }
        finally {
            clearTimeout(timer);
            signal?.removeEventListener('abort', forward);
        }
    }
}
