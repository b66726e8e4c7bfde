package driver

// Keys of the publish context (set by ControllerPublishVolume) and of the volume context (set by
// CreateVolume) that the node service reads. The publish context wins over the volume context.
const (
	ContextNVMeAddress    = "nvmeAddress"    // NVMe/TCP address of the RDS
	ContextNVMePort       = "nvmePort"       // NVMe/TCP port; volid.DefaultPort when absent
	ContextNQN            = "nqn"            // subsystem NQN; must be volid.NQN(volume ID)
	ContextFilePath       = "filePath"       // backing file on the RDS (used by the loop backend)
	ContextFSType         = "fsType"         // the capability's fs_type wins; the driver default when both are absent (volume context only)
	ContextCtrlLossTmo    = "ctrlLossTmo"    // seconds, -1 = reconnect forever, 0 = the kernel default (600)
	ContextReconnectDelay = "reconnectDelay" // seconds
	ContextKeepAliveTmo   = "keepAliveTmo"   // seconds, 0 = the kernel default (5)

	// ContextMigrationTimeout bounds a dual attach of a multi-node block volume (controller only).
	ContextMigrationTimeout = "migrationTimeout"
)

// The earlier driver's (3whiskeywhiskey/rds-csi) volume attribute holding the backing file, read
// when the contexts have no ContextFilePath.
const contextEarlierVolumePath = "volumePath"

// The kernel's defaults (drivers/nvme/host: NVMF_DEF_CTRL_LOSS_TMO, NVME_DEFAULT_KATO), which a 0
// in ContextCtrlLossTmo or ContextKeepAliveTmo stands for.
const (
	kernelCtrlLossTmo  = 600 // seconds
	kernelKeepAliveTmo = 5   // seconds
)
