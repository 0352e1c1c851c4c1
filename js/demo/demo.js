// The digits demo: a drawing on #pad becomes the model's 8x8 input the way scikit-learn's digits were made (a
// 32x32 bitmap of the digit scaled to fill it, then the number of set pixels in each 4x4 block: 0..16), and the
// compiled module classifies it in a Web Worker (wasinfer/worker), so drawing never waits for inference.
// window.wasinferDemo is the page's test hook: `await wasinferDemo.ready`, then `await wasinferDemo.classify(pixels)`
// with 64 numbers gives what the page shows for them.
import { createWorkerModel } from "../worker.js";

const MODEL_URL = new URLSearchParams(location.search).get("model") ?? "/models/digits.wasm";
const BITMAP = 32; // the digits' source bitmaps are 32x32 ...
const CELL = 4; // ... counted in 4x4 blocks: an 8x8 input of 0..16
const SIDE = BITMAP / CELL;
const TIMES_KEPT = 50; // the mean shown is over the last runs
// The clock's tick: browsers coarsen performance.now() outside cross-origin isolation (Chromium to 0.1 ms or finer,
// Firefox and Safari to 1 ms), so one inference of less than a tick reads 0 or 1 tick. The mean over many runs is
// still right (a run straddles a tick as often as it is long), and a median is not: it shows 0 in Firefox.
const TICK = (() => {
  const start = performance.now();
  let now = start;
  while (now === start) now = performance.now();
  return now - start;
})();

const pad = document.getElementById("pad");
const preview = document.getElementById("input");
const labelOut = document.getElementById("label");
const bars = document.getElementById("bars");
const timing = document.getElementById("timing");
const status = document.getElementById("status");
const pen = pad.getContext("2d", { willReadFrequently: true });
const times = [];

for (let digit = 0; digit < 10; digit++) {
  const row = document.createElement("li");
  row.innerHTML = `<span>${digit}</span><span class="bar"><span class="fill"></span></span><span class="value">–</span>`;
  bars.append(row);
}

function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
  drawInput(new Float32Array(SIDE * SIDE));
}

/** The drawing as the model's input: the strokes' bounding box scaled to fill a 32x32 bitmap, counted per 4x4. */
export function toDigitPixels(source) {
  const { width, height } = source;
  const image = source.getContext("2d").getImageData(0, 0, width, height).data;
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (image[(y * width + x) * 4] > 64) {
        left = Math.min(left, x); right = Math.max(right, x); top = Math.min(top, y); bottom = Math.max(bottom, y);
      }
    }
  }
  const pixels = new Float32Array(SIDE * SIDE);
  if (right < 0) return pixels; // nothing drawn
  const [w, h] = [right - left + 1, bottom - top + 1];
  const scale = BITMAP / Math.max(w, h);
  const bitmap = new OffscreenCanvas(BITMAP, BITMAP).getContext("2d", { willReadFrequently: true });
  bitmap.fillStyle = "#000";
  bitmap.fillRect(0, 0, BITMAP, BITMAP);
  bitmap.imageSmoothingQuality = "high";
  bitmap.drawImage(source, left, top, w, h, (BITMAP - w * scale) / 2, (BITMAP - h * scale) / 2, w * scale, h * scale);
  const small = bitmap.getImageData(0, 0, BITMAP, BITMAP).data;
  for (let y = 0; y < BITMAP; y++) {
    for (let x = 0; x < BITMAP; x++) {
      if (small[(y * BITMAP + x) * 4] >= 128) pixels[Math.floor(y / CELL) * SIDE + Math.floor(x / CELL)] += 1;
    }
  }
  return pixels;
}

function drawInput(pixels) {
  const context = preview.getContext("2d");
  const size = preview.width / SIDE;
  pixels.forEach((value, i) => {
    const shade = Math.round(255 * (1 - value / 16));
    context.fillStyle = `rgb(${shade} ${shade} ${shade})`;
    context.fillRect((i % SIDE) * size, Math.floor(i / SIDE) * size, size, size);
  });
}

function show({ label, probabilities, ms }) {
  labelOut.value = String(label);
  [...bars.children].forEach((row, digit) => {
    row.classList.toggle("best", digit === label);
    row.querySelector(".fill").style.width = `${(probabilities[digit] * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = probabilities[digit].toFixed(4);
  });
  times.push(ms);
  if (times.length > TIMES_KEPT) times.shift();
  const mean = times.reduce((sum, t) => sum + t, 0) / times.length;
  const coarse = TICK >= 0.5;
  timing.textContent = `${coarse && ms < TICK ? `< ${TICK.toFixed(2)}` : ms.toFixed(2)} ms this inference (worker ` +
    `round trip); mean ${mean.toFixed(2)} ms over the last ${times.length}` +
    (coarse ? ` (this browser's clock ticks every ${TICK.toFixed(2)} ms)` : "");
}

const ready = (async () => {
  const started = performance.now();
  const model = await createWorkerModel(MODEL_URL);
  const [input] = model.inputs;
  status.textContent = `${model.name}: ${MODEL_URL}, ready in ${(performance.now() - started).toFixed(0)} ms ` +
    `(input ${input.name} ${input.dtype} [${input.shape}])`;
  timing.textContent = "draw a digit";
  document.body.dataset.state = "ready";
  return model;
})();
ready.catch((error) => {
  status.textContent = `the model did not load: ${error.message}`;
  document.body.dataset.state = "failed";
});

/** Classify 64 pixel values (0..16): the label, the ten probabilities and the time the run took, also shown. */
async function classify(pixels) {
  const model = await ready;
  const data = Float32Array.from(pixels);
  if (data.length !== SIDE * SIDE) throw new RangeError(`expected ${SIDE * SIDE} pixels, got ${data.length}`);
  drawInput(data);
  const started = performance.now();
  const outputs = await model.run({ [model.inputs[0].name]: { data, shape: [1, data.length] } });
  const ms = performance.now() - started;
  const result = { label: Number(outputs.label.data[0]), probabilities: Array.from(outputs.probabilities.data), ms };
  show(result);
  return result;
}

// Drawing: pointer events cover mouse, pen and touch; each stroke ends in one classification, and one is
// pending at most (a new stroke's result replaces a stale one).
let drawing = false;
let pending = null;
function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}
pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  pen.strokeStyle = "#fff";
  pen.lineWidth = pad.width / 12;
  pen.lineCap = pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...point(event));
  pen.lineTo(...point(event));
  pen.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.stroke();
});
const finish = () => {
  if (!drawing) return;
  drawing = false;
  const pixels = toDigitPixels(pad);
  pending = classify(pixels).catch((error) => { status.textContent = `inference failed: ${error.message}`; });
};
pad.addEventListener("pointerup", finish);
pad.addEventListener("pointercancel", finish);
document.getElementById("clear").addEventListener("click", clearPad);
clearPad();

window.wasinferDemo = { ready: ready.then(() => true), classify, toDigitPixels, pending: () => pending, tick: TICK };
