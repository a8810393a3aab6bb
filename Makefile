# xdistill build. `make` builds the library, the `xdistill` program and the tests.
#   make test        set-up (installs what is missing), build, run every cmocka test
#   make demo        set-up, build, run the headline demo
#   make bench       speed suites (prints a table)
#   make fuzz        set-up, clang build of the fuzz harnesses, each run FUZZ_SECONDS
#   make install     PREFIX=dir (default /usr/local): program, man page, library, headers, pkg-config
#   make uninstall   removes what make install put under PREFIX
# Switches: SANITIZE=1 (address + undefined, own build folder), NO_OMP=1, DEBUG=1, BUILD=dir,
#           V=1 (print whole compiler command lines instead of one short line per file).

CC      ?= gcc
ifeq ($(origin CC),default)
CC      := gcc
endif
BUILD   ?= build
ARCH    ?= -march=native
OPT     ?= -O3 -fno-math-errno
# -fPIC: the library's objects also make libxdistill.so (calls inside it stay direct: no interposition)
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wshadow -Wvla -fno-strict-aliasing -I. \
               -fPIC -fno-semantic-interposition

ifeq ($(DEBUG),1)
OPT := -O0
endif
ifeq ($(SANITIZE),1)
override BUILD := $(BUILD)/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

# OpenBLAS: prefer Debian's OpenMP build (shares our OpenMP threads); fall back to the default one.
OPENBLAS_OMP_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifneq ($(wildcard $(OPENBLAS_OMP_DIR)/libopenblas.so),)
BLAS_CFLAGS := -I/usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIBS   := -L$(OPENBLAS_OMP_DIR) -Wl,-rpath,$(OPENBLAS_OMP_DIR) -lopenblas
BLAS_FOUND  := OpenBLAS (OpenMP build)
else
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(or $(shell pkg-config --libs openblas 2>/dev/null),-lopenblas)
BLAS_FOUND  := OpenBLAS (default build)
endif

ifeq ($(NO_OMP),1)
OMPFLAGS := -Wno-unknown-pragmas
OMP_FOUND := off (NO_OMP=1)
else
OMPFLAGS := -fopenmp
OMP_FOUND := on
endif

PKGS     := libpng libjpeg zlib libutf8proc jansson yaml-0.1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -lpng -ljpeg -lz -lutf8proc -ljansson -lyaml
endif

CFLAGS  := $(CFLAGS_BASE) $(OPT) $(ARCH) $(OMPFLAGS) $(SANFLAGS) $(BLAS_CFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) $(BLAS_LIBS) -lm
LDFLAGS := $(OMPFLAGS) $(SANFLAGS) $(EXTRA_LDFLAGS)

# One short line per file unless V=1 (whole command lines).
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-4s %s\n' $(1) $(2)
endif

LIB_SRC  := $(sort $(wildcard core/*.c nn/*.c io/*.c modalities/*/*.c align/*.c distill/*.c report/*.c infer/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c bench/*.c))
TSUP_SRC := $(sort $(wildcard tests/support/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TSUP_OBJ := $(TSUP_SRC:%.c=$(BUILD)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libxdistill.a
BIN      := $(BUILD)/xdistill
VERSION  := $(shell sed -n 's/^\#define XD_VERSION "\(.*\)"/\1/p' core/runtime.h)
SONAME   := libxdistill.so.$(firstword $(subst ., ,$(VERSION)))
SO       := $(BUILD)/$(SONAME)

.PHONY: all setup test tests demo bench clean info
all: info $(BIN) $(SO) $(TESTS)
	@$(BIN) --version | sed -n 's/^products: /xdistill build: products: /p'

info:
	@echo "xdistill build: CC=$(CC) OpenMP=$(OMP_FOUND) BLAS=$(BLAS_FOUND) sanitizers=$(if $(SANFLAGS),address+undefined,off) out=$(BUILD)"

setup:
	@scripts/setup.sh

# Objects depend on the flags they were built with, so that a change of flags rebuilds them.
FLAGS_STAMP := $(BUILD)/cflags.txt
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS)' > $@
.PHONY: FORCE

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# The shared library exports the inference API of include/xdistill only (infer/exports.map).
$(SO): $(LIB_OBJ) infer/exports.map
	$(call say,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=infer/exports.map $(LDFLAGS) \
	  $(LIB_OBJ) $(LDLIBS) -o $@

$(BIN): $(CLI_OBJ) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TSUP_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) $< $(TSUP_OBJ) $(LIB) $(LDLIBS) -lcmocka -o $@

tests: $(TESTS)

# Each test binary runs in a fresh temporary folder (tests make their own data there).
test: setup
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh $(TESTS)

# The demo shows its own stages; the build's lines go to a log that is shown only on failure.
demo: setup
	@echo "demo: building xdistill (log: $(BUILD)/build.log)"
	@mkdir -p $(BUILD)
	@$(MAKE) --no-print-directory $(BIN) > $(BUILD)/build.log 2>&1 || { cat $(BUILD)/build.log; exit 1; }
	@scripts/demo.sh $(BIN)

bench: setup
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) bench $(SUITE)

clean:
	rm -rf build

# Installation. Paths under PREFIX; DESTDIR for staged installs (packaging).
PREFIX ?= /usr/local
INST := $(DESTDIR)$(PREFIX)
INSTALLED := bin/xdistill share/man/man1/xdistill.1 lib/$(SONAME) lib/libxdistill.so \
             lib/libxdistill.a include/xdistill/xdistill.h include/xdistill/infer.h \
             lib/pkgconfig/xdistill.pc
.PHONY: install uninstall
install: $(BIN) $(SO) $(LIB)
	install -d $(INST)/bin $(INST)/lib/pkgconfig $(INST)/include/xdistill $(INST)/share/man/man1
	install -m 755 $(BIN) $(INST)/bin/xdistill
	install -m 644 docs/xdistill.1 $(INST)/share/man/man1/xdistill.1
	install -m 755 $(SO) $(INST)/lib/$(SONAME)
	ln -sf $(SONAME) $(INST)/lib/libxdistill.so
	install -m 644 $(LIB) $(INST)/lib/libxdistill.a
	install -m 644 include/xdistill/xdistill.h include/xdistill/infer.h $(INST)/include/xdistill/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: xdistill' 'Description: knowledge-distillation toolkit: trained checkpoints as a C library' \
	  'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lxdistill' \
	  'Libs.private: $(OMPFLAGS) $(BLAS_LIBS) -lm' 'Requires.private: $(PKGS)' \
	  > $(INST)/lib/pkgconfig/xdistill.pc
uninstall:
	rm -f $(addprefix $(INST)/,$(INSTALLED))
	-rmdir $(INST)/include/xdistill 2>/dev/null

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TSUP_OBJ:.o=.d) $(TESTS:$(BUILD)/tests/%=$(BUILD)/obj/tests/%.d)

# Fuzzing (docs/FUZZING.md): the libFuzzer harnesses of tests/fuzz, built by clang with address and
# undefined-behaviour sanitizers in build/fuzz, each run for FUZZ_SECONDS (FUZZ=names picks some).
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
.PHONY: fuzz fuzz-build fuzz-bins fuzz-seeds
fuzz:
	@scripts/setup.sh fuzz
	@$(MAKE) --no-print-directory fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ)
fuzz-build:
	@$(MAKE) --no-print-directory CC=clang NO_OMP=1 BUILD=$(FUZZ_BUILD) OPT=-O1 \
	  EXTRA_CFLAGS='$(FUZZ_SAN) -fsanitize=fuzzer-no-link' EXTRA_LDFLAGS='$(FUZZ_SAN)' fuzz-bins
fuzz-bins: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/tests/fuzz/fuzz.o
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/fuzz.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@
-include $(FUZZ_BINS:$(BUILD)/fuzz/%=$(BUILD)/obj/tests/fuzz/%.d)
# The seed corpora: small valid files from tests/fuzz/seeds.c, the recipes and models of recipes/.
fuzz-seeds: $(BUILD)/fuzz-seeds
	$(BUILD)/fuzz-seeds tests/fuzz/corpus
	mkdir -p tests/fuzz/corpus/recipe
	cp recipes/*/*.yaml tests/fuzz/corpus/recipe/
	cp recipes/*/*.model tests/fuzz/corpus/model/
$(BUILD)/fuzz-seeds: $(BUILD)/obj/tests/fuzz/seeds.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Speed against PyTorch: the same models, data, batch, optimizer and thread counts (bench/peer.py).
# Installs Debian's python3-torch (PyTorch 1.13 for the CPU, with its Python and BLAS dependencies)
# through apt-get when it is missing, prepares Fashion-MNIST when data/fashion-mnist is missing,
# runs `xdistill bench train distill --json` and the script, and prints both with the ratios.
# PEER_ARGS go to both sides (e.g. PEER_ARGS='--threads 1,2 --seconds 2').
PEER_PYTHON ?= /usr/bin/python3
.PHONY: bench-peer
bench-peer: setup
	@$(MAKE) --no-print-directory $(BIN)
	@if ! $(PEER_PYTHON) -c 'import torch' 2>/dev/null; then \
	  echo "bench-peer: installing python3-torch (Debian's PyTorch, CPU only) with apt-get"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "bench-peer: not root; run: sudo apt-get install -y --no-install-recommends python3-torch" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends python3-torch || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-torch; } || exit 1; \
	fi
	@[ -f data/fashion-mnist/dataset.xds ] || $(BIN) prepare fashion-mnist --out data/fashion-mnist
	$(BIN) bench train distill --json $(PEER_ARGS) > $(BUILD)/bench-train.jsonl
	$(PEER_PYTHON) bench/peer.py --ours $(BUILD)/bench-train.jsonl --suites train,distill $(PEER_ARGS)
