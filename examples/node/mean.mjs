// The mean (and standard deviation) of a pt-plugin model at query positions, from its two ONNX graphs and
// model.json alone: no pt_plugin code, only onnxruntime-node and the contract in the README ("Using the
// graphs from another language") and in model.json's graph_io block.
//
//   npm install --prefix examples/node            (ONNXRUNTIME_NODE_INSTALL_CUDA=skip: the CPU binary only)
//   node examples/node/mean.mjs weights/gp-curves examples/node/example-input.json
//
// INPUT.json: {"positions": [[...pos_dim]...], "values": [[...val_dim]...], "queries": [[...pos_dim]...]}
// (positions in [-1, 1], columns in signal.axes order; values inside value_range; at least one sample).
// Prints {"model", "precision", "mean": [[...val_dim]...], "std": [[...val_dim]...]} as JSON.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

import ort from "onnxruntime-node";

/** model.json of a model folder. */
export function readModel(folder) {
  return JSON.parse(fs.readFileSync(path.join(folder, "model.json"), "utf8"));
}

/** A float32 tensor [1, rows, cols] from an array of rows. */
function rowsTensor(rows, cols, name) {
  if (!Array.isArray(rows) || rows.some((r) => !Array.isArray(r) || r.length !== cols)) {
    throw new Error(`${name} must be a list of rows of ${cols} numbers`);
  }
  return new ort.Tensor("float32", Float32Array.from(rows.flat()), [1, rows.length, cols]);
}

/** Mean and std per query from the decoder's outputs, in float64, as the contract says:
 * q = softmax(logits), m_b = bin_centers[b] + offsets[b], s_b = exp(log_sigma[b]);
 * mean = sum q_b m_b (then clipped to value_range); variance = sum q_b (m_b^2 + s_b^2) - mean^2 around the
 * unclipped mean, floored at 0; std = sqrt(variance), not clipped. */
export function mixtureMoments(logits, offsets, logSigma, centers, valueRange, numQueries) {
  const bins = centers.length;
  const valDim = centers[0].length;
  const [lo, hi] = valueRange;
  const mean = [];
  const std = [];
  for (let q = 0; q < numQueries; q++) {
    let top = -Infinity;
    for (let b = 0; b < bins; b++) top = Math.max(top, logits[q * bins + b]);
    const w = new Float64Array(bins);
    let total = 0;
    for (let b = 0; b < bins; b++) {
      w[b] = Math.exp(logits[q * bins + b] - top);
      total += w[b];
    }
    const m = [];
    const s = [];
    for (let v = 0; v < valDim; v++) {
      let first = 0;
      let second = 0;
      for (let b = 0; b < bins; b++) {
        const mb = centers[b][v] + offsets[(q * bins + b) * valDim + v];
        const sb = Math.exp(logSigma[q * bins + b]);
        first += (w[b] / total) * mb;
        second += (w[b] / total) * (mb * mb + sb * sb);
      }
      m.push(Math.min(Math.max(first, lo), hi));
      s.push(Math.sqrt(Math.max(second - first * first, 0)));
    }
    mean.push(m);
    std.push(s);
  }
  return { mean, std };
}

/** Encode one sample set and answer the queries: {mean, std}, each [Q][val_dim]. */
export async function meanFromContract(folder, positions, values, queries, precision = "fp32") {
  const meta = readModel(folder);
  const suffix = precision === "fp32" ? "" : `.${precision}`;
  const options = { executionProviders: ["cpu"] };
  const encoder = await ort.InferenceSession.create(path.join(folder, `encoder${suffix}.onnx`), options);
  const decoder = await ort.InferenceSession.create(path.join(folder, `decoder${suffix}.onnx`), options);
  if (positions.length < 1 || positions.length !== values.length) {
    throw new Error("give at least one sample, one value row per position row (every set needs a real sample)");
  }
  const mask = new ort.Tensor("bool", new Uint8Array(positions.length).fill(1), [1, positions.length]);
  const { memory } = await encoder.run({
    sample_positions: rowsTensor(positions, meta.pos_dim, "positions"),
    sample_values: rowsTensor(values, meta.val_dim, "values"),
    sample_mask: mask,
  });
  const out = await decoder.run({ memory, sample_mask: mask, query_positions: rowsTensor(queries, meta.pos_dim, "queries") });
  return mixtureMoments(out.logits.data, out.offsets.data, out.log_sigma.data, meta.bin_centers, meta.value_range,
    queries.length);
}

async function main(argv) {
  const [folder, input, ...rest] = argv;
  if (!folder || !input) {
    console.error("usage: node mean.mjs MODEL_FOLDER INPUT.json [--precision fp32|int8]");
    return 2;
  }
  const at = rest.indexOf("--precision");
  const precision = at >= 0 ? rest[at + 1] : "fp32";
  const { positions, values, queries } = JSON.parse(fs.readFileSync(input, "utf8"));
  const { mean, std } = await meanFromContract(folder, positions, values, queries, precision);
  process.stdout.write(JSON.stringify({ model: readModel(folder).name, precision, mean, std }) + "\n");
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  });
}
