// worker.js — the Web Worker that runs the engine off the main thread (started by index.js as a
// module worker). All protocol logic is in host.js.

import { createHost } from './host.js';

const onMessage = createHost((msg) => self.postMessage(msg));
self.onmessage = (ev) => { onMessage(ev.data); };
