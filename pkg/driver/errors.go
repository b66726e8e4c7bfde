package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// invalid is the answer to a request that no retry can make right.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// toStatus turns a backend, initiator or host error into a gRPC status that keeps its meaning
// (docs/design.md, principle 3), prefixed with what was being done. gRPC status errors pass through as
// they are; an outage never becomes NotFound.
func toStatus(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	what := fmt.Sprintf(format, args...)
	msg := userMessage(err)
	if msg != err.Error() {
		// The status goes to users (PVC events, VolumeAttachment errors); the command line it
		// left out belongs in the log.
		klog.InfoS("RDS operation failed", "operation", what, "err", err)
	}
	return status.Errorf(codeOf(err), "%s: %s", what, msg)
}

// userMessage is err's text without the RouterOS command lines its RDS errors carry: a user
// reading a PVC event needs what failed and why, not a long command line (docs/operations.md).
func userMessage(err error) string {
	msg := err.Error()
	var re *rds.Error
	for e := err; e != nil && errors.As(e, &re); e = re.Err {
		if re.Command != "" {
			msg = strings.Replace(msg, " ("+re.Command+")", "", 1)
		}
	}
	return msg
}

// errorCodes are checked in order, before the backend's error kinds: a deadline or a cancel
// wrapped in a backend error is still a deadline or a cancel.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
	{nvme.ErrInvalid, codes.InvalidArgument},
	{nvme.ErrNotFound, codes.NotFound},
	{nvme.ErrUnavailable, codes.Unavailable},
	{nvme.ErrNotConnected, codes.FailedPrecondition},
	{nvme.ErrNotOwned, codes.FailedPrecondition},
	{errMountInUse, codes.FailedPrecondition},
}

// kindCodes maps the backend's error kinds; an unknown kind is Internal.
var kindCodes = map[rds.Kind]codes.Code{
	rds.KindNotFound:         codes.NotFound,
	rds.KindAlreadyExists:    codes.AlreadyExists,
	rds.KindOutOfSpace:       codes.ResourceExhausted,
	rds.KindInvalidArgument:  codes.InvalidArgument,
	rds.KindUnavailable:      codes.Unavailable,
	rds.KindDeadlineExceeded: codes.DeadlineExceeded,
	rds.KindBusy:             codes.Aborted,
}

func codeOf(err error) codes.Code {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	if c, ok := kindCodes[rds.KindOf(err)]; ok {
		return c
	}
	return codes.Internal
}
