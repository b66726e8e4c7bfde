package driver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
)

// checkCapability validates one volume capability. Multi-node access is for raw block only: it
// exists for KubeVirt live migration, and no filesystem here survives two writers.
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return invalid("volume capability is missing")
	}
	mode := c.GetAccessMode().GetMode()
	if mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return invalid("volume capability has no access mode")
	}
	block, mnt := c.GetBlock() != nil, c.GetMount()
	if !block && mnt == nil {
		return invalid("volume capability has neither block nor mount access type")
	}
	if mnt != nil && mnt.GetFsType() != "" && !validFSType(mnt.GetFsType()) {
		return invalid("fs type %q is not supported: use ext4 or xfs", mnt.GetFsType())
	}
	if isMultiNode(mode) && !block {
		return invalid("access mode %s needs a raw block volume: a filesystem cannot be mounted on several nodes safely", mode)
	}
	return nil
}

func checkCapabilities(cs []*csi.VolumeCapability) error {
	if len(cs) == 0 {
		return invalid("volume capabilities are missing")
	}
	for _, c := range cs {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

func isMultiNode(m csi.VolumeCapability_AccessMode_Mode) bool {
	switch m {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:
		return true
	}
	return false
}

func controllerCaps() []csi.ControllerServiceCapability_RPC_Type {
	return []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
	}
}
