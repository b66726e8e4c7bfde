package driver

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/routeros"
)

const (
	nodeDefaultFSType = "ext4"
	nodeDefaultPort   = 4420 // the IANA port of NVMe/TCP, and the RDS default
)

// nodeVolume is a validated node request: what to attach and how to mount it.
type nodeVolume struct {
	id         string
	nqn        string
	target     nvme.Target
	block      bool
	fsType     string // mount volumes only
	mountFlags []string
	mode       csi.VolumeCapability_AccessMode_Mode
	readOnly   bool // the mount is read-only (reader access mode, or a read-only publish)
}

func nodeInvalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func checkVolumeID(id string) error {
	if id == "" {
		return nodeInvalid("volume ID is missing")
	}
	if err := routeros.ValidateSlot(id); err != nil {
		return nodeInvalid("volume ID: %v", err)
	}
	return nil
}

// checkPath validates a path the CO hands over: absolute and clean, so that it names exactly one
// place and cannot climb out of it.
func checkPath(what, p string) error {
	if p == "" {
		return nodeInvalid("%s is missing", what)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
		return nodeInvalid("%s %q must be an absolute, clean path other than /", what, p)
	}
	return nil
}

func readerOnly(m csi.VolumeCapability_AccessMode_Mode) bool {
	return m == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		m == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

// parseNodeVolume validates a volume ID, capability and contexts.
func parseNodeVolume(id string, c *csi.VolumeCapability, publishCtx, volCtx map[string]string) (*nodeVolume, error) {
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, nodeInvalid("volume capability is missing")
	}
	v := &nodeVolume{id: id, mode: c.GetAccessMode().GetMode()}
	switch v.mode {
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return nil, nodeInvalid("volume capability has no access mode")
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
	default:
		return nil, nodeInvalid("access mode %v is not known", v.mode)
	}
	v.readOnly = readerOnly(v.mode)
	switch {
	case c.GetBlock() != nil:
		v.block = true
	case c.GetMount() != nil:
		if v.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER || v.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER {
			return nil, nodeInvalid("access mode %v needs a raw block volume: ext4 and xfs cannot be mounted on several nodes", v.mode)
		}
		v.fsType = c.GetMount().GetFsType()
		if v.fsType == "" {
			v.fsType = volCtx[ContextFSType]
		}
		if v.fsType == "" {
			v.fsType = nodeDefaultFSType
		}
		if v.fsType != "ext4" && v.fsType != "xfs" {
			return nil, nodeInvalid("fs type %q is not supported: use ext4 or xfs", v.fsType)
		}
		for _, f := range c.GetMount().GetMountFlags() {
			if f == "" || strings.HasPrefix(f, "-") || strings.ContainsAny(f, " \t\n\x00") {
				return nil, nodeInvalid("mount flag %q is not a mount option", f)
			}
			v.mountFlags = append(v.mountFlags, f)
		}
	default:
		return nil, nodeInvalid("volume capability has neither block nor mount access type")
	}

	get := func(k string) string {
		if s := publishCtx[k]; s != "" {
			return s
		}
		return volCtx[k]
	}
	// Unstage only knows the volume ID, so the NQN must be the one derived from it: otherwise the
	// subsystem connected here could never be disconnected.
	v.nqn = routeros.NQNForSlot(id)
	if got := get(ContextNQN); got != "" && got != v.nqn {
		if err := routeros.ValidateNQN(got); err != nil {
			return nil, nodeInvalid("context %s: %v", ContextNQN, err)
		}
		return nil, nodeInvalid("context %s=%q does not belong to volume %s (expected %s)", ContextNQN, got, id, v.nqn)
	}
	v.target = nvme.Target{NQN: v.nqn, Address: get(ContextNVMeAddress), Port: nodeDefaultPort, FilePath: get(ContextFilePath)}
	ints := []struct {
		key string
		dst *int
	}{{ContextNVMePort, &v.target.Port}, {ContextCtrlLossTmo, &v.target.CtrlLossTmo},
		{ContextReconnectDelay, &v.target.ReconnectDelay}, {ContextKeepAliveTmo, &v.target.KeepAliveTmo}}
	for _, i := range ints {
		s := get(i.key)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, nodeInvalid("context %s=%q is not an integer", i.key, s)
		}
		*i.dst = n
	}
	if err := routeros.ValidatePort(v.target.Port); err != nil {
		return nil, nodeInvalid("context %s: %v", ContextNVMePort, err)
	}
	if v.target.FilePath != "" {
		if err := routeros.ValidatePath(v.target.FilePath); err != nil {
			return nil, nodeInvalid("context %s: %v", ContextFilePath, err)
		}
	}
	return v, nil
}

// mountOptions are the options of the staging mount.
func (v *nodeVolume) mountOptions() []string {
	opts := append([]string(nil), v.mountFlags...)
	if v.readOnly {
		opts = append(opts, "ro")
	}
	if v.fsType == "xfs" {
		// Clones and snapshots restored on the same node share the XFS UUID.
		opts = append(opts, "nouuid")
	}
	return opts
}
