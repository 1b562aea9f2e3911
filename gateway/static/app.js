// UltraMN web viewer: a plain client of the gateway's /v1 JSON API (see docs/api.md).
//
// Upload a clip, follow its progress, play its frames with the nerve overlay, show the plane
// timeline, the CSA over time and the current frame's measurements, list stored analyses.
// No build step and no dependencies: modern browsers only (ES modules, fetch, canvas).

import { initLive } from "./live.js";

const PLANES = ["TW", "TF", "LW", "LF"];
const KEY_STORAGE = "ultramn.apiKey";
const POLL_MS = 400;
const FRAME_FETCH_CONCURRENCY = 4;
// Nerve tint of the overlay canvas (RGB); the alpha is the opacity slider's value.
const TINT = [34, 230, 120];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API access

/** An error answered by the API: HTTP status plus the body's `{error: {code, message}}`. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

/** An HTTP header carries visible ASCII only: a key with other characters could never be sent. */
const validKey = (key) => /^[\x21-\x7e]+$/.test(key);
const BAD_KEY = "the API key may hold visible ASCII characters only (no spaces, accents or other scripts)";

function authHeaders() {
  const key = apiKey();
  if (key && !validKey(key)) throw new ApiError(0, "invalid_api_key", BAD_KEY);
  return key ? { "X-API-Key": key } : {};
}

/** Turn a non-2xx response (any body) into an ApiError. */
async function errorFrom(status, statusText, bodyText) {
  try {
    const body = JSON.parse(bodyText);
    if (body && body.error && body.error.code) {
      return new ApiError(status, body.error.code, body.error.message || statusText);
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(status, `http_${status}`, statusText || "request failed");
}

/** fetch() with the API key; throws ApiError on HTTP errors and on network failures. */
async function api(path, options = {}) {
  let response;
  const headers = authHeaders(); // throws on a stored key that no request can carry
  try {
    response = await fetch(path, { ...options, headers: { ...headers, ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError(0, "network_error", `cannot reach the gateway (${err.message})`);
  }
  if (!response.ok) throw await errorFrom(response.status, response.statusText, await response.text());
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();

// ---------------------------------------------------------------- error banner

function showError(err) {
  const code = err instanceof ApiError ? err.code : "error";
  const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : "";
  $("error-code").textContent = `${code}${status}:`;
  $("error-message").textContent = err.message || String(err);
  $("error").dataset.code = code;
  $("error").hidden = false;
  console.error(err);
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

// ---------------------------------------------------------------- formatting

const fmt = (value, digits = 2) => (value === null || value === undefined ? "—" : Number(value).toFixed(digits));
/** An area with its unit: mm² to 2 decimals, or a pixel count (the API's unit "px" for areas means px²). */
const area = (value, mm) => (value === null || value === undefined ? "—" : mm ? `${fmt(value)} mm²` : `${fmt(value, 0)} px²`);
/** Longitudinal views: the mask is the nerve's band, so its area is not a cross-sectional area (CSA). */
const LONGITUDINAL = new Set(["LW", "LF"]);
const pct = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 100)} %`);

function planeChip(plane) {
  const span = document.createElement("span");
  span.className = plane ? `chip plane-${plane}` : "chip";
  span.textContent = plane || "—";
  return span;
}

function shortTime(iso, seconds = false) {
  const d = new Date(iso);
  const opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false };
  return d.toLocaleString(undefined, seconds ? { ...opts, second: "2-digit" } : opts);
}

// ---------------------------------------------------------------- viewer state

const state = {
  analysis: null, // GET /v1/analyses/{id} body (with result.frames); null until the open analysis succeeded
  openId: null, // id of the analysis on screen, whatever its status
  nFrames: 0,
  current: 0,
  images: [], // per frame: ImageBitmap of image.png, once loaded
  masks: [], // per frame: Uint8Array (1 = nerve) of mask.png, once loaded
  loadToken: 0, // bumped when another analysis opens: stale loads are dropped
  // Frames (image + mask) held in memory, from the current one onwards: bounds memory on long clips.
  preload: 240,
  loadFrom: 0, // first frame of the preload window (`preload` frames, wrapping)
  playing: false,
  lastTick: 0,
  pollToken: 0,
};

function frameUrl(id, i, kind) {
  return `/v1/analyses/${id}/frames/${i}/${kind}.png`;
}

async function fetchBitmap(url) {
  const blob = await (await api(url)).blob();
  return createImageBitmap(blob);
}

/** The mask PNG of a frame as 0/1 bytes (nerve = 255 in the PNG). */
async function fetchMask(url, width, height) {
  const bitmap = await fetchBitmap(url);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const mask = new Uint8Array(width * height);
  for (let p = 0; p < mask.length; p++) mask[p] = rgba[p * 4] > 127 ? 1 : 0;
  return mask;
}

/**
 * Load the frames and masks of the open analysis from frame `from` onwards (wrapping), a few
 * at a time, and drop those outside that window. Short clips are loaded whole, once.
 */
async function loadFrames(from) {
  const token = ++state.loadToken;
  const { id } = state.analysis;
  const { width, height } = state.analysis.result.frame_size;
  const n = state.nFrames;
  const count = Math.min(n, state.preload);
  state.loadFrom = from;
  const order = [];
  for (let k = 0; k < count; k++) order.push((from + k) % n);
  if (count < n) {
    const keep = new Set(order);
    for (let i = 0; i < n; i++) {
      if (!keep.has(i) && state.images[i]) {
        state.images[i].close();
        state.images[i] = undefined;
        state.masks[i] = undefined;
      }
    }
  }
  const todo = order.filter((i) => !state.images[i] || !state.masks[i]);
  let next = 0;
  const worker = async () => {
    while (next < todo.length && token === state.loadToken) {
      const i = todo[next++];
      const [image, mask] = await Promise.all([
        fetchBitmap(frameUrl(id, i, "image")),
        fetchMask(frameUrl(id, i, "mask"), width, height),
      ]);
      if (token !== state.loadToken) return;
      state.images[i] = image;
      state.masks[i] = mask;
      if (i === state.current) render();
    }
  };
  try {
    await Promise.all(Array.from({ length: FRAME_FETCH_CONCURRENCY }, worker));
  } catch (err) {
    if (token === state.loadToken) showError(err);
  }
}

/** On long clips, move the preload window when frame `i` is outside it or past its middle. */
function followPreload(i) {
  const n = state.nFrames;
  if (n <= state.preload) return;
  const offset = (i - state.loadFrom + n) % n;
  if (offset >= state.preload / 2) loadFrames(i);
}

// ---------------------------------------------------------------- drawing

/**
 * Paint the mask onto the overlay canvas: nerve pixels get the tint with alpha = opacity,
 * every other pixel stays fully transparent (so the canvas shows the mask exactly).
 */
function drawOverlay(mask, width, height, opacity) {
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const px = image.data;
  const alpha = Math.round(Math.min(1, Math.max(0, opacity)) * 255);
  for (let p = 0; p < mask.length; p++) {
    if (mask[p]) {
      const o = p * 4;
      px[o] = TINT[0];
      px[o + 1] = TINT[1];
      px[o + 2] = TINT[2];
      px[o + 3] = alpha;
    }
  }
  ctx.putImageData(image, 0, 0);
}

function render() {
  const a = state.analysis;
  if (!a || !a.result) return;
  const i = state.current;
  const { width, height } = a.result.frame_size;
  const image = state.images[i];
  const mask = state.masks[i];
  $("buffering").hidden = Boolean(image);
  const frameCtx = $("frame").getContext("2d");
  if (image) frameCtx.drawImage(image, 0, 0);
  const overlay = $("overlay");
  const showOverlay = $("overlay-toggle").checked;
  if (mask && showOverlay) {
    drawOverlay(mask, width, height, Number($("opacity").value));
  } else {
    overlay.getContext("2d").clearRect(0, 0, width, height);
  }
  // Which frame the canvases show (tests and scripts read these).
  $("frame").dataset.frame = image ? String(i) : "";
  overlay.dataset.frame = mask || !showOverlay ? String(i) : "";
  overlay.dataset.visible = String(showOverlay);
  updateFrameInfo();
}

function updateFrameInfo() {
  const a = state.analysis;
  const i = state.current;
  const f = a.result.frames ? a.result.frames[i] : null;
  $("frame-slider").value = String(i);
  $("frame-label").textContent = `${i + 1} / ${state.nFrames}`;
  $("m-frame").textContent = `${i + 1}/${state.nFrames} · idx ${i}`; // the count as under the player; the index as in the API and the plot
  const tMarker = $("timeline-marker");
  tMarker.style.left = `${((i + 0.5) / state.nFrames) * 100}%`;
  const csaMarker = document.querySelector("#csa-plot .cursor");
  if (csaMarker) {
    const x = plotX(i);
    csaMarker.setAttribute("x1", x);
    csaMarker.setAttribute("x2", x);
  }
  if (!f) return;
  const mm = a.result.pixel_spacing_mm !== null;
  const plane = $("m-plane");
  plane.replaceChildren(planeChip(f.plane), document.createTextNode(` ${pct(f.confidence)}`));
  plane.dataset.plane = f.plane;
  $("m-present").textContent = f.nerve_present ? "present" : "not found";
  $("m-csa").textContent = !f.nerve_present ? "—" : mm ? `${area(f.csa_mm2, true)} (${area(f.csa_px, false)})` : area(f.csa_px, false);
  $("m-centroid").textContent = !f.centroid
    ? "—"
    : mm && f.centroid_mm
      ? `${fmt(f.centroid_mm[0])}, ${fmt(f.centroid_mm[1])} mm`
      : `${fmt(f.centroid[0], 1)}, ${fmt(f.centroid[1], 1)} px`;
  $("m-perimeter").textContent = !f.nerve_present ? "—" : mm ? `${fmt(f.perimeter_mm)} mm` : `${fmt(f.perimeter_px, 1)} px`;
  $("m-circularity").textContent = fmt(f.circularity);
  $("m-flattening").textContent = fmt(f.flattening_ratio);
  // Per-plane probability bars of this frame.
  const probs = $("m-probs");
  probs.replaceChildren(
    ...PLANES.map((p) => {
      const row = document.createElement("div");
      row.className = "prob-row";
      const v = f.plane_probs ? f.plane_probs[p] : 0;
      row.innerHTML = `<span class="prob-name">${p}</span><span class="prob-bar"><span class="plane-${p}" style="width:${(v * 100).toFixed(1)}%"></span></span><span class="prob-val">${pct(v)}</span>`;
      return row;
    }),
  );
}

function seek(i) {
  if (!state.nFrames) return;
  state.current = Math.max(0, Math.min(state.nFrames - 1, i));
  followPreload(state.current);
  render();
}

// ---------------------------------------------------------------- playback

function setPlaying(on) {
  state.playing = on && state.nFrames > 1;
  $("play").textContent = state.playing ? "❚❚" : "▶";
  $("play").setAttribute("aria-label", state.playing ? "Pause" : "Play");
  if (state.playing) {
    state.lastTick = performance.now();
    requestAnimationFrame(tick);
  }
}

// Advance at the chosen fps; wait on a frame that has not loaded yet instead of skipping it.
function tick(now) {
  if (!state.playing) return;
  const chosen = Number($("fps").value);
  const fps = chosen > 0 ? chosen : 25;
  if (now - state.lastTick >= 1000 / fps) {
    const next = (state.current + 1) % state.nFrames;
    if (state.images[next]) {
      state.lastTick = now;
      seek(next);
    }
  }
  requestAnimationFrame(tick);
}

// ---------------------------------------------------------------- timeline and CSA plot

function drawTimeline(result) {
  const timeline = $("timeline");
  timeline.querySelectorAll(".seg").forEach((el) => el.remove());
  const n = result.n_frames;
  for (const run of result.plane_timeline || []) {
    const seg = document.createElement("div");
    seg.className = `seg plane-${run.plane}`;
    seg.dataset.plane = run.plane;
    seg.dataset.start = run.start;
    seg.dataset.end = run.end;
    seg.style.left = `${(run.start / n) * 100}%`;
    seg.style.width = `${((run.end - run.start + 1) / n) * 100}%`;
    seg.textContent = run.plane;
    const secs = run.start_s !== undefined && run.start_s !== null ? ` (${fmt(run.start_s)}–${fmt(run.end_s)} s)` : "";
    seg.title = `${run.plane}: frames ${run.start}–${run.end}${secs}`;
    timeline.insertBefore(seg, $("timeline-marker"));
  }
  const dur = result.duration_s;
  $("timeline-axis").innerHTML = `<span>0</span><span>${dur ? `${fmt(dur)} s · ` : ""}${n} frames</span>`;
}

// Plot geometry in SVG units; w/h follow the element's size (see drawCsaPlot).
const PLOT = { w: 600, h: 130, left: 44, right: 10, top: 10, bottom: 20 };

function plotX(i) {
  const n = Math.max(1, state.nFrames - 1);
  return PLOT.left + (i / n) * (PLOT.w - PLOT.left - PLOT.right);
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A "nice" tick step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || mag * 10;
}

/** CSA per frame (mm² when the spacing is known, else px); gaps where no nerve was found. */
function drawCsaPlot(result) {
  const plot = $("csa-plot");
  // Draw in the element's own pixel units so text and strokes are not stretched.
  PLOT.w = Math.max(200, Math.round(plot.clientWidth || 600));
  PLOT.h = Math.max(80, Math.round(plot.clientHeight || 130));
  plot.setAttribute("viewBox", `0 0 ${PLOT.w} ${PLOT.h}`);
  plot.replaceChildren();
  const mm = result.pixel_spacing_mm !== null;
  const frames = result.frames || [];
  const values = frames.map((f) => (f.nerve_present ? (mm ? f.csa_mm2 : f.csa_px) : null));
  const unit = mm ? "mm²" : "px²";
  $("csa-unit").textContent = `unit: ${unit}`;
  plot.dataset.unit = unit;
  const present = values.filter((v) => v !== null);
  const innerH = PLOT.h - PLOT.top - PLOT.bottom;
  const yStep = niceStep(present.length ? Math.max(...present) : 1, 3);
  const yMax = Math.max(yStep, Math.ceil((present.length ? Math.max(...present) : 1) / yStep) * yStep);
  const y = (v) => PLOT.top + innerH - (v / yMax) * innerH;
  const digits = yStep < 1 ? 1 : 0;

  // horizontal grid with y labels, x ticks in frames
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    plot.append(svg("line", { x1: PLOT.left, x2: PLOT.w - PLOT.right, y1: y(v), y2: y(v), class: "grid" }));
    plot.append(svg("text", { x: PLOT.left - 6, y: y(v) + 3.5, class: "tick", "text-anchor": "end" }, v.toFixed(digits)));
  }
  const xStep = Math.max(1, niceStep(Math.max(1, frames.length - 1), 8)); // frames are whole numbers
  for (let i = 0; i < frames.length; i += xStep) {
    plot.append(svg("text", { x: plotX(i), y: PLOT.h - 5, class: "tick", "text-anchor": "middle" }, String(i)));
  }
  plot.append(svg("text", { x: PLOT.w - PLOT.right, y: PLOT.h - 5, class: "tick", "text-anchor": "end" }, "frame"));

  // one polyline per run of frames with a nerve
  let points = [];
  const flush = () => {
    if (points.length > 1) plot.append(svg("polyline", { points: points.join(" "), class: "line" }));
    if (points.length === 1) {
      const [cx, cy] = points[0].split(",");
      plot.append(svg("circle", { cx, cy, r: 2.5, class: "dot" }));
    }
    points = [];
  };
  values.forEach((v, i) => {
    if (v === null) flush();
    else points.push(`${plotX(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  flush();
  if (!present.length) {
    plot.append(svg("text", { x: PLOT.w / 2, y: PLOT.h / 2, class: "empty", "text-anchor": "middle" }, "no nerve found in this clip"));
  }
  plot.append(svg("line", { x1: plotX(state.current), x2: plotX(state.current), y1: PLOT.top, y2: PLOT.h - PLOT.bottom, class: "cursor" }));
}

// ---------------------------------------------------------------- open an analysis

function showViewer(on) {
  $("viewer").hidden = !on;
  $("empty-state").hidden = on;
  if (on) {
    $("empty-title").textContent = "No analysis open";
    $("empty-text").textContent = "Upload a clip or pick one from the list of analyses.";
  }
}

/**
 * Why a queued/running job is not moving, from its `error` (kept while it waits for a retry):
 * "" when it has none.
 */
function waitReason(detail) {
  const e = detail.error;
  if (!e || (detail.status !== "queued" && detail.status !== "running")) return "";
  return e.code === "triton_unavailable" ? `waiting for the inference server (${e.code})` : `${e.code}: ${e.message}`;
}

function setJobStatus(detail) {
  const box = $("job-status");
  if (detail.status === "succeeded") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.status = detail.status;
  const p = detail.progress || {};
  const progress = p.windows_total ? ` — ${p.windows_done} / ${p.windows_total} windows` : "";
  const reason = waitReason(detail);
  const error = reason ? ` — ${reason}` : detail.error ? ` — ${detail.error.code}: ${detail.error.message}` : "";
  box.textContent = `Status: ${detail.status}${progress}${error}`;
}

/** Open analysis `id`: poll while it is queued/running, then load the player. */
async function openAnalysis(id) {
  if (!$("live-area").hidden) $("live-stop").click(); // opening an analysis leaves live mode
  clearError();
  setPlaying(false);
  const token = ++state.pollToken;
  state.loadToken++;
  // forget the previous analysis: its player, keys and masks download must not act on this one
  state.analysis = null;
  state.openId = id;
  $("dl-npz").disabled = true;
  $("dl-csv").disabled = true;
  $("dl-mp4").disabled = true;
  delete $("viewer").dataset.id;
  history.replaceState(null, "", `#/analyses/${id}`);
  markSelectedRow(id);
  // Another open (a click, the address, an upload) may start during any await below: only
  // the latest one may touch the page.
  const stale = () => token !== state.pollToken;
  let detail;
  try {
    detail = await apiJson(`/v1/analyses/${id}?include_frames=false`);
    if (stale()) return;
    showViewer(true);
    $("title").textContent = `Analysis ${id.slice(0, 8)}`;
    $("title").title = id;
    $("subtitle").textContent = `${detail.format || "?"} · ${detail.n_frames ?? "?"} frames · created ${shortTime(detail.created_at, true)}`;
    $("player-area").hidden = true;
    while (detail.status === "queued" || detail.status === "running") {
      setJobStatus(detail);
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (stale()) return;
      detail = await apiJson(`/v1/analyses/${id}?include_frames=false`);
      if (stale()) return;
    }
    setJobStatus(detail);
    if (detail.status !== "succeeded") return;
    detail = await apiJson(`/v1/analyses/${id}`);
  } catch (err) {
    if (stale()) return;
    // Nothing of the previous analysis may stay on screen under this one's address.
    $("player-area").hidden = true;
    $("job-status").hidden = true;
    showViewer(false);
    $("empty-title").textContent = `Analysis ${id.slice(0, 8)} could not be opened`;
    $("empty-text").textContent = err.message || String(err);
    showError(err);
    return;
  }
  if (stale()) return;
  loadAnalysis(detail);
}

function loadAnalysis(detail) {
  const r = detail.result;
  state.analysis = detail;
  $("dl-npz").disabled = false;
  $("dl-csv").disabled = false;
  $("dl-mp4").disabled = false;
  state.nFrames = r.n_frames;
  state.current = 0;
  state.images = new Array(r.n_frames);
  state.masks = new Array(r.n_frames);
  $("player-area").hidden = false;
  for (const id of ["frame", "overlay"]) {
    $(id).width = r.frame_size.width;
    $(id).height = r.frame_size.height;
  }
  $("stage").style.aspectRatio = `${r.frame_size.width} / ${r.frame_size.height}`;
  $("frame-slider").max = String(r.n_frames - 1);
  $("fps").value = String(r.fps > 0 ? Number(r.fps.toPrecision(4)) : 25);
  $("viewer").dataset.id = detail.id;

  // clip summary
  const mm = r.pixel_spacing_mm !== null;
  const plane = $("clip-plane");
  plane.replaceChildren(planeChip(r.plane), document.createTextNode(` ${pct(r.plane_confidence)}`));
  plane.dataset.plane = r.plane || "";
  $("clip-frames").textContent = `${r.n_frames} · ${r.frame_size.width}×${r.frame_size.height}${r.fps > 0 ? ` · ${Number(r.fps.toPrecision(4))} fps` : ""}`;
  const sp = r.pixel_spacing_mm;
  const spacing = !mm ? "" : sp.dy === undefined || sp.dy === sp.dx ? fmt(sp.dx, 4) : `${fmt(sp.dx, 4)} × ${fmt(sp.dy, 4)}`;
  $("clip-spacing").textContent = mm ? `${spacing} mm/px (${r.spacing_source})` : "unknown (px units)";
  $("clip-spacing").title = mm ? "column (dx) × row (dy) spacing" : "";
  $("clip-patient").textContent = detail.patient ? [detail.patient, detail.side, detail.visit].filter(Boolean).join(" · ") : "—";
  $("clip-nerve").textContent = pct(r.nerve_fraction) + " of frames";
  const c = r.csa || {};
  const inMm = c.unit === "mm2";
  $("clip-csa").textContent = area(c.median, inMm);
  $("clip-csa-range").textContent = c.min === null || c.min === undefined ? "—" : `${area(c.min, inMm)} – ${area(c.max, inMm)}`;
  const band = LONGITUDINAL.has(r.plane); // the view decides the name: CSA (transverse) or the band's area
  $("m-csa-label").textContent = band ? "Area" : "CSA";
  $("clip-csa-label").textContent = band ? "Area median" : "CSA median";
  $("clip-csa-range-label").textContent = band ? "Area range" : "CSA range";
  $("csa-title").textContent = band ? "Nerve band area over time (longitudinal view: not a CSA)" : "Cross-sectional area over time";
  $("csa-plot").setAttribute("aria-label", band ? "Nerve band area over time" : "Cross-sectional area over time");
  const e = r.excursion || {};
  // the same figure as summary.csv's "excursion" (largest distance from the first frame), then the path length
  $("clip-excursion").textContent =
    e.max_from_first === null || e.max_from_first === undefined
      ? "—"
      : `${fmt(e.max_from_first)} ${e.unit} from start · ${fmt(e.path_length)} ${e.unit} path` +
        (e.relative_to_tissue ? ` · ${fmt(e.relative_to_tissue.max_from_first)} ${e.unit} against the tissue` : "");
  // the weights (the SHA-256 of the checkpoint the served model was built from) when the gateway knows them
  const weights = r.model && r.model.weights ? ` · weights ${r.model.weights.slice(0, 12)}` : "";
  $("clip-model").textContent = r.model ? `${r.model.name} v${r.model.version}${weights}` : "—";
  $("clip-model").title = r.model && r.model.weights ? `checkpoint SHA-256 ${r.model.weights}` : "";
  $("clip-time").textContent = r.timings_ms ? `${fmt(r.timings_ms.total, 0)} ms` : "—";
  $("clip-warnings").replaceChildren(
    ...(r.warnings || []).map((w) => {
      const li = document.createElement("li");
      li.textContent = w;
      return li;
    }),
  );

  loadFollowUp(detail);
  drawTimeline(r);
  drawCsaPlot(r);
  render();
  loadFrames(0);
}

// ---------------------------------------------------------------- follow-up

/** The open analysis's patient across visits (GET /v1/patients/{patient}); hidden without a patient. */
async function loadFollowUp(detail) {
  const card = $("follow-up");
  card.hidden = true;
  if (!detail.patient) return;
  const token = state.pollToken;
  let report;
  try {
    report = await apiJson(`/v1/patients/${encodeURIComponent(detail.patient)}`);
  } catch (err) {
    return; // the analysis itself is shown; a follow-up that cannot load is left out
  }
  if (token !== state.pollToken) return; // another analysis was opened meanwhile
  $("follow-up-patient").textContent = report.patient;
  const rows = [];
  for (const side of report.sides) {
    for (const v of side.visits) {
      const tr = document.createElement("tr");
      const site = (s) => {
        if (!s) return "—";
        const change = s.change_from_first_mm2 === null ? "" : ` (${s.change_from_first_mm2 > 0 ? "+" : ""}${fmt(s.change_from_first_mm2)})`;
        return `${fmt(s.csa_mm2)}${change}`;
      };
      const cells = [v.visit, side.side || "?", site(v.wrist), site(v.forearm), v.wrist_to_forearm_ratio === null ? "—" : fmt(v.wrist_to_forearm_ratio)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i >= 2) td.className = "num";
        tr.append(td);
      });
      const ids = [...(v.wrist ? v.wrist.analyses : []), ...(v.forearm ? v.forearm.analyses : [])];
      if (ids.includes(detail.id)) tr.classList.add("selected");
      rows.push(tr);
    }
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="5" class="muted center">no transverse clip with a pixel spacing yet</td>';
    rows.push(tr);
  }
  $("follow-up-body").replaceChildren(...rows);
  const out = Object.entries(report.left_out).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k.replaceAll("_", " ")}`);
  $("follow-up-note").textContent =
    "Wrist = TW, forearm = TF clips: mean of the clips' median CSA; (change since the first visit). " +
    (out.length ? `Not counted: ${out.join(", ")}.` : "");
  card.hidden = false;
}

// ---------------------------------------------------------------- downloads

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadJson() {
  const id = state.openId; // any status: a failed analysis's JSON holds its error
  if (!id) return;
  try {
    const fresh = await apiJson(`/v1/analyses/${id}`);
    saveBlob(new Blob([JSON.stringify(fresh, null, 2)], { type: "application/json" }), `${id}.json`);
  } catch (err) {
    showError(err);
  }
}

// masks.npz, frames.csv, overlay.mp4 of the open analysis, saved as <id>-<name>
async function downloadResultFile(name) {
  const a = state.analysis;
  if (!a) return;
  try {
    const blob = await (await api(`/v1/analyses/${a.id}/${name}`)).blob();
    saveBlob(blob, `${a.id}-${name}`);
  } catch (err) {
    showError(err);
  }
}

async function downloadMp4() {
  const a = state.analysis;
  if (!a) return;
  const button = $("dl-mp4");
  button.disabled = true; // the first request encodes the video: seconds for a long clip
  const label = button.textContent;
  button.textContent = "⤓ Making video…";
  try {
    await downloadResultFile("overlay.mp4");
  } finally {
    button.textContent = label;
    if (state.analysis?.id === a.id) button.disabled = false;
  }
}

// ---------------------------------------------------------------- upload

let chosenFile = null;
let uploading = false; // one upload at a time: "Analyse" stays disabled until it has finished

function chooseFile(file) {
  chosenFile = file || null;
  $("file-name").textContent = chosenFile ? `${chosenFile.name} · ${(chosenFile.size / 1024).toFixed(0)} KiB` : "";
  $("upload-btn").disabled = !chosenFile || uploading;
}

function setBar(id, fraction) {
  const value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  $(id).style.width = `${value}%`;
  $(id).parentElement.setAttribute("aria-valuenow", String(value));
}

/** POST the clip with XMLHttpRequest (fetch cannot report upload progress). */
function postClip(file, spacing, followUp) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (spacing) form.append("pixel_spacing_mm", spacing);
    for (const [k, v] of Object.entries(followUp)) if (v) form.append(k, v);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/analyses");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) {
        setBar("upload-bar", ev.loaded / ev.total);
        $("upload-pct").textContent = `${Math.round((ev.loaded / ev.total) * 100)} %`;
      }
    };
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(await errorFrom(xhr.status, xhr.statusText, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, "network_error", "the upload did not reach the gateway"));
    xhr.send(form);
  });
}

async function upload(ev) {
  ev.preventDefault();
  if (!chosenFile || uploading) return;
  uploading = true;
  clearError();
  const spacing = $("spacing").value.trim();
  const followUp = { patient: $("patient").value.trim(), side: $("side").value, visit: $("visit").value };
  // An analysis the user opens while this one uploads/processes keeps the view (see below).
  const opensAtStart = state.pollToken;
  $("progress").hidden = false;
  $("upload-btn").disabled = true;
  setBar("upload-bar", 0);
  setBar("process-bar", 0);
  $("upload-pct").textContent = "0 %";
  $("process-text").textContent = "waiting";
  $("progress").dataset.state = "uploading";
  try {
    let detail = await postClip(chosenFile, spacing, followUp);
    setBar("upload-bar", 1);
    $("upload-pct").textContent = "100 %";
    const id = detail.id;
    // Poll the job for the processing bar; the list shows it right away.
    refreshList();
    while (detail.status === "queued" || detail.status === "running") {
      const p = detail.progress || {};
      setBar("process-bar", p.fraction || 0);
      const reason = waitReason(detail);
      $("process-text").textContent = reason
        ? `${detail.status} — ${reason}`
        : `${detail.status} · ${p.windows_done ?? 0} / ${p.windows_total ?? "?"} windows`;
      $("progress").dataset.state = detail.status;
      $("progress").dataset.reason = detail.error ? detail.error.code : "";
      await new Promise((r) => setTimeout(r, POLL_MS));
      detail = await apiJson(`/v1/analyses/${id}?include_frames=false`);
    }
    setBar("process-bar", detail.status === "succeeded" ? 1 : 0);
    $("process-text").textContent = detail.status;
    $("progress").dataset.state = detail.status;
    $("progress").dataset.reason = "";
    // Show the new analysis unless the user opened another one meanwhile: then only list it.
    refreshList();
    if (state.pollToken === opensAtStart) await openAnalysis(id);
    // After openAnalysis (which clears the banner): a failed job says why.
    if (detail.status === "failed" && detail.error) showError(new ApiError(0, detail.error.code, detail.error.message));
  } catch (err) {
    $("progress").dataset.state = "error";
    $("process-text").textContent = "error";
    showError(err);
  } finally {
    uploading = false;
    $("upload-btn").disabled = !chosenFile;
  }
}

// ---------------------------------------------------------------- results list

const list = { cursors: [null], page: 0, nextCursor: null, token: 0 };

async function loadPage() {
  const q = new URLSearchParams();
  const size = Math.max(1, Math.min(200, Number($("page-size").value) || 12));
  q.set("limit", String(size));
  if ($("filter-plane").value) q.set("plane", $("filter-plane").value);
  if ($("filter-status").value) q.set("status", $("filter-status").value);
  if ($("filter-patient").value.trim()) q.set("patient", $("filter-patient").value.trim());
  const cursor = list.cursors[list.page];
  if (cursor) q.set("cursor", cursor);
  // Filters can change while a page is in flight: only the latest request may render.
  const token = ++list.token;
  try {
    const body = await apiJson(`/v1/analyses?${q}`);
    if (token !== list.token) return;
    list.nextCursor = body.next_cursor;
    renderList(body.items);
  } catch (err) {
    if (token === list.token) showError(err);
  }
}

/** What a row shows; equal keys mean the row can stay as it is. */
function rowKey(it) {
  return [it.id, it.status, it.plane || "", it.n_frames ?? "", it.created_at].join("|");
}

function renderList(items) {
  const tbody = $("results-body");
  // A refresh that returns the rows already shown keeps the DOM nodes: replacing a row
  // between a user's mousedown and mouseup would swallow the click (a page-size input
  // fires "change" again when it loses focus to that very click).
  const key = items.map(rowKey).join("\n");
  if (items.length && tbody.dataset.key === key) {
    updateListControls();
    return;
  }
  tbody.dataset.key = key;
  tbody.replaceChildren(
    ...items.map((it) => {
      const tr = document.createElement("tr");
      tr.dataset.id = it.id;
      tr.dataset.status = it.status;
      tr.dataset.plane = it.plane || "";
      tr.tabIndex = 0;
      const cells = [shortTime(it.created_at), it.id.slice(0, 8), null, null, it.n_frames ?? "—"];
      cells.forEach((text, k) => {
        const td = document.createElement("td");
        if (k === 2) {
          const s = document.createElement("span");
          s.className = `status status-${it.status}`;
          s.textContent = it.status;
          td.append(s);
        } else if (k === 3) {
          td.append(planeChip(it.plane));
        } else {
          td.textContent = String(text);
        }
        if (k === 1) td.className = "mono";
        if (k === 4) td.className = "num";
        tr.append(td);
      });
      tr.title = it.id;
      tr.addEventListener("click", () => openAnalysis(it.id));
      tr.addEventListener("keydown", (ev) => ev.key === "Enter" && openAnalysis(it.id));
      return tr;
    }),
  );
  if (!items.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="5" class="muted center">no analyses</td>';
    tbody.append(tr);
  }
  updateListControls();
}

/** Pager buttons, page label and the selected row, after a page has loaded. */
function updateListControls() {
  $("next-page").disabled = !list.nextCursor;
  $("first-page").disabled = list.page === 0;
  $("page-label").textContent = `page ${list.page + 1}`;
  markSelectedRow(state.openId);
}

function markSelectedRow(id) {
  for (const tr of $("results-body").querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.id === id);
}

function refreshList() {
  list.cursors = [null];
  list.page = 0;
  return loadPage();
}

function nextPage() {
  if (!list.nextCursor) return;
  list.cursors[list.page + 1] = list.nextCursor;
  list.page += 1;
  loadPage();
}

// ---------------------------------------------------------------- health

async function checkHealth() {
  const badge = $("health");
  try {
    const r = await fetch("/health/ready");
    const body = await r.json().catch(() => ({}));
    badge.textContent = r.ok ? `model ${body.model || ""} ready` : "model not ready";
    badge.className = `badge ${r.ok ? "ok" : "warn"}`;
  } catch {
    badge.textContent = "gateway unreachable";
    badge.className = "badge bad";
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    const bad = key !== "" && !validKey(key);
    $("api-key").setAttribute("aria-invalid", String(bad));
    $("key-msg").textContent = bad ? BAD_KEY : "";
    $("key-msg").hidden = !bad;
    if (bad) {
      $("api-key").focus();
      return;
    }
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    clearError();
    refreshList();
    // An analysis that could not be loaded (e.g. a shared link opened before the key was
    // saved) is tried again with the new key.
    if (state.openId && !state.analysis) openAnalysis(state.openId);
  });
  $("error-close").addEventListener("click", clearError);

  // file picker + drag and drop
  $("file-input").addEventListener("change", () => chooseFile($("file-input").files[0]));
  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (ev) => {
      ev.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer.files.length) chooseFile(ev.dataTransfer.files[0]);
  });
  $("upload-form").addEventListener("submit", upload);

  // player
  $("play").addEventListener("click", () => setPlaying(!state.playing));
  $("frame-slider").addEventListener("input", () => {
    setPlaying(false);
    seek(Number($("frame-slider").value));
  });
  $("overlay-toggle").addEventListener("change", render);
  $("opacity").addEventListener("input", () => {
    $("opacity-label").textContent = `${Math.round(Number($("opacity").value) * 100)} %`;
    render();
  });
  // Click on the timeline or the plot: seek to the frame under the pointer. On the timeline
  // frame i spans [i/n, (i+1)/n) of the width; on the plot frame i is a point at plotX(i).
  const pointerFraction = (el, ev, left = 0, right = 0) => {
    const box = el.getBoundingClientRect();
    const x0 = box.left + box.width * left;
    const x1 = box.right - box.width * right;
    return (ev.clientX - x0) / Math.max(1, x1 - x0);
  };
  $("timeline").addEventListener("click", (ev) => {
    setPlaying(false);
    seek(Math.floor(pointerFraction($("timeline"), ev) * state.nFrames));
  });
  $("csa-plot").addEventListener("click", (ev) => {
    setPlaying(false);
    seek(Math.round(pointerFraction($("csa-plot"), ev, PLOT.left / PLOT.w, PLOT.right / PLOT.w) * (state.nFrames - 1)));
  });
  document.addEventListener("keydown", (ev) => {
    if (!state.analysis || ev.target.closest("input, select, textarea, button")) return;
    if (ev.key === " ") {
      ev.preventDefault();
      setPlaying(!state.playing);
    } else if (ev.key === "ArrowRight") {
      setPlaying(false);
      seek(state.current + 1);
    } else if (ev.key === "ArrowLeft") {
      setPlaying(false);
      seek(state.current - 1);
    }
  });

  // Keep the plot in the element's pixel units when the window is resized.
  let plotWidth = 0;
  new ResizeObserver(() => {
    const w = $("csa-plot").clientWidth;
    if (state.analysis && state.analysis.result && w && w !== plotWidth) {
      plotWidth = w;
      drawCsaPlot(state.analysis.result);
    }
  }).observe($("csa-plot"));

  $("dl-json").addEventListener("click", downloadJson);
  $("dl-npz").addEventListener("click", () => downloadResultFile("masks.npz"));
  $("dl-csv").addEventListener("click", () => downloadResultFile("frames.csv"));
  $("dl-mp4").addEventListener("click", downloadMp4);

  // results list
  for (const id of ["filter-plane", "filter-status", "filter-patient", "page-size"]) $(id).addEventListener("change", refreshList);
  $("refresh-btn").addEventListener("click", refreshList);
  $("next-page").addEventListener("click", nextPage);
  $("first-page").addEventListener("click", refreshList);

  // live mode: the live area takes the place of the analysis while it runs
  let hiddenForLive = null;
  live = initLive({
    $,
    apiKey,
    planeChip,
    fmt,
    showError,
    onStart: () => {
      hiddenForLive = { viewer: $("viewer").hidden, empty: $("empty-state").hidden };
      $("viewer").hidden = true;
      $("empty-state").hidden = true;
      $("live-area").hidden = false;
    },
    onStop: () => {
      $("live-area").hidden = true;
      if (hiddenForLive) {
        $("viewer").hidden = hiddenForLive.viewer;
        $("empty-state").hidden = hiddenForLive.empty;
      }
    },
  });

  checkHealth();
  setInterval(checkHealth, 15000);
  refreshList();
  const openFromHash = () => {
    const m = location.hash.match(/^#\/analyses\/([0-9a-zA-Z_-]+)$/);
    if (m && m[1] !== state.openId) openAnalysis(m[1]);
  };
  window.addEventListener("hashchange", openFromHash); // an address pasted into an open tab
  openFromHash();
}

// Exposed for scripting and tests: the state and the open/seek functions.
let live = null;
window.ultramnViewer = { state, openAnalysis, seek, refreshList, live: () => live };

init();
