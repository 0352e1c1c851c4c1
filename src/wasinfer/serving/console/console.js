// The console of `wasinfer serve` (served by the server itself at /): a client of its public API and nothing else.
//   models and versions: POST /v2/repository/index (the management token where one is set), a model's metadata:
//   GET /v2/models/NAME; test inference: POST /v2/models/NAME[/versions/V]/infer (the inference token); traffic and
//   the desired state: GET /metrics, parsed here (the Prometheus text format), polled every ?every=MS (2000).
// Names and messages from the server are shown as text, never as HTML.

const params = new URLSearchParams(location.search);
const EVERY_MS = Math.max(200, Number(params.get("every")) || 2000);
const $ = (id) => document.getElementById(id);
const DTYPES = { FP32: "float", FP64: "float", FP16: "float", BF16: "float", BOOL: "bool", BYTES: "bytes" }; // else ints

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** fetch with the token for its plane, and the server's {"error"} message as the thrown Error's. */
async function api(path, { plane = "inference", method = "GET", body } = {}) {
  const headers = { "Content-Type": "application/json" };
  const token = $(`${plane}-token`).value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).error ?? text; } catch { /* not JSON: the text as it is */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return text ? JSON.parse(text) : null;
}

// ---- the Prometheus text format ----

/** {name: [{labels, value}]} from the text exposition format (# lines skipped; label values unescaped). */
export function parsePrometheus(text) {
  const families = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, raw] of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = raw.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = match[3] === "+Inf" ? Infinity : match[3] === "-Inf" ? -Infinity : Number(match[3]);
    (families[match[1]] ??= []).push({ labels, value });
  }
  return families;
}

/** Prometheus's histogram_quantile over cumulative buckets [[le, count], ...] sorted by le: NaN with no counts. */
export function quantile(q, buckets) {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let [lower, below] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower; // past the last finite bound: that bound is all we know
      return lower + (le - lower) * (count > below ? (rank - below) / (count - below) : 0);
    }
    [lower, below] = [le, count];
  }
  return lower;
}

const keyOf = (labels) => `${labels.model}\u0000${labels.version}`;

/** Per model version: requests (ok and not), and the request-duration buckets summed over the protocols. */
function traffic(families) {
  const rows = new Map();
  const row = (labels) => {
    const key = keyOf(labels);
    if (!rows.has(key)) rows.set(key, { model: labels.model, version: labels.version, ok: 0, failed: 0, buckets: new Map() });
    return rows.get(key);
  };
  for (const { labels, value } of families.wasinfer_requests_total ?? []) {
    if (!labels.model) continue; // refused before a model was known
    row(labels)[labels.outcome === "ok" ? "ok" : "failed"] += value;
  }
  for (const { labels, value } of families.wasinfer_request_duration_seconds_bucket ?? []) {
    const buckets = row(labels).buckets;
    const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + value);
  }
  return rows;
}

const ms = (seconds) => (Number.isNaN(seconds) ? "–" : seconds < 0.001 ? `${(seconds * 1e6).toFixed(0)} µs`
  : `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`);

const WINDOW_MS = 10_000; // rates and quantiles are over the scrapes of about the last 10 s
const history = []; // earlier scrapes, oldest first: {at, rows}

function showTraffic(rows, at) {
  const body = $("traffic").tBodies[0];
  body.replaceChildren();
  while (history.length > 1 && at - history[1].at >= WINDOW_MS) history.shift();
  const previous = history[0]; // the oldest scrape still in the window
  const seconds = previous ? (at - previous.at) / 1000 : 0;
  for (const [key, now] of [...rows].sort(([a], [b]) => a.localeCompare(b))) {
    const before = previous?.rows.get(key);
    const count = now.ok + now.failed;
    // a version absent from that scrape had no requests then
    const rate = seconds > 0 ? (count - (before ? before.ok + before.failed : 0)) / seconds : NaN;
    // quantiles over the requests in the window, or since the start when none came in it
    let buckets = [...now.buckets].sort(([a], [b]) => a - b);
    if (before) {
      const windowed = buckets.map(([le, c]) => [le, c - (before.buckets.get(le) ?? 0)]);
      if ((windowed.at(-1)?.[1] ?? 0) > 0) buckets = windowed;
    }
    const row = body.insertRow();
    row.dataset.model = now.model;
    cell(row, now.model);
    cell(row, now.version);
    cell(row, Number.isNaN(rate) ? "–" : rate.toFixed(rate < 10 ? 2 : 0), "rate");
    cell(row, ms(quantile(0.5, buckets)), "p50");
    cell(row, ms(quantile(0.99, buckets)), "p99");
    cell(row, String(count), "count");
    cell(row, String(now.failed), now.failed ? "error" : "");
  }
  $("traffic-note").textContent = rows.size ? `from /metrics every ${EVERY_MS / 1000} s, over the last ` +
    `${WINDOW_MS / 1000} s; latency is the server's, request in to answer out (since the start when the last ` +
    `${WINDOW_MS / 1000} s had no request)`
    : "no inference requests yet";
  history.push({ at, rows });
}

function showDesired(families) {
  const versions = families.wasinfer_model_version_info ?? [];
  const body = $("desired").querySelector("tbody");
  body.replaceChildren();
  for (const { labels } of versions) {
    const row = body.insertRow();
    row.dataset.model = labels.model;
    cell(row, labels.model);
    cell(row, labels.serving_version, "serving");
    cell(row, labels.desired_version, "desired");
    const same = labels.serving_version === labels.desired_version;
    cell(row, same ? "up to date" : "updating (or the desired version failed: see the server log)", same ? "" : "behind");
  }
  $("desired-note").textContent = versions.length ? "from the wasinfer_model_version_info gauge"
    : "no desired state: the server was started without --desired-state";
}

async function refreshMetrics() {
  try {
    const response = await fetch("/metrics");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const families = parsePrometheus(await response.text());
    showTraffic(traffic(families), performance.now());
    showDesired(families);
    document.body.dataset.scrapes = String(Number(document.body.dataset.scrapes ?? 0) + 1);
  } catch (error) {
    $("traffic-note").textContent = `/metrics: ${error.message}`;
  }
}

// ---- models and the test inference ----

async function refreshModels() {
  try {
    const rows = await api("/v2/repository/index", { plane: "management", method: "POST", body: {} });
    const body = $("models").tBodies[0];
    body.replaceChildren();
    for (const { name, version, state, reason } of rows) {
      const row = body.insertRow();
      row.dataset.model = name;
      row.dataset.version = version;
      cell(row, name);
      cell(row, version);
      cell(row, state, `state-${state}`);
      cell(row, reason ?? "", "hint");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Try";
      button.addEventListener("click", () => chooseModel(name, version));
      row.insertCell().append(button);
    }
    $("models-note").textContent = rows.length ? "a model loads on its first request (Try loads it)" : "no models";
  } catch (error) {
    $("models-note").textContent = `the repository index: ${error.message}` +
      (error.message.startsWith("401") ? " (enter the management token under Tokens)" : "");
    $("models-note").className = "error";
  }
}

let chosen = null; // {name, version, metadata}

const base = ({ name, version }) => `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;

/** The value a fresh form shows for an input: zeros of its shape, a dim any size may take (-1) as 1. */
function zeros(input) {
  const shape = input.shape.map((d) => (d < 0 ? 1 : d));
  return { shape, data: new Array(shape.reduce((a, b) => a * b, 1)).fill(input.datatype === "BOOL" ? false : 0) };
}

async function chooseModel(name, version) {
  $("try-model").textContent = `${name} version ${version} (loading its metadata…)`;
  $("answer").textContent = "";
  try {
    const metadata = await api(base({ name, version }));
    chosen = { name, version, metadata };
    refreshModels(); // the metadata loaded it: its state is READY now
    $("try-model").textContent = `${name} version ${version}`;
    const inputs = $("inputs");
    inputs.replaceChildren();
    for (const input of metadata.inputs) {
      const fieldset = document.createElement("fieldset");
      fieldset.dataset.input = input.name;
      fieldset.dataset.datatype = input.datatype;
      const legend = document.createElement("legend");
      legend.textContent = `${input.name}: ${input.datatype} [${input.shape.join(", ")}]`;
      const { shape, data } = zeros(input);
      const shapeLabel = document.createElement("label");
      shapeLabel.textContent = "shape ";
      const shapeField = document.createElement("input");
      shapeField.name = "shape";
      shapeField.value = shape.join(", ");
      shapeLabel.append(shapeField);
      const dataLabel = document.createElement("label");
      dataLabel.textContent = "data (numbers in C order, separated by commas or spaces; or JSON)";
      const dataField = document.createElement("textarea");
      dataField.name = "data";
      dataField.rows = Math.min(8, 1 + Math.ceil(data.length / 16));
      dataField.value = data.join(", ");
      dataLabel.append(dataField);
      fieldset.append(legend, shapeLabel, dataLabel);
      inputs.append(fieldset);
    }
    $("infer-form").hidden = false;
  } catch (error) {
    $("try-model").textContent = `${name} version ${version}: ${error.message}`;
  }
}

/** A field's values: JSON (nested lists flattened) or numbers / true / false separated by commas or spaces. */
function values(text, datatype) {
  const trimmed = text.trim();
  const parsed = trimmed.startsWith("[") ? JSON.parse(trimmed).flat(Infinity)
    : trimmed.split(/[\s,]+/).filter(Boolean).map((word) => (word === "true" ? true : word === "false" ? false
      : DTYPES[datatype] === "bytes" ? word : Number(word)));
  return parsed;
}

async function infer(event) {
  event.preventDefault();
  if (!chosen) return;
  const answer = $("answer");
  try {
    const inputs = [...$("inputs").children].map((fieldset) => ({
      name: fieldset.dataset.input,
      datatype: fieldset.dataset.datatype,
      shape: fieldset.querySelector("[name=shape]").value.split(/[\s,]+/).filter(Boolean).map(Number),
      data: values(fieldset.querySelector("[name=data]").value, fieldset.dataset.datatype),
    }));
    const started = performance.now();
    const result = await api(`${base(chosen)}/infer`, { method: "POST", body: { inputs } });
    const took = performance.now() - started;
    answer.className = "";
    answer.textContent = `${took.toFixed(1)} ms round trip\n` + result.outputs.map((output) =>
      `${output.name}: ${output.datatype} [${output.shape.join(", ")}]\n  ${JSON.stringify(output.data)}`).join("\n");
    answer.dataset.outputs = JSON.stringify(result.outputs);
  } catch (error) {
    answer.className = "error";
    answer.textContent = error.message;
    delete answer.dataset.outputs;
  }
}

async function showServer() {
  try {
    const { name, version } = await api("/v2");
    $("server").textContent = `${name} ${version} at ${location.host}`;
  } catch (error) {
    $("server").textContent = `${location.host} (${error.message})`;
  }
}

$("infer-form").addEventListener("submit", infer);
for (const id of ["inference-token", "management-token"]) {
  $(id).addEventListener("change", () => { showServer(); refreshModels(); });
}
showServer();
refreshModels();
refreshMetrics();
setInterval(refreshMetrics, EVERY_MS);
setInterval(refreshModels, Math.max(EVERY_MS, 5000));
window.wasinferConsole = { parsePrometheus, quantile, refreshMetrics, refreshModels, chooseModel };
