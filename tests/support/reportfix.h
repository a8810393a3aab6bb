/* The report tests' fixtures: small models, running the program with a shell's redirections,
 * a tiny teacher and student trained once (with the program itself), and reading the page it
 * writes. */
#ifndef XD_TESTS_REPORTFIX_H
#define XD_TESTS_REPORTFIX_H

#define RP_MLP_MODEL                                                                             \
    "input h=8 w=8 c=1; flatten; linear out=16 name=fc1; relu name=feat; linear out=4 "          \
    "name=logits head"
#define RP_TEXT_MODEL                                                                            \
    "input tokens=64; embbag vocab=512 out=16 mode=mean name=emb; linear out=4 name=logits head"

/* Runs `xdistill ARGS > out.txt 2> err.txt` (ARGS as a shell reads them); returns the exit
 * status. */
int rp_xd(const char *args);
/* The file at path as a string (caller frees). */
char *rp_slurp(const char *path);
/* The newlines in s. */
int rp_lines(const char *s);
/* The tiny data set toy.xds and, once, the runs of a teacher and its student, 2 seeds each, in a
 * folder name the page must escape (runs/x<i>&'q/teacher and .../student). */
void rp_classify_runs(void);
/* data-mean and data-std of the table row of run name */
void rp_row_figures(const char *page, const char *name, double *mean, double *std);
/* The <figure> of a chart key, as a new string, or NULL. */
char *rp_figure(const char *page, const char *key);
/* The page name (in the working folder) in headless Chromium, where it is installed: a
 * screenshot that is not blank and no console message; skipped with a message otherwise. */
void rp_check_render(const char *name);

#endif
