package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/routeros"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// runLoad calls op from n goroutines for d and returns every call's latency.
func runLoad(n int, d time.Duration, op func() error) (latencies, int, error) {
	var (
		mu    sync.Mutex
		all   latencies
		errs  int
		first error
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local latencies
			for time.Now().Before(stop) {
				t := time.Now()
				err := op()
				local = append(local, time.Since(t))
				if err != nil {
					mu.Lock()
					errs++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if errs > 0 {
		return all, errs, fmt.Errorf("%d of %d calls failed, first: %w", errs, len(all), first)
	}
	return all, errs, nil
}

// freshConnGet is the baseline: one SSH connection per command, as a naive client would do.
func freshConnGet(s *sim, cmd string) error {
	c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.PublicKeys(s.signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostPublicKey()), Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.Output(cmd)
	if err != nil {
		return err
	}
	if len(routeros.ParsePrintDetail(string(out))) != 1 {
		return fmt.Errorf("unexpected output %q", out)
	}
	return nil
}

func benchRDS(ctx context.Context, o benchOptions) error {
	s, err := startSim()
	if err != nil {
		return err
	}
	defer s.close()
	client, err := s.newClient(32)
	if err != nil {
		return err
	}
	defer client.Close()
	st := rds.NewStorage(client)
	slot := "pvc-bench-get"
	if _, err := st.CreateDisk(ctx, routeros.DiskSpec{Slot: slot, FilePath: "/storage-pool/bench/" + slot + ".img", Size: 1 << 30,
		Export: true, Port: 4420, NQN: volid.NQN(slot)}); err != nil {
		return err
	}
	cmd, _ := routeros.DiskPrint(slot)

	fmt.Println("== RouterOS client: `get disk` through the session pool vs a fresh SSH connection per command (baseline)")
	fmt.Printf("%-12s %12s %10s %10s | %12s %10s %10s | %s\n", "concurrency", "pool ops/s", "p50", "p99", "fresh ops/s", "p50", "p99", "pool/fresh ops/s")
	for _, n := range []int{1, 8, 32} {
		pool, _, err := runLoad(n, o.duration, func() error { _, err := st.GetDisk(ctx, slot); return err })
		if err != nil {
			return err
		}
		fresh, _, err := runLoad(n, o.duration, func() error { return freshConnGet(s, cmd.String()) })
		if err != nil {
			return err
		}
		pr, fr := float64(len(pool))/o.duration.Seconds(), float64(len(fresh))/o.duration.Seconds()
		fmt.Printf("%-12d %12.0f %10s %10s | %12.0f %10s %10s | %s\n", n, pr, ms(pool.pct(50)), ms(pool.pct(99)),
			fr, ms(fresh.pct(50)), ms(fresh.pct(99)), ratio(pr, fr))
	}

	return benchRecovery(ctx, s, cmd.String())
}

// recoveryRestarts is how many RDS restarts the recovery figure takes the maximum over.
const recoveryRestarts = 20

// benchRecovery: from the simulator listening again after a restart to Probe ready and to the
// first successful command, through a client with the production defaults (probe interval,
// backoff, breaker), max over recoveryRestarts restarts; beside a fresh SSH connection and
// command to the same simulator right after each recovery (the best any client could do).
func benchRecovery(ctx context.Context, s *sim, cmd string) error {
	cfg := rds.Config{Address: s.Addr(), User: "admin", Signer: s.signer, HostKey: s.HostPublicKey()}
	client, err := rds.NewClient(cfg)
	if err != nil {
		return err
	}
	client.Start()
	defer client.Close()
	st := rds.NewStorage(client)
	for client.Probe(ctx) != nil {
		time.Sleep(time.Millisecond)
	}
	var probe, first, fresh latencies
	for range recoveryRestarts {
		// A connection that lived StableAfter (1 s by default) is no failure to back off from; the
		// jitter puts the restart anywhere between two probes.
		time.Sleep(1100*time.Millisecond + rand.N(100*time.Millisecond))
		s.Restart(300 * time.Millisecond)
		for client.Probe(ctx) == nil {
			time.Sleep(time.Millisecond)
		}
		if err := s.WaitListening(ctx); err != nil {
			return err
		}
		up := time.Now()
		for client.Probe(ctx) != nil {
			time.Sleep(time.Millisecond)
		}
		probe = append(probe, time.Since(up))
		if _, err := st.ListDisks(ctx, volid.VolumePrefix); err != nil {
			return fmt.Errorf("first command after Probe turned ready: %w", err)
		}
		first = append(first, time.Since(up))
		t := time.Now()
		if err := freshConnGet(s, cmd); err != nil {
			return err
		}
		fresh = append(fresh, time.Since(t))
	}
	fmt.Printf("\nrestart recovery (%d restarts of 300 ms, production client defaults): simulator listening -> Probe ready "+
		"p50 %s max %s; -> first command done p50 %s max %s (goal: max under 250ms)\n", recoveryRestarts,
		ms(probe.pct(50)), ms(probe.pct(100)), ms(first.pct(50)), ms(first.pct(100)))
	fmt.Printf("baseline, a fresh SSH connection + command right after: p50 %s max %s; max recovery / max fresh %s\n",
		ms(fresh.pct(50)), ms(fresh.pct(100)), ratio(float64(first.pct(100)), float64(fresh.pct(100))))
	return nil
}
