/** What a method asks `ConvServe` to send, and the helpers its answers share. */

import type { PngMethods, RequestOptions } from './types.js';

/** One request of a method: where it goes, its body, and how its 2xx answer is read. */
export interface Call<T> {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string>;
  body?: { body: BodyInit; contentType?: string };
  parse: (response: Response) => Promise<T>;
  /** Statuses read by `parse` instead of thrown (`/readyz`'s 503). */
  accept?: ReadonlySet<number>;
  retry?: boolean;
  options?: RequestOptions;
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A format=json channel (of `convolve` or of a model's `features`) with `png()` and
 * `objectURL()` added (not enumerable: JSON stays JSON).
 */
export function withPng<C extends { png_base64?: string | null }>(channel: C): C & PngMethods {
  let blob: Blob | null | undefined;
  const png = (): Blob | null => {
    if (blob === undefined) {
      blob = channel.png_base64 ? new Blob([base64ToBytes(channel.png_base64)], { type: 'image/png' }) : null;
    }
    return blob;
  };
  Object.defineProperties(channel, {
    png: { value: png },
    objectURL: {
      value: (): string | null => {
        const file = png();
        return file ? URL.createObjectURL(file) : null;
      },
    },
  });
  return channel as C & PngMethods;
}
