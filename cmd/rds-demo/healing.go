package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/k8stest"
)

// healing is the second phase of the demo: the controller as deployed in a cluster (with
// --kubeconfig, against a real kube-apiserver + etcd), showing that a volume held by a failed node
// becomes attachable elsewhere by itself, and that a restarted controller decides the same.
type healing struct {
	srv  *k8stest.Server
	cs   kubernetes.Interface
	ctl  *proc
	conn *grpc.ClientConn
	cc   csi.ControllerClient
	id   csi.IdentityClient
	args []string
	sock string

	volID string
	vctx  map[string]string
}

const healPV = "pvc-0d3e5b7a-1c2f-4e6a-8b9c-7d1e2f3a4b5c"

var healCap = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

func (d *demo) healing(ctx context.Context) error {
	bins, err := k8stest.BinDir()
	if err != nil {
		fmt.Printf("\nself-healing phase skipped: no kube-apiserver here (run `make k8s-bins` once, ~7 min, to include it)\n")
		return nil
	}
	fmt.Printf("\nself-healing phase: the controller as deployed, against a real kube-apiserver\n")
	h := &healing{}
	d.heal = h
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"start kube-apiserver + etcd on loopback", func() (string, error) {
			if h.srv, err = k8stest.StartServer(ctx, bins); err != nil {
				return "", err
			}
			if h.cs, err = kubernetes.NewForConfig(h.srv.Config); err != nil {
				return "", err
			}
			return h.srv.Config.Host, nil
		}},
		{"start rds-csi --mode controller --kubeconfig", func() (string, error) { return h.startController(ctx, d) }},
		{"nodes node-a and node-b Ready; CreateVolume and its PV", func() (string, error) { return h.setup(ctx) }},
		{"attach to node-a (VolumeAttachment, ControllerPublish)", func() (string, error) { return "", h.attach(ctx, "node-a") }},
		{"attach to node-b is refused while node-a holds it", func() (string, error) { return h.refused(ctx, "node-b", "node-a") }},
		{"node-a NotReady: still refused (it may be writing)", func() (string, error) {
			if err := k8stest.SetReady(ctx, h.cs, "node-a", corev1.ConditionUnknown); err != nil {
				return "", err
			}
			return h.until(ctx, func() (bool, string) {
				err := h.attach(ctx, "node-b")
				return status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "NotReady"), "refused, tells to taint out-of-service"
			})
		}},
		{"taint node-a out-of-service: node-b attaches by itself", func() (string, error) {
			start := time.Now()
			if err := k8stest.TaintOutOfService(ctx, h.cs, "node-a"); err != nil {
				return "", err
			}
			if _, err := h.until(ctx, func() (bool, string) { return h.attach(ctx, "node-b") == nil, "" }); err != nil {
				return "", err
			}
			return fmt.Sprintf("attached %s after the taint", time.Since(start).Round(time.Millisecond)), nil
		}},
		{"kill -9 the controller and start it again", func() (string, error) {
			_ = syscall.Kill(-h.ctl.cmd.Process.Pid, syscall.SIGKILL)
			<-h.ctl.exited
			_ = h.conn.Close()
			return h.startController(ctx, d)
		}},
		{"after restart: node-c refused, node-b still holds it", func() (string, error) {
			if err := h.addNode(ctx, "node-c"); err != nil {
				return "", err
			}
			if err := h.attach(ctx, "node-b"); err != nil {
				return "", fmt.Errorf("republish to the holder: %w", err)
			}
			return h.refused(ctx, "node-c", "node-b")
		}},
		{"detach node-b, DeleteVolume", func() (string, error) {
			if _, err := h.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: h.volID, NodeId: "node-b"}); err != nil {
				return "", err
			}
			if _, err := h.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: h.volID}); err != nil {
				return "", err
			}
			return d.leftovers()
		}},
	}
	for _, s := range steps {
		if err := d.step(s.name, s.fn); err != nil {
			return err
		}
	}
	return nil
}

func (h *healing) startController(ctx context.Context, d *demo) (string, error) {
	if h.args == nil {
		kc := filepath.Join(d.dir, "kubeconfig")
		if err := k8stest.WriteKubeconfig(h.srv.Config, kc); err != nil {
			return "", err
		}
		h.sock = filepath.Join(d.dir, "controller.sock")
		h.args = []string{"--mode", "controller", "--endpoint", "unix://" + h.sock, "--kubeconfig", kc,
			"--rds-address", d.rdsAddr, "--rds-key-file", d.keyFile, "--rds-known-hosts", d.knownHosts, "--v", "2"}
	}
	_ = os.Remove(h.sock)
	var err error
	if h.ctl, err = startProc(d.dir, "rds-csi-controller", d.cfg.driverBin, h.args...); err != nil {
		return "", err
	}
	start := time.Now()
	// Dial once the socket exists: a failed first dial would put gRPC into a 1 s reconnect backoff.
	if _, err := h.until(ctx, func() (bool, string) { _, err := os.Stat(h.sock); return err == nil, "" }); err != nil {
		return "", fmt.Errorf("controller socket never appeared (see %s)", h.ctl.log)
	}
	if h.conn, err = grpc.NewClient("unix://"+h.sock, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return "", err
	}
	h.cc, h.id = csi.NewControllerClient(h.conn), csi.NewIdentityClient(h.conn)
	_, err = h.until(ctx, func() (bool, string) {
		r, err := h.id.Probe(ctx, &csi.ProbeRequest{})
		return err == nil && r.GetReady().GetValue(), ""
	})
	if err != nil {
		return "", fmt.Errorf("%w (see %s)", err, h.ctl.log)
	}
	return fmt.Sprintf("Probe ready in %s (caches synced, RDS connected)", time.Since(start).Round(time.Millisecond)), nil
}

func (h *healing) setup(ctx context.Context) (string, error) {
	for _, n := range []string{"node-a", "node-b"} {
		if err := h.addNode(ctx, n); err != nil {
			return "", err
		}
	}
	r, err := h.cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: healPV, VolumeCapabilities: []*csi.VolumeCapability{healCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	if err != nil {
		return "", err
	}
	h.volID, h.vctx = r.GetVolume().GetVolumeId(), r.GetVolume().GetVolumeContext()
	if err := k8stest.CreatePV(ctx, h.cs, driver.DefaultDriverName, healPV, r.GetVolume(), false, nil); err != nil {
		return "", err
	}
	return h.volID, nil
}

func (h *healing) addNode(ctx context.Context, name string) error {
	return k8stest.AddNode(ctx, h.cs, name, nil)
}

// attach plays the external-attacher: VolumeAttachment, ControllerPublish, status.attached.
func (h *healing) attach(ctx context.Context, node string) error {
	a := k8stest.Attacher{Client: h.cs, Driver: driver.DefaultDriverName, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		_, err := h.cc.ControllerPublishVolume(ctx, req)
		return err
	}}
	return a.Attach(ctx, healPV, &csi.ControllerPublishVolumeRequest{VolumeId: h.volID, NodeId: node, VolumeCapability: healCap, VolumeContext: h.vctx})
}

// refused checks that attaching to node is refused with FailedPrecondition naming the holder.
func (h *healing) refused(ctx context.Context, node, holder string) (string, error) {
	err := h.attach(ctx, node)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), holder) {
		return "", fmt.Errorf("attach to %s: %v, want FailedPrecondition naming %s", node, err, holder)
	}
	msg := status.Convert(err).Message()
	if i := strings.Index(msg, ";"); i > 0 {
		msg = msg[:i]
	}
	return msg, nil
}

// until polls cond every 10ms for up to 30s and returns its detail once it holds.
func (h *healing) until(ctx context.Context, cond func() (bool, string)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if ok, detail := cond(); ok {
			return detail, nil
		}
		select {
		case <-ctx.Done():
			return "", errors.New("condition not reached within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *healing) stop() {
	if h == nil {
		return
	}
	if h.conn != nil {
		_ = h.conn.Close()
	}
	h.ctl.stop()
	if h.srv != nil {
		h.srv.Stop()
	}
}
