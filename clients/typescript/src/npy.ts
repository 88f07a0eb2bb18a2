/** Reading NumPy's `.npy` format (version 1 to 3, C order) into a flat Float32Array. */

/** An n-dimensional float32 array: `data` holds the values in C (row-major) order. */
export interface NDArray {
  data: Float32Array;
  shape: number[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/**
 * Decode a `.npy` file of float32 (`<f4`) or float64 (`<f8`, converted) values.
 *
 * @param buffer the whole file
 * @returns `{ data, shape }`; `data.length` is the product of `shape`
 * @throws TypeError when the bytes are not a little-endian float `.npy` in C order
 */
export function decodeNpy(buffer: ArrayBuffer): NDArray {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 10 || MAGIC.some((value, i) => bytes[i] !== value)) {
    throw new TypeError('not a .npy file: the magic string "\\x93NUMPY" is missing');
  }
  const major = bytes[6];
  const view = new DataView(buffer);
  const [headerLength, headerStart] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new TypeError(`not a .npy header: ${header.trim()}`);
  }
  if (fortran === 'True') throw new TypeError('.npy arrays in Fortran order are not supported');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = headerStart + headerLength;
  if (descr === '<f4') {
    if (buffer.byteLength - offset < count * 4) throw new TypeError('.npy data is shorter than its shape says');
    // Copy out: the data may not start at a multiple of 4 in the buffer.
    return { data: new Float32Array(buffer.slice(offset, offset + count * 4)), shape };
  }
  if (descr === '<f8') {
    if (buffer.byteLength - offset < count * 8) throw new TypeError('.npy data is shorter than its shape says');
    return { data: Float32Array.from(new Float64Array(buffer.slice(offset, offset + count * 8))), shape };
  }
  throw new TypeError(`.npy dtype ${descr} is not supported (float32 '<f4' or float64 '<f8')`);
}

/**
 * Encode a float32 array as a `.npy` file (version 1.0, little-endian, C order), as NumPy's
 * `np.save` writes it: the inverse of `decodeNpy`.
 *
 * @param array `{ data, shape }` with `data.length` the product of `shape`
 * @returns the file, type `application/octet-stream`
 */
export function encodeNpy(array: NDArray): Blob {
  const { data, shape } = array;
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new RangeError(`data has ${data.length} values but shape [${shape.join(', ')}] holds ${count}`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Magic (6) + version (2) + length (2) + header + '\n' is padded with spaces to 64 bytes.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = new Uint8Array(10 + header.length);
  prefix.set(MAGIC);
  prefix.set([1, 0], 6);
  new DataView(prefix.buffer).setUint16(8, header.length, true);
  prefix.set(new TextEncoder().encode(header), 10);
  const body = new Float32Array(data);
  return new Blob([prefix, body], { type: 'application/octet-stream' });
}
