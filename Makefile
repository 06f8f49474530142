# ConGrad: one module, one test command (make test).
GO        ?= go
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 25m
BIN       := bin

.PHONY: all build test bench lint demo experiment clean

all: build

build:
	$(GO) build ./...
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/congrad ./cmd/congrad

# The one test command. Tests that need external tools (DuckDB via npm, the
# prism job server) find them through env vars that .ci/run sets up; see README.
test:
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 $(PKGS) | tee bench.txt

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN) out bench.txt
