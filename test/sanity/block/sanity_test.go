package block

import (
	"testing"

	"github.com/srvlab/rds-csi/internal/sanityrun"
)

// TestSanity runs the full csi-sanity suite with block volumes.
func TestSanity(t *testing.T) { sanityrun.Run(t, "block") }
