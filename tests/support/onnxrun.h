/* Checking exported ONNX files from tests: onnx.checker (python3-onnx) and ONNX Runtime
 * (onnxruntime-node, which scripts/setup.sh installs into cache/onnxruntime or
 * $XDISTILL_CACHE/onnxruntime, run by tests/support/ort_run.js). */
#ifndef XD_TESTS_ONNXRUN_H
#define XD_TESTS_ONNXRUN_H

#include <stddef.h>

/* onnx.checker with full shape inference accepts the file; fails the test otherwise. */
void tu_onnx_check(const char *onnx);

/* Runs onnx in ONNX Runtime on input (a file of float32 values, NAME.f32, or int32 ones,
 * NAME.i32, of shape dims, e.g. "3 8 8 1") and asserts that its output "probabilities" is want
 * (n values) within 1e-4 relative. Returns 0, or -1 after a message when ONNX Runtime or node is
 * missing (nothing compared). */
int tu_onnx_compare(const char *onnx, const char *input, const char *dims, const float *want,
                    size_t n);

#endif
