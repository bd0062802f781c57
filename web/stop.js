// stop.js — stop strings on streamed text: text is released as soon as it cannot be the start of a
// stop string, so a caller never sees part of a stop string, and generation ends at the first match.

export class StopMatcher {
  /** @param {string[]} stops non-empty stop strings (empty ones are ignored) */
  constructor(stops) {
    this.stops = (stops || []).filter((s) => typeof s === 'string' && s.length > 0);
    this.held = '';
    this.stopped = false;
  }

  /** Feeds a piece of text; returns {text: releasable text, stopped: true if a stop string matched}. */
  push(piece) {
    if (this.stopped) return { text: '', stopped: true };
    const buf = this.held + piece;
    if (!this.stops.length) return { text: buf, stopped: false };
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.held = '';
      this.stopped = true;
      return { text: buf.slice(0, cut), stopped: true };
    }
    // Hold back the longest tail of buf that is a prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > keep; k--) {
        if (buf.endsWith(s.slice(0, k))) { keep = k; break; }
      }
    }
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** End of generation: releases what was held back (it was not a stop string after all). */
  flush() {
    const t = this.stopped ? '' : this.held;
    this.held = '';
    return t;
  }
}
