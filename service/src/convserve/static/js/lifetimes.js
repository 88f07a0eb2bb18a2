// Two lifetimes the page manages in one place each: requests where only the latest one counts,
// and object URLs (each slot owns one, or a list, revoked when it is replaced).

/**
 * Requests of one kind where a new one makes the previous one moot (the dry run, the resolved
 * preset, the explained pixel): starting one aborts the one before, and only the latest one's
 * outcome is used.
 */
export class LatestRequest {
  #controller = null;

  /** Abort the request in flight, if any; its `run` resolves `{ aborted: true }`. */
  abort() {
    this.#controller?.abort();
  }

  /**
   * Abort the previous request and run `task(signal)`.
   * @template T
   * @param {(signal: AbortSignal) => Promise<T>} task
   * @returns {Promise<{stale: true} | {aborted: true} | {value: T} | {error: Error}>}
   *   `stale` when a newer request started meanwhile (drop everything); `aborted` when this one
   *   was cancelled and none replaced it; otherwise its value or its error.
   */
  async run(task) {
    this.#controller?.abort();
    const controller = new AbortController();
    this.#controller = controller;
    try {
      const value = await task(controller.signal);
      return controller === this.#controller ? { value } : { stale: true };
    } catch (error) {
      if (controller !== this.#controller) return { stale: true };
      if (controller.signal.aborted) return { aborted: true };
      return { error };
    }
  }
}

/** The page's object URLs: one slot per use, revoked when the slot gets a new one. */
export class ObjectUrls {
  #slots = new Map();

  /** An object URL for `blob` in `slot`, revoking what the slot held before. */
  set(slot, blob) {
    return this.setAll(slot, [blob])[0];
  }

  /** Object URLs for `blobs` (null stays null) in `slot`, revoking what it held before. */
  setAll(slot, blobs) {
    this.revoke(slot);
    const urls = blobs.map((blob) => (blob ? URL.createObjectURL(blob) : null));
    this.#slots.set(slot, urls);
    return urls;
  }

  revoke(slot) {
    for (const url of this.#slots.get(slot) ?? []) if (url) URL.revokeObjectURL(url);
    this.#slots.delete(slot);
  }
}

export const objectUrls = new ObjectUrls();
