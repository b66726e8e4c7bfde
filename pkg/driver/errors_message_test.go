package driver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/rds"
)

// What users read (PVC events, VolumeAttachment errors) says what failed and why, never the
// RouterOS command line: that stays in the log.
func TestStatusMessagesHoldNoCommandLine(t *testing.T) {
	const line = `/disk add type=file file-path=/storage-pool/kubernetes-volumes/pvc-1.img file-size=1G slot=pvc-1`
	outage := &rds.Error{Kind: rds.KindUnavailable, Command: line, Message: "cannot connect to RDS", Err: errors.New("dial tcp 10.0.0.1:22: connect: connection refused")}
	for name, err := range map[string]error{
		"bare":    outage,
		"wrapped": fmt.Errorf("creating disk: %w", outage),
		"nested": &rds.Error{Kind: rds.KindUnavailable, Command: "/disk print", Message: "lookup failed",
			Err: fmt.Errorf("retry: %w", outage)},
	} {
		t.Run(name, func(t *testing.T) {
			st, _ := status.FromError(toStatus(err, "creating volume %s", "pvc-1"))
			if st.Code() != codes.Unavailable {
				t.Errorf("code %v, want Unavailable", st.Code())
			}
			msg := st.Message()
			if strings.Contains(msg, "/disk") || strings.Contains(msg, "file-path=") {
				t.Errorf("message holds a command line: %q", msg)
			}
			for _, want := range []string{"creating volume pvc-1", "unavailable", "cannot connect to RDS", "connection refused"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
		})
	}
}
