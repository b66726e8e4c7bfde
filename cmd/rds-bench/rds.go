package main

import (
	"context"
	"fmt"
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

	// Recovery: from the simulator listening again after a restart to the first successful
	// command through the client, against one fresh connect+command right after it comes back.
	var recov, base latencies
	for i := 0; i < 5; i++ {
		s.Restart(300 * time.Millisecond)
		if err := s.WaitListening(ctx); err != nil {
			return err
		}
		up := time.Now()
		for {
			if _, err := st.GetDisk(ctx, slot); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		recov = append(recov, time.Since(up))
		t := time.Now()
		if err := freshConnGet(s, cmd.String()); err != nil {
			return err
		}
		base = append(base, time.Since(t))
	}
	fmt.Printf("\nrestart recovery (5 restarts): simulator listening -> first successful command p50 %s (max %s); "+
		"baseline fresh connect+command %s; ratio %s\n", ms(recov.pct(50)), ms(recov.pct(100)), ms(base.pct(50)),
		ratio(float64(recov.pct(50)), float64(base.pct(50))))
	return nil
}
