package main

import (
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
)

// newNodeConfig builds the node service's initiator from the flags.
func newNodeConfig(o *options) (*driver.NodeConfig, error) {
	var (
		ini nvme.Initiator
		err error
	)
	switch o.nvmeBackend {
	case "loop":
		ini, err = nvme.NewLoop(nvme.LoopConfig{Root: o.loopRoot, CommandTimeout: o.nvmeTimeout})
	default:
		ini, err = nvme.NewCLI(nvme.CLIConfig{HostNQN: o.hostNQN, CommandTimeout: o.nvmeTimeout,
			CtrlLossTmo: o.ctrlLossTmo, ReconnectDelay: o.reconnectDelay, KeepAliveTmo: o.keepAliveTmo})
	}
	if err != nil {
		return nil, err
	}
	return &driver.NodeConfig{Initiator: ini, MountTimeout: o.mountTimeout, StateDir: o.nodeStateDir}, nil
}
