package main

import "github.com/srvlab/rds-csi/pkg/driver"

func newNodeConfig(o *options) (*driver.NodeConfig, error) {
	return &driver.NodeConfig{}, nil
}
