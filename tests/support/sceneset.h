/* Tiny synthetic scenes for segment-task tests: 16x16 grey scenes with one 8x8 item each, class 0
 * dim (grey ~100) or class 1 bright (~220), at a random place on a black canvas (each item with one
 * dark corner pixel, so foreground is decided per pixel); per-pixel classes 0, 1 and 2 =
 * background (`classes.mask`: dim, bright, background). And single 8x8 items of the two classes,
 * for a classifier teacher that learns them from the brightness. */
#ifndef XD_TESTS_SCENESET_H
#define XD_TESTS_SCENESET_H

#define SCENE_SIDE 16   /* canvas side */
#define SCENE_ITEM 8    /* item side = a teacher's window */
#define SCENE_CLASSES 2 /* item classes; background is SCENE_CLASSES */

/* The scenes: 96 train, 40 test (image, mask, label, label_mask, boxes). Fails the current test
 * on any error. */
void scene_write(const char *path);
/* 64 train and 64 test single items (image, label). */
void scene_write_items(const char *path);

#endif
