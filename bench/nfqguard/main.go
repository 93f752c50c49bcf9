//go:build linux

// Command nfqguard runs rstguard's data path alone: one nfq.Worker and one
// policy.Engine per queue, with the default policy and table, and nothing
// else (no configuration file, metrics listener, sd_notify or reload). It
// exists to measure and profile that path in bench/gateway without
// touching the daemon:
//
//	nfqguard -queues 0:1 [-cpuprofile FILE] [-max-flows N]
//
// It prints "ready" once every queue is bound, and on SIGINT/SIGTERM one
// JSON line of counters, after writing the CPU profile if asked.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/rstguard/rstguard/config/queuerange"
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/nfq"
	"github.com/rstguard/rstguard/policy"
)

func main() {
	queues := flag.String("queues", "0:1", "queue numbers: N or N:M (inclusive)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	maxFlows := flag.Int("max-flows", conntrack.DefaultMaxFlows, "flow table bound per queue")
	copyRange := flag.Uint("copy-range", 128, "bytes copied per packet")
	rcvbuf := flag.Int("rcvbuf", 4<<20, "socket receive buffer in bytes")
	verbose := flag.Bool("v", false, "log the workers' lines (debug level) to standard error")
	flag.Parse()
	qs, err := queuerange.Parse(*queues)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nfqguard: -queues %q: %v\n", *queues, err)
		os.Exit(2)
	}
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if err := run(qs, *cpuprofile, *maxFlows, uint32(*copyRange), *rcvbuf, logger); err != nil {
		fmt.Fprintln(os.Stderr, "nfqguard:", err)
		os.Exit(1)
	}
}

func run(qs []uint16, cpuprofile string, maxFlows int, copyRange uint32, rcvbuf int, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = maxFlows
	opts := nfq.Options{Epoch: time.Now(), Logger: logger, LogRate: 100, LogBurst: 100}
	var workers []*nfq.Worker
	var wg sync.WaitGroup
	errs := make(chan error, len(qs))
	readyc := make(chan struct{}, len(qs))
	for _, q := range qs {
		w := nfq.New(nfq.Config{Queue: q, FailOpen: true, GSO: true, CopyRange: copyRange, ReadBuffer: rcvbuf},
			policy.NewEngine(policy.DefaultConfig(), tc), opts)
		workers = append(workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx, func() { readyc <- struct{}{} }); err != nil {
				errs <- fmt.Errorf("queue %d: %w", w.Queue(), err)
			}
		}()
	}
	for range qs {
		select {
		case <-readyc:
		case err := <-errs:
			stop()
			wg.Wait()
			return err
		}
	}
	fmt.Println("ready")
	<-ctx.Done()
	wg.Wait()
	var packets, verdictErrs uint64
	for _, w := range workers {
		packets += w.Stats().Packets.Load()
		verdictErrs += w.Stats().VerdictErrors.Load()
	}
	out, _ := json.Marshal(map[string]uint64{"packets": packets, "verdict_errors": verdictErrs})
	fmt.Println(string(out))
	return nil
}
