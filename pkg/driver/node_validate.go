package driver

import (
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/volid"
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

// checkPath validates a path the CO hands over: absolute and clean, so that it names exactly one
// place and cannot climb out of it.
func checkPath(what, p string) error {
	if p == "" {
		return invalid("%s is missing", what)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
		return invalid("%s %q must be an absolute, clean path other than /", what, p)
	}
	return nil
}

func readerOnly(m csi.VolumeCapability_AccessMode_Mode) bool {
	return m == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		m == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

// parseNodeVolume validates a volume ID, capability and contexts. A mount volume whose capability
// and volume context name no fs type gets the driver's default (--default-fs-type).
func (n *nodeService) parseNodeVolume(id string, c *csi.VolumeCapability, publishCtx, volCtx map[string]string) (*nodeVolume, error) {
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, invalid("volume capability is missing")
	}
	v := &nodeVolume{id: id, mode: c.GetAccessMode().GetMode()}
	switch v.mode {
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return nil, invalid("volume capability has no access mode")
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
	default:
		return nil, invalid("access mode %v is not known", v.mode)
	}
	v.readOnly = readerOnly(v.mode)
	switch {
	case c.GetBlock() != nil:
		v.block = true
	case c.GetMount() != nil:
		if v.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER || v.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER {
			return nil, invalid("access mode %v needs a raw block volume: ext4 and xfs cannot be mounted on several nodes", v.mode)
		}
		v.fsType = c.GetMount().GetFsType()
		if v.fsType == "" {
			v.fsType = volCtx[ContextFSType]
		}
		if v.fsType == "" {
			v.fsType = Defaults{FSType: n.defaultFSType}.withFallbacks().FSType
		}
		if !validFSType(v.fsType) {
			return nil, invalid("fs type %q is not supported: use ext4 or xfs", v.fsType)
		}
		for _, f := range c.GetMount().GetMountFlags() {
			if f == "" || strings.HasPrefix(f, "-") || strings.ContainsAny(f, " \t\n\x00") {
				return nil, invalid("mount flag %q is not a mount option", f)
			}
			v.mountFlags = append(v.mountFlags, f)
		}
	default:
		return nil, invalid("volume capability has neither block nor mount access type")
	}

	get := func(k string) string {
		if s := publishCtx[k]; s != "" {
			return s
		}
		return volCtx[k]
	}
	// Unstage only knows the volume ID, so the NQN must be the one derived from it: otherwise the
	// subsystem connected here could never be disconnected.
	v.nqn = volid.NQN(id)
	if got := get(ContextNQN); got != "" && got != v.nqn {
		if err := volid.ValidateNQN(got); err != nil {
			return nil, invalid("context %s: %v", ContextNQN, err)
		}
		return nil, invalid("context %s=%q does not belong to volume %s (expected %s)", ContextNQN, got, id, v.nqn)
	}
	v.target = nvme.Target{NQN: v.nqn, Address: get(ContextNVMeAddress), Port: volid.DefaultPort, FilePath: get(ContextFilePath)}
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
			return nil, invalid("context %s=%q is not an integer", i.key, s)
		}
		*i.dst = n
	}
	// 0 is "the kernel's default" for these two, as the earlier driver (3whiskeywhiskey/rds-csi)
	// meant it when it wrote them on every PV: it passed no option to nvme connect then. Set to the
	// kernel's values, so that its volumes connect as before whatever this node's defaults are (a
	// zero in the target would take the node's defaults).
	if v.target.CtrlLossTmo == 0 && get(ContextCtrlLossTmo) != "" {
		v.target.CtrlLossTmo = kernelCtrlLossTmo
	}
	if v.target.KeepAliveTmo == 0 && get(ContextKeepAliveTmo) != "" {
		v.target.KeepAliveTmo = kernelKeepAliveTmo
	}
	// The earlier driver's volume attributes name the backing file volumePath. Only the loop
	// backend reads the file path, and only a path to "<volume ID>.img" is taken.
	if p := volCtx[contextEarlierVolumePath]; v.target.FilePath == "" && path.Base(p) == id+".img" {
		v.target.FilePath = p
	}
	if err := volid.ValidatePort(v.target.Port); err != nil {
		return nil, invalid("context %s: %v", ContextNVMePort, err)
	}
	if v.target.FilePath != "" {
		if err := volid.ValidatePath(v.target.FilePath); err != nil {
			return nil, invalid("context %s: %v", ContextFilePath, err)
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
