package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// The cluster's network. Every node has its own network namespace, so that each one's host
// network (where the kubelet and the chart's hostNetwork pods listen) has its own ports, as on
// separate machines; a veth pair links it to the host. The control plane, the simulator and a
// forwarder to the image registry listen on HubIP, an address of the host that every node
// reaches through its default route. Interface names are fixed: one cluster per machine at a
// time (Start takes a lock).
const (
	HubIP     = "10.77.0.1"
	hubLink   = "rcshub0"
	hubPeer   = "rcshub1"
	nodeLinkF = "rcsn%d"
)

// nodeIP is the address of node i (from 1) in its namespace, and gatewayIP the host's end.
func nodeIP(i int) string    { return "10.77." + strconv.Itoa(i) + ".2" }
func gatewayIP(i int) string { return "10.77." + strconv.Itoa(i) + ".1" }

// setupHub gives the host HubIP on a veth pair of its own (this kernel has no dummy links).
func setupHub() error {
	_ = run("ip", "link", "del", hubLink) // a crashed run's leftover
	for _, args := range [][]string{
		{"link", "add", hubLink, "type", "veth", "peer", "name", hubPeer},
		{"addr", "add", HubIP + "/32", "dev", hubLink},
		{"link", "set", hubLink, "up"},
		{"link", "set", hubPeer, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

func teardownHub() { _ = run("ip", "link", "del", hubLink) }

// linkNode connects the network namespace of process pid as node i: eth0 with nodeIP(i), a
// default route through the host.
func linkNode(i, pid int) error {
	host := fmt.Sprintf(nodeLinkF, i)
	_ = run("ip", "link", "del", host)
	if err := run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid)); err != nil {
		return err
	}
	if err := run("ip", "addr", "add", gatewayIP(i)+"/24", "dev", host); err != nil {
		return err
	}
	if err := run("ip", "link", "set", host, "up"); err != nil {
		return err
	}
	in := func(args ...string) error {
		return run("nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", "ip"}, args...)...)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", nodeIP(i) + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", gatewayIP(i)},
	} {
		if err := in(args...); err != nil {
			return err
		}
	}
	return nil
}

// forwarder copies TCP connections from a listener to target: nodes reach the loopback image
// registry through it.
type forwarder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func forward(listen, target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &forwarder{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.pipe(c)
		}()
	}
}

func (f *forwarder) track(c net.Conn, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *forwarder) pipe(c net.Conn) {
	defer c.Close()
	var d net.Dialer
	up, err := d.DialContext(context.Background(), "tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	f.track(c, true)
	f.track(up, true)
	defer f.track(c, false)
	defer f.track(up, false)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

func (f *forwarder) close() error {
	err := f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
