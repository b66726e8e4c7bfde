package main

import (
	"context"
	"fmt"
	"time"

	"github.com/srvlab/rds-csi/pkg/k8stest"
)

const (
	failoverSamples = 7
	probeSamples    = 3
	passRuns        = 3
)

// benchAttach measures how fast attachments heal: node failover and RDS recovery against a real
// kube-apiserver + etcd, and one reconcile pass over a large informer cache.
func benchAttach(ctx context.Context, _ benchOptions) error {
	fmt.Println("== attach: reconcile pass over 10,000 VolumeAttachments on 1,000 nodes (1% deleted, 1% out of service, 1% NotReady, 1% disks missing)")
	var first, steady, walk latencies
	var res *passResult
	for range passRuns {
		r, err := benchPass(ctx, passConfig{vas: 10000, nodes: 1000})
		if err != nil {
			return err
		}
		first, steady, walk = append(first, r.first.duration), append(steady, r.steady.duration), append(walk, r.walk)
		res = r
	}
	fmt.Printf("   baseline: walk of the cache (VA → PV, Node lookups)   p50 %s\n", ms(walk.pct(50)))
	fmt.Printf("   first pass (at start: finds everything, posts events) p50 %s  (%s the walk)  API calls %d: %d GETs, %d events\n",
		ms(first.pct(50)), ratio(float64(first.pct(50)), float64(walk.pct(50))), res.first.apiCalls, res.first.gets, res.first.events)
	fmt.Printf("   steady pass (nothing new)                              p50 %s  (%s the walk)  API calls %d\n",
		ms(steady.pct(50)), ratio(float64(steady.pct(50)), float64(walk.pct(50))), res.steady.apiCalls)
	fmt.Printf("   first pass found: %d released, %d NotReady holders, %d missing disks; the next one %d orphan exports (of %d runs, last shown)\n",
		res.released, res.notReady, res.missing, res.orphans, passRuns)

	dir, err := k8stest.BinDir()
	if err != nil {
		return err
	}
	start := time.Now()
	srv, err := k8stest.StartServer(ctx, dir)
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Printf("\n   (kube-apiserver v1.37.2 + etcd on loopback, ready in %s)\n", ms(time.Since(start)))

	for _, ev := range []string{"delete", "taint"} {
		s, err := failover(ctx, srv.Config, ev, healOptions{samples: failoverSamples})
		if err != nil {
			return fmt.Errorf("failover %s: %w", ev, err)
		}
		var pass, pub, watch, fresh latencies
		for _, x := range s {
			pass, pub, watch, fresh = append(pass, x.passDone), append(pub, x.publish), append(watch, x.watch), append(fresh, x.freshPublish)
		}
		what := map[string]string{"delete": "node deleted", "taint": "node tainted out-of-service"}[ev]
		fmt.Printf("== attach: failover, %s → volume published to another node (%d samples)\n", what, len(s))
		fmt.Printf("   baseline: node update → informer delivers it  p50 %s   publish with no holder  p50 %s\n", ms(watch.pct(50)), ms(fresh.pct(50)))
		fmt.Printf("   event → reconcile pass done                   p50 %s  max %s  (%s the watch)\n",
			ms(pass.pct(50)), ms(pass.pct(100)), ratio(float64(pass.pct(50)), float64(watch.pct(50))))
		fmt.Printf("   event → publish to the new node succeeded     p50 %s  max %s  (%s watch + fresh publish)\n",
			ms(pub.pct(50)), ms(pub.pct(100)), ratio(float64(pub.pct(50)), float64(watch.pct(50)+fresh.pct(50))))
	}

	down := 2 * time.Second
	s, err := probeRecovery(ctx, srv.Config, healOptions{samples: probeSamples, down: down})
	if err != nil {
		return fmt.Errorf("probe recovery: %w", err)
	}
	var ready, pass, dial latencies
	for _, x := range s {
		ready, pass, dial = append(ready, x.probeReady), append(pass, x.passDone), append(dial, x.dial)
	}
	fmt.Printf("== attach: RDS restart (down %s) → Probe ready, default reconnect backoff 500ms..5s (%d samples)\n", down, len(s))
	fmt.Printf("   baseline: listening → new SSH conn ran a command  p50 %s\n", ms(dial.pct(50)))
	fmt.Printf("   listening → Probe ready                          p50 %s  max %s  (%s the baseline)\n",
		ms(ready.pct(50)), ms(ready.pct(100)), ratio(float64(ready.pct(50)), float64(dial.pct(50))))
	fmt.Printf("   listening → reconnect-triggered pass done        p50 %s  max %s\n", ms(pass.pct(50)), ms(pass.pct(100)))
	return nil
}
