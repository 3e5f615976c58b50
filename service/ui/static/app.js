// Axon's web page: plain JavaScript over the public API (no build step, nothing from another origin).
// Every request carries the inference token from sessionStorage when one is set; every answer is put on
// the page with textContent or DOM nodes, never as HTML, since labels and texts come from models and users.
"use strict";

const TOKEN_KEY = "axon.inference-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(status, body) {
    const message = body && typeof body === "object" && body.error ? body.error : String(body || "");
    super(`${status}: ${message}`);
    this.status = status;
    this.code = body && typeof body === "object" ? body.code : undefined;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, { json, form, blob = false } = {}) {
  const options = { method: json !== undefined || form ? "POST" : "GET", headers: authHeaders() };
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (form) {
    options.body = form;
  }
  const response = await fetch(path, options);
  if (!response.ok) {
    const type = response.headers.get("content-type") || "";
    throw new ApiError(response.status, type.includes("json") ? await response.json() : await response.text());
  }
  return blob ? response.blob() : response.json();
}

// A missing explain route answers 404 with code "not_found"; an unknown model has its own code.
const routeMissing = (error) => error instanceof ApiError && error.status === 404 && error.code === "not_found";

function setStatus(id, message, kind = "") {
  const element = $(id);
  element.textContent = message;
  element.className = `status ${kind}`;
}

function showError(id, error) {
  let message = error instanceof ApiError ? error.message : `request failed: ${error.message || error}`;
  if (error instanceof ApiError && error.status === 401) {
    message += " (enter the inference token at the top right)";
  }
  setStatus(id, message, "error");
}

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

const fmt = (x, digits = 4) => {
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 1e-3 ? x.toFixed(digits) : x.toExponential(2);
};

// A horizontal bar: label, track with a fill of |value| / scale, the number.
function bar(label, value, scale, kind = "") {
  const row = element("div", { class: "bar" });
  row.append(element("span", {}, label));
  const track = element("span", { class: "track" });
  const fill = element("span", { class: `fill ${kind}` });
  fill.style.width = `${Math.min(100, (100 * Math.abs(value)) / (scale || 1))}%`;
  track.append(fill);
  row.append(track, element("span", { class: "num" }, fmt(value)));
  return row;
}

// ---------------------------------------------------------------- tabs, token, model pickers
function showView(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.view === name);
  }
  for (const view of document.querySelectorAll(".view")) view.classList.toggle("active", view.id === `view-${name}`);
  if (name === "models") loadModels();
}

let modelList = null;

async function refreshPickers() {
  try {
    modelList = (await api("/v1/models")).models;
  } catch (error) {
    modelList = null;
    for (const id of ["#vision-status", "#text-status", "#anomaly-status"]) showError(id, error);
    return;
  }
  for (const id of ["#vision-status", "#text-status", "#anomaly-status"]) {
    if ($(id).classList.contains("error")) setStatus(id, ""); // e.g. the 401 from before the token was given
  }
  for (const [task, id] of [["vision", "#vision-model"], ["text", "#text-model"], ["anomaly", "#anomaly-model"]]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(element("option", { value: "" }, "default model"));
    for (const model of modelList.filter((m) => m.task === task)) {
      select.append(element("option", { value: model.name }, `${model.name} (${model.state})`));
    }
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  }
}

function setupToken() {
  const input = $("#token");
  const state = $("#token-state");
  const show = () => (state.textContent = sessionStorage.getItem(TOKEN_KEY) ? "token set" : "no token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  show();
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    show();
    modelsLoaded = false;
    refreshPickers();
    if ($("#view-models").classList.contains("active")) loadModels();
  });
}

// ---------------------------------------------------------------- vision
let imageBlob = null; // a file the user picked or dropped; null means "send the drawing"

function setupVision() {
  const draw = $("#draw");
  const pen = draw.getContext("2d");
  const clear = () => {
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, draw.width, draw.height);
    imageBlob = null;
  };
  clear();
  let last = null;
  const point = (event) => {
    const box = draw.getBoundingClientRect();
    return [((event.clientX - box.left) * draw.width) / box.width, ((event.clientY - box.top) * draw.height) / box.height];
  };
  draw.addEventListener("pointerdown", (event) => {
    if (imageBlob) clear(); // drawing replaces a dropped image
    draw.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(pen, last, last);
  });
  draw.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    stroke(pen, last, next);
    last = next;
  });
  const stop = () => (last = null);
  draw.addEventListener("pointerup", stop);
  draw.addEventListener("pointercancel", stop);
  $("#vision-clear").addEventListener("click", clear);
  $("#vision-file").addEventListener("change", (event) => useFile(event.target.files[0]));
  draw.addEventListener("dragover", (event) => {
    event.preventDefault();
    draw.classList.add("dragover");
  });
  draw.addEventListener("dragleave", () => draw.classList.remove("dragover"));
  draw.addEventListener("drop", (event) => {
    event.preventDefault();
    draw.classList.remove("dragover");
    useFile(event.dataTransfer.files[0]);
  });
  $("#vision-submit").addEventListener("click", classifyImage);
  $("#vision-show-saliency").addEventListener("change", (event) => {
    $("#vision-saliency").style.visibility = event.target.checked ? "visible" : "hidden";
  });
}

function stroke(pen, [x0, y0], [x1, y1]) {
  pen.strokeStyle = "#fff";
  pen.lineWidth = 20;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(x0, y0);
  pen.lineTo(x1, y1);
  pen.stroke();
}

async function useFile(file) {
  if (!file) return;
  imageBlob = file;
  const draw = $("#draw");
  await paintImage(draw, file);
}

// The service resizes to the model's input without keeping the aspect ratio, so the page stretches too:
// the saliency grid then lies exactly over the pixels it describes.
async function paintImage(canvas, blob) {
  const url = URL.createObjectURL(blob);
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const pen = canvas.getContext("2d");
    pen.imageSmoothingEnabled = image.width >= canvas.width;
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, canvas.width, canvas.height);
    pen.drawImage(image, 0, 0, canvas.width, canvas.height);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function classifyImage() {
  setStatus("#vision-status", "classifying...");
  const blob = imageBlob || (await new Promise((resolve) => $("#draw").toBlob(resolve, "image/png")));
  const model = $("#vision-model").value;
  const query = model ? `&model=${encodeURIComponent(model)}` : "";
  const form = () => {
    const body = new FormData();
    body.append("images", blob, imageBlob ? imageBlob.name || "image" : "drawing.png");
    return body;
  };
  try {
    await paintImage($("#vision-image"), blob);
    clearCanvas($("#vision-saliency"));
    const answer = await api(`/v1/vision/classify?top_k=3${query}`, { form: form() });
    const best = answer.predictions[0];
    $("#vision-label").textContent = best.label;
    $("#vision-score").textContent = `(${fmt(best.score)}, ${answer.model} v${answer.version})`;
    $("#vision-topk").replaceChildren(...best.top_k.map((k) => bar(k.label, k.score, 1)));
    setStatus("#vision-status", "");
    $("#vision-passes").textContent = "";
    try {
      const explained = await api(`/v1/vision/explain?${query.slice(1)}`, { form: form() });
      const explanation = explained.explanations[0];
      drawSaliency($("#vision-saliency"), explanation.saliency);
      $("#vision-passes").textContent = `saliency of "${explanation.label}", ${explanation.passes} forward passes`;
    } catch (error) {
      if (!routeMissing(error)) throw error;
      setStatus("#vision-status", "This server has no /v1/vision/explain: the prediction is shown without saliency.", "note");
    }
  } catch (error) {
    showError("#vision-status", error);
  }
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

// Each cell of the H x W grid, min-max scaled: transparent for the least important, red, then yellow.
function drawSaliency(canvas, grid) {
  const pen = canvas.getContext("2d");
  pen.clearRect(0, 0, canvas.width, canvas.height);
  const values = grid.flat();
  const low = Math.min(...values);
  const span = Math.max(...values) - low || 1;
  const cellW = canvas.width / grid[0].length;
  const cellH = canvas.height / grid.length;
  grid.forEach((row, y) =>
    row.forEach((value, x) => {
      const v = (value - low) / span;
      pen.fillStyle = `rgba(255, ${Math.round(230 * Math.max(0, 2 * v - 1))}, 0, ${(0.85 * v).toFixed(3)})`;
      pen.fillRect(x * cellW, y * cellH, Math.ceil(cellW), Math.ceil(cellH));
    }),
  );
  canvas.dataset.cells = String(values.length);
}

// ---------------------------------------------------------------- text
function setupText() {
  $("#text-submit").addEventListener("click", classifyText);
}

async function classifyText() {
  const text = $("#text-input").value;
  const model = $("#text-model").value || undefined;
  setStatus("#text-status", "classifying...");
  $("#text-tokens").replaceChildren(document.createTextNode(text));
  try {
    const answer = await api("/v1/text/classify", { json: { texts: [text], model } });
    const best = answer.predictions[0];
    $("#text-label").textContent = best.label;
    $("#text-score").textContent = `(${fmt(best.score)}, ${answer.model} v${answer.version})`;
    $("#text-scores").replaceChildren(...Object.entries(best.scores).map(([label, p]) => bar(label, p, 1)));
    setStatus("#text-status", "");
    try {
      const explained = await api("/v1/text/explain", { json: { texts: [text], model } });
      const explanation = explained.explanations[0];
      highlight($("#text-tokens"), text, explanation.tokens);
      setStatus("#text-status", `contributions to "${explanation.label}", ${explanation.passes} forward passes`);
    } catch (error) {
      if (!routeMissing(error)) throw error;
      setStatus("#text-status", "This server has no /v1/text/explain: the answer is shown without highlighted words.", "note");
    }
  } catch (error) {
    showError("#text-status", error);
  }
}

// The text with a span per token (by character offsets), shaded by its contribution; the rest stays plain.
function highlight(target, text, tokens) {
  const scale = Math.max(...tokens.map((t) => Math.abs(t.contribution)), 1e-12);
  const nodes = [];
  let at = 0;
  for (const token of [...tokens].sort((a, b) => a.start - b.start)) {
    if (token.start < at || token.end <= token.start) continue; // overlapping sub-tokens: keep the first
    if (token.start > at) nodes.push(document.createTextNode(text.slice(at, token.start)));
    const strength = Math.abs(token.contribution) / scale;
    const color = token.contribution >= 0 ? "196, 50, 10" : "59, 130, 246";
    const span = element("span", { class: "tok", "data-contribution": String(token.contribution) }, text.slice(token.start, token.end));
    span.title = `${token.token}: ${fmt(token.contribution)}`;
    span.style.backgroundColor = `rgba(${color}, ${(0.75 * strength).toFixed(3)})`;
    nodes.push(span);
    at = token.end;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  target.replaceChildren(...nodes);
}

// ---------------------------------------------------------------- anomaly
const SAMPLES = { series: "samples/machine-temperature.json", samples: "samples/thyroid-rows.json" };
const sampleData = {};

const anomalyKind = () => document.querySelector("input[name=anomaly-kind]:checked").value;

async function setupAnomaly() {
  for (const radio of document.querySelectorAll("input[name=anomaly-kind]")) {
    radio.addEventListener("change", fillSamples);
  }
  $("#anomaly-sample").addEventListener("change", useSample);
  $("#anomaly-submit").addEventListener("click", scoreAnomaly);
  await fillSamples();
}

async function fillSamples() {
  const kind = anomalyKind();
  const select = $("#anomaly-sample");
  try {
    sampleData[kind] = sampleData[kind] || (await (await fetch(SAMPLES[kind])).json());
  } catch (error) {
    showError("#anomaly-status", error);
    return;
  }
  const data = sampleData[kind];
  const names = kind === "series" ? [data.name] : Object.keys(data.rows);
  select.replaceChildren(...names.map((name) => element("option", { value: name }, name)));
  useSample();
}

function useSample() {
  const kind = anomalyKind();
  const data = sampleData[kind];
  const values = kind === "series" ? data.series : data.rows[$("#anomaly-sample").value];
  $("#anomaly-input").value = values.join(", ");
}

function parseNumbers(text) {
  const parts = text.split(/[\s,;]+/).filter((p) => p !== "");
  const numbers = parts.map(Number);
  const bad = parts.findIndex((p, i) => !Number.isFinite(numbers[i]));
  if (bad >= 0) throw new Error(`"${parts[bad]}" is not a number`);
  if (!numbers.length) throw new Error("type or pick some numbers first");
  return numbers;
}

async function scoreAnomaly() {
  const kind = anomalyKind();
  const model = $("#anomaly-model").value || undefined;
  setStatus("#anomaly-status", "scoring...");
  let values;
  try {
    values = parseNumbers($("#anomaly-input").value);
  } catch (error) {
    showError("#anomaly-status", error);
    return;
  }
  const body = kind === "series" ? { series: values, model } : { samples: [values], model };
  let answer;
  let explained = true;
  try {
    try {
      answer = await api("/v1/anomaly/explain", { json: body });
    } catch (error) {
      if (!routeMissing(error)) throw error;
      explained = false;
      answer = await api("/v1/anomaly/score", { json: body });
    }
  } catch (error) {
    showError("#anomaly-status", error);
    return;
  }
  $("#anomaly-threshold").textContent = fmt(answer.threshold);
  $("#anomaly-features").replaceChildren();
  $("#anomaly-plot").replaceChildren();
  $("#anomaly-segments").classList.add("hidden");
  if (kind === "series") showSeries(values, answer);
  else showRow(answer, explained);
  setStatus(
    "#anomaly-status",
    explained ? `${answer.model} v${answer.version}` : "This server has no /v1/anomaly/explain: scores only, no contributions.",
    explained ? "" : "note",
  );
}

function showRow(answer, explained) {
  const result = explained ? answer.explanations[0] : answer.results[0];
  const summary = $("#anomaly-summary");
  summary.replaceChildren(
    document.createTextNode(`score ${fmt(result.score)}: `),
    element("span", { class: result.is_anomaly ? "flag" : "" }, result.is_anomaly ? "anomaly" : "normal"),
  );
  if (!explained) return;
  const features = [...result.features].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
  const scale = Math.max(...features.map((f) => Math.abs(f.contribution)), 1e-12);
  $("#anomaly-features").replaceChildren(
    element("p", { class: "muted" }, "features by contribution to the score (value in brackets)"),
    ...features.map((f) => bar(`${f.name} (${fmt(f.value, 3)})`, f.contribution, scale, f.contribution >= 0 ? "pos" : "neg")),
  );
}

function showSeries(values, answer) {
  const flagged = answer.results.filter((r) => r.is_anomaly).length;
  const segments = answer.segments || [];
  $("#anomaly-summary").replaceChildren(
    element("span", { class: segments.length ? "flag" : "" }, `${segments.length} flagged segment(s)`),
    document.createTextNode(`, ${flagged} of ${values.length} points above it`),
  );
  $("#anomaly-plot").append(seriesPlot(values, answer.results.map((r) => r.score), answer.threshold, segments));
  const rows = segments.map((segment, i) => {
    const row = element("tr", { class: "segment-row" });
    const window = segment.window ? `${segment.window.start}-${segment.window.end}` : "-";
    const drivers = (segment.points || [])
      .slice()
      .sort((a, b) => b.contribution - a.contribution)
      .slice(0, 5)
      .map((p) => `${p.index} (${fmt(p.contribution, 3)})`)
      .join(", ");
    for (const cell of [`#${i + 1}`, `${segment.start}-${segment.end}`, fmt(segment.max_score), window, drivers || "-"]) {
      row.append(element("td", {}, cell));
    }
    return row;
  });
  $("#anomaly-segments tbody").replaceChildren(...rows);
  $("#anomaly-segments").classList.toggle("hidden", rows.length === 0);
}

// Two panels sharing the x axis: the series with its flagged segments and driving points, then the score
// per point against the threshold.
function seriesPlot(values, scores, threshold, segments) {
  const width = 960;
  const left = 50;
  const plotW = width - left - 10;
  const top = { y: 10, h: 170 };
  const bottom = { y: 200, h: 110 };
  const svg = svgElement("svg", { width, height: 335, viewBox: `0 0 ${width} 335`, role: "img" });
  const x = (i) => left + (plotW * i) / Math.max(1, values.length - 1);
  const scaleY = (panel, low, high) => (v) => panel.y + panel.h - (panel.h * (v - low)) / (high - low || 1);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const y = scaleY(top, low, high);
  const scoreHigh = Math.max(threshold * 1.2, ...scores);
  const ys = scaleY(bottom, 0, scoreHigh);
  for (const segment of segments) {
    const width = Math.max(2, x(segment.end) - x(segment.start));
    svg.append(svgElement("rect", { class: "segment", x: x(segment.start), y: top.y, width, height: bottom.y + bottom.h - top.y }));
    if (segment.window) {
      const w = Math.max(2, x(segment.window.end) - x(segment.window.start));
      svg.append(svgElement("rect", { class: "window", x: x(segment.window.start), y: top.y, width: w, height: top.h }));
    }
  }
  const path = (ys, ysOf) => ys.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${ysOf(v).toFixed(1)}`).join("");
  svg.append(svgElement("path", { class: "series", d: path(values, y) }));
  svg.append(svgElement("path", { class: "score", d: path(scores, ys) }));
  svg.append(svgElement("line", { class: "threshold", x1: left, x2: width - 10, y1: ys(threshold), y2: ys(threshold) }));
  for (const segment of segments) {
    const drivers = (segment.points || []).slice().sort((a, b) => b.contribution - a.contribution).slice(0, 5);
    for (const p of drivers) svg.append(svgElement("circle", { class: "driver", cx: x(p.index), cy: y(values[p.index]), r: 3.5 }));
  }
  const label = (text, tx, ty, anchor = "start") => {
    const node = svgElement("text", { x: tx, y: ty, "text-anchor": anchor });
    node.textContent = text;
    svg.append(node);
  };
  label(fmt(high, 1), left - 4, top.y + 10, "end");
  label(fmt(low, 1), left - 4, top.y + top.h, "end");
  label("score", left - 4, bottom.y + 10, "end");
  label(`threshold ${fmt(threshold, 3)}`, width - 12, ys(threshold) - 4, "end");
  label("0", left, 330);
  label(String(values.length - 1), width - 10, 330, "end");
  return svg;
}

// ---------------------------------------------------------------- models
let modelsLoaded = false;

async function loadModels() {
  if (modelsLoaded) return;
  modelsLoaded = true;
  setStatus("#models-status", "loading...");
  try {
    const { models } = await api("/v1/models");
    $("#models-list").replaceChildren(...models.map(modelCard));
    setStatus("#models-status", "");
    await Promise.all(models.map(fillCard));
  } catch (error) {
    modelsLoaded = false;
    showError("#models-status", error);
  }
}

function modelCard(model) {
  const card = element("article", { class: "model", "data-model": model.name });
  const title = element("h3", {}, `${model.name} `);
  title.append(element("span", { class: `state ${model.state}` }, model.state));
  card.append(title, element("p", { class: "muted" }, `${model.task || "unknown task"}. ${model.description || ""}`));
  const versions = element("ul", { class: "versions" });
  for (const v of model.versions) {
    const labels = v.labels && v.labels.length ? `, labels: ${v.labels.join(", ")}` : "";
    const threshold = v.threshold != null ? `, threshold ${fmt(v.threshold)}` : "";
    versions.append(element("li", {}, `version ${v.version}: ${v.state}${v.reason ? ` (${v.reason})` : ""}${labels}${threshold}`));
  }
  card.append(versions, element("div", { class: "figures" }), element("div", { class: "plots" }));
  return card;
}

// The newest version's card.json figures (numbers in `metrics`) and its plots, fetched with the token.
async function fillCard(model) {
  const card = document.querySelector(`.model[data-model="${CSS.escape(model.name)}"]`);
  const version = model.versions.length ? model.versions[0].version : null;
  if (version == null) return;
  const base = `/v1/models/${encodeURIComponent(model.name)}/versions/${version}/files`;
  try {
    const { files } = await api(base);
    if (files.includes("card.json")) {
      const figures = card.querySelector(".figures");
      // Per-class figures would bury the headline ones; the confusion matrix plot shows them.
      const metrics = flatten((await api(`${base}/card.json`)).metrics || {}).filter(([key]) => !key.includes("per_class"));
      for (const [key, value] of metrics.slice(0, 24)) {
        const item = element("div", {}, key);
        item.append(element("span", {}, fmt(value)));
        figures.append(item);
      }
    }
    for (const file of files.filter((f) => f !== "card.json")) {
      const image = element("img", { alt: `${model.name} ${file}`, title: file });
      image.src = URL.createObjectURL(await api(`${base}/${encodeURIComponent(file)}`, { blob: true }));
      card.querySelector(".plots").append(image);
    }
  } catch (error) {
    card.append(element("p", { class: "status error" }, `card: ${error.message}`));
  }
}

// Numeric leaves of a nested object, as [dotted key, number]; lists (curves) are left to the plots.
function flatten(object, prefix = "") {
  const out = [];
  for (const [key, value] of Object.entries(object)) {
    if (typeof value === "number") out.push([prefix + key, value]);
    else if (value && typeof value === "object" && !Array.isArray(value)) out.push(...flatten(value, `${prefix}${key}.`));
  }
  return out;
}

// ---------------------------------------------------------------- start
document.addEventListener("DOMContentLoaded", async () => {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      history.replaceState(null, "", `#${button.dataset.view}`);
      showView(button.dataset.view);
    });
  }
  setupToken();
  setupVision();
  setupText();
  const view = location.hash.slice(1);
  if (["vision", "text", "anomaly", "models"].includes(view)) showView(view);
  await Promise.all([refreshPickers(), setupAnomaly()]);
  document.body.dataset.ready = "true";
});
