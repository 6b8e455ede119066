// The page of `sat-tf serve`: sends a photo to the served model's REST API (TF Serving's predict
// format) and shows the caption, the beam's k-best list, and for each word the attention map the
// model returned (alphas [T, L] over its h x w region grid), drawn over the photo as in the paper.
// The page `sat-tf export --web` writes is this page with another backend: device.js sets
// `window.satTfBackend` to the captioner that runs in the browser (same prediction format).
"use strict";

const elements = {
  input: document.getElementById("photo-input"),
  dropZone: document.getElementById("drop-zone"),
  status: document.getElementById("status"),
  spinner: document.getElementById("spinner"),
  focus: document.getElementById("focus"),
  legendHigh: document.getElementById("legend-high"),
  error: document.getElementById("error"),
  result: document.getElementById("result"),
  canvas: document.getElementById("photo-canvas"),
  caption: document.getElementById("caption"),
  tags: document.getElementById("tags"),
  notSure: document.getElementById("not-sure"),
  hideNotSure: document.getElementById("hide-not-sure"),
  candidates: document.getElementById("candidates"),
};
const state = { config: null, photo: null, alphas: null, activeStep: null, prediction: null };
const CANVAS_WIDTH = 448;
// The overlay's absolute scale: a region holding this share of the word's attention (or more) is
// shown fully lit, a region with none at its darkest. A weak, spread-out map therefore looks dim
// instead of being stretched into a confident spotlight.
const SCALE_TOP = 0.2;
const DARKEST = 0.85;

// How dark the overlay is over a region that holds `weight` of the attention (0..1 each).
function shadeFor(weight) {
  return DARKEST * (1 - Math.min(1, Math.max(0, weight) / SCALE_TOP));
}

// Where captions come from: the served model's REST API, unless a backend was installed.
const restBackend = { kind: "server", config: restConfig, predict: restPredict };

function backend() {
  return window.satTfBackend || restBackend;
}

async function restConfig() {
  const response = await fetch("page-config.json");
  return response.json();
}

async function pageConfig() {
  if (!state.config) {
    state.config = await backend().config();
  }
  return state.config;
}

// An error replaces the previous result: no stale caption stays on screen beside it.
function showError(message) {
  elements.error.textContent = message;
  elements.error.hidden = false;
  elements.status.textContent = "";
  elements.result.hidden = true;
  state.alphas = null;
}

function setWorking(working) {
  elements.spinner.hidden = !working;
}

function clearError() {
  elements.error.hidden = true;
  elements.error.textContent = "";
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function loadPhoto(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`${file.name}: the browser cannot display this image`));
    image.src = URL.createObjectURL(file);
  });
}

async function restPredict(file) {
  const config = await pageConfig();
  const body = { signature_name: config.signature, instances: [{ b64: await base64Of(file) }] };
  const response = await fetch(`v1/models/${encodeURIComponent(config.model)}:predict`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let answer;
  try {
    answer = await response.json();
  } catch (_) {
    answer = {};
  }
  if (!response.ok) {
    throw new Error(answer.error || `the server answered HTTP ${response.status}`);
  }
  return answer.predictions[0];
}

async function captionFile(file) {
  clearError();
  const config = await pageConfig();
  const encodedBytes = Math.ceil(file.size / 3) * 4;  // base64 grows the file by a third
  if (encodedBytes > config.max_request_bytes) {
    const megabytes = (file.size / 1e6).toFixed(1);
    const limit = (config.max_request_bytes * 0.75 / 1e6).toFixed(1);
    showError(`${file.name} is too large (${megabytes} MB); the server takes photos up to about ${limit} MB.`);
    return;
  }
  elements.result.hidden = true;  // the previous photo's result goes while this one is captioned
  elements.status.textContent = `captioning ${file.name}…`;
  setWorking(true);
  try {
    const prediction = await backend().predict(file);
    state.photo = await loadPhoto(file);
    showPrediction(prediction);
  } catch (error) {
    showError(`Could not caption ${file.name}: ${error.message}`);
  } finally {
    setWorking(false);
  }
}

// "confidence 0.62", or "not sure" below the model's threshold (its calibration's, when it has one).
function confidenceText(confidence, notSureBelow) {
  if (confidence === undefined) return "";
  const value = Number(confidence).toFixed(2);
  return Number(confidence) < notSureBelow ? `Not sure about this caption (confidence ${value}).` : `confidence ${value}`;
}

// The ImageNet tags worth showing (the SavedModel returns the 3 most probable words).
const TAG_MIN_PROBABILITY = 0.1;

function shownTags(prediction) {
  const words = prediction.tags || [];
  const probabilities = prediction.tag_probabilities || [];
  return words.map((word, i) => ({word, probability: Number(probabilities[i])}))
    .filter((tag) => tag.probability >= TAG_MIN_PROBABILITY);
}

function showTags(tags) {
  elements.tags.hidden = tags.length === 0;
  elements.tags.textContent = tags.length
    ? `The encoder's ImageNet classifier sees: ${tags.map((t) => `${t.word} (${Math.round(100 * t.probability)}%)`).join(", ")}`
    : "";
}

// Every caption is shown. When the model is not sure, the page says so above it, with what the
// photo may show where the tags are known (as `sat-tf caption` prints,
// sat_tf_edge.confidence.confidence_text). "Hide captions the model is not sure of" replaces such
// a caption by what the model does see (sat_tf_edge.confidence.shown_text, hide_when_not_sure).
function mayShowText(tags) {
  return tags.map((t) => `${t.word} ${Math.round(100 * t.probability)}%`).join(", ");
}

function notSureText(tags, hidden) {
  if (hidden) return tags.length ? `Not sure what this is; it looks like: ${mayShowText(tags)}` : "Not sure what this is";
  return tags.length ? `Not sure about this caption; it may show: ${mayShowText(tags)}` : "Not sure about this caption";
}

function showDoubt(prediction, tags) {
  const notSure = Number(prediction.confidence) < state.config.not_sure_below;
  const hidden = notSure && elements.hideNotSure.checked;
  elements.notSure.hidden = !notSure;
  elements.notSure.textContent = notSure ? notSureText(tags, hidden) : "";
  elements.caption.hidden = hidden;
  elements.status.textContent = confidenceText(prediction.confidence, state.config.not_sure_below);
}

elements.hideNotSure.addEventListener("change", () => {
  if (state.prediction) showDoubt(state.prediction, shownTags(state.prediction));
});

function showPrediction(prediction) {
  state.prediction = prediction;
  state.alphas = prediction.alphas;
  state.activeStep = null;
  elements.caption.replaceChildren();
  const tags = shownTags(prediction);
  const tagWords = new Set(tags.flatMap((t) => t.word.split(" ")));
  showTags(tags);
  showDoubt(prediction, tags);
  prediction.caption.split(" ").filter(Boolean).forEach((word, step) => {
    const span = document.createElement("span");
    span.className = tagWords.has(word) ? "word tag" : "word";
    span.textContent = word;
    span.dataset.step = String(step);
    span.tabIndex = 0;
    span.addEventListener("mouseenter", () => showAttention(step));
    span.addEventListener("focus", () => showAttention(step));
    span.addEventListener("mouseleave", () => showAttention(null));
    span.addEventListener("click", () => showAttention(state.activeStep === step ? null : step));
    elements.caption.append(span, " ");
  });
  elements.candidates.replaceChildren();
  const candidates = prediction.candidates || [prediction.caption];
  const scores = prediction.candidate_scores || [];
  candidates.forEach((text, index) => {
    const item = document.createElement("li");
    item.textContent = text;
    if (scores[index] !== undefined) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `log p ${Number(scores[index]).toFixed(2)}`;
      item.append(score);
    }
    elements.candidates.append(item);
  });
  const photo = state.photo;
  elements.canvas.width = CANVAS_WIDTH;
  elements.canvas.height = Math.round(CANVAS_WIDTH * photo.naturalHeight / photo.naturalWidth);
  elements.legendHigh.textContent = `${Math.round(100 * SCALE_TOP)}% or more`;
  elements.result.hidden = false;
  showAttention(null);
}

// Darkens the photo where the model did not look at `step` (the paper's figures); null: the photo.
function showAttention(step) {
  state.activeStep = step;
  for (const span of elements.caption.querySelectorAll(".word")) {
    span.classList.toggle("active", Number(span.dataset.step) === step);
  }
  const context = elements.canvas.getContext("2d");
  const { width, height } = elements.canvas;
  context.globalAlpha = 1;
  context.drawImage(state.photo, 0, 0, width, height);
  if (step === null || !state.alphas || !state.alphas[step]) {
    elements.focus.textContent = "";
    return;
  }
  const weights = state.alphas[step];
  const side = Math.round(Math.sqrt(weights.length));  // the model sees a square grid of regions
  const grid = document.createElement("canvas");
  grid.width = side;
  grid.height = side;
  const shade = grid.getContext("2d").createImageData(side, side);
  weights.forEach((weight, region) => {
    shade.data[region * 4 + 3] = Math.round(255 * shadeFor(weight));  // black, darkest where unseen
  });
  grid.getContext("2d").putImageData(shade, 0, 0);
  context.imageSmoothingEnabled = true;  // upsample the grid smoothly, like the paper's figures
  context.imageSmoothingQuality = "high";
  context.drawImage(grid, 0, 0, width, height);
  const word = elements.caption.querySelectorAll(".word")[step];
  const peak = Math.max(...weights);
  elements.focus.textContent = `"${word ? word.textContent : ""}": at most ${Math.round(100 * peak)}% of the ` +
    `attention on one region of ${weights.length}`;
}

window.satTfPage = { shadeFor, SCALE_TOP, showDoubt, notSureText, lastPrediction: () => state.prediction };  // tests

elements.input.addEventListener("change", () => {
  if (elements.input.files.length) {
    captionFile(elements.input.files[0]);
  }
});
elements.dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  elements.dropZone.classList.add("dragging");
});
elements.dropZone.addEventListener("dragleave", () => elements.dropZone.classList.remove("dragging"));
elements.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  elements.dropZone.classList.remove("dragging");
  if (event.dataTransfer.files.length) {
    captionFile(event.dataTransfer.files[0]);
  }
});
