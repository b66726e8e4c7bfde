package driver

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// StorageClass parameters understood by CreateVolume. Keys under csi.storage.k8s.io/ belong to
// the sidecars and are ignored; any other unknown key is refused, so that a typo never silently
// gives a volume other than the one asked for.
const (
	ParamVolumePath       = "volumePath"
	ParamNVMeAddress      = "nvmeAddress"
	ParamNVMePort         = "nvmePort"
	ParamFSType           = "fsType"
	ParamCtrlLossTmo      = "ctrlLossTmo"
	ParamReconnectDelay   = "reconnectDelay"
	ParamKeepAliveTmo     = "keepAliveTmo"
	ParamMigrationTimeout = "migrationTimeout"
)

// volumeParams are validated StorageClass parameters.
type volumeParams struct {
	VolumePath       string
	NVMeAddress      string
	NVMePort         int
	FSType           string
	CtrlLossTmo      string // kept as given (validated integer) for the volume context
	ReconnectDelay   string
	KeepAliveTmo     string
	MigrationTimeout time.Duration
}

func (d Defaults) validate() error {
	if d.VolumePath != "" {
		if err := volid.ValidatePath(d.VolumePath); err != nil {
			return fmt.Errorf("default volume path: %w", err)
		}
	}
	if d.NVMePort != 0 {
		if err := volid.ValidatePort(d.NVMePort); err != nil {
			return fmt.Errorf("default NVMe port: %w", err)
		}
	}
	if d.FSType != "" && !validFSType(d.FSType) {
		return fmt.Errorf("default fs type %q: only ext4 and xfs are supported", d.FSType)
	}
	return nil
}

func (d Defaults) withFallbacks() Defaults {
	if d.VolumePath == "" {
		d.VolumePath = "/storage-pool/kubernetes-volumes"
	}
	if d.NVMePort == 0 {
		d.NVMePort = volid.DefaultPort
	}
	if d.FSType == "" {
		d.FSType = "ext4" // the one default fs type of controller and node alike
	}
	if d.VolumeSize == 0 {
		d.VolumeSize = 1 << 30
	}
	return d
}

func validFSType(fs string) bool { return fs == "ext4" || fs == "xfs" }

// parseParams validates StorageClass parameters against the driver defaults.
func parseParams(params map[string]string, def Defaults) (volumeParams, error) {
	def = def.withFallbacks()
	p := volumeParams{VolumePath: def.VolumePath, NVMeAddress: def.NVMeAddress, NVMePort: def.NVMePort, FSType: def.FSType,
		MigrationTimeout: attachment.DefaultMigrationTimeout}
	for k, v := range params {
		if strings.HasPrefix(k, "csi.storage.k8s.io/") {
			if k == "csi.storage.k8s.io/fstype" && v != "" {
				if !validFSType(v) {
					return p, invalid("parameter %s=%q: only ext4 and xfs are supported", k, v)
				}
				p.FSType = v
			}
			continue
		}
		switch k {
		case ParamVolumePath:
			if err := volid.ValidatePath(v); err != nil {
				return p, invalid("parameter %s: %v", k, err)
			}
			p.VolumePath = path.Clean(v)
		case ParamNVMeAddress:
			if err := validateAddress(v); err != nil {
				return p, invalid("parameter %s: %v", k, err)
			}
			p.NVMeAddress = v
		case ParamNVMePort:
			port, err := strconv.Atoi(v)
			if err != nil || volid.ValidatePort(port) != nil {
				return p, invalid("parameter %s=%q: must be a port number 1-65535", k, v)
			}
			p.NVMePort = port
		case ParamFSType:
			if !validFSType(v) {
				return p, invalid("parameter %s=%q: only ext4 and xfs are supported", k, v)
			}
			p.FSType = v
		case ParamCtrlLossTmo:
			// -1 means reconnect forever, which is what diskless nodes want; 0 the kernel default (600 s).
			if err := intInRange(v, -1, 86400); err != nil {
				return p, invalid("parameter %s: %v", k, err)
			}
			p.CtrlLossTmo = v
		case ParamReconnectDelay:
			if err := intInRange(v, 1, 3600); err != nil {
				return p, invalid("parameter %s: %v", k, err)
			}
			p.ReconnectDelay = v
		case ParamKeepAliveTmo:
			if err := intInRange(v, 1, 3600); err != nil {
				return p, invalid("parameter %s: %v", k, err)
			}
			p.KeepAliveTmo = v
		case ParamMigrationTimeout:
			dur, err := time.ParseDuration(v)
			if err != nil || dur < time.Second || dur > 24*time.Hour {
				return p, invalid("parameter %s=%q: must be a duration between 1s and 24h (e.g. 5m)", k, v)
			}
			p.MigrationTimeout = dur
		default:
			return p, invalid("unknown parameter %q", k)
		}
	}
	if p.NVMeAddress == "" {
		return p, invalid("no NVMe/TCP address: set the %s parameter or the driver's --nvme-address flag", ParamNVMeAddress)
	}
	return p, nil
}

func intInRange(v string, lo, hi int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("%q must be an integer from %d to %d", v, lo, hi)
	}
	return nil
}

// hostnameRE is a DNS name: labels of letters, digits and inner '-', joined by '.'.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// validateAddress accepts an IP address or a DNS name.
func validateAddress(a string) error {
	if net.ParseIP(a) != nil {
		return nil
	}
	if len(a) > 253 || !hostnameRE.MatchString(a) {
		return fmt.Errorf("%q is neither an IP address nor a host name", a)
	}
	return nil
}

// volumeContext is what the node needs to attach the volume, recorded on the PV.
func (p volumeParams) volumeContext(filePath, nqn string) map[string]string {
	vc := map[string]string{
		ContextNVMeAddress:      p.NVMeAddress,
		ContextNVMePort:         strconv.Itoa(p.NVMePort),
		ContextNQN:              nqn,
		ContextFilePath:         filePath,
		ContextFSType:           p.FSType,
		ContextMigrationTimeout: p.MigrationTimeout.String(),
	}
	for k, v := range map[string]string{ContextCtrlLossTmo: p.CtrlLossTmo, ContextReconnectDelay: p.ReconnectDelay, ContextKeepAliveTmo: p.KeepAliveTmo} {
		if v != "" {
			vc[k] = v
		}
	}
	return vc
}

// poolOf returns the pool (mount point) that holds a volume path: its first component.
func poolOf(volumePath string) string {
	p := strings.TrimPrefix(path.Clean(volumePath), "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	return p
}
