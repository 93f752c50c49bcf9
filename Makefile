# rstguard — build, test and try it.
#
#   make deb    the Debian package, bin/rstguard_VERSION_ARCH.deb
#   make install / make uninstall   the binary, unit, man page, completion
#               and shared files under PREFIX (default /usr/local)
#
#   make lab    build rstguard and run the lab (root): forged resets against
#               real Linux TCP endpoints, without and with the guard, then
#               the HA failover of two guarded gateways behind keepalived
#   make test   the whole test suite (root for the end-to-end part), with a
#               60 s soak of the daemon (TestSoakE2E)
#   make soak   the soak alone for SOAK (5 minutes): short and long
#               connections, forged resets, memory sampled (root)
#
# Both install the Debian packages they need when a tool is missing.

GO        ?= go
BIN       ?= bin/rstguard
FUZZTIME  ?= 20s
# Debian packages the lab and the tests use (tool -> package).
DEPS      := ip:iproute2 ss:iproute2 iptables:iptables ip6tables:iptables \
             nft:nftables sysctl:procps iperf3:iperf3 tcpdump:tcpdump \
             promtool:prometheus systemd-analyze:systemd cc:gcc \
             systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux \
             keepalived:keepalived curl:curl
# Headers the C accept-all ceiling of the packet-rate benchmark builds with.
HDRDEPS   := /usr/include/libnetfilter_queue/libnetfilter_queue.h:libnetfilter-queue-dev \
             /usr/include/libmnl/libmnl.h:libmnl-dev

.PHONY: all build deps lab test soak bench-dump unit fuzz fuzz-long vet fmt-check install bench bench-gateway bench-pps clean

all: build

# Stamp the version from git when building in a checkout.
BUILDVCS  := $(if $(wildcard .git),-buildvcs=true,)

build:
	$(GO) build -trimpath $(BUILDVCS) -o $(BIN) ./cmd/rstguard

# deps installs what is missing (needs root and apt; a no-op when all is there).
deps:
	@missing=""; for d in $(DEPS); do t=$${d%%:*}; p=$${d##*:}; \
	  command -v $$t >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	for d in $(HDRDEPS); do f=$${d%%:*}; p=$${d##*:}; \
	  [ -e $$f ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lab: deps build
	./$(BIN) lab

vet:
	$(GO) vet ./...
	cd packaging && $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 ./...

# Every fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
# Go's fuzzer minimizes each new input for up to 60 s by default, during
# which it reports 0 execs/s: FUZZMINIMIZE keeps that short so the time goes
# to fuzzing. The last line of each target's output, with its execs and new
# inputs, is collected into one summary. A run that ends with Go's
# "context deadline exceeded" and no failing input written (the time ran
# out while the coordinator was minimizing a new input) is not a failure;
# a failing input always is.
FUZZTARGETS := seqnum:FuzzSeqnum packet:FuzzDecode packet/craft:FuzzBytes \
               policy:FuzzEngine config:FuzzParse replay:FuzzReplay nfq:FuzzParseMsg
FUZZMINIMIZE ?= 2s
fuzz:
	@sum=""; for t in $(FUZZTARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  out=$$($(GO) test -run '^$$$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) \
	    -fuzzminimizetime $(FUZZMINIMIZE) ./$$pkg 2>&1) || \
	  if echo "$$out" | grep -q 'Failing input written to' || \
	     ! echo "$$out" | grep -q '^    context deadline exceeded$$'; then echo "$$out"; exit 1; \
	  else echo "$$fn: the fuzzer stopped on its own deadline while minimizing (no failing input; Go's coordinator reports it as context deadline exceeded)"; fi; \
	  last=$$(echo "$$out" | grep '^fuzz: elapsed' | tail -1); \
	  sum="$$sum$$fn: $$last\n"; echo "$$fn: $$last"; done; \
	printf "fuzz summary (FUZZTIME=$(FUZZTIME) each):\n$$sum"

# Ten minutes of fuzzing in all (100 s per target).
fuzz-long:
	$(MAKE) fuzz FUZZTIME=100s FUZZMINIMIZE=5s

# The whole suite: with RSTGUARD_E2E=1 the end-to-end tests must run (a
# missing privilege or tool fails them instead of skipping).
test: deps fmt-check vet build
	./$(BIN) check-config config.example.toml
	RSTGUARD_E2E=1 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

# The soak for SOAK (TestSoakE2E; `make test` runs it for 60 s): many short
# connections and a few long ones through the daemon with forged resets at
# random times; it prints the daemon's first and last heap and RSS.
SOAK      ?= 5m
soak: deps
	RSTGUARD_E2E=1 RSTGUARD_SOAK=$(SOAK) $(GO) test -count=1 -timeout 90m -run '^TestSoakE2E$$' -v ./cmd/rstguard

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./packet ./conntrack ./policy

bench-gateway: deps
	$(GO) run ./bench/gateway

# Packet rate under open-loop SYN floods: kernel, the C accept-all ceiling
# (bench/nfqaccept-c), go-nfqueue accept-all, rstguard with 1 and 2 queues.
# A dump of a million flows through the control socket during a transfer:
# verdict latency p99 idle vs during the dump, watchdog pings (about 2 min).
bench-dump: deps
	RSTGUARD_E2E=1 RSTGUARD_DUMP_E2E=1 $(GO) test -count=1 -timeout 10m -run '^TestControlDumpUnderLoadE2E$$' -v ./cmd/rstguard

bench-pps: deps
	$(GO) run ./bench/gateway -mode pps -runs 3 -seconds 4

install: build
	DESTDIR=$(DESTDIR) ./deploy/install.sh $(BIN)

.PHONY: uninstall deb

# Removes what make install installed (with the same DESTDIR, PREFIX,
# SYSCONFDIR, UNITDIR); the configuration only if it is unchanged.
uninstall:
	DESTDIR=$(DESTDIR) ./deploy/install.sh --uninstall

# The Debian package: a static binary stamped with the package version, and
# packaging/ (nfpm as a library, a Go module of its own) lays out the files
# and maintainer scripts. Its layout: README.md, "Installing on a gateway".
DEB_VERSION ?= $(shell ./packaging/version.sh)
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_DIR     ?= bin
deb:
	CGO_ENABLED=0 GOARCH=$(DEB_ARCH) $(GO) build -trimpath $(BUILDVCS) \
	  -ldflags "-s -w -X main.version=$(DEB_VERSION)" -o bin/deb/rstguard ./cmd/rstguard
	cd packaging && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	  $(GO) run . -root .. -binary $(abspath bin/deb/rstguard) -version $(DEB_VERSION) \
	  -arch $(DEB_ARCH) -out $(abspath $(DEB_DIR))

clean:
	rm -rf bin
