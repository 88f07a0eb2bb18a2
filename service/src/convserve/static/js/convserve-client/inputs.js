/** What callers pass (images, arrays, kernels) turned into a JSON or multipart request body. */
/** Flat values in C order and a shape, as nested lists. */
export function nest(values, shape, what) {
    if (shape.length === 0 || shape.some((n) => !Number.isInteger(n) || n < 1)) {
        throw new RangeError(`${what} shape [${shape.join(', ')}] must be positive integers`);
    }
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== values.length) {
        throw new RangeError(`${what} has ${values.length} values but shape [${shape.join(', ')}] holds ${size}`);
    }
    const build = (axis, start) => {
        const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
        return Array.from({ length: shape[axis] }, (_, i) => (axis === shape.length - 1
            ? values[start + i]
            : build(axis + 1, start + i * stride)));
    };
    return build(0, 0);
}
function flatten(nested) {
    const out = [];
    const walk = (value) => {
        if (Array.isArray(value))
            value.forEach(walk);
        else
            out.push(value);
    };
    nested.forEach(walk);
    return out;
}
function isTyped(value) {
    return value instanceof Float32Array || value instanceof Float64Array;
}
/** The JSON `input` field for an array input. */
export function arrayJson(input) {
    const { array, shape } = input;
    if (isTyped(array)) {
        if (!shape)
            throw new TypeError('input.array is a typed array: pass input.shape too, e.g. [3, 64, 64]');
        return { array: nest(array, shape, 'input.array') };
    }
    if (shape)
        return { array: nest(flatten(array), shape, 'input.array') };
    return { array: array };
}
/** The JSON `kernel` field: `{ weight, bias, layout }` with nested lists. */
export function kernelJson(kernel) {
    if (Array.isArray(kernel))
        return { weight: kernel };
    const { weight, shape, bias, layout } = kernel;
    let nested;
    if (isTyped(weight)) {
        if (!shape || shape.length !== 4) {
            throw new TypeError('kernel.weight is a typed array: pass kernel.shape with 4 axes, e.g. [1, 3, 3, 3]');
        }
        nested = nest(weight, shape, 'kernel.weight');
    }
    else {
        nested = weight;
    }
    const out = { weight: nested };
    if (bias !== undefined && bias !== null)
        out.bias = Array.from(bias);
    if (layout !== undefined)
        out.layout = layout;
    return out;
}
/** The image as a Blob (an ArrayBuffer or Uint8Array is wrapped, not copied twice). */
export function toBlob(image) {
    if (image instanceof Blob)
        return image;
    if (image instanceof ArrayBuffer)
        return new Blob([image]);
    if (image instanceof Uint8Array)
        return new Blob([image]);
    throw new TypeError('image must be a Blob, File, ArrayBuffer or Uint8Array of an image file');
}
/** Fields with `undefined` or `null` values left out, so the server applies its defaults. */
export function defined(fields) {
    return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== null));
}
/**
 * A multipart body when there is an image file, otherwise JSON with `input` set.
 * Multipart fields that are not strings go as JSON text, which the server parses back.
 */
export function requestBody(image, input, fields, filename, files = {}) {
    const present = defined(fields);
    if (image !== undefined && input !== undefined)
        throw new TypeError('pass image or input, not both');
    if (image === undefined && Object.keys(files).length > 0) {
        throw new TypeError(`${Object.keys(files).join(', ')} is sent as a file part, which a JSON body cannot carry: pass image (a file)`);
    }
    if (image !== undefined) {
        const form = new FormData();
        const blob = toBlob(image);
        const name = filename ?? (typeof File !== 'undefined' && blob instanceof File ? blob.name : 'image');
        form.append('image', blob, name);
        for (const [key, file] of Object.entries(files)) {
            const part = toBlob(file);
            form.append(key, part, typeof File !== 'undefined' && part instanceof File ? part.name : key);
        }
        for (const [key, value] of Object.entries(present)) {
            form.append(key, typeof value === 'string' ? value : JSON.stringify(value));
        }
        return { body: form };
    }
    if (input === undefined)
        throw new TypeError('pass image (a file) or input ({ array })');
    const json = 'image_base64' in input ? { image_base64: input.image_base64 } : arrayJson(input);
    return { body: JSON.stringify({ ...present, input: json }), contentType: 'application/json' };
}
