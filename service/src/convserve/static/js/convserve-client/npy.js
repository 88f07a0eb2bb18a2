/** Reading NumPy's `.npy` format (version 1 to 3, C order) into a flat Float32Array. */
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
/**
 * Decode a `.npy` file of float32 (`<f4`) or float64 (`<f8`, converted) values.
 *
 * @param buffer the whole file
 * @returns `{ data, shape }`; `data.length` is the product of `shape`
 * @throws TypeError when the bytes are not a little-endian float `.npy` in C order
 */
export function decodeNpy(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes.length < 10 || MAGIC.some((value, i) => bytes[i] !== value)) {
        throw new TypeError('not a .npy file: the magic string "\\x93NUMPY" is missing');
    }
    const major = bytes[6];
    const view = new DataView(buffer);
    const [headerLength, headerStart] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
    const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, headerStart + headerLength));
    const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
    const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
    const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
    if (descr === undefined || fortran === undefined || shapeText === undefined) {
        throw new TypeError(`not a .npy header: ${header.trim()}`);
    }
    if (fortran === 'True')
        throw new TypeError('.npy arrays in Fortran order are not supported');
    const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    const count = shape.reduce((a, b) => a * b, 1);
    const offset = headerStart + headerLength;
    if (descr === '<f4') {
        if (buffer.byteLength - offset < count * 4)
            throw new TypeError('.npy data is shorter than its shape says');
        // Copy out: the data may not start at a multiple of 4 in the buffer.
        return { data: new Float32Array(buffer.slice(offset, offset + count * 4)), shape };
    }
    if (descr === '<f8') {
        if (buffer.byteLength - offset < count * 8)
            throw new TypeError('.npy data is shorter than its shape says');
        return { data: Float32Array.from(new Float64Array(buffer.slice(offset, offset + count * 8))), shape };
    }
    throw new TypeError(`.npy dtype ${descr} is not supported (float32 '<f4' or float64 '<f8')`);
}
