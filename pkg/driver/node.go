package driver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// NodeConfig configures the Node service.
type NodeConfig struct {
	// Initiator attaches volumes: nvme.NewCLI (NVMe/TCP) or nvme.NewLoop (simulator files).
	Initiator nvme.Initiator
	// Mounter mounts, formats, probes and reads block devices; nil → the host's (mount-utils,
	// the tools run through Exec, the mount table at MountInfoPath, the block device ioctls).
	Mounter Mounter
	// Exec runs blkid, mkfs, fsck and the resize tools of the host's Mounter; nil → the host's
	// with the timeouts below. Unused when Mounter is set.
	Exec utilexec.Interface
	// MaxVolumesPerNode is reported by NodeGetInfo; 0 = no limit.
	MaxVolumesPerNode int64
	// CommandTimeout bounds blkid and other short commands run through the default Exec (1m).
	CommandTimeout time.Duration
	// FormatTimeout bounds mkfs, fsck, resize2fs and xfs_growfs run through the default Exec (10m),
	// and how long a stage waits for a format before it returns DeadlineExceeded.
	FormatTimeout time.Duration
	// MountTimeout bounds how long a call waits for one mount or umount (2m), and for one left
	// running by an earlier call. The gRPC deadline of the call bounds it too.
	MountTimeout time.Duration
	// StateDir keeps the node's own records across restarts of the plugin (the format journal);
	// it must survive them (a hostPath in a pod). Empty: no records, and a format interrupted
	// half-way leaves a volume that only an operator can stage again.
	StateDir string
	// MountInfoPath (for the host's Mounter) and SysfsRoot are for tests: /proc/self/mountinfo
	// and /sys by default.
	MountInfoPath string
	SysfsRoot     string
}

// nodeService is the CSI Node service; the gRPC server registers it as the csi.NodeServer.
type nodeService struct {
	// NodeGetStorageHealth, and whatever later CSI versions add, answer Unimplemented.
	csi.UnimplementedNodeServer

	nodeID    string
	maxVols   int64
	initiator nvme.Initiator
	mounter   Mounter
	sysfs     string
	locks     *inflight
	// defaultFSType is the driver's --default-fs-type, for volumes that do not name one.
	defaultFSType string
	journal       formatJournal
	// mountTimeout and formatTimeout bound the waits for mount(8), umount(8) and mkfs.
	mountTimeout, formatTimeout time.Duration
	pendingMu                   sync.Mutex
	pending                     map[string]*pendingOp // volume ID → operation left running by a call that gave up on it
}

func newNodeService(nodeID string, cfg NodeConfig) (*nodeService, error) {
	if nodeID == "" {
		return nil, errors.New("node service: empty node ID")
	}
	if cfg.Initiator == nil {
		return nil, errors.New("node service: no NVMe initiator")
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = time.Minute
	}
	if cfg.FormatTimeout <= 0 {
		cfg.FormatTimeout = 10 * time.Minute
	}
	if cfg.MountTimeout <= 0 {
		cfg.MountTimeout = 2 * time.Minute
	}
	if cfg.MountInfoPath == "" {
		cfg.MountInfoPath = "/proc/self/mountinfo"
	}
	m := cfg.Mounter
	if m == nil {
		ex := cfg.Exec
		if ex == nil {
			ex = &timeoutExec{Interface: utilexec.New(), timeout: cfg.CommandTimeout, formatTimeout: cfg.FormatTimeout}
		}
		m = newHostMounter(ex, cfg.MountInfoPath)
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	return &nodeService{
		nodeID:    nodeID,
		maxVols:   cfg.MaxVolumesPerNode,
		initiator: cfg.Initiator,
		mounter:   m,
		sysfs:     cfg.SysfsRoot,
		locks:     newInflight(),
		pending:   map[string]*pendingOp{},

		journal:       formatJournal{dir: cfg.StateDir},
		mountTimeout:  cfg.MountTimeout,
		formatTimeout: cfg.FormatTimeout,
	}, nil
}

// lock takes the per-volume lock of the node service; a second operation on the same volume while
// one runs gets Aborted and is retried by the CO. Then it waits for a mount, umount or format that
// an earlier call on the volume gave up waiting for: the mount table is only read once nothing
// changes it behind our back (an unstage must not find the staging path empty, disconnect, and see
// a late mount of the disconnected device appear there afterwards).
func (n *nodeService) lock(ctx context.Context, volID string) (func(), error) {
	if err := n.locks.lock(volID); err != nil {
		return nil, err
	}
	unlock := func() { n.locks.unlock(volID) }
	if err := n.awaitPending(ctx, volID); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// NodeGetInfo implements csi.NodeServer. No topology: every node reaches the RDS.
func (n *nodeService) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.nodeID, MaxVolumesPerNode: n.maxVols}, nil
}

// NodeGetCapabilities implements csi.NodeServer.
func (n *nodeService) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{
			Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}
