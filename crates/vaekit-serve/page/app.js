// vaekit serve's page: plain JavaScript against the JSON API (see the README).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const state = {
  info: null,        // GET /api/model
  atlas: null,       // GET /api/atlas
  code: [],          // the current code
  cls: 0,            // the class of a conditional model
  order: [],         // dimensions by KL, largest first
  drawn: null,       // the last encoded drawing's code
  attrBase: null,    // the code the attribute slider started from
};

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "muted";
}

async function api(path, options) {
  const r = await fetch(path, options);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

// ---- the URL holds the view: #z=...&seed=&t=&class= ----
function writeHash() {
  const p = new URLSearchParams();
  p.set("z", state.code.map((v) => v.toFixed(3)).join(","));
  p.set("seed", $("seed").value);
  p.set("t", $("temperature").value);
  if (state.info && state.info.classes > 0) p.set("class", String(state.cls));
  history.replaceState(null, "", "#" + p.toString());
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("seed")) $("seed").value = p.get("seed");
  if (p.has("t")) $("temperature").value = p.get("t");
  if (p.has("class")) state.cls = parseInt(p.get("class"), 10) || 0;
  if (p.has("z")) {
    const z = p.get("z").split(",").map(Number);
    if (z.length === state.info.latent && z.every(Number.isFinite)) state.code = z;
  }
}

// ---- live decoding over a WebSocket (the server keeps only the newest request) ----
let socket = null;
let sentAt = 0;
let shownUrl = null;

function show(blob) {
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = URL.createObjectURL(blob);
  $("decoded").src = shownUrl;
  status("decoded in " + Math.round(performance.now() - sentAt) + " ms");
}

function openSocket() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + "/api/live");
  ws.binaryType = "blob";
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      try { status(JSON.parse(ev.data).error, true); } catch (e) { status(ev.data, true); }
    } else {
      show(ev.data);
    }
  };
  ws.onclose = () => { socket = null; delete document.body.dataset.live; setTimeout(openSocket, 1000); };
  ws.onopen = () => { socket = ws; document.body.dataset.live = "1"; decode(); };
}

function request() {
  const body = { z: [state.code] };
  if (state.info.classes > 0) body.class = state.cls;
  return body;
}

async function decode() {
  sentAt = performance.now();
  writeHash();
  syncSliders();
  drawPad();
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(request()));
    return;
  }
  try {
    const r = await api("/api/decode", { method: "POST", body: JSON.stringify(request()),
      headers: { "content-type": "application/json" } });
    show(await r.blob());
  } catch (e) {
    status(e.message, true);
  }
}

// ---- sliders, one per dimension (the first N by KL) ----
function buildSliders() {
  const box = $("sliders");
  box.textContent = "";
  const want = $("dimcount").value;
  const n = want === "all" ? state.order.length : Math.min(parseInt(want, 10), state.order.length);
  const atlas = state.atlas;
  for (const d of state.order.slice(0, n)) {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    const kl = atlas && atlas.kl_per_dim.length ? " " + atlas.kl_per_dim[d].toFixed(2) : "";
    label.textContent = "z" + d + kl;
    label.title = "dimension " + d + (kl ? ", mean KL" + kl + " nats" : "");
    const input = document.createElement("input");
    input.type = "range"; input.min = -3; input.max = 3; input.step = 0.01;
    input.value = state.code[d];
    input.dataset.dim = d;
    input.id = "z" + d;
    const value = document.createElement("span");
    value.className = "muted";
    value.textContent = state.code[d].toFixed(2);
    input.addEventListener("input", () => {
      state.code[d] = parseFloat(input.value);
      value.textContent = state.code[d].toFixed(2);
      state.attrBase = null;
      decode();
    });
    row.append(label, input, value);
    box.append(row);
    if (atlas && atlas.spread.length) {
      // The posterior's spread on this dimension, as a bar on the slider's scale (6 wide).
      const bar = document.createElement("div");
      bar.className = "spread";
      bar.style.width = Math.min(100, (100 * 2 * atlas.spread[d]) / 6).toFixed(1) + "%";
      bar.title = "mean posterior std " + atlas.spread[d].toFixed(2);
      box.append(bar);
    }
  }
}

function syncSliders() {
  for (const input of $("sliders").querySelectorAll("input")) {
    const d = parseInt(input.dataset.dim, 10);
    if (document.activeElement !== input) input.value = state.code[d];
    input.nextSibling.textContent = state.code[d].toFixed(2);
  }
}

// ---- the 2-D pad ----
const pad = { dragging: false, bounds: [-3, 3, -3, 3] };

function planeCoords(code) {
  if ($("plane").value === "pca" && state.atlas && state.atlas.pca_components.length === 2) {
    const m = state.atlas.pca_mean;
    return state.atlas.pca_components.map((c) => c.reduce((s, v, j) => s + v * (code[j] - m[j]), 0));
  }
  return [code[parseInt($("dim-x").value, 10)], code[parseInt($("dim-y").value, 10)]];
}

function setPlane(x, y) {
  if ($("plane").value === "pca" && state.atlas && state.atlas.pca_components.length === 2) {
    const [cx, cy] = planeCoords(state.code);
    const [c1, c2] = state.atlas.pca_components;
    state.code = state.code.map((v, j) => v + (x - cx) * c1[j] + (y - cy) * c2[j]);
  } else {
    state.code[parseInt($("dim-x").value, 10)] = x;
    state.code[parseInt($("dim-y").value, 10)] = y;
  }
}

function padBounds() {
  let b = [-3, 3, -3, 3];
  if ($("plane").value === "pca" && state.atlas && state.atlas.pca_points.length) {
    const xs = state.atlas.pca_points.map((p) => p[0]);
    const ys = state.atlas.pca_points.map((p) => p[1]);
    const r = Math.max(...xs.map(Math.abs), ...ys.map(Math.abs), 1) * 1.1;
    b = [-r, r, -r, r];
  }
  pad.bounds = b;
}

function toPixel(x, y) {
  const c = $("pad"), [x0, x1, y0, y1] = pad.bounds;
  return [((x - x0) / (x1 - x0)) * c.width, (1 - (y - y0) / (y1 - y0)) * c.height];
}

function fromPixel(px, py) {
  const c = $("pad"), [x0, x1, y0, y1] = pad.bounds;
  return [x0 + (px / c.width) * (x1 - x0), y0 + (1 - py / c.height) * (y1 - y0)];
}

function drawPad() {
  const c = $("pad"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const a = state.atlas;
  if (a && a.means.length) {
    const pca = $("plane").value === "pca" && a.pca_points.length;
    for (let i = 0; i < a.means.length; i++) {
      const p = pca ? a.pca_points[i] : planeCoords(a.means[i]);
      const [px, py] = toPixel(p[0], p[1]);
      g.fillStyle = PALETTE[a.labels[i] % PALETTE.length];
      g.globalAlpha = 0.5;
      g.fillRect(px - 1.5, py - 1.5, 3, 3);
    }
    g.globalAlpha = 1;
  }
  const [x, y] = planeCoords(state.code);
  const [px, py] = toPixel(x, y);
  g.strokeStyle = "#000"; g.lineWidth = 2;
  g.beginPath(); g.moveTo(px - 8, py); g.lineTo(px + 8, py); g.moveTo(px, py - 8); g.lineTo(px, py + 8); g.stroke();
}

function padEvent(ev) {
  const r = $("pad").getBoundingClientRect();
  const [x, y] = fromPixel(ev.clientX - r.left, ev.clientY - r.top);
  setPlane(x, y);
  state.attrBase = null;
  decode();
}

// ---- drawing and dropping ----
const ink = { down: false, last: null };

function clearDrawing() {
  const c = $("draw"), g = c.getContext("2d");
  g.fillStyle = "#000"; g.fillRect(0, 0, c.width, c.height);
}

function stroke(ev) {
  const c = $("draw"), g = c.getContext("2d"), r = c.getBoundingClientRect();
  const p = [(ev.clientX - r.left) * (c.width / r.width), (ev.clientY - r.top) * (c.height / r.height)];
  g.strokeStyle = "#fff"; g.lineWidth = 22; g.lineCap = "round";
  g.beginPath();
  const from = ink.last || p;
  g.moveTo(from[0], from[1]); g.lineTo(p[0], p[1]); g.stroke();
  ink.last = p;
}

async function encodeBlob(blob) {
  const q = state.info.classes > 0 ? "?class=" + state.cls : "";
  try {
    const r = await api("/api/encode" + q, { method: "POST", body: blob });
    const { mean } = await r.json();
    state.code = mean;
    state.drawn = mean.slice();
    state.attrBase = null;
    decode();
  } catch (e) {
    status(e.message, true);
  }
}

function encodeDrawing() {
  $("draw").toBlob((blob) => encodeBlob(blob), "image/png");
}

function useFile(file) {
  if (!file) return;
  const img = new Image();
  img.onload = () => {
    const c = $("draw");
    clearDrawing();
    c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
    URL.revokeObjectURL(img.src);
  };
  img.src = URL.createObjectURL(file);
  encodeBlob(file);
}

// ---- sampling, interpolation, attribute vectors ----
async function sampleGrid(setCode) {
  const t = $("temperature").value, seed = $("seed").value;
  const cls = state.info.classes > 0 ? "&class=" + state.cls : "";
  try {
    if (setCode) {
      const r = await api("/api/sample?n=1&format=json&seed=" + seed + "&temperature=" + t + cls);
      state.code = (await r.json()).z[0];
      state.attrBase = null;
      decode();
    }
    const grid = await api("/api/sample?n=16&columns=4&seed=" + seed + "&temperature=" + t + cls);
    const old = $("samples").src;
    $("samples").src = URL.createObjectURL(await grid.blob());
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (e) {
    status(e.message, true);
  }
}

function end(which) {
  const key = which === "from" ? "drawnFrom" : "drawnTo";
  if (state[key]) return state[key];
  return parseInt($(which).value, 10);
}

async function interpolateStrip() {
  const body = { from: end("from"), to: end("to"), steps: parseInt($("steps").value, 10),
    spherical: $("slerp").checked };
  if (state.info.classes > 0) body.class = state.cls;
  try {
    const r = await api("/api/interpolate", { method: "POST", body: JSON.stringify(body),
      headers: { "content-type": "application/json" } });
    $("strip").src = URL.createObjectURL(await r.blob());
  } catch (e) {
    status(e.message, true);
  }
}

function thumbs() {
  for (const w of ["from", "to"]) {
    const i = parseInt($(w).value, 10);
    if (state.info.test_images > 0 && i >= 0 && i < state.info.test_images) {
      $(w + "-img").src = "/api/test-image?index=" + i;
    }
  }
}

function applyAttribute() {
  const a = state.atlas;
  const from = a.class_means[parseInt($("attr-from").value, 10)];
  const to = a.class_means[parseInt($("attr-to").value, 10)];
  const s = parseFloat($("strength").value);
  $("strength-value").textContent = s.toFixed(2);
  if (!from || !to) return;
  if (!state.attrBase) state.attrBase = state.code.slice();
  const base = state.attrBase;
  state.code = base.map((v, j) => v + s * (to[j] - from[j]));
  decode();
}

function className(i) {
  const names = state.info.class_names;
  return names && names[i] ? i + ": " + names[i] : String(i);
}

// ---- start ----
async function start() {
  state.info = await (await api("/api/model")).json();
  state.atlas = await (await api("/api/atlas")).json();
  const info = state.info, a = state.atlas;
  const [c, h, w] = info.image;
  $("info").textContent = info.kind + " · z = " + info.latent + " · " + c + "x" + h + "x" + w +
    " · epoch " + info.epoch + (info.classes > 0 ? " · " + info.classes + " classes" : "");
  state.code = new Array(info.latent).fill(0);
  state.order = [...Array(info.latent).keys()];
  if (a.kl_per_dim.length === info.latent) state.order.sort((x, y) => a.kl_per_dim[y] - a.kl_per_dim[x]);
  for (const sel of ["dim-x", "dim-y"]) {
    for (const d of state.order) sel && $(sel).append(new Option("z" + d, d));
  }
  if (info.latent > 1) $("dim-y").value = state.order[1];
  if (info.classes > 0) {
    $("class-row").hidden = false;
    for (let i = 0; i < info.classes; i++) $("class").append(new Option(className(i), i));
  }
  const nClasses = a.class_means.length;
  for (let i = 0; i < nClasses; i++) {
    $("attr-from").append(new Option(className(i), i));
    $("attr-to").append(new Option(className(i), i));
  }
  if (nClasses > 1) $("attr-to").value = 1;
  $("legend").textContent = a.means.length
    ? a.means.length + " test codes, coloured by class"
    : "no test images on the server";
  readHash();
  $("class").value = state.cls;
  padBounds();
  buildSliders();
  thumbs();
  clearDrawing();

  $("dimcount").addEventListener("change", buildSliders);
  $("class").addEventListener("change", () => { state.cls = parseInt($("class").value, 10); decode(); });
  $("zero").addEventListener("click", () => { state.code = state.code.map(() => 0); state.attrBase = null; decode(); });
  $("share").addEventListener("click", () => { writeHash(); navigator.clipboard && navigator.clipboard.writeText(location.href); });
  $("plane").addEventListener("change", () => {
    $("dims-pick").hidden = $("plane").value !== "dims";
    padBounds(); drawPad();
  });
  $("dim-x").addEventListener("change", drawPad);
  $("dim-y").addEventListener("change", drawPad);
  const p = $("pad");
  p.addEventListener("pointerdown", (ev) => { pad.dragging = true; p.setPointerCapture(ev.pointerId); padEvent(ev); });
  p.addEventListener("pointermove", (ev) => { if (pad.dragging) padEvent(ev); });
  p.addEventListener("pointerup", () => { pad.dragging = false; });
  $("sample").addEventListener("click", () => sampleGrid(true));
  $("new-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e9); sampleGrid(true); });
  const d = $("draw");
  d.addEventListener("pointerdown", (ev) => { ink.down = true; ink.last = null; d.setPointerCapture(ev.pointerId); stroke(ev); });
  d.addEventListener("pointermove", (ev) => { if (ink.down) stroke(ev); });
  d.addEventListener("pointerup", () => { ink.down = false; ink.last = null; encodeDrawing(); });
  d.addEventListener("dragover", (ev) => ev.preventDefault());
  d.addEventListener("drop", (ev) => { ev.preventDefault(); useFile(ev.dataTransfer.files[0]); });
  $("file").addEventListener("change", () => useFile($("file").files[0]));
  $("clear").addEventListener("click", clearDrawing);
  $("encode").addEventListener("click", encodeDrawing);
  $("from").addEventListener("change", () => { state.drawnFrom = null; thumbs(); });
  $("to").addEventListener("change", () => { state.drawnTo = null; thumbs(); });
  $("use-drawn-from").addEventListener("click", () => { state.drawnFrom = state.drawn; });
  $("use-drawn-to").addEventListener("click", () => { state.drawnTo = state.drawn; });
  $("interpolate").addEventListener("click", interpolateStrip);
  $("strength").addEventListener("input", applyAttribute);
  $("attr-from").addEventListener("change", () => { state.attrBase = null; });
  $("attr-to").addEventListener("change", () => { state.attrBase = null; });

  await decode();
  await sampleGrid(false);
  openSocket();
  document.body.dataset.ready = "1";
}

start().catch((e) => status("could not load the model: " + e.message, true));
