// Package deploy runs the rds-csi binary as it is deployed: a controller process with
// --kubeconfig against a real kube-apiserver + etcd, the RDS simulator over SSH with a pinned host
// key, and the CSI API on a unix socket. It checks the wiring the in-process tests cannot: flags,
// the Kubernetes-backed attachment manager, events, metrics, and a restart of the process. The rig
// and the scenario are in internal/deployrig, shared with test/chart, which runs the same scenario
// with a token of the chart's ServiceAccount.
package deploy

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/srvlab/rds-csi/internal/deployrig"
	"github.com/srvlab/rds-csi/pkg/k8stest"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

// runs numbers the rigs of this process: the API server is shared, so names must not repeat
// (go test -count=N).
var runs atomic.Int32

// TestControllerBinaryHealsAttachments: the deployed controller, with an admin kubeconfig, decides
// attachments from the cluster, releases the volumes of a deleted node and of an out-of-service
// node by itself, reports them in events and metrics, and after a restart of the process makes
// the same decisions from the VolumeAttachments.
func TestControllerBinaryHealsAttachments(t *testing.T) {
	cfg := k8stest.Shared(t)
	id := int(runs.Add(1))
	r := deployrig.New(t, cfg, deployrig.Options{Driver: fmt.Sprintf("deploy%d.rds.csi.test", id),
		Prefix: fmt.Sprintf("d%d", id), ClaimNamespace: "deploy"})
	deployrig.HealAttachments(r, id)
}
