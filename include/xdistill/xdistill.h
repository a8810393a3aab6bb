/* xdistill: the installed library's one header to include.
 *
 *   #include <xdistill/xdistill.h>
 *   cc prog.c $(pkg-config --cflags --libs xdistill)
 *
 * It holds the inference API (infer.h): load a checkpoint that `xdistill train` wrote, turn
 * images or texts into the model's input exactly as its training data was, predict, free. The
 * library's other functions are internal and may change; what this header declares stays. */
#ifndef XDISTILL_XDISTILL_H
#define XDISTILL_XDISTILL_H

#include "infer.h"

#endif
