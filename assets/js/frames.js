// The page's live redraws, paced: each waits for an animation frame, and no frame of them comes
// sooner than PACE_MS after the last. A 100-host fan-out sends hundreds of state events and output
// batches a second; drawn in every frame, their style, layout and paint took half a core of the
// page's main thread, and its tasks waited for the CPU. Keyed: a later draw of the same key
// replaces the one waiting. (A flood of output goes on frame by frame: run.js's flush.)
const PACE_MS = 50;

const waiting = new Map();  // key -> () => void
let frame = 0;
let timer = 0;
let last = -Infinity;
let drawing = false;

export function drawSoon(key, draw) {
  waiting.set(key, draw);
  schedule();
}

export function cancelDraw(key) {
  waiting.delete(key);
}

function schedule() {
  if (drawing || frame || timer || !waiting.size) return;
  const wait = last + PACE_MS - performance.now();
  if (wait > 0) timer = setTimeout(() => {
    timer = 0;
    schedule();
  }, wait);
  else frame = requestAnimationFrame(drawAll);
}

// Draws that ask for another (a run's state, then its hosts) get it in the same frame.
function drawAll() {
  frame = 0;
  last = performance.now();
  drawing = true;
  try {
    for (let round = 0; waiting.size && round < 3; round++) {
      const draws = [...waiting.values()];
      waiting.clear();
      for (const draw of draws) draw();
    }
  } finally {
    drawing = false;
    schedule();
  }
}
