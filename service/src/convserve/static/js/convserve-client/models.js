/**
 * The calls of the model endpoints (`/v1/models`): uploading and listing ONNX models, and their
 * feature maps, explanations and kernels. `ConvServe`'s model methods send these.
 */
import { withPng } from './calls.js';
import { requestBody } from './inputs.js';
import { decodeNpy } from './npy.js';
/** `/v1/models/{id}`, the id percent-encoded (an id is 32 hex digits; anything else is a 404). */
export function modelPath(id) {
    if (typeof id !== 'string' || id === '')
        throw new TypeError('the model id must be a non-empty string');
    return `/v1/models/${encodeURIComponent(id)}`;
}
async function json(response) {
    return await response.json();
}
/** The answer of an upload: the model, with `created_now` (201) added, not enumerable. */
async function uploaded(response) {
    const model = await json(response);
    Object.defineProperty(model, 'created_now', { value: response.status === 201 });
    return model;
}
export function uploadModelCall(file, options) {
    const { inputSize, filename, ...request } = options;
    let blob;
    if (file instanceof Blob)
        blob = file;
    else if (file instanceof ArrayBuffer)
        blob = new Blob([file]);
    else if (file instanceof Uint8Array)
        blob = new Blob([file]);
    else
        throw new TypeError('the model must be a Blob, File, ArrayBuffer or Uint8Array of an .onnx file');
    const form = new FormData();
    const name = filename ?? (typeof File !== 'undefined' && blob instanceof File ? blob.name : 'model.onnx');
    form.append('model', blob, name);
    if (inputSize !== undefined) {
        if (inputSize.length !== 2 || !inputSize.every((n) => Number.isInteger(n) && n > 0)) {
            throw new RangeError(`inputSize must be [H, W] with positive integers, not [${inputSize.join(', ')}]`);
        }
        form.append('input_size', inputSize.join(','));
    }
    return { method: 'POST', path: '/v1/models', body: { body: form }, options: request, parse: uploaded };
}
export function sampleModelCall(options) {
    return { method: 'POST', path: '/v1/models/sample', options, parse: uploaded };
}
export function modelsCall(options) {
    return {
        method: 'GET', path: '/v1/models', options,
        parse: async (response) => (await json(response)).models,
    };
}
export function modelCall(id, options) {
    return { method: 'GET', path: modelPath(id), options, parse: (json) };
}
export function deleteModelCall(id, options) {
    return { method: 'DELETE', path: modelPath(id), options, parse: async () => undefined };
}
export function featuresCall(id, params) {
    const { image, input, filename, signal, timeoutMs, layers, format, ...fields } = params;
    const wanted = Array.isArray(layers) ? [...layers] : [layers];
    if (wanted.length === 0)
        throw new TypeError('layers must name at least one layer (a name or a row index)');
    const fmt = (format ?? 'json');
    return {
        method: 'POST',
        path: `${modelPath(id)}/features`,
        // In multipart, `layers` and an object `preprocess` go as JSON text (the server parses it).
        body: requestBody(image, input, { ...fields, layers: wanted, format: fmt }, filename),
        options: { signal, timeoutMs },
        parse: async (response) => {
            if (fmt === 'json') {
                const data = await json(response);
                const maps = data.layers.map((layer) => ({ ...layer, channels: layer.channels.map(withPng) }));
                return { ...data, layers: maps };
            }
            if (fmt === 'npy')
                return decodeNpy(await response.arrayBuffer());
            return await response.blob();
        },
    };
}
export function modelExplainCall(id, params) {
    const { image, input, filename, signal, timeoutMs, at, ...fields } = params;
    const where = Array.isArray(at) ? { channel: at[0], y: at[1], x: at[2] } : at;
    return {
        method: 'POST',
        path: `${modelPath(id)}/explain`,
        body: requestBody(image, input, { ...fields, at: where }, filename),
        options: { signal, timeoutMs },
        parse: (json),
    };
}
export function modelKernelCall(id, layer, options) {
    if (typeof layer === 'number' && !(Number.isInteger(layer) && layer >= 0)) {
        throw new RangeError(`a layer index must be an integer >= 0, not ${layer}`);
    }
    if (layer === '')
        throw new TypeError('the layer name must not be empty');
    // Exporters' names hold '/' and ':' (e.g. /features/features.0/Conv_output_0): encoded, the
    // name stays one path segment.
    return {
        method: 'GET',
        path: `${modelPath(id)}/layers/${encodeURIComponent(String(layer))}/kernel`,
        options,
        parse: (json),
    };
}
