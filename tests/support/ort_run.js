// Runs an exported ONNX model with ONNX Runtime for Node.js (onnxruntime-node, found through
// NODE_PATH): node ort_run.js MODEL.onnx INPUT DIM...
// INPUT holds the input tensor of shape DIM... as little-endian float32 values (INPUT.f32, an
// image batch NHWC) or int32 values (INPUT.i32, token ids); prints the "probabilities" output as
// one JSON array of numbers. XDISTILL_ORT_UNFUSED=1 runs the graph with its optimisations off.
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, ...rest] = process.argv.slice(2);
  const dims = rest.map(Number);
  const bytes = fs.readFileSync(input);
  const ints = input.endsWith('.i32');
  const data = ints ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
                    : new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  // XDISTILL_ORT_UNFUSED=1: every node on its own (no graph optimisations), as the graph says
  const options = {intraOpNumThreads: 1};
  if (process.env.XDISTILL_ORT_UNFUSED === '1') options.graphOptimizationLevel = 'disabled';
  const session = await ort.InferenceSession.create(model, options);
  const out = await session.run({input: new ort.Tensor(ints ? 'int32' : 'float32', data, dims)});
  process.stdout.write(JSON.stringify(Array.from(out.probabilities.data)) + '\n');
}
main().catch((err) => {
  process.stderr.write(String(err) + '\n');
  process.exit(1);
});
