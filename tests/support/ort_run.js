// Runs an exported ONNX model with ONNX Runtime for Node.js (onnxruntime-node, found through
// NODE_PATH): node ort_run.js MODEL.onnx INPUT.f32 N H W C
// INPUT.f32 holds N*H*W*C little-endian float32 values (NHWC); prints the "probabilities"
// output as one JSON array of numbers.
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, n, h, w, c] = process.argv.slice(2);
  const dims = [n, h, w, c].map(Number);
  const bytes = fs.readFileSync(input);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const session = await ort.InferenceSession.create(model, {intraOpNumThreads: 1});
  const out = await session.run({input: new ort.Tensor('float32', data, dims)});
  process.stdout.write(JSON.stringify(Array.from(out.probabilities.data)) + '\n');
}
main().catch((err) => {
  process.stderr.write(String(err) + '\n');
  process.exit(1);
});
