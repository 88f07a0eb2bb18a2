// Feature maps as buttons that share one pixel cursor, for both modes of the page: a click
// explains the pixel under the pointer; with a map focused, the arrow keys move the cursor on
// every map (Shift: 10 pixels) and Enter explains the cursor's pixel.

import { h } from './dom.js';

/** One cursor over the `.map-button`s inside `container`, maps of `height` x `width` pixels;
 * `onPick(channel, y, x)` explains a pixel. Starts at the middle of the maps. */
export class PixelCursor {
  constructor(container, height, width, onPick) {
    this.container = container;
    this.height = height;
    this.width = width;
    this.onPick = onPick;
    this.y = Math.floor(height / 2);
    this.x = Math.floor(width / 2);
  }

  /** `img` (a map of `channel`) as a button with the cursor's marker; `label` names it. */
  button(img, channel, label) {
    const button = h('button', {
      type: 'button', class: 'map-frame map-button', dataset: { channel: String(channel), label },
    }, img, h('span', { class: 'cursor', 'aria-hidden': 'true' }));
    button.addEventListener('click', (event) => {
      if (event.detail > 0) { // a pointer click, not Enter or Space
        const rect = img.getBoundingClientRect();
        this.y = Math.floor(((event.clientY - rect.top) / rect.height) * this.height);
        this.x = Math.floor(((event.clientX - rect.left) / rect.width) * this.width);
        this.move(0, 0);
      }
      this.container.classList.add('picked');
      this.onPick(channel, this.y, this.x);
    });
    button.addEventListener('keydown', (event) => {
      const step = event.shiftKey ? 10 : 1;
      const moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
      if (!moves[event.key]) return;
      event.preventDefault();
      this.move(...moves[event.key]);
    });
    return button;
  }

  /** Move the cursor by (dy, dx), clamped to the maps, and update every marker and label. */
  move(dy, dx) {
    this.y = Math.min(this.height - 1, Math.max(0, this.y + dy));
    this.x = Math.min(this.width - 1, Math.max(0, this.x + dx));
    for (const button of this.container.querySelectorAll('.map-button')) {
      const marker = button.querySelector('.cursor');
      marker.style.left = `${((this.x + 0.5) / this.width) * 100}%`;
      marker.style.top = `${((this.y + 0.5) / this.height) * 100}%`;
      button.setAttribute('aria-label', `${button.dataset.label}. Press Enter to explain row ${this.y}, column ${this.x}; arrow keys move.`);
    }
  }
}
