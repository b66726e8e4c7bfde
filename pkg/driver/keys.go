package driver

// Keys of the publish context (set by ControllerPublishVolume) and of the volume context (set by
// CreateVolume) that the node service reads. The publish context wins over the volume context.
const (
	ContextNVMeAddress    = "nvmeAddress"    // NVMe/TCP address of the RDS
	ContextNVMePort       = "nvmePort"       // NVMe/TCP port; volid.DefaultPort when absent
	ContextNQN            = "nqn"            // subsystem NQN; must be volid.NQN(volume ID)
	ContextFilePath       = "filePath"       // backing file on the RDS (used by the loop backend)
	ContextFSType         = "fsType"         // the capability's fs_type wins; the driver default when both are absent (volume context only)
	ContextCtrlLossTmo    = "ctrlLossTmo"    // seconds, -1 = reconnect forever
	ContextReconnectDelay = "reconnectDelay" // seconds
	ContextKeepAliveTmo   = "keepAliveTmo"   // seconds

	// ContextMigrationTimeout bounds a dual attach of a multi-node block volume (controller only).
	ContextMigrationTimeout = "migrationTimeout"
)
