// Times an exported ONNX model in ONNX Runtime for Node.js (onnxruntime-node, found through
// NODE_PATH) the way `xdistill bench infer` times its own engine (bench_run in bench/bench.c):
//   node ort_infer.js MODEL.onnx INPUT.f32 THREADS MIN_SECONDS MIN_REPS MAX_REPS DIM...
// INPUT holds the float32 input tensor of shape DIM... (already in memory before timing). One
// warm-up run, then runs until MIN_SECONDS have passed and at least MIN_REPS were made (at most
// MAX_REPS). Session: intraOpNumThreads THREADS, one inter-op thread, sequential execution,
// graph optimisation level "all". Prints {"median":S,"min":S,"max":S,"cpu_median":S,"reps":N}:
// seconds per run, and the process's CPU seconds per run (all its threads).
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, threads, minSeconds, minReps, maxReps, ...rest] = process.argv.slice(2);
  const dims = rest.map(Number);
  const bytes = fs.readFileSync(input);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = {input: new ort.Tensor('float32', data, dims)};
  const fetches = ['probabilities'];
  await session.run(feeds, fetches);
  const times = [];
  const cpu = [];
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) * 1e-9;
  while (times.length < Number(maxReps) &&
         (times.length < Number(minReps) || elapsed() < Number(minSeconds))) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    await session.run(feeds, fetches);
    const c = process.cpuUsage(c0);
    times.push(Number(process.hrtime.bigint() - t0) * 1e-9);
    cpu.push((c.user + c.system) * 1e-6);
  }
  const median = (v) => {
    v.sort((a, b) => a - b);
    const n = v.length;
    return n % 2 ? v[(n - 1) / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  const n = times.length;
  const out = {median: median(times), min: times[0], max: times[n - 1], cpu_median: median(cpu),
               reps: n};
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((err) => {
  process.stderr.write(String(err) + '\n');
  process.exit(1);
});
