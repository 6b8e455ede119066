// The page of `sat-tf export --web`: the same page as `sat-tf serve`'s (page.js), with captions made
// in the browser by the exported TFLite pair on LiteRT.js (WebAssembly, XNNPack). The photo goes
// nowhere. This file is the edge runtime (export/sat_tf_edge) in JavaScript, rule for rule: the
// image contract (images.py: EXIF orientation, transparency over black, Pillow's bilinear resize),
// the beam search with the manifest's settings (runtime.py), the detokeniser (text.py) and the
// calibrated confidence (calibration.py), so a caption here equals `sat-tf-edge`'s token for token.
import { Tensor, loadAndCompile, loadLiteRt } from "@litertjs/core";

const PER_IMAGE_INPUTS = ["attention_keys", "context_gates", "context_outputs"];
const SIGNALS_OF_THE_PHOTO = new Set(["photo_distance", "photo_residual"]);

// ----- the image contract (sat_tf_edge/images.py) -------------------------------------------------
// Pillow's bilinear resampling (libImaging/Resample.c), fixed point as Pillow computes 8-bit images.
const PRECISION_BITS = 32 - 8 - 2;

function resampleCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = 1.0 * filterScale;  // the bilinear filter's support, widened when shrinking
  const kernelSize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * kernelSize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const row = new Float64Array(kernelSize);
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      const distance = Math.abs((x + xmin - center + 0.5) * (1.0 / filterScale));  // as Pillow: times 1/scale
      row[x] = distance < 1.0 ? 1.0 - distance : 0.0;
      total += row[x];
    }
    for (let x = 0; x < kernelSize; x++) {
      const value = x < xmax && total !== 0.0 ? row[x] / total : x < xmax ? row[x] : 0.0;
      weights[xx * kernelSize + x] = Math.trunc(value < 0 ? -0.5 + value * (1 << PRECISION_BITS) : 0.5 + value * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, kernelSize };
}

function clip8(value) {
  if (value >= 2 ** PRECISION_BITS * 256) return 255;
  if (value <= 0) return 0;
  return Math.floor(value / 2 ** PRECISION_BITS);
}

// One pass of Pillow's two-pass resize over RGB uint8 rows: along x (horizontal) or y.
function resamplePass(pixels, width, height, outSize, horizontal, firstRow = 0, rows = height) {
  const { bounds, weights, kernelSize } = resampleCoefficients(horizontal ? width : height, outSize);
  const outWidth = horizontal ? outSize : width;
  const outHeight = horizontal ? rows : outSize;
  const out = new Uint8ClampedArray(outWidth * outHeight * 3);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const target = horizontal ? x : y;
      const start = bounds[target * 2];
      const count = bounds[target * 2 + 1];
      for (let channel = 0; channel < 3; channel++) {
        let sum = 1 << (PRECISION_BITS - 1);
        for (let k = 0; k < count; k++) {
          const source = horizontal ? ((y + firstRow) * width + start + k) : ((start + k) * width + x);
          sum += pixels[source * 3 + channel] * weights[target * kernelSize + k];
        }
        out[(y * outWidth + x) * 3 + channel] = clip8(sum);
      }
    }
  }
  return out;
}

// RGB uint8 [H, W, 3] -> [size, size, 3] as Pillow's Image.resize(..., BILINEAR) (images.resize_image):
// a horizontal pass over the source rows the vertical pass reads, then the vertical pass.
export function resizeLikePillow(pixels, width, height, size) {
  if (width === size && height === size) return pixels;
  if (width === size) return resamplePass(pixels, width, height, size, false);
  const vertical = resampleCoefficients(height, size);
  const first = vertical.bounds[0];
  const last = vertical.bounds[size * 2 - 2] + vertical.bounds[size * 2 - 1];
  const rows = resamplePass(pixels, width, height, size, true, first, last - first);
  if (height === size) return rows;
  // the resampled rows back at their place (rows outside first..last are never read)
  const placed = new Uint8ClampedArray(size * height * 3);
  placed.set(rows, first * size * 3);
  return resamplePass(placed, size, height, size, false);
}

// A file -> upright RGB uint8 pixels, transparency over black (images.decode_image).
async function decodePhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none",
    });
  } catch (_) {
    throw new Error(`${file.name}: not a readable image`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { colorSpace: "srgb" });
  context.fillStyle = "black";
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const rgb = new Uint8ClampedArray(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return { rgb, ...size };
}

// ----- decoding (sat_tf_edge/runtime.py) ----------------------------------------------------------
export function repeatedNgramWords(tokens, n) {
  if (n <= 0 || tokens.length < n - 1) return [];
  const suffix = n > 1 ? tokens.slice(tokens.length - n + 1) : [];
  const words = [];
  for (let j = 0; j + n - 1 < tokens.length; j++) {
    if (suffix.every((token, i) => tokens[j + i] === token)) words.push(tokens[j + n - 1]);
  }
  return words;
}

// The indices of the k largest values, ties to the lower index (numpy's stable argsort of -values).
function topK(values, k) {
  const best = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (best.length === k && !(value > values[best[k - 1]])) continue;
    let position = best.length;
    while (position > 0 && value > values[best[position - 1]]) position--;
    best.splice(position, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

function captionText(tokens, manifest) {
  const ids = manifest.special_ids;
  const words = [];
  for (const token of tokens) {
    if (token === ids.end) break;
    if (token !== ids.pad && token !== ids.start) words.push(manifest.vocabulary[token]);
  }
  return words.join(" ");
}

// ----- the calibrated confidence (sat_tf_edge/calibration.py) -------------------------------------
function beamAgreement(candidates, endId) {
  if (candidates.length < 2) return NaN;
  const best = candidates[0];
  const words = best.length && best[best.length - 1] === endId ? best.slice(0, -1) : best;
  let total = 0;
  for (const other of candidates.slice(1)) {
    const present = new Set(other);
    total += words.filter((word) => present.has(word)).length / Math.max(words.length, 1);
  }
  return total / (candidates.length - 1);
}

function photoSignals(novelty, state) {
  const centered = state.map((value, i) => value - novelty.center[i]);
  const residual = centered.slice();
  let distance = 0;
  novelty.directions.forEach((direction, m) => {
    let coordinate = 0;
    direction.forEach((weight, i) => { coordinate += centered[i] * weight; });
    direction.forEach((weight, i) => { residual[i] -= coordinate * weight; });
    distance += (coordinate / novelty.scales[m]) ** 2;
  });
  return {
    photo_distance: distance / novelty.directions.length,
    photo_residual: residual.reduce((sum, value) => sum + value * value, 0) / residual.length,
  };
}

export function captionSignals(caption, endId, novelty) {
  const length = Math.max(caption.tokens.length, 1);
  const perToken = caption.candidates.map((tokens, i) => caption.candidateLogProbs[i] / Math.max(tokens.length, 1));
  const regions = caption.alphas[0].length;
  const entropy = caption.alphas.map((alpha) =>
    -alpha.reduce((sum, a) => sum + a * Math.log(Math.max(a, 1e-12)), 0) / Math.log(regions));
  const signals = {
    mean_log_prob: caption.logProbs.reduce((a, b) => a + b, 0) / length,
    min_log_prob: Math.min(...caption.logProbs),
    length,
    beam_margin: perToken.length > 1 ? perToken[0] - perToken[1] : NaN,
    beam_agreement: beamAgreement(caption.candidates, endId),
    attention_entropy: entropy.reduce((a, b) => a + b, 0) / length,
    photo_distance: NaN,
    photo_residual: NaN,
  };
  return novelty ? { ...signals, ...photoSignals(novelty, caption.photoState) } : signals;
}

export function calibratedConfidence(calibration, signals) {
  let logit = calibration.bias;
  calibration.signals.forEach((name, i) => {
    const standardized = (signals[name] - calibration.means[i]) / calibration.scales[i];
    if (!Number.isNaN(standardized)) logit += calibration.weights[i] * standardized;  // NaN: the mean
  });
  return 1 / (1 + Math.exp(-logit));
}

// ----- the captioner ------------------------------------------------------------------------------
class DeviceCaptioner {
  constructor(manifest, encoder, decoder) {
    this.manifest = manifest;
    this.encoder = encoder;
    this.decoder = decoder;
    this.settings = manifest.decoding;
    this.batch = manifest.decoder_batch || manifest.decoding.beam_size;
  }

  async encode(pixels) {
    const size = this.manifest.image_size;
    const input = new Tensor(Float32Array.from(pixels), [1, size, size, 3]);
    const outputs = await this.encoder.run("encode", { image: input });
    input.delete();
    const encoded = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      encoded[name] = Float32Array.from(tensor.toTypedArray());
      tensor.delete();
    }
    return encoded;
  }

  // One decoder step over `rows` beams (the photo's tensors repeated for each), padded to the
  // decoder's fixed batch with copies of the last beam, as runtime.py's EdgeCaptioner.step.
  async step(perImage, hidden, cell, previous) {
    const rows = previous.length;
    const batch = this.batch;
    const rowOf = (r) => Math.min(r, rows - 1);
    const tile = (values, width, row) => {
      const out = new Float32Array(batch * width);
      for (let r = 0; r < batch; r++) out.set(values.subarray(row(r) * width, (row(r) + 1) * width), r * width);
      return out;
    };
    const hiddenSize = hidden.length / rows;
    const inputs = {
      hidden: new Tensor(tile(hidden, hiddenSize, rowOf), [batch, hiddenSize]),
      cell: new Tensor(tile(cell, hiddenSize, rowOf), [batch, hiddenSize]),
      previous_token: new Tensor(Int32Array.from({ length: batch }, (_, r) => previous[rowOf(r)]), [batch]),
    };
    for (const name of PER_IMAGE_INPUTS) {
      const { data, width, shape } = perImage[name];
      inputs[name] = new Tensor(tile(data, width, () => 0), [batch, ...shape]);
    }
    const outputs = await this.decoder.run("step", inputs);
    Object.values(inputs).forEach((tensor) => tensor.delete());
    const result = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      result[name] = Float32Array.from(tensor.toTypedArray());
      tensor.delete();
    }
    return result;
  }

  // The library's beam search (runtime.py EdgeCaptioner.caption_beam; beam 1 is greedy).
  async captionBeam(encoded, k) {
    const { special_ids: ids, max_length: maxLength, feature_grid: grid } = this.manifest;
    const { length_penalty: lengthPenalty, forbid_unknown: forbidUnknown } = this.settings;
    const ngram = this.settings.no_repeat_ngram_size;
    // Content words said once (runtime.py): every word but the manifest's function words.
    const functionWords = new Set(this.manifest.function_words);
    const onceOnly = (token) =>
      this.settings.no_repeat_content_words && token > ids.unknown && !functionWords.has(this.manifest.vocabulary[token]);
    const regions = grid[0] * grid[1];
    const perImage = {};
    for (const name of PER_IMAGE_INPUTS) {
      const width = encoded[name].length;
      perImage[name] = { data: encoded[name], width, shape: [regions, width / regions] };
    }
    const hiddenSize = encoded.hidden.length;
    let hidden = new Float32Array(k * hiddenSize);
    let cell = new Float32Array(k * hiddenSize);
    for (let r = 0; r < k; r++) {
      hidden.set(encoded.hidden, r * hiddenSize);
      cell.set(encoded.cell, r * hiddenSize);
    }
    let scores = Array.from({ length: k }, (_, r) => (r === 0 ? 0 : -Infinity));
    let beams = Array.from({ length: k }, () => ({ tokens: [], logProbs: [], alphas: [] }));
    let finished = new Array(k).fill(false);
    let previous = new Array(k).fill(ids.start);
    for (let t = 0; t < maxLength && !finished.every(Boolean); t++) {
      const out = await this.step(perImage, hidden, cell, previous);
      const vocabulary = out.log_probs.length / this.batch;
      const candidates = new Float64Array(k * vocabulary);
      for (let beam = 0; beam < k; beam++) {
        const row = out.log_probs.subarray(beam * vocabulary, (beam + 1) * vocabulary);
        const base = beam * vocabulary;
        if (finished[beam]) {
          candidates.fill(-Infinity, base, base + vocabulary);
          candidates[base + ids.pad] = scores[beam];  // a finished beam continues with <pad> at no cost
          continue;
        }
        for (let word = 0; word < vocabulary; word++) candidates[base + word] = scores[beam] + row[word];
        if (forbidUnknown) candidates[base + ids.unknown] = -Infinity;
        for (const word of repeatedNgramWords(beams[beam].tokens, ngram)) candidates[base + word] = -Infinity;
        for (const word of beams[beam].tokens) if (onceOnly(word)) candidates[base + word] = -Infinity;
      }
      const best = topK(candidates, k);
      const parents = best.map((index) => Math.floor(index / vocabulary));
      const words = best.map((index) => index % vocabulary);
      beams = best.map((_, i) => {
        const parent = parents[i];
        if (finished[parent]) return beams[parent];
        const word = words[i];
        const alpha = Array.from(out.alpha.subarray(parent * regions, (parent + 1) * regions));
        return {
          tokens: [...beams[parent].tokens, word],
          logProbs: [...beams[parent].logProbs, out.log_probs[parent * vocabulary + word]],
          alphas: [...beams[parent].alphas, alpha],
        };
      });
      finished = parents.map((parent, i) => finished[parent] || words[i] === ids.end);
      scores = best.map((index) => candidates[index]);
      const nextHidden = new Float32Array(k * hiddenSize);
      const nextCell = new Float32Array(k * hiddenSize);
      parents.forEach((parent, r) => {
        nextHidden.set(out.hidden.subarray(parent * hiddenSize, (parent + 1) * hiddenSize), r * hiddenSize);
        nextCell.set(out.cell.subarray(parent * hiddenSize, (parent + 1) * hiddenSize), r * hiddenSize);
      });
      hidden = nextHidden;
      cell = nextCell;
      previous = words;
    }
    const ranking = beams.map((beam, i) =>
      (lengthPenalty ? scores[i] / Math.max(beam.tokens.length, 1) ** lengthPenalty : scores[i]));
    const order = ranking.map((_, i) => i).sort((a, b) => (ranking[b] > ranking[a] ? 1 : ranking[b] < ranking[a] ? -1 : a - b));
    const top = beams[order[0]];
    return {
      tokens: top.tokens,
      logProbs: top.logProbs,
      alphas: top.alphas,
      score: ranking[order[0]],
      candidates: order.map((i) => beams[i].tokens),
      candidateLogProbs: order.map((i) => beams[i].logProbs.reduce((a, b) => a + b, 0)),
      candidateScores: order.map((i) => ranking[i]),
      photoState: Array.from(encoded.hidden),
    };
  }

  // The 3 most probable caption words of the encoder's ImageNet classes (the SavedModel's
  // tag_outputs; sat_tf_edge.tags sums the same way), when the encoder file carries the classifier.
  tagsOf(encoded) {
    const table = this.manifest.imagenet_classes;
    if (!table || !encoded.class_probabilities) return { tags: [], tag_probabilities: [] };
    const byWord = new Map();
    table.words.forEach((word, i) => {
      if (word !== null) byWord.set(word, (byWord.get(word) || 0) + encoded.class_probabilities[i]);
    });
    const top = [...byWord.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 3);
    return { tags: top.map(([word]) => word), tag_probabilities: top.map(([, p]) => p) };
  }

  // A caption with the manifest's settings (beam 1: greedy), its confidence and "not sure" flag.
  async caption(pixels, beamSize = this.settings.beam_size) {
    const encoded = await this.encode(pixels);
    const caption = await this.captionBeam(encoded, beamSize);
    const calibration = this.manifest.confidence_calibration;
    const length = Math.max(caption.tokens.length, 1);
    let confidence = Math.exp(caption.logProbs.reduce((a, b) => a + b, 0) / length);
    if (calibration) {
      const photo = calibration.signals.some((name) => SIGNALS_OF_THE_PHOTO.has(name));
      confidence = calibratedConfidence(calibration, captionSignals(caption, this.manifest.special_ids.end, photo ? calibration.novelty : null));
    }
    return {
      ...caption,
      ...this.tagsOf(encoded),
      text: captionText(caption.tokens, this.manifest),
      confidence,
      notSure: confidence < this.settings.not_sure_below,
    };
  }

  async pixelsOf(file) {
    const photo = await decodePhoto(file);
    const size = this.manifest.image_size;
    return resizeLikePillow(photo.rgb, photo.width, photo.height, size);
  }
}

// ----- the page's backend: what page.js asks for (`window.satTfBackend`) ----------------------------
// A model file's bytes: its gzip copy (written beside it by `sat-tf export --web`, a smaller
// download from any static server) decompressed here, or the file itself. A server that already
// undid the gzip (Content-Encoding) hands over the plain bytes, recognised by their first two.
async function modelBytes(name) {
  const compressed = await fetch(`${name}.gz`);
  if (!compressed.ok) return new Uint8Array(await (await fetch(name)).arrayBuffer());
  const bytes = new Uint8Array(await compressed.arrayBuffer());
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function loadCaptioner() {
  const manifest = await (await fetch("sat_tf_edge.json")).json();
  await loadLiteRt("litert/wasm/");
  const options = { accelerator: "wasm" };
  const [encoderBytes, decoderBytes] = await Promise.all([
    modelBytes(manifest.files.encoder),
    modelBytes(manifest.files.decoder),
  ]);
  const encoder = await loadAndCompile(encoderBytes, options);
  const decoder = await loadAndCompile(decoderBytes, options);
  return new DeviceCaptioner(manifest, encoder, decoder);
}

function say(id, text) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.hidden = !text;
}

const captioner = loadCaptioner();
say("status", "loading the captioner…");
captioner.then(
  () => say("status", "ready: photos are captioned on this device and sent nowhere"),
  (error) => say("error", `Could not load the captioner: ${error.message}`),
);

window.satTfBackend = {
  kind: "device",
  ready: captioner,
  async config() {
    const { manifest } = await captioner;
    return { not_sure_below: manifest.decoding.not_sure_below, max_request_bytes: Infinity, model: "on this device" };
  },
  async predict(file) {
    const device = await captioner;
    const caption = await device.caption(await device.pixelsOf(file));
    return {
      caption: caption.text,
      alphas: caption.alphas,
      confidence: caption.confidence,
      candidates: caption.candidates.map((tokens) => captionText(tokens, device.manifest)),
      candidate_scores: caption.candidateScores,
      tokens: caption.tokens,
      tags: caption.tags,
      tag_probabilities: caption.tag_probabilities,
    };
  },
  // For tests and benchmarks: caption pixels already decoded (RGB uint8 [S, S, 3] as an array).
  async captionPixels(pixels, beamSize) {
    const device = await captioner;
    const caption = await device.caption(Uint8ClampedArray.from(pixels), beamSize);
    return {
      text: caption.text, tokens: caption.tokens, confidence: caption.confidence, notSure: caption.notSure,
      tags: caption.tags, tagProbabilities: caption.tag_probabilities,
    };
  },
  async pixelsOfFile(file) {
    const device = await captioner;
    return Array.from(await device.pixelsOf(file));
  },
};
