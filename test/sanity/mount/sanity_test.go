package mount

import (
	"testing"

	"github.com/srvlab/rds-csi/internal/sanityrun"
)

// TestSanity runs the full csi-sanity suite with mount volumes.
func TestSanity(t *testing.T) { sanityrun.Run(t, "mount") }
