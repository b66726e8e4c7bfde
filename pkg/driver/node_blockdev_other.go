//go:build !linux

package driver

import (
	"errors"
	"fmt"
)

// The node service drives Linux block devices (ioctls, O_DIRECT); elsewhere these stubs only let
// the module build, so that contributors on other systems can work on it and run the unit tests,
// which use a fake Mounter. Every one of them fails: in particular a device is never formatted,
// since its blank check reports it unreadable.

var errNotSupportedOS = errors.New("block device operations are not supported on this OS: the node service runs on Linux only")

func blockDeviceSize(path string) (int64, error) {
	return 0, fmt.Errorf("size of %s: %w", path, errNotSupportedOS)
}

func deviceReadOnly(dev string) (bool, error) {
	return false, fmt.Errorf("read-only flag of %s: %w", dev, errNotSupportedOS)
}

func setDeviceReadOnly(dev string, _ bool) error {
	return fmt.Errorf("setting the read-only flag of %s: %w", dev, errNotSupportedOS)
}

func deviceEdgesBlank(dev string) error {
	return fmt.Errorf("%w: %s: %w", errUnreadable, dev, errNotSupportedOS)
}
